"""kprobes.bpf.helpers and .maps: ids and enum values checked against uapi bpf.h."""

from __future__ import annotations

import pytest

from kprobes.bpf.helpers import PROTOTYPES, Helper, helper_id, helper_name, prototype
from kprobes.bpf.insn import BPFError
from kprobes.bpf.maps import AttachType, MapSpec, MapType, ProgType, enum_name, sanitize_name

# Values read from include/uapi/linux/bpf.h (___BPF_FUNC_MAPPER carries explicit ids).
HELPER_IDS = {
    "map_lookup_elem": 1, "map_update_elem": 2, "map_delete_elem": 3, "probe_read": 4,
    "ktime_get_ns": 5, "trace_printk": 6, "get_prandom_u32": 7, "get_smp_processor_id": 8,
    "tail_call": 12, "get_current_pid_tgid": 14, "get_current_uid_gid": 15,
    "get_current_comm": 16, "perf_event_output": 25, "get_stackid": 27,
    "get_current_task": 35, "probe_read_str": 45, "override_return": 58, "get_stack": 67,
    "get_current_cgroup_id": 80, "send_signal": 109, "probe_read_user": 112,
    "probe_read_kernel": 113, "probe_read_user_str": 114, "probe_read_kernel_str": 115,
    "jiffies64": 118, "get_ns_current_pid_tgid": 120, "ktime_get_boot_ns": 125,
    "ringbuf_output": 130, "ringbuf_reserve": 131, "ringbuf_submit": 132,
    "ringbuf_discard": 133, "d_path": 147, "get_current_task_btf": 158, "snprintf": 165,
    "get_func_ip": 173, "get_attach_cookie": 174, "get_func_arg": 183,
    "ktime_get_tai_ns": 208, "cgrp_storage_delete": 211,
}


@pytest.mark.parametrize("name,hid", sorted(HELPER_IDS.items()))
def test_helper_ids(name: str, hid: int) -> None:
    assert getattr(Helper, name) == hid
    assert helper_name(hid) == name
    assert helper_id(name) == hid and helper_id("bpf_" + name) == hid


def test_helper_table_is_dense_and_unique() -> None:
    ids = [v for k, v in vars(Helper).items() if not k.startswith("_")]
    assert sorted(ids) == list(range(212))
    assert helper_name(0) is None and helper_name(999) is None
    assert helper_id("no_such_helper") is None and helper_id("unspec") is None


def test_prototypes() -> None:
    assert len(PROTOTYPES) >= 40
    for hid in PROTOTYPES:
        p = prototype(hid)
        assert p is not None and p.id == hid and helper_name(hid) == p.name
        assert prototype(p.name) == p
        # a size argument always follows the pointer it measures
        for k, kind in enumerate(p.args):
            if kind == "size":
                assert k > 0 and p.args[k - 1] in ("mem", "uninit_mem", "map")
    lookup = prototype("map_lookup_elem")
    assert lookup is not None and lookup.args == ("map", "stack_ptr")
    assert lookup.ret == "map_value_or_null" and lookup.min_kernel == (3, 19)
    rb = prototype(Helper.ringbuf_reserve)
    assert rb is not None and rb.min_kernel == (5, 8)
    assert prototype("skb_store_bytes") is None and prototype("nope") is None


def test_enum_values() -> None:
    assert (MapType.HASH, MapType.ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY) == (1, 2, 3, 4)
    assert (MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.STACK_TRACE) == (5, 6, 7)
    assert (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH, MapType.RINGBUF) == (9, 10, 27)
    assert (ProgType.KPROBE, ProgType.TRACEPOINT, ProgType.PERF_EVENT) == (2, 5, 7)
    assert (ProgType.RAW_TRACEPOINT, ProgType.TRACING, ProgType.SYSCALL) == (17, 26, 31)
    assert (AttachType.TRACE_FENTRY, AttachType.PERF_EVENT) == (24, 41)
    assert (AttachType.TRACE_KPROBE_MULTI, AttachType.TRACE_UPROBE_MULTI) == (42, 48)
    assert enum_name(MapType, 27) == "RINGBUF" and enum_name(ProgType, 99) is None


def test_map_spec() -> None:
    m = MapSpec("@latency/by-comm:x", MapType.HASH, 16, 8, 4096)
    assert m.name == "_latency_by_com" and len(m.name) == 15 and m.label == "@latency/by-comm:x"
    assert m == MapSpec("@latency/by-comm:x", MapType.HASH, 16, 8, 4096)
    assert len({m, MapSpec("@latency/by-comm:x", MapType.HASH, 16, 8, 4096)}) == 1
    with pytest.raises(AttributeError):
        m.key_size = 4  # type: ignore[misc]
    assert sanitize_name("a.b_c") == "a.b_c"
    MapSpec("rb", MapType.RINGBUF, 0, 0, 1 << 16)
    MapSpec("st", MapType.STACK_TRACE, 4, 127 * 8, 1024)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (("rb", MapType.RINGBUF, 0, 0, 5000), "power of two"),
        (("rb", MapType.RINGBUF, 4, 0, 4096), "must be 0"),
        (("a", MapType.ARRAY, 8, 8, 1), "4-byte keys"),
        (("p", MapType.PERF_EVENT_ARRAY, 4, 8, 4), "file descriptor"),
        (("h", MapType.HASH, 0, 8, 4), "key_size must be positive"),
        (("h", MapType.HASH, 8, 8, 0), "max_entries"),
        (("s", MapType.STACK_TRACE, 4, 12, 4), "multiple of 8"),
        (("x", 99, 4, 4, 4), "unknown map type"),
        (("x", MapType.HASH, -1, 4, 4), "unsigned 32-bit"),
    ],
)
def test_map_spec_errors(args: tuple, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(BPFError) as e:
        MapSpec(*args)
    assert fragment in str(e.value)
