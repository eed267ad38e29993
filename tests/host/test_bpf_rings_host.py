"""The perf ring and BPF ring buffer readers with real BPF programs on this host's kernel.

A TRACEPOINT program on ``syscalls:sys_enter_getppid``, filtered on the child's tgid,
emits 16-byte records ``(seq, pid_tgid)`` (``seq`` from an atomic counter in an ARRAY
map) through ``bpf_perf_event_output`` into a PERF_EVENT_ARRAY or through
``bpf_ringbuf_output`` into a RINGBUF; every failed output is counted into slot 0
of a PERCPU_ARRAY drop map.  The child calls ``getppid()`` a known number of times.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Tuple

import pytest

from tests.conftest import require

pytestmark = pytest.mark.host

CHILD = r"""
import os, sys, time
n, batch, cpu = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if cpu >= 0:
    os.sched_setaffinity(0, {cpu})
sys.stdout.write("ready\n"); sys.stdout.flush(); sys.stdin.readline()
done = 0
while done < n:
    k = min(batch, n - done)
    for _ in range(k):
        os.getppid()
    done += k
    if batch < n:
        time.sleep(0.001)
sys.stdout.write("sent\n"); sys.stdout.flush(); sys.stdin.readline()
os.getppid()  # one more event: the perf ring writes its pending LOST record before it
"""


def _bpf_or_skip() -> None:
    if os.geteuid() != 0:
        require("BPF ring tests need root")
    if not os.path.exists("/sys/kernel/tracing/events/syscalls/sys_enter_getppid/id"):
        require("no syscalls:sys_enter_getppid tracepoint (CONFIG_FTRACE_SYSCALLS)")


class Child:
    """A paced getppid() caller, held at each stage until told to go on."""

    def __init__(self, n: int, batch: int, cpu: int = -1) -> None:
        self.n = n
        self.p = subprocess.Popen([sys.executable, "-c", CHILD, str(n), str(batch), str(cpu)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout is not None
        assert self.p.stdout.readline() == "ready\n"

    @property
    def pid(self) -> int:
        return self.p.pid

    def go(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def sent(self) -> bool:
        assert self.p.stdout is not None
        return self.p.stdout.readline() == "sent\n"

    def finish(self) -> None:
        """The one extra getppid(), then exit."""
        self.go()
        assert self.p.wait(30) == 0

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def build(kind: str, tgid: int, out_map: object, seq_map: object, drop_map: object) -> object:
    """The program: if tgid matches, seq = fetch_add(seq_map[0], 1); output (seq, pid_tgid);
    on failure drop_map[0] += 1 (this CPU's slot)."""
    from kprobes.bpf import R0, R1, R2, R3, R4, R5, R6, R7, R10, Assembler, Helper

    a = Assembler()
    a.mov64(R6, R1)  # ctx
    a.call(Helper.get_current_pid_tgid)
    a.mov64(R7, R0)
    a.rsh64(R0, 32)
    a.jne(R0, tgid, "out")
    a.st("w", R10, -4, 0)  # key 0
    a.ld_map_fd(R1, seq_map)
    a.mov64(R2, R10)
    a.add64(R2, -4)
    a.call(Helper.map_lookup_elem)
    a.jeq(R0, 0, "out")
    a.mov64(R1, 1)
    a.atomic("dw", "add", R0, 0, R1, fetch=True)  # r1 = old value
    a.stx("dw", R10, -24, R1)  # record: seq
    a.stx("dw", R10, -16, R7)  # record: pid_tgid
    if kind == "perf":
        a.mov64(R1, R6)
        a.ld_map_fd(R2, out_map)
        a.mov32(R3, -1)  # BPF_F_CURRENT_CPU (0xffffffff)
        a.mov64(R4, R10)
        a.add64(R4, -24)
        a.mov64(R5, 16)
        a.call(Helper.perf_event_output)
    else:
        a.ld_map_fd(R1, out_map)
        a.mov64(R2, R10)
        a.add64(R2, -24)
        a.mov64(R3, 16)
        a.mov64(R4, 0)
        a.call(Helper.ringbuf_output)
    a.jeq(R0, 0, "out")
    a.ld_map_fd(R1, drop_map)
    a.mov64(R2, R10)
    a.add64(R2, -4)
    a.call(Helper.map_lookup_elem)
    a.jeq(R0, 0, "out")
    a.ldx("dw", R1, R0, 0)
    a.add64(R1, 1)
    a.stx("dw", R0, 0, R1)
    a.label("out")
    a.mov64(R0, 0)
    a.exit()
    return a.assemble()


class Rig:
    """Maps + loaded program + attached tracepoint for one child."""

    def __init__(self, kind: str, child: Child, ring_size: int = 0) -> None:
        from kprobes.backends.bpf.maps import Map

        self.kind = kind
        self.objs: List[object] = []
        self.seq = self._own(Map.array(8, 1, name="kp_test_seq"))
        self.drops = self._own(Map.percpu_array(8, 1, name="kp_test_drops"))
        if kind == "perf":
            self.out = self._own(Map.perf_event_array(name="kp_test_perf"))
        else:
            self.out = self._own(Map.ringbuf(ring_size or 1 << 20, name="kp_test_rb"))
        self.child = child

    def _own(self, obj: object) -> object:
        self.objs.append(obj)
        return obj

    def attach(self) -> None:
        from kprobes.backends.bpf.attach import attach_tracepoint
        from kprobes.backends.bpf.prog import Program
        from kprobes.bpf import ProgType

        prog = Program.load(ProgType.TRACEPOINT,
                            build(self.kind, self.child.pid, self.out, self.seq, self.drops),
                            name="kp_test_rings")
        self._own(prog)
        self._own(attach_tracepoint(prog, "syscalls", "sys_enter_getppid"))

    def close(self) -> None:
        for obj in reversed(self.objs):
            obj.close()  # type: ignore[attr-defined]
        self.objs.clear()


@pytest.fixture
def rig_factory() -> Iterator[object]:
    _bpf_or_skip()
    made: List[Tuple[Rig, Child]] = []

    def make(kind: str, n: int, batch: int, cpu: int = -1, ring_size: int = 0) -> Rig:
        child = Child(n, batch, cpu)
        rig = Rig(kind, child, ring_size)
        made.append((rig, child))
        return rig

    yield make
    for rig, child in made:
        child.kill()
        rig.close()


def _records(recs: List[bytes]) -> List[Tuple[int, int]]:
    return [struct.unpack_from("<QQ", r) for r in recs]


def test_perf_ring_delivers_every_record_in_order(rig_factory) -> None:  # type: ignore[no-untyped-def]
    from kprobes.backends.bpf.loss import PERF_RING, LossCounts
    from kprobes.backends.bpf.perfring import PerfRingReader

    n = 3000
    rig = rig_factory("perf", n, 100)
    counts = LossCounts()
    by_cpu: Dict[int, List[Tuple[int, int]]] = {}

    def handler(cpu: int, rec: Tuple[int, int]) -> None:  # unpacked by the reader
        by_cpu.setdefault(cpu, []).append(rec)

    rec = struct.Struct("<QQ")

    with PerfRingReader.for_map(rig.out, pages=16, loss=counts) as reader:
        rig.attach()
        rig.child.go()
        deadline = time.monotonic() + 60
        while sum(map(len, by_cpu.values())) < n and time.monotonic() < deadline:
            reader.poll(0.05, handler, record=rec)
        assert rig.child.sent()
        reader.drain(handler, record=rec)
        lost = reader.lost
    rig.child.finish()
    pid = rig.child.pid
    assert lost == 0 and counts.lost(PERF_RING) == 0
    for recs in by_cpu.values():  # in order within each CPU's ring
        seqs = [s for s, _ in recs]
        assert seqs == sorted(seqs)
    allrecs = sorted(r for recs in by_cpu.values() for r in recs)
    assert [s for s, _ in allrecs] == list(range(n))
    assert {pt >> 32 for _, pt in allrecs} == {pid}


def test_ringbuf_delivers_every_record_in_order(rig_factory) -> None:  # type: ignore[no-untyped-def]
    from kprobes.backends.bpf.loss import LossCounts
    from kprobes.backends.bpf.ringbuf import DropCounter, RingBufReader

    n = 3000
    rig = rig_factory("ringbuf", n, 100, ring_size=1 << 16)
    counts = LossCounts()
    got: List[bytes] = []
    with RingBufReader.for_map(rig.out, drops=DropCounter.for_map(rig.drops, counts)) as reader:
        rig.attach()
        rig.child.go()
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            got.extend(reader.poll(0.05))
        assert rig.child.sent()
        got.extend(reader.drain())
        assert reader.lost == 0 and counts.total == 0
    rig.child.finish()
    recs = _records(got)
    assert all(len(r) == 16 for r in got)  # the ring buffer keeps exact lengths
    assert [s for s, _ in recs] == list(range(n))  # one global order
    assert {pt >> 32 for _, pt in recs} == {rig.child.pid}


def test_perf_ring_overflow_reports_exact_loss(rig_factory) -> None:  # type: ignore[no-untyped-def]
    from kprobes.backends.bpf.loss import PERF_RING, LossCounts
    from kprobes.backends.bpf.perfring import PerfRingReader

    n = 2000
    cpu = sorted(os.sched_getaffinity(0))[0]
    rig = rig_factory("perf", n, n, cpu=cpu)
    counts = LossCounts()
    with PerfRingReader.for_map(rig.out, pages=1, loss=counts) as reader:  # 4 KiB: ~128 records
        rig.attach()
        rig.child.go()
        assert rig.child.sent()  # nothing read while the child ran: the ring overflowed
        first = reader.read_batch()
        rig.child.finish()  # one more sample: the kernel writes the LOST record before it
        rest = reader.drain()
        lost = reader.lost
    delivered = len(first) + len(rest)
    sent = n + 1
    assert 0 < delivered < sent
    assert lost == sent - delivered
    assert counts.lost(PERF_RING, cpu) == lost  # reported on the child's CPU
    # the program saw the same failures (-ENOSPC) the kernel counted
    assert sum(rig.drops.percpu_u64(struct.pack("=I", 0))) == lost
    seqs = [s for s, _ in _records(first + rest)]
    assert seqs == sorted(seqs) and seqs[-1] == n  # the extra event made it


def test_ringbuf_overflow_counts_failed_outputs(rig_factory) -> None:  # type: ignore[no-untyped-def]
    from kprobes.backends.bpf.loss import RINGBUF, LossCounts
    from kprobes.backends.bpf.ringbuf import DropCounter, RingBufReader

    n = 2000
    rig = rig_factory("ringbuf", n, n, ring_size=4096)  # one page: 170 records of 24 bytes
    counts = LossCounts()
    with RingBufReader.for_map(rig.out, drops=DropCounter.for_map(rig.drops, counts)) as reader:
        rig.attach()
        rig.child.go()
        assert rig.child.sent()
        got = reader.drain()
        rig.child.finish()
        got += reader.drain()
        failed = reader.lost
    sent = n + 1
    assert 0 < len(got) < sent
    assert len(got) + failed == sent
    assert counts.lost(RINGBUF) == failed
    seqs = [s for s, _ in _records(got)]
    assert seqs == sorted(seqs) and seqs[-1] == n
