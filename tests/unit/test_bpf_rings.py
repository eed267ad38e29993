"""The perf ring and BPF ring buffer readers on synthetic ring images (no kernel).

The images are written here from the kernel's layouts (``perf_event_mmap_page`` +
``perf_event_header`` records; ring buffer ``u32 len | BUSY | DISCARD, u32 pg_off``
headers, data area seen twice), independently of the readers.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
from typing import List, Optional

import pytest

from kprobes.backends.bpf.loss import PERF_RING, RINGBUF, LossCounts
from kprobes.backends.bpf.perfring import (
    PerfRing,
    PerfRingError,
    PerfRingReader,
    decode_records,
)
from kprobes.backends.bpf.ringbuf import (
    BUSY_BIT,
    DISCARD_BIT,
    DropCounter,
    RingBuf,
    RingBufError,
    decode_ringbuf,
)
from kprobes.backends.bpf.ringmem import Fence, RingMapping, needs_fence

META = 4096  # perf metadata page in the images


# --------------------------------------------------------------------- perf images


class PerfImage:
    """A perf mmap image: metadata page + ``size`` data bytes, written like the kernel."""

    def __init__(self, size: int = 1024, cpu: int = 0, fence: Optional[Fence] = None) -> None:
        self.size = size
        self.buf = bytearray(META + size)
        self.head = 0
        self.ring = PerfRing(
            memoryview(self.buf),
            ctypes.c_uint64.from_buffer(self.buf, 1024),
            ctypes.c_uint64.from_buffer(self.buf, 1032),
            META, size, cpu=cpu, fence=fence,
        )

    def put(self, rec: bytes) -> None:
        assert len(rec) % 8 == 0
        for i, b in enumerate(rec):
            self.buf[META + (self.head + i) % self.size] = b
        self.head += len(rec)
        struct.pack_into("<Q", self.buf, 1024, self.head)

    def sample(self, raw: bytes) -> bytes:
        """A RAW sample as the kernel pads it: 4 + len(raw part) is a multiple of 8."""
        padded = raw + b"\0" * ((-(len(raw) + 4)) % 8)
        self.put(struct.pack("<IHHI", 9, 0, 12 + len(padded), len(padded)) + padded)
        return padded

    def lost(self, n: int, ident: int = 7) -> None:
        self.put(struct.pack("<IHHQQ", 2, 0, 24, ident, n))

    @property
    def tail(self) -> int:
        return int(struct.unpack_from("<Q", self.buf, 1032)[0])


def rec16(i: int, pid: int = 4242) -> bytes:
    return struct.pack("<QQ", i, pid)


def test_perf_samples_in_order_and_tail_advanced() -> None:
    img = PerfImage()
    expect = [img.sample(rec16(i)) for i in range(10)]
    out = img.ring.read_batch()
    assert out == expect
    assert all(len(r) == 20 and r[16:] == b"\0" * 4 for r in out)  # 16 bytes + the kernel's padding
    assert [struct.unpack_from("<QQ", r) for r in out] == [(i, 4242) for i in range(10)]
    assert img.tail == img.head == 10 * 32
    assert img.ring.records == 10
    assert img.ring.read_batch() == []  # nothing new
    img.sample(rec16(10))
    assert img.ring.read_batch() == [rec16(10) + b"\0" * 4]
    assert img.tail == 11 * 32


def test_perf_record_split_across_the_end_is_copied_whole() -> None:
    img = PerfImage(size=256)
    for i in range(7):
        img.sample(rec16(i))  # 7 * 32 = 224 bytes
    assert len(img.ring.read_batch()) == 7
    # 40-byte record at 224: 32 bytes before the end, 8 after it; the next one starts at 264 (8)
    first = img.sample(bytes(range(100, 128)))
    second = img.sample(rec16(99))
    assert img.head == 224 + 40 + 32
    out = img.ring.read_batch()
    assert out == [first, second]
    assert first[:28] == bytes(range(100, 128))
    assert img.tail == img.head
    # a long run around the ring several times, consumed in uneven batches
    got: List[bytes] = []
    want: List[bytes] = []
    for i in range(200):
        want.append(img.sample(struct.pack("<I", i) * (1 + i % 9)))
        if i % 3 == 0:
            img.ring.read_batch(got)
    img.ring.read_batch(got)
    assert got == want


def test_perf_lost_records_counted_and_reported_per_cpu() -> None:
    img = PerfImage(cpu=3)
    img.sample(rec16(1))
    img.lost(5)
    img.sample(rec16(2))
    img.lost(12)
    counts = LossCounts()
    reader = PerfRingReader(lambda cpu, fd: None, loss=counts)
    reader.rings = [img.ring]  # as open() would after mapping the CPU's event
    out = reader.read_batch()
    assert [struct.unpack_from("<Q", r)[0] for r in out] == [1, 2]
    assert img.ring.lost == 17 and reader.lost == 17
    assert counts.lost(PERF_RING, 3) == 17 and counts.lost(PERF_RING) == 17
    img.lost(1)
    reader.read_batch()
    assert counts.lost(PERF_RING, 3) == 18  # only the increase is reported
    assert counts.report() == ["bpf perf ring lost 18 records (cpu3: 18)"]
    assert counts.to_json() == {PERF_RING: {"lost": 18, "cpus": {"3": 18}}}


def test_perf_handler_gets_cpu_and_private_copy() -> None:
    img = PerfImage(cpu=1)
    for i in range(3):
        img.sample(rec16(i))
    seen: List[tuple[int, bytes]] = []
    views: List[bytes] = []

    def handler(cpu: int, rec: bytes) -> None:
        views.append(rec)
        seen.append((cpu, rec))

    reader = PerfRingReader(lambda cpu, fd: None)
    reader.rings = [img.ring]
    assert reader.read(handler) == 3
    assert [c for c, _ in seen] == [1, 1, 1]
    assert [struct.unpack_from("<Q", r)[0] for _, r in seen] == [0, 1, 2]
    # the ring space is reused: the views handed out before stay intact (copies)
    for _ in range(3):
        for _ in range(30):
            img.sample(b"\xff" * 16)
        reader.read_batch()
    assert [struct.unpack_from("<Q", v)[0] for v in views] == [0, 1, 2]


def test_perf_other_record_types_are_skipped() -> None:
    img = PerfImage()
    img.put(struct.pack("<IHH", 99, 0, 16) + b"\0" * 8)  # unknown 16-byte record
    img.sample(rec16(5))
    img.put(struct.pack("<IHH", 98, 0, 8))  # 8-byte record last
    out = img.ring.read_batch()
    assert [struct.unpack_from("<Q", r)[0] for r in out] == [5]
    assert img.ring.other == 2


@pytest.mark.parametrize(
    "data,msg",
    [
        (struct.pack("<IHHI", 9, 0, 4, 0) + b"\0" * 4, "raw size"),
        (struct.pack("<IHHI", 3, 0, 0, 0) + b"\0" * 4, "size 0"),
        (struct.pack("<IHHI", 9, 0, 40, 28) + b"\0" * 12, "runs past"),
        (struct.pack("<IHH", 2, 0, 24) + b"\0" * 8, "truncated"),
    ],
)
def test_perf_corrupt_records_raise(data: bytes, msg: str) -> None:
    with pytest.raises(PerfRingError, match=msg):
        decode_records(data, [])


def test_perf_bad_positions_raise() -> None:
    img = PerfImage(size=256)
    struct.pack_into("<Q", img.buf, 1024, 512)  # more than the ring holds
    with pytest.raises(PerfRingError, match="512 bytes published"):
        img.ring.take()
    struct.pack_into("<QQ", img.buf, 1024, 8, 16)  # head behind tail
    with pytest.raises(PerfRingError, match="behind"):
        img.ring.take()
    with pytest.raises(PerfRingError, match="power of two|bad perf ring"):
        PerfRing(memoryview(img.buf), img.ring.head, img.ring.tail, META, 100)


def test_fence_on_weak_cpus_and_mutex_fence_runs() -> None:
    assert not needs_fence("x86_64")
    assert needs_fence("aarch64") and needs_fence("riscv64")
    f = Fence(active=True)
    for _ in range(3):
        f()  # lock/unlock pairs on a private mutex: must not deadlock
    img = PerfImage(fence=f)
    img.sample(rec16(1))
    assert len(img.ring.read_batch()) == 1


def test_perf_ring_over_a_real_shared_mapping() -> None:
    """RingMapping + PerfRing.map over a memfd: the position cells see writes through the file."""
    fd = os.memfd_create("perfring-test")
    try:
        ps = mmap.PAGESIZE
        os.ftruncate(fd, ps * 3)
        # a writer's view of the same pages
        with mmap.mmap(fd, ps * 3) as w:
            ring = PerfRing.map(fd, 2, cpu=0)
            try:
                assert ring.data_offset == ps and ring.data_size == 2 * ps
                rec = struct.pack("<IHHI", 9, 0, 32, 20) + rec16(77) + b"\0" * 4
                w[ps:ps + 32] = rec
                struct.pack_into("<Q", w, 1024, 32)
                assert ring.read_batch() == [rec[12:]]
                assert struct.unpack_from("<Q", w, 1032)[0] == 32  # data_tail stored
            finally:
                ring.close()
        with pytest.raises(PerfRingError, match="2\\^n pages"):
            PerfRing.map(fd, 3)
    finally:
        os.close(fd)


def test_ring_mapping_failure_is_a_bpf_error() -> None:
    from kprobes.errors import BPFError

    r, w = os.pipe()
    try:
        with pytest.raises(BPFError, match="mmap of ring"):
            RingMapping(r, 4096)
    finally:
        os.close(r)
        os.close(w)


# --------------------------------------------------------------------- ring buffer images


class RingImage:
    """A BPF ring buffer: data area mirrored twice (as the kernel maps it), two positions."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.area = bytearray(2 * size)
        self.cons = bytearray(8)
        self.prod = bytearray(8)
        self.pos = 0
        self.ring = RingBuf(memoryview(self.area), size, ctypes.c_uint64.from_buffer(self.cons),
                            ctypes.c_uint64.from_buffer(self.prod))

    def _write(self, pos: int, data: bytes) -> None:
        for i, b in enumerate(data):
            off = (pos + i) % self.size
            self.area[off] = b
            self.area[off + self.size] = b

    def reserve(self, payload: bytes) -> int:
        """Reserve and fill a record (still BUSY); returns its position."""
        at = self.pos
        total = (len(payload) + 8 + 7) & ~7
        assert at + total - self.consumer <= self.size, "ring full"
        self._write(at, struct.pack("<II", len(payload) | BUSY_BIT, 0) + payload)
        self.pos += total
        struct.pack_into("<Q", self.prod, 0, self.pos)
        return at

    def commit(self, at: int, discard: bool = False) -> None:
        word = struct.unpack_from("<I", self.area, at % self.size)[0] & ~BUSY_BIT
        self._write(at, struct.pack("<I", word | (DISCARD_BIT if discard else 0)))

    def output(self, payload: bytes) -> None:
        self.commit(self.reserve(payload))

    @property
    def consumer(self) -> int:
        return int(struct.unpack_from("<Q", self.cons)[0])


def test_ringbuf_records_in_order_and_consumer_advanced() -> None:
    img = RingImage()
    for i in range(5):
        img.output(rec16(i))
    out = img.ring.read_batch()
    assert out == [rec16(i) for i in range(5)]  # exact lengths: no padding handed out
    assert img.consumer == 5 * 24
    img.output(b"abc")  # 3 bytes -> an 16-byte slot
    img.output(b"0123456789")  # 10 bytes -> 24
    assert img.ring.read_batch() == [b"abc", b"0123456789"]
    assert img.consumer == 5 * 24 + 16 + 24
    assert img.ring.records == 7 and img.ring.read_batch() == []


def test_ringbuf_busy_record_stops_the_reader() -> None:
    img = RingImage()
    img.output(rec16(0))
    a = img.reserve(rec16(1))  # reserved first, committed last
    img.output(rec16(2))
    assert img.ring.read_batch() == [rec16(0)]
    assert img.consumer == a  # stopped at the busy record, even though the next is complete
    assert img.ring.read_batch() == []
    img.commit(a)
    assert img.ring.read_batch() == [rec16(1), rec16(2)]
    assert img.consumer == img.pos


def test_ringbuf_discarded_records_skipped_but_consumed() -> None:
    img = RingImage()
    img.output(rec16(0))
    img.commit(img.reserve(b"x" * 30), discard=True)
    img.output(rec16(2))
    out = img.ring.read_batch()
    assert out == [rec16(0), rec16(2)]
    assert img.ring.discarded == 1
    assert img.consumer == 24 + 40 + 24


def test_ringbuf_wraps_through_the_double_mapping() -> None:
    img = RingImage(size=256)
    got: List[bytes] = []
    want: List[bytes] = []
    for i in range(300):  # ~ 30 times around the ring
        p = struct.pack("<I", i) * (1 + i % 7)
        img.output(p)
        want.append(p)
        if i % 4 == 3:
            img.ring.read_batch(got)
    img.ring.read_batch(got)
    assert got == want
    assert img.consumer == img.pos


def test_ringbuf_bad_positions_raise() -> None:
    img = RingImage(size=256)
    struct.pack_into("<Q", img.prod, 0, 512)
    with pytest.raises(RingBufError, match="512 bytes reserved"):
        img.ring.take()
    struct.pack_into("<Q", img.prod, 0, 8)
    struct.pack_into("<II", img.area, 0, 100, 0)  # claims 100 bytes, producer at 8
    with pytest.raises(RingBufError, match="past producer_pos"):
        img.ring.take()
    with pytest.raises(RingBufError, match="runs past"):
        decode_ringbuf(struct.pack("<II", 100, 0) + b"\0" * 8, [])
    with pytest.raises(RingBufError, match="power of two"):
        RingBuf(memoryview(bytearray(400)), 200, img.ring.consumer, img.ring.producer)


def test_drop_counter_reports_increase_per_cpu() -> None:
    values = [struct.pack("<QQ", 0, 0)]
    counts = LossCounts()
    drops = DropCounter(lambda: values[-1], counts)
    assert drops.update() == 0 and counts.total == 0
    values.append(struct.pack("<QQ", 3, 1))
    assert drops.update() == 4
    values.append(struct.pack("<QQ", 3, 6))
    assert drops.update() == 9
    assert counts.lost(RINGBUF, 0) == 3 and counts.lost(RINGBUF, 1) == 6
    assert counts.report() == ["bpf ringbuf lost 9 records (cpu0: 3, cpu1: 6)"]
    single = LossCounts()
    DropCounter(lambda: struct.pack("<Q", 5), single).update()
    assert single.counts == {(RINGBUF, None): 5}
    assert single.report() == ["bpf ringbuf lost 5 records"]
    with pytest.raises(RingBufError):
        DropCounter.parse(b"\0" * 5)


# --------------------------------------------------------------------- fast paths


REC = struct.Struct("<QQ")


def test_leading_run_and_record_struct() -> None:
    from kprobes.backends.bpf.ringmem import leading_run, record_struct

    words = memoryview(struct.pack("<8I", 5, 0, 5, 0, 5, 1, 6, 0)).cast("I")
    assert leading_run(words, 0, 2, 4, 5) == 3
    assert leading_run(words, 0, 2, 3, 5) == 3
    assert leading_run(words, 1, 2, 2, 0) == 2
    st = record_struct(REC, 12, 32)
    assert st.size == 32 and st.unpack(b"\0" * 12 + REC.pack(1, 2) + b"\0" * 4) == (1, 2)
    with pytest.raises(ValueError, match="does not fit"):
        record_struct(REC, 8, 16)


def test_perf_runs_of_equal_samples_mixed_with_others() -> None:
    """Runs are cut where a record differs (size, LOST, other type) and decoding resumes."""
    img = PerfImage(size=8192)
    want: List[bytes] = []
    for i in range(9):
        want.append(img.sample(rec16(i)))
    img.lost(3)
    for i in range(9, 20):
        want.append(img.sample(rec16(i)))
    want.append(img.sample(rec16(20) + b"tail"))  # 20 bytes -> 36 with padding
    for i in range(21, 27):
        want.append(img.sample(rec16(i)))
    img.put(struct.pack("<IHH", 99, 0, 8))
    for i in range(27, 40):
        want.append(img.sample(rec16(i)))
    data = img.ring.take()
    out: List[bytes] = []
    assert decode_records(data, out) == (3, 1)
    assert out == want
    tuples: List[tuple[int, int]] = []
    assert decode_records(data, tuples, REC) == (3, 1)
    assert tuples == [(i, 4242) for i in range(20)] + [(20, 4242)] + [(i, 4242) for i in range(21, 40)]
    with pytest.raises(PerfRingError, match="wants 24"):
        decode_records(data, [], struct.Struct("<QQQ"))


def test_ringbuf_runs_with_busy_and_discard_in_the_middle() -> None:
    img = RingImage(size=4096)
    for i in range(10):
        img.output(rec16(i))
    img.commit(img.reserve(rec16(99)), discard=True)
    for i in range(10, 15):
        img.output(rec16(i))
    busy = img.reserve(rec16(15))
    for i in range(16, 30):
        img.output(rec16(i))
    assert img.ring.read_batch(record=REC) == [(i, 4242) for i in range(15)]
    assert img.consumer == busy and img.ring.discarded == 1
    img.commit(busy)
    assert img.ring.read_batch() == [rec16(i) for i in range(15, 30)]
    assert img.consumer == img.pos
    with pytest.raises(RingBufError, match="wants 24"):
        decode_ringbuf(struct.pack("<II", 16, 0) + rec16(1), [], struct.Struct("<QQQ"))


def test_tracefs_ledger_takes_bpf_ring_losses() -> None:
    """The session's LossLedger is a LossSink: BPF ring losses join its total and report."""
    from kprobes.backends.tracefs.ledger import LossLedger

    ledger = LossLedger()
    assert "external" not in ledger.to_json() and ledger.report() == ""
    img = PerfImage(cpu=1)
    img.sample(rec16(1))
    img.lost(4)
    reader = PerfRingReader(lambda cpu, fd: None, loss=ledger)
    reader.rings = [img.ring]
    reader.read_batch()
    ledger.note_lost(RINGBUF, None, 2)
    assert ledger.total_lost == 6 and ledger.any_loss
    assert "bpf perf ring lost 4 records (cpu1: 4)" in ledger.report()
    assert "bpf ringbuf lost 2 records" in ledger.report()
    assert ledger.to_json()["external"] == {PERF_RING: {"lost": 4, "cpus": {"1": 4}},
                                            RINGBUF: {"lost": 2, "cpus": {}}}
