"""BTF on the guest kernels: argument names and struct fields compiled to fetchargs, offsets vs the kernel."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import kprobes
from kprobes.btf import load_vmlinux
from tests.helpers import run_cli, tracefs
from tests.host.test_btf_host import compare_tracepoint_offsets


def test_member_offsets_match_tracepoint_formats() -> None:
    btf = load_vmlinux(use_cache=False)
    checked = 0
    for system, event in [("sched", "sched_switch"), ("sched", "sched_process_exec"),
                          ("raw_syscalls", "sys_enter"), ("signal", "signal_generate"),
                          ("sched", "sched_process_fork")]:
        if os.path.exists(os.path.join(tracefs(), "events", system, event, "format")):
            compare_tracepoint_offsets(btf, tracefs(), system, event)
            checked += 1
    assert checked >= 4


def test_trace_by_parameter_name_prints_paths() -> None:
    path = f"/tmp/kprobes-btf-{os.getpid()}"
    rc, out, err = run_cli(["trace", "-c", f"cat {path} 2>/dev/null; true",
                            "p:do_sys_openat2 filename:string"])
    assert rc == 0, err
    hits = [ln for ln in out.splitlines() if f'filename="{path}"' in ln]
    assert hits, out[-3000:]
    assert " do_sys_openat2: " in hits[0]


def test_tcp_connect_reads_destination_port_through_struct_sock() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        with kprobes.Session(exclude_self=False) as s:
            p = s.add("p:tcp_connect sk->__sk_common.skc_dport")
            assert "(%di):u16" in (p.definition or ""), p.definition
            c = socket.create_connection(("127.0.0.1", port))
            c.close()
            evs = [e for e in s.events(duration=0.3) if e.pid == os.getpid()]
    finally:
        srv.close()
    assert [e.fields["skc_dport"] for e in evs] == [socket.htons(port)]


def test_killsnoop_reads_target_pid_through_task_struct() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        with kprobes.Session(exclude_self=False) as s:
            s.add("p:kill do_send_sig_info sig p->pid")
            os.kill(child.pid, signal.SIGTERM)
            child.wait(10)
            evs = list(s.events(duration=0.3))
    finally:
        if child.poll() is None:
            child.kill()
    mine = [e for e in evs if e.fields.get("pid") == child.pid]
    assert mine, evs
    assert mine[0].fields["sig"] == signal.SIGTERM
    assert mine[0].pid == os.getpid()


def test_list_verbose_signature_from_guest_btf() -> None:
    rc, out, err = run_cli(["list", "-v", "do_sys_openat2"])
    assert rc == 0, err
    assert "do_sys_openat2(int dfd, const char *filename, struct open_how *how)" in out
    rc, out, err = run_cli(["list", "-v", "struct sock"])
    assert rc == 0 and "__sk_common" in out
