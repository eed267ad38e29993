"""eBPF helper function ids and prototypes (uapi ``bpf.h``, ``__BPF_FUNC_MAPPER``).

- ``Helper.<name>`` is the helper id (an ``int``), e.g. ``Helper.map_lookup_elem == 1``;
  all 212 ids up to Linux 6.2's ``cgrp_storage_delete`` (211).  Newer kernels add
  no helpers (new functionality is kfuncs).
- ``helper_name(id)`` -> ``"map_lookup_elem"`` (``None`` if unknown); the kernel's
  disassembler prints ``bpf_`` + that name.  ``helper_id(name)`` accepts either spelling.
- ``prototype(id_or_name)`` -> :class:`HelperProto` for the helpers a tracing engine
  uses: argument kinds, return kind and ``min_kernel`` (first upstream release
  that has the helper; distributions backport, so probe the running kernel when
  it matters).  ``PROTOTYPES`` lists the ids that have one.

Argument kinds: ``ctx`` (the program's context pointer), ``map`` (``ld_map_fd``),
``stack_ptr`` (pointer to initialised stack memory, e.g. a key), ``mem`` (pointer
to readable memory: stack or map value), ``uninit_mem`` (pointer to writable
memory the helper fills), ``size`` (byte count of the preceding pointer,
constant or bounded), ``unsafe_ptr`` (any address, read with fault handling),
``anything`` (a scalar), ``flags`` (a constant scalar), ``ringbuf_mem`` (a
pointer from ``ringbuf_reserve``), ``btf_ptr`` (typed pointer).
Return kinds: ``int`` (scalar, 0 or -errno), ``u64`` (scalar value),
``map_value_or_null``, ``mem_or_null``, ``void``, ``btf_task``.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple, Union

__all__ = ["Helper", "HelperProto", "helper_name", "helper_id", "prototype", "PROTOTYPES"]


class Helper:
    """Helper ids as plain ``int`` attributes (verified against uapi bpf.h)."""

    unspec = 0
    map_lookup_elem = 1
    map_update_elem = 2
    map_delete_elem = 3
    probe_read = 4
    ktime_get_ns = 5
    trace_printk = 6
    get_prandom_u32 = 7
    get_smp_processor_id = 8
    skb_store_bytes = 9
    l3_csum_replace = 10
    l4_csum_replace = 11
    tail_call = 12
    clone_redirect = 13
    get_current_pid_tgid = 14
    get_current_uid_gid = 15
    get_current_comm = 16
    get_cgroup_classid = 17
    skb_vlan_push = 18
    skb_vlan_pop = 19
    skb_get_tunnel_key = 20
    skb_set_tunnel_key = 21
    perf_event_read = 22
    redirect = 23
    get_route_realm = 24
    perf_event_output = 25
    skb_load_bytes = 26
    get_stackid = 27
    csum_diff = 28
    skb_get_tunnel_opt = 29
    skb_set_tunnel_opt = 30
    skb_change_proto = 31
    skb_change_type = 32
    skb_under_cgroup = 33
    get_hash_recalc = 34
    get_current_task = 35
    probe_write_user = 36
    current_task_under_cgroup = 37
    skb_change_tail = 38
    skb_pull_data = 39
    csum_update = 40
    set_hash_invalid = 41
    get_numa_node_id = 42
    skb_change_head = 43
    xdp_adjust_head = 44
    probe_read_str = 45
    get_socket_cookie = 46
    get_socket_uid = 47
    set_hash = 48
    setsockopt = 49
    skb_adjust_room = 50
    redirect_map = 51
    sk_redirect_map = 52
    sock_map_update = 53
    xdp_adjust_meta = 54
    perf_event_read_value = 55
    perf_prog_read_value = 56
    getsockopt = 57
    override_return = 58
    sock_ops_cb_flags_set = 59
    msg_redirect_map = 60
    msg_apply_bytes = 61
    msg_cork_bytes = 62
    msg_pull_data = 63
    bind = 64
    xdp_adjust_tail = 65
    skb_get_xfrm_state = 66
    get_stack = 67
    skb_load_bytes_relative = 68
    fib_lookup = 69
    sock_hash_update = 70
    msg_redirect_hash = 71
    sk_redirect_hash = 72
    lwt_push_encap = 73
    lwt_seg6_store_bytes = 74
    lwt_seg6_adjust_srh = 75
    lwt_seg6_action = 76
    rc_repeat = 77
    rc_keydown = 78
    skb_cgroup_id = 79
    get_current_cgroup_id = 80
    get_local_storage = 81
    sk_select_reuseport = 82
    skb_ancestor_cgroup_id = 83
    sk_lookup_tcp = 84
    sk_lookup_udp = 85
    sk_release = 86
    map_push_elem = 87
    map_pop_elem = 88
    map_peek_elem = 89
    msg_push_data = 90
    msg_pop_data = 91
    rc_pointer_rel = 92
    spin_lock = 93
    spin_unlock = 94
    sk_fullsock = 95
    tcp_sock = 96
    skb_ecn_set_ce = 97
    get_listener_sock = 98
    skc_lookup_tcp = 99
    tcp_check_syncookie = 100
    sysctl_get_name = 101
    sysctl_get_current_value = 102
    sysctl_get_new_value = 103
    sysctl_set_new_value = 104
    strtol = 105
    strtoul = 106
    sk_storage_get = 107
    sk_storage_delete = 108
    send_signal = 109
    tcp_gen_syncookie = 110
    skb_output = 111
    probe_read_user = 112
    probe_read_kernel = 113
    probe_read_user_str = 114
    probe_read_kernel_str = 115
    tcp_send_ack = 116
    send_signal_thread = 117
    jiffies64 = 118
    read_branch_records = 119
    get_ns_current_pid_tgid = 120
    xdp_output = 121
    get_netns_cookie = 122
    get_current_ancestor_cgroup_id = 123
    sk_assign = 124
    ktime_get_boot_ns = 125
    seq_printf = 126
    seq_write = 127
    sk_cgroup_id = 128
    sk_ancestor_cgroup_id = 129
    ringbuf_output = 130
    ringbuf_reserve = 131
    ringbuf_submit = 132
    ringbuf_discard = 133
    ringbuf_query = 134
    csum_level = 135
    skc_to_tcp6_sock = 136
    skc_to_tcp_sock = 137
    skc_to_tcp_timewait_sock = 138
    skc_to_tcp_request_sock = 139
    skc_to_udp6_sock = 140
    get_task_stack = 141
    load_hdr_opt = 142
    store_hdr_opt = 143
    reserve_hdr_opt = 144
    inode_storage_get = 145
    inode_storage_delete = 146
    d_path = 147
    copy_from_user = 148
    snprintf_btf = 149
    seq_printf_btf = 150
    skb_cgroup_classid = 151
    redirect_neigh = 152
    per_cpu_ptr = 153
    this_cpu_ptr = 154
    redirect_peer = 155
    task_storage_get = 156
    task_storage_delete = 157
    get_current_task_btf = 158
    bprm_opts_set = 159
    ktime_get_coarse_ns = 160
    ima_inode_hash = 161
    sock_from_file = 162
    check_mtu = 163
    for_each_map_elem = 164
    snprintf = 165
    sys_bpf = 166
    btf_find_by_name_kind = 167
    sys_close = 168
    timer_init = 169
    timer_set_callback = 170
    timer_start = 171
    timer_cancel = 172
    get_func_ip = 173
    get_attach_cookie = 174
    task_pt_regs = 175
    get_branch_snapshot = 176
    trace_vprintk = 177
    skc_to_unix_sock = 178
    kallsyms_lookup_name = 179
    find_vma = 180
    loop = 181
    strncmp = 182
    get_func_arg = 183
    get_func_ret = 184
    get_func_arg_cnt = 185
    get_retval = 186
    set_retval = 187
    xdp_get_buff_len = 188
    xdp_load_bytes = 189
    xdp_store_bytes = 190
    copy_from_user_task = 191
    skb_set_tstamp = 192
    ima_file_hash = 193
    kptr_xchg = 194
    map_lookup_percpu_elem = 195
    skc_to_mptcp_sock = 196
    dynptr_from_mem = 197
    ringbuf_reserve_dynptr = 198
    ringbuf_submit_dynptr = 199
    ringbuf_discard_dynptr = 200
    dynptr_read = 201
    dynptr_write = 202
    dynptr_data = 203
    tcp_raw_gen_syncookie_ipv4 = 204
    tcp_raw_gen_syncookie_ipv6 = 205
    tcp_raw_check_syncookie_ipv4 = 206
    tcp_raw_check_syncookie_ipv6 = 207
    ktime_get_tai_ns = 208
    user_ringbuf_drain = 209
    cgrp_storage_get = 210
    cgrp_storage_delete = 211


_NAMES: Optional[Dict[int, str]] = None
_IDS: Optional[Dict[str, int]] = None


def _tables() -> Tuple[Dict[int, str], Dict[str, int]]:
    global _NAMES, _IDS
    if _NAMES is None or _IDS is None:
        ids = {k: v for k, v in vars(Helper).items() if isinstance(v, int) and not k.startswith("_")}
        _IDS = ids
        _NAMES = {v: k for k, v in ids.items()}
    return _NAMES, _IDS


def helper_name(helper: int) -> Optional[str]:
    """``1`` -> ``"map_lookup_elem"``; ``None`` for an unknown id (or 0, unspec)."""
    if helper == 0:
        return None
    return _tables()[0].get(helper)


def helper_id(name: str) -> Optional[int]:
    """``"map_lookup_elem"`` or ``"bpf_map_lookup_elem"`` -> 1; ``None`` if unknown."""
    ids = _tables()[1]
    if name in ids and name != "unspec":
        return ids[name]
    if name.startswith("bpf_") and name[4:] in ids and name != "bpf_unspec":
        return ids[name[4:]]
    return None


class HelperProto(NamedTuple):
    """What a helper takes and returns (see the module docstring for the kinds)."""

    name: str
    id: int
    args: Tuple[str, ...]
    ret: str
    min_kernel: Tuple[int, int]
    gpl_only: bool = False


# name: (args, ret, min_kernel, gpl_only) -- the helpers a bpftrace-like engine uses.
_PROTOS: Dict[str, Tuple[Tuple[str, ...], str, Tuple[int, int], bool]] = {
    "map_lookup_elem": (("map", "stack_ptr"), "map_value_or_null", (3, 19), False),
    "map_update_elem": (("map", "stack_ptr", "stack_ptr", "flags"), "int", (3, 19), False),
    "map_delete_elem": (("map", "stack_ptr"), "int", (3, 19), False),
    "probe_read": (("uninit_mem", "size", "unsafe_ptr"), "int", (4, 1), True),
    "ktime_get_ns": ((), "u64", (4, 1), False),
    "trace_printk": (("mem", "size", "anything", "anything", "anything"), "int", (4, 1), True),
    "get_prandom_u32": ((), "u64", (4, 1), False),
    "get_smp_processor_id": ((), "u64", (4, 1), False),
    "tail_call": (("ctx", "map", "anything"), "int", (4, 2), False),
    "get_current_pid_tgid": ((), "u64", (4, 2), False),
    "get_current_uid_gid": ((), "u64", (4, 2), False),
    "get_current_comm": (("uninit_mem", "size"), "int", (4, 2), False),
    "perf_event_read": (("map", "flags"), "u64", (4, 3), False),
    "perf_event_output": (("ctx", "map", "flags", "mem", "size"), "int", (4, 4), True),
    "get_stackid": (("ctx", "map", "flags"), "int", (4, 6), True),
    "get_current_task": ((), "u64", (4, 8), True),
    "probe_write_user": (("anything", "mem", "size"), "int", (4, 8), True),
    "get_numa_node_id": ((), "u64", (4, 10), False),
    "probe_read_str": (("uninit_mem", "size", "unsafe_ptr"), "int", (4, 11), True),
    "override_return": (("ctx", "anything"), "int", (4, 16), True),
    "get_stack": (("ctx", "uninit_mem", "size", "flags"), "int", (4, 18), True),
    "get_current_cgroup_id": ((), "u64", (4, 18), False),
    "send_signal": (("anything",), "int", (5, 3), False),
    "probe_read_user": (("uninit_mem", "size", "unsafe_ptr"), "int", (5, 5), True),
    "probe_read_kernel": (("uninit_mem", "size", "unsafe_ptr"), "int", (5, 5), True),
    "probe_read_user_str": (("uninit_mem", "size", "unsafe_ptr"), "int", (5, 5), True),
    "probe_read_kernel_str": (("uninit_mem", "size", "unsafe_ptr"), "int", (5, 5), True),
    "send_signal_thread": (("anything",), "int", (5, 5), False),
    "jiffies64": ((), "u64", (5, 5), False),
    "get_ns_current_pid_tgid": (("anything", "anything", "uninit_mem", "size"), "int", (5, 7), False),
    "ktime_get_boot_ns": ((), "u64", (5, 8), False),
    "ringbuf_output": (("map", "mem", "size", "flags"), "int", (5, 8), False),
    "ringbuf_reserve": (("map", "size", "flags"), "mem_or_null", (5, 8), False),
    "ringbuf_submit": (("ringbuf_mem", "flags"), "void", (5, 8), False),
    "ringbuf_discard": (("ringbuf_mem", "flags"), "void", (5, 8), False),
    "get_task_stack": (("btf_ptr", "uninit_mem", "size", "flags"), "int", (5, 9), False),
    "d_path": (("btf_ptr", "uninit_mem", "size"), "int", (5, 10), False),
    "get_current_task_btf": ((), "btf_task", (5, 11), True),
    "ktime_get_coarse_ns": ((), "u64", (5, 11), False),
    "snprintf": (("uninit_mem", "size", "mem", "mem", "size"), "int", (5, 13), False),
    "get_func_ip": (("ctx",), "u64", (5, 15), False),
    "get_attach_cookie": (("ctx",), "u64", (5, 15), False),
    "get_branch_snapshot": (("uninit_mem", "size", "flags"), "int", (5, 16), False),
    "find_vma": (("btf_ptr", "anything", "func", "stack_ptr", "flags"), "int", (5, 17), False),
    "loop": (("anything", "func", "stack_ptr", "flags"), "int", (5, 17), False),
    "strncmp": (("mem", "size", "mem"), "int", (5, 17), False),
    "get_func_arg": (("ctx", "anything", "uninit_mem"), "int", (5, 17), False),
    "get_func_ret": (("ctx", "uninit_mem"), "int", (5, 17), False),
    "get_func_arg_cnt": (("ctx",), "u64", (5, 17), False),
    "copy_from_user_task": (("uninit_mem", "size", "anything", "btf_ptr", "flags"), "int", (5, 18), True),
    "map_lookup_percpu_elem": (("map", "stack_ptr", "anything"), "map_value_or_null", (5, 19), False),
    "ktime_get_tai_ns": ((), "u64", (6, 1), False),
}

PROTOTYPES: Tuple[int, ...] = tuple(sorted(getattr(Helper, n) for n in _PROTOS))


def prototype(helper: Union[int, str]) -> Optional[HelperProto]:
    """The prototype of ``helper`` (id or name), ``None`` if this table lacks it."""
    if isinstance(helper, str):
        hid = helper_id(helper)
        if hid is None:
            return None
        name = helper_name(hid)
    else:
        name = helper_name(helper)
        hid = helper
    if name is None or name not in _PROTOS:
        return None
    args, ret, kmin, gpl = _PROTOS[name]
    return HelperProto(name, hid, args, ret, kmin, gpl)
