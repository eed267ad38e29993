"""The BPF backend on this host's kernel: tracepoints, uprobes, maps, the verifier, features, ownership."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys

import pytest

from kprobes.backends.bpf import BpfSession, Map, Program, possible_cpus, programs_named
from kprobes.backends.bpf.features import probe_features
from kprobes.bpf import R0, R1, Assembler
from kprobes.bpf.maps import MapType, ProgType
from kprobes.errors import BPFError, VerifierError
from tests.bpf_programs import Child, counter, key, u64
from tests.helpers import ROOT, wait_for

GETPID = {"x86_64": 39, "aarch64": 172}.get(os.uname().machine, 39)


def test_tracepoint_counts_a_childs_getpid_exactly() -> None:
    with Child(f"for _ in range(n): libc.syscall({GETPID})") as child, BpfSession() as s:
        counts = s.adopt_map(Map.array(8, 1, name="kpt_getpid"))
        prog = s.load(ProgType.TRACEPOINT, counter(counts, child.pid).assemble(), name="kpt_getpid")
        link = s.attach(prog, "tracepoint:syscalls:sys_enter_getpid")
        assert link.kind in ("perf_link", "perf_ioctl")
        child.run(1234)
        assert u64(counts.lookup(key(0))) == 1234
        child.run(66)
        assert u64(counts.lookup(key(0))) == 1300
        assert prog.info().name == "kpt_getpid" and prog.info().run_cnt >= 0
    assert link.closed and prog.closed and counts.closed


def test_uprobe_on_libc_atol_counts_exactly_per_cpu() -> None:
    body = "for _ in range(n): libc.atol(b'42')"
    with Child(body) as child, BpfSession() as s:
        counts = s.adopt_map(Map.percpu_array(8, 1, name="kpt_atol"))
        prog = s.load(ProgType.KPROBE, counter(counts, child.pid, percpu=True).assemble(),
                      name="kpt_atol")
        s.attach(prog, "uprobe:libc:atol")
        child.run(500)
        per_cpu = counts.percpu_u64(key(0))
        assert len(per_cpu) == counts.ncpus and sum(per_cpu) == 500
        ret = s.load(ProgType.KPROBE, counter(counts, child.pid, key=0, percpu=True).assemble(),
                     name="kpt_atol_ret")
        s.attach(ret, "uretprobe:libc:atol")
        child.run(100)
        assert sum(counts.percpu_u64(key(0))) == 500 + 2 * 100


def test_verifier_rejection_carries_the_log() -> None:
    a = Assembler()
    a.mov64(R1, 1).exit()  # r0 never written
    with pytest.raises(VerifierError) as ei:
        Program.load(ProgType.KPROBE, a.assemble(), name="kpt_bad")
    e = ei.value
    assert "R0 !read_ok" in e.log
    assert any("R0 !read_ok" in ln for ln in e.last_lines)
    assert "verifier log" in str(e) and e.errno is not None
    # an unknown helper: the verifier names it
    b = Assembler()
    b.call(9999).mov64(R0, 0).exit()
    with pytest.raises(VerifierError) as ei2:
        Program.load(ProgType.KPROBE, b.assemble())
    assert "invalid func" in ei2.value.log or "unknown func" in ei2.value.log


def test_map_ops_batch_and_iteration_agree() -> None:
    with Map.hash(4, 8, 256, name="kpt_hash") as m:
        want = {key(i): (i * 7).to_bytes(8, sys.byteorder) for i in range(200)}
        for k, v in want.items():
            m.update(k, v)
        assert m.lookup(key(5)) == want[key(5)] and m.lookup(key(999)) is None
        assert dict(m.items()) == want and m.batch_supported is True
        m2_keys = sorted(m.keys())
        assert m2_keys == sorted(want)
        assert m.delete(key(3)) and not m.delete(key(3))
        del want[key(3)]
        m._batch = False  # the GET_NEXT_KEY walk gives the same answer
        assert dict(m.items()) == want
        m._batch = None
        got = dict(m.items(delete=True, chunk=16))
        assert got == want and list(m.keys()) == []
        info = m.info()
        assert (info.type, info.key_size, info.value_size, info.max_entries, info.name) == (
            MapType.HASH, 4, 8, 256, "kpt_hash")
        with pytest.raises(BPFError):
            m.update(key(1), key(1))  # wrong value size
    with Map.hash(8, 4, 64, percpu=True) as p:
        p.update(key(1) * 2, (9).to_bytes(4, sys.byteorder))  # one value for every CPU
        vals = p.lookup_percpu(key(1) * 2)
        assert vals is not None and len(vals) == p.ncpus == len(possible_cpus())
        assert all(int.from_bytes(v, sys.byteorder) == 9 for v in vals)
        assert dict(p.items())[key(1) * 2] == p.lookup(key(1) * 2)
    with Map.create(MapType.LRU_HASH, 4, 4, 8) as lru:
        for i in range(20):
            lru.update(key(i), key(i))
        assert 0 < len(lru.items()) <= 8
    with Map.ringbuf(1 << 16, name="kpt_rb") as rb, Map.perf_event_array() as pa, \
            Map.stack_trace(4) as st:
        assert rb.info().type == MapType.RINGBUF and pa.max_entries >= 1 and st.value_size == 8 * 127


def test_features_probe() -> None:
    f = probe_features(refresh=True)
    assert f.bpf and not f.error
    assert all(f.prog_types[t] for t in ("KPROBE", "TRACEPOINT", "PERF_EVENT"))
    assert f.map_types["RINGBUF"] and f.map_types["PERCPU_ARRAY"]
    assert f.helpers["probe_read_kernel"] and f.helpers["probe_read_user"]
    assert f.perf_link and f.object_names and f.batch_ops
    kprobes_here = os.path.exists("/sys/bus/event_source/devices/kprobe")
    assert f.kprobe_pmu == kprobes_here
    if not kprobes_here:
        assert not f.kprobe_multi and f.kprobe_multi_reason
    again = probe_features(refresh=False)
    assert again is f
    rows = dict((n, ok) for n, ok, _ in f.summary())
    assert rows["bpf() syscall"] and rows["BPF program types"]


_HOLDER = r"""
import os, sys, time
sys.path.insert(0, {src!r})
from kprobes.backends.bpf import BpfSession, Map
from kprobes.bpf.maps import ProgType
sys.path.insert(0, {root!r})
from tests.bpf_programs import counter
s = BpfSession().__enter__()
m = s.adopt_map(Map.array(8, 1, name={prefix!r}))
for i in range(5):
    p = s.load(ProgType.TRACEPOINT, counter(m, os.getpid()).assemble(), name={prefix!r} + str(i))
    s.attach(p, "tracepoint:syscalls:sys_enter_getpid")
u = s.load(ProgType.KPROBE, counter(m, os.getpid()).assemble(), name={prefix!r} + "u")
s.attach(u, "uprobe:libc:atol")
print(len(s.links), flush=True)
time.sleep(60)
"""


def test_sigkill_leaves_no_program_behind() -> None:
    prefix = "kpk" + secrets.token_hex(3)
    code = _HOLDER.format(src=os.path.join(ROOT, "src"), root=ROOT, prefix=prefix)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "6"
        assert len(programs_named(prefix)) == 6
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # programs are freed after an RCU grace period and a workqueue run
        assert wait_for(lambda: programs_named(prefix) == [], timeout=10), programs_named(prefix)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_wrong_program_type_is_refused_with_a_reason() -> None:
    from kprobes.backends.bpf import attach as attach_mod

    a = Assembler()
    a.mov64(R0, 0).exit()
    with BpfSession() as s:
        tp = s.load(ProgType.TRACEPOINT, a.assemble(), name="kpt_wrongtype")
        with pytest.raises(BPFError) as ei:
            s.attach(tp, "uprobe:libc:atol")
        assert "cannot attach" in (ei.value.hint or "") + ei.value.message
        assert attach_mod._perf_link_ok is not False  # one bad program proves nothing about links
        kp = s.load(ProgType.KPROBE, a.assemble())
        assert s.attach(kp, "uprobe:libc:atol").kind == "perf_link"
