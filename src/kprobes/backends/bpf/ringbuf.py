"""Reader of a ``BPF_MAP_TYPE_RINGBUF`` map (v5.8, commit 457f44363a88 "bpf: Implement BPF
ring buffer and verifier support for it").

One ring shared by all CPUs (records keep their global order of reservation),
mapped from the map fd (``kernel/bpf/ringbuf.c``, ``ringbuf_map_mmap_kern``):

* offset 0, one page, read-write: the consumer page, ``unsigned long consumer_pos``
  at its start (written by us with release);
* offset one page, read-only: the producer page (``producer_pos`` at its start,
  read with acquire) followed by the data area of ``max_entries`` bytes (a power of
  two pages), **mapped twice in a row**, so a record that wraps around the end is
  contiguous in the mapping: the read-only mapping is ``page + 2 * max_entries``.

Records are 8-byte aligned; each starts with an 8-byte header ``u32 len; u32 pg_off``
where ``len`` carries two flags: ``BPF_RINGBUF_BUSY_BIT`` (bit 31, reserved but not
yet submitted: the reader must stop there, even when later records are complete)
and ``BPF_RINGBUF_DISCARD_BIT`` (bit 30, ``bpf_ringbuf_discard``: skip it, but
advance past it).  A record takes ``round_up(len + 8, 8)`` bytes.

Losses: the ring has no lost counter.  ``bpf_ringbuf_output`` returns ``-EAGAIN``
(and ``bpf_ringbuf_reserve`` NULL) when the ring is full, and the sample is simply
gone.  So the *program* must count its failures: the code generator emits, after
every output/reserve, "if it failed, increment slot 0 of a ``PERCPU_ARRAY`` drop
map" (per-CPU, so no atomics are needed).  :class:`DropCounter` reads that map and
reports the increase as ``bpf ringbuf`` losses to the :class:`.loss.LossSink`.

As in :mod:`.perfring`, records are copied out of the ring (one slice per batch)
before they are handed out; memory ordering is explained in :mod:`.ringmem`.
"""

from __future__ import annotations

import select
import struct
from typing import Any, Callable, List, Optional, Protocol, Tuple

from ...errors import BPFError
from .loss import RINGBUF, LossSink
from .ringmem import Fence, RingMapping, leading_run, page_size, record_struct

__all__ = [
    "BUSY_BIT",
    "DISCARD_BIT",
    "HDR_SIZE",
    "DropCounter",
    "RingBuf",
    "RingBufError",
    "RingBufReader",
    "decode_ringbuf",
]

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SIZE = 8
_LEN_MASK = DISCARD_BIT - 1


#: ``handler(record)``: the record's bytes (a private copy: keep it if you like), or the tuple
#: of the ``record`` format when the reader is given one.
RingHandler = Callable[[Any], None]


class RingBufError(BPFError):
    """A BPF ring buffer's positions or headers make no sense."""


class _Counter(Protocol):
    value: int


def decode_ringbuf(data: bytes, out: List[Any], record: Optional[struct.Struct] = None) -> int:
    """Append every non-discarded record of ``data`` (committed records copied from the
    ring, starting at a record header) to ``out``: its bytes, or with ``record`` the
    tuple ``record.unpack_from(bytes)``.  Returns the number of discarded records.

    Runs of equal-length records are recognised by their identical header words at
    a fixed stride and decoded in one list comprehension (or ``iter_unpack``).
    """
    pos = 0
    end = len(data)
    if end % 8:
        raise RingBufError(f"{end} bytes of ring buffer records: not a multiple of 8")
    mv = memoryview(data)
    words = mv.cast("I")
    append = out.append
    extend = out.extend
    discarded = 0
    while pos < end:
        word = words[pos >> 2]
        n = word & _LEN_MASK
        stride = (n + 15) & ~7
        if word & DISCARD_BIT:
            discarded += 1
            pos += stride
            continue
        if record is not None and record.size > n:
            raise RingBufError(f"ring buffer record at {pos} has {n} bytes, the record format "
                               f"{record.format!r} wants {record.size}")
        k = (end - pos) // stride
        if k >= 4:
            k = leading_run(words, pos >> 2, stride >> 2, k, word)
            stop = pos + k * stride
            if record is None:
                extend([data[p:p + n] for p in range(pos + 8, stop, stride)])
            else:
                extend(record_struct(record, 8, stride).iter_unpack(mv[pos:stop]))
            pos = stop
            continue
        if record is None:
            append(data[pos + 8:pos + 8 + n])
        else:
            append(record.unpack_from(data, pos + 8))
        pos += stride
    if pos != end:
        raise RingBufError(f"ring buffer record at {pos - stride} runs past the committed data "
                           f"({end} bytes)")
    return discarded


class RingBuf:
    """The consumer side of one BPF ring buffer over any memory.

    ``data`` is the data area seen twice in a row (``2 * size`` bytes, as the kernel
    maps it); ``consumer``/``producer`` are 64-bit cells over the two positions.
    """

    __slots__ = ("data", "size", "consumer", "producer", "fence", "records", "discarded",
                 "_mask", "_mappings", "_words")

    def __init__(self, data: memoryview, size: int, consumer: _Counter, producer: _Counter, *,
                 fence: Optional[Fence] = None, mappings: Tuple[RingMapping, ...] = ()) -> None:
        if size <= 0 or size & (size - 1) or len(data) < 2 * size:
            raise RingBufError(f"bad ring buffer data area: {size} bytes in a {len(data)}-byte view "
                               "(needs a power of two, mapped twice)")
        self.data = data
        self.size = size
        self.consumer = consumer
        self.producer = producer
        self.fence = fence if fence is not None else Fence()
        self.records = 0  #: records delivered
        self.discarded = 0  #: records the program discarded (skipped)
        self._mask = size - 1
        self._mappings = mappings
        self._words = data[:2 * size].cast("I")  # header words: native u32 loads

    @classmethod
    def map(cls, fd: int, max_entries: int, *, fence: Optional[Fence] = None) -> RingBuf:
        """mmap the ring buffer map ``fd`` of ``max_entries`` bytes."""
        ps = page_size()
        if max_entries <= 0 or max_entries % ps or max_entries & (max_entries - 1):
            raise RingBufError(f"ring buffer of {max_entries} bytes: must be a power of two "
                               f"multiple of the page size ({ps})")
        cons = RingMapping(fd, ps, 0, writable=True)
        try:
            prod = RingMapping(fd, ps + 2 * max_entries, ps, writable=False)
        except BaseException:
            cons.close()
            raise
        return cls(prod.view[ps:], max_entries, cons.u64(0), prod.u64(0), fence=fence,
                   mappings=(cons, prod))

    def available(self) -> int:
        """Bytes reserved by producers and not yet consumed (committed or not)."""
        return int(self.producer.value) - int(self.consumer.value)

    def take(self) -> bytes:
        """Copy every committed record up to the first busy one out of the ring and
        advance ``consumer_pos`` past them (discarded records included)."""
        cons = int(self.consumer.value)
        prod = int(self.producer.value)
        if prod - cons <= 0:
            if prod < cons:
                raise RingBufError(f"producer_pos {prod} is behind consumer_pos {cons}")
            return b""
        if prod - cons > self.size:
            raise RingBufError(f"{prod - cons} bytes reserved in a {self.size}-byte ring buffer")
        fence = self.fence
        fence()  # acquire producer_pos
        words = self._words
        mask = self._mask
        pos = cons
        # the header words are the producers' commit flags: walk them first, then copy
        while pos < prod:
            w = words[(pos & mask) >> 2]
            if w & BUSY_BIT:
                break
            stride = ((w & _LEN_MASK) + 15) & ~7
            k = (prod - pos) // stride
            if k >= 4 and not w & DISCARD_BIT:  # a run of equal records: check them in C
                pos += max(1, leading_run(words, (pos & mask) >> 2, stride >> 2, k, w)) * stride
            else:
                pos += stride
        if pos == cons:
            return b""
        if pos > prod:
            raise RingBufError(f"ring buffer record at {pos & mask} runs past producer_pos")
        fence()  # acquire the headers read above before the records behind them
        start = cons & mask
        out = bytes(self.data[start:start + (pos - cons)])
        fence()  # release: the copy is done before the space is handed back
        self.consumer.value = pos
        return out

    def read_batch(self, out: Optional[List[Any]] = None,
                   record: Optional[struct.Struct] = None) -> List[Any]:
        """The bytes of every committed record (appended to ``out`` if given), or with
        ``record`` the tuples it unpacks from the start of each (the fast path)."""
        if out is None:
            out = []
        data = self.take()
        if data:
            before = len(out)
            self.discarded += decode_ringbuf(data, out, record)
            self.records += len(out) - before
        return out

    def close(self) -> None:
        self.consumer = self.producer = _Dead()
        self._words.release()
        self.data = self._words = memoryview(b"")
        for m in self._mappings:
            m.close()
        self._mappings = ()


class _Dead:
    @property
    def value(self) -> int:
        raise RingBufError("the ring buffer is closed")

    @value.setter
    def value(self, v: int) -> None:
        raise RingBufError("the ring buffer is closed")


class _RingMap(Protocol):
    fd: int
    max_entries: int


class _LookupMap(Protocol):
    def lookup(self, key: bytes) -> Optional[bytes]: ...


class DropCounter:
    """Reads a program's drop-counter map and reports its increase as ring buffer losses.

    ``read_value()`` returns the raw value of the counter: for a ``PERCPU_ARRAY``
    lookup, one 8-byte slot per possible CPU (each a ``u64``), for an ``ARRAY``
    a single ``u64``.  Slot *i* is reported as CPU *i* when there are several.
    """

    def __init__(self, read_value: Callable[[], bytes], loss: Optional[LossSink] = None,
                 source: str = RINGBUF) -> None:
        self.read_value = read_value
        self.loss = loss
        self.source = source
        self._seen: List[int] = []

    @classmethod
    def for_map(cls, counter_map: _LookupMap, loss: Optional[LossSink] = None, *, key: int = 0,
                source: str = RINGBUF) -> DropCounter:
        """The counter at ``key`` of an ARRAY/PERCPU_ARRAY :class:`.maps.Map` (u64 values)."""
        k = struct.pack("=I", key)

        def read() -> bytes:
            return counter_map.lookup(k) or b""

        return cls(read, loss, source)

    @staticmethod
    def parse(value: bytes) -> List[int]:
        if len(value) % 8:
            raise RingBufError(f"drop counter value of {len(value)} bytes is not a list of u64")
        return [v for (v,) in struct.iter_unpack("<Q", value)]

    @property
    def total(self) -> int:
        return sum(self._seen)

    def update(self) -> int:
        """Read the map, report what grew since the last read; returns the total so far."""
        now = self.parse(self.read_value())
        seen = self._seen + [0] * (len(now) - len(self._seen))
        if self.loss is not None:
            for i, (a, b) in enumerate(zip(seen, now)):
                if b > a:
                    self.loss.note_lost(self.source, i if len(now) > 1 else None, b - a)
        self._seen = now
        return sum(now)


class RingBufReader:
    """A ``BPF_MAP_TYPE_RINGBUF`` map's reader, woken by epoll on the map fd.

    ``drops`` (optional) is the program's :class:`DropCounter`, read after every
    batch so the loss report follows the records.
    """

    def __init__(self, map_fd: int, max_entries: int, *, drops: Optional[DropCounter] = None) -> None:
        self.map_fd = map_fd
        self.max_entries = max_entries
        self.drops = drops
        self.ring: Optional[RingBuf] = None
        self._epoll: Optional[select.epoll] = None

    @classmethod
    def for_map(cls, ring_map: _RingMap, *, drops: Optional[DropCounter] = None) -> RingBufReader:
        """A reader of a RINGBUF :class:`.maps.Map`."""
        return cls(ring_map.fd, ring_map.max_entries, drops=drops)

    def open(self) -> RingBufReader:
        self.ring = RingBuf.map(self.map_fd, self.max_entries)
        try:
            self._epoll = select.epoll()
            self._epoll.register(self.map_fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None

    def __enter__(self) -> RingBufReader:
        return self.open() if self.ring is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ring(self) -> RingBuf:
        if self.ring is None:
            raise BPFError("the ring buffer reader is not open")
        return self.ring

    def fileno(self) -> int:
        if self._epoll is None:
            raise BPFError("the ring buffer reader is not open")
        return self._epoll.fileno()

    @property
    def records(self) -> int:
        return self.ring.records if self.ring is not None else 0

    @property
    def lost(self) -> int:
        """Failed outputs counted by the program (0 without a drop counter)."""
        return self.drops.total if self.drops is not None else 0

    def read_batch(self, out: Optional[List[Any]] = None,
                   record: Optional[struct.Struct] = None) -> List[Any]:
        """Every committed record: bytes, or with ``record`` the tuples it unpacks."""
        out = self._ring().read_batch(out, record)
        if self.drops is not None:
            self.drops.update()
        return out

    def read(self, handler: RingHandler, record: Optional[struct.Struct] = None) -> int:
        """Call ``handler(record)`` for every committed record; returns how many."""
        batch = self.read_batch(None, record)
        for rec in batch:
            handler(rec)
        return len(batch)

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self._epoll is None:
            raise BPFError("the ring buffer reader is not open")
        return bool(self._epoll.poll(-1 if timeout is None else timeout))

    def poll(self, timeout: Optional[float] = None, handler: Optional[RingHandler] = None,
             record: Optional[struct.Struct] = None) -> List[Any]:
        """Wait up to ``timeout`` seconds, then read what is committed (to ``handler``, or
        returned); ``record`` unpacks each record into a tuple."""
        self.wait(timeout)
        if handler is not None:
            self.read(handler, record)
            return []
        return self.read_batch(None, record)

    def drain(self, handler: Optional[RingHandler] = None,
              record: Optional[struct.Struct] = None) -> List[Any]:
        """Everything committed (at stop), in a loop until the ring is empty or busy."""
        out: List[Any] = []
        ring = self._ring()
        while True:
            before = int(ring.consumer.value)
            self.read_batch(out, record)
            if int(ring.consumer.value) == before:
                break
        if handler is not None:
            for rec in out:
                handler(rec)
            return []
        return out
