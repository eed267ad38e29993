"""Per-CPU perf ring buffers of a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` (``bpf_perf_event_output``).

For every CPU the reader opens a ``PERF_COUNT_SW_BPF_OUTPUT`` software event with
``sample_type = PERF_SAMPLE_RAW`` (:func:`.perf.open_bpf_output`), maps it
(1 metadata page + 2^n data pages, read-write: we own ``data_tail``) and stores its
fd at index *cpu* of the map; ``bpf_perf_event_output(ctx, &map, BPF_F_CURRENT_CPU,
data, size)`` then appends to the ring of the CPU the program runs on.

The ring (``include/uapi/linux/perf_event.h``, ``kernel/events/ring_buffer.c``):

* page 0 is ``struct perf_event_mmap_page``: ``data_head`` at byte 1024 (written by
  the kernel, read with acquire), ``data_tail`` at 1032 (written by us with release),
  ``data_offset``/``data_size`` at 1040/1048 (v4.1+; 0 before: data at page 1);
* the data area is a power of two in size; positions grow without bound and are
  taken modulo the size; records are 8-byte aligned, so a record header never
  straddles the end but a record body may (the reader copies the two parts);
* every record starts with ``struct perf_event_header { u32 type; u16 misc; u16 size; }``
  (``size`` includes the header):

  - ``PERF_RECORD_SAMPLE`` (9) with only ``PERF_SAMPLE_RAW``: ``u32 size`` then
    ``size`` raw bytes.  The kernel pads the raw part so that ``4 + size`` is a
    multiple of 8 (``perf_prepare_sample``), so a 16-byte output arrives as 20
    bytes (16 data + 4 zero bytes): decode records with a fixed ``struct`` layout
    and ignore the tail;
  - ``PERF_RECORD_LOST`` (2): ``u64 id; u64 lost``: samples dropped because the
    ring was full, written once room returns.  Reported to the :class:`.loss.LossSink`
    as ``bpf perf ring`` losses on that CPU;
  - anything else is counted in ``other`` and skipped.

The kernel never overwrites unread data (the ring is not in overwrite mode): when
the reader is slow, samples are dropped and counted in the next LOST record.

Decoding makes no Python object per field: one copy of the published region per
CPU per batch (two slices at the wrap), then ``struct.unpack_from`` on that copy
and one ``bytes`` slice per sample.  Memory ordering is explained in
:mod:`.ringmem`.
"""

from __future__ import annotations

import select
import struct
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Sequence

from ...errors import BPFError
from .loss import PERF_RING, LossSink
from .ringmem import Fence, RingMapping, leading_run, page_size, record_struct

if TYPE_CHECKING:
    from .perf import PerfEvent

__all__ = [
    "DATA_HEAD",
    "DATA_TAIL",
    "PERF_RECORD_LOST",
    "PERF_RECORD_SAMPLE",
    "PerfRing",
    "PerfRingError",
    "FdArrayMap",
    "PerfRingReader",
    "RecordHandler",
    "decode_records",
]

PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9

#: Offsets in ``struct perf_event_mmap_page`` (the first 1024 bytes are the fixed part).
DATA_HEAD = 1024
DATA_TAIL = 1032
DATA_OFFSET = 1040
DATA_SIZE = 1048

# the kernel writes the records in host byte order
_HDR = struct.Struct("=IxxH")  # type, size
_SAMPLE = struct.Struct("=IxxHI")  # type, size, raw size
_LOST = struct.Struct("=QQ")  # id, lost

#: ``handler(cpu, sample)``: the sample's bytes (a private copy: keep it if you like), or the
#: tuple of the ``record`` format when the reader is given one.
RecordHandler = Callable[[int, Any], None]


class PerfRingError(BPFError):
    """A perf ring's positions or records make no sense (corrupt or misread ring)."""


class _Counter(Protocol):
    value: int


def decode_records(data: bytes, out: List[Any], record: Optional[struct.Struct] = None) -> tuple[int, int]:
    """Append every SAMPLE record's raw bytes in ``data`` (whole records) to ``out``, or,
    with ``record``, the tuple ``record.unpack_from(raw)``.

    Returns ``(lost, other)``: the sum of the LOST records' counts and the number of
    records of other types.  Raises :class:`PerfRingError` on a record of size < 8
    or one running past the end of ``data``.

    Runs of equal samples (the usual case: one program, one record layout) are
    recognised by their identical 12-byte headers at a fixed stride and decoded in
    one list comprehension (or one ``iter_unpack`` with ``record``).
    """
    lost = other = 0
    pos = 0
    end = len(data)
    if end % 8:
        raise PerfRingError(f"{end} bytes of perf records: not a multiple of 8")
    mv = memoryview(data)
    q = mv.cast("Q")
    w = mv.cast("I")
    sample = _SAMPLE.unpack_from
    append = out.append
    extend = out.extend
    unpack = record.unpack_from if record is not None else None
    # every record holds at least 8 bytes; all but the last one may be read as 12
    last = end - 12
    size = 0
    try:
        while pos <= last:
            typ, size, raw = sample(data, pos)
            if typ == 9:
                if 12 + raw > size:
                    raise PerfRingError(f"perf sample at {pos}: raw size {raw} exceeds record size {size}")
                if record is not None and record.size > raw:
                    raise PerfRingError(f"perf sample at {pos} has {raw} bytes, the record format "
                                        f"{record.format!r} wants {record.size}")
                k = (end - pos) // size
                if k >= 4 and not size & 7:
                    k = min(leading_run(q, pos >> 3, size >> 3, k, q[pos >> 3]),
                            leading_run(w, (pos + 8) >> 2, size >> 2, k, raw))
                    stop = pos + k * size
                    if record is None:
                        extend([data[p:p + raw] for p in range(pos + 12, stop, size)])
                    else:
                        extend(record_struct(record, 12, size).iter_unpack(mv[pos:stop]))
                    pos = stop
                    continue
                if unpack is None:
                    append(data[pos + 12:pos + 12 + raw])
                else:
                    append(unpack(data, pos + 12))
            elif size < 8:
                raise PerfRingError(f"perf record at {pos} has size {size} (< 8): corrupt ring")
            elif typ == 2:
                lost += _LOST.unpack_from(data, pos + 8)[1]
            else:
                other += 1
            pos += size
    except struct.error:
        raise PerfRingError(f"truncated perf record at {pos} ({size} bytes, {end - pos} published)") from None
    if pos < end:  # a last record shorter than 12 bytes (no SAMPLE or LOST is)
        typ, size = _HDR.unpack_from(data, pos)
        if size < 8:
            raise PerfRingError(f"perf record at {pos} has size {size} (< 8): corrupt ring")
        if typ in (PERF_RECORD_SAMPLE, PERF_RECORD_LOST):
            raise PerfRingError(f"truncated perf record type {typ} at {pos} ({size} bytes)")
        other += 1
        pos += size
    if pos != end:
        raise PerfRingError(f"perf record at {pos - size} runs past the published data ({end} bytes)")
    return lost, other


class PerfRing:
    """One CPU's perf ring: the consumer side of the protocol over any memory.

    ``view`` is the whole mapping (metadata page + data); ``head``/``tail`` are
    64-bit cells over ``data_head``/``data_tail``.  :meth:`map` builds one from a
    perf event fd; tests build one over a bytearray.
    """

    __slots__ = ("cpu", "view", "head", "tail", "data_offset", "data_size", "fence",
                 "lost", "other", "records", "_mapping")

    def __init__(self, view: memoryview, head: _Counter, tail: _Counter, data_offset: int,
                 data_size: int, *, cpu: int = 0, fence: Optional[Fence] = None,
                 mapping: Optional[RingMapping] = None) -> None:
        if data_size <= 0 or data_size & (data_size - 1) or data_offset + data_size > len(view):
            raise PerfRingError(f"bad perf ring data area: offset {data_offset}, size {data_size} "
                                f"in a {len(view)}-byte mapping")
        self.cpu = cpu
        self.view = view
        self.head = head
        self.tail = tail
        self.data_offset = data_offset
        self.data_size = data_size
        self.fence = fence if fence is not None else Fence()
        self.lost = 0  #: samples the kernel dropped (sum of LOST records)
        self.other = 0  #: records of other types, skipped
        self.records = 0  #: samples delivered
        self._mapping = mapping

    @classmethod
    def map(cls, fd: int, pages: int, *, cpu: int = 0, fence: Optional[Fence] = None) -> PerfRing:
        """mmap ``1 + pages`` pages of perf event ``fd`` (``pages`` a power of two)."""
        if pages <= 0 or pages & (pages - 1):
            raise PerfRingError(f"perf ring of {pages} pages: the data area must be 2^n pages",
                                hint="use e.g. 8, 64 or 256 pages per CPU")
        ps = page_size()
        m = RingMapping(fd, (1 + pages) * ps, 0, writable=True)
        try:
            off = int(m.u64(DATA_OFFSET).value) or ps
            size = int(m.u64(DATA_SIZE).value) or pages * ps
            return cls(m.view, m.u64(DATA_HEAD), m.u64(DATA_TAIL), off, size, cpu=cpu,
                       fence=fence, mapping=m)
        except BaseException:
            m.close()
            raise

    def available(self) -> int:
        """Bytes published and not yet consumed."""
        return int(self.head.value) - int(self.tail.value)

    def take(self) -> bytes:
        """Copy every published record out of the ring and hand the space back.

        Acquire: load ``data_head``, fence, read.  Release: fence, store ``data_tail``.
        """
        head = int(self.head.value)
        tail = int(self.tail.value)
        n = head - tail
        if n <= 0:
            if n < 0:
                raise PerfRingError(f"cpu {self.cpu}: data_head {head} is behind data_tail {tail}")
            return b""
        if n > self.data_size:
            raise PerfRingError(f"cpu {self.cpu}: {n} bytes published in a {self.data_size}-byte ring")
        self.fence()
        size = self.data_size
        start = tail & (size - 1)
        base = self.data_offset
        view = self.view
        if start + n <= size:
            data = bytes(view[base + start:base + start + n])
        else:  # the published region wraps: copy both parts
            data = bytes(view[base + start:base + size]) + bytes(view[base:base + n - (size - start)])
        self.fence()
        self.tail.value = head
        return data

    def read_batch(self, out: Optional[List[Any]] = None,
                   record: Optional[struct.Struct] = None) -> List[Any]:
        """Raw bytes of every published sample (appended to ``out`` if given), or with
        ``record`` the tuples it unpacks from the start of each sample."""
        if out is None:
            out = []
        data = self.take()
        if data:
            before = len(out)
            lost, other = decode_records(data, out, record)
            self.records += len(out) - before
            self.other += other
            if lost:
                self.lost += lost
        return out

    def close(self) -> None:
        # drop the cells before unmapping: they point into the mapping
        self.head = self.tail = _Dead()
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None


class _Dead:
    """Stands for the position cells of a closed ring."""

    @property
    def value(self) -> int:
        raise PerfRingError("the perf ring is closed")

    @value.setter
    def value(self, v: int) -> None:
        raise PerfRingError("the perf ring is closed")


class FdArrayMap(Protocol):
    """What the reader needs of a PERF_EVENT_ARRAY map (:class:`.maps.Map`)."""

    def update(self, key: bytes, value: bytes, flags: int = ...) -> None: ...


class PerfRingReader:
    """Readers of all CPU rings of one ``PERF_EVENT_ARRAY`` map, woken by epoll.

    ``slots(cpu, fd)`` stores a perf event fd in the map (e.g. a map's
    ``update``); ``pages`` is the data size of each CPU's ring (a power of two).
    ``wakeup_events`` wakes the reader every N samples; ``wakeup_watermark``
    (bytes) instead wakes it once that much data is waiting — :meth:`poll` reads
    every ring each time it returns (after a wakeup or the timeout), so nothing is
    left behind, only picked up later.

    ``loss`` receives ``note_lost("bpf perf ring", cpu, n)`` for every LOST record.

    Rings are opened on the online CPUs (or ``cpus``): a possible but offline CPU
    cannot host a perf event (``ENODEV``), and no program runs there; a CPU brought
    online later has no ring, and ``bpf_perf_event_output`` there fails (``-ENOENT``).
    """

    def __init__(self, slots: Callable[[int, int], None], *, pages: int = 64,
                 cpus: Optional[Sequence[int]] = None, wakeup_events: int = 1,
                 wakeup_watermark: int = 0, loss: Optional[LossSink] = None) -> None:
        self.slots = slots
        self.pages = pages
        self.cpus = cpus
        self.wakeup_events = wakeup_events
        self.wakeup_watermark = wakeup_watermark
        self.loss = loss
        self.rings: List[PerfRing] = []
        self._events: List[PerfEvent] = []
        self._epoll: Optional[select.epoll] = None
        self._reported: Dict[int, int] = {}

    @classmethod
    def for_map(cls, perf_map: FdArrayMap, **kw: object) -> PerfRingReader:
        """A reader whose CPU rings go into ``perf_map`` (a PERF_EVENT_ARRAY :class:`.maps.Map`)."""

        def slots(cpu: int, fd: int) -> None:
            perf_map.update(struct.pack("=I", cpu), struct.pack("=I", fd))

        return cls(slots, **kw)  # type: ignore[arg-type]

    # ------------------------------------------------------------ lifecycle

    def open(self) -> PerfRingReader:
        from .perf import open_bpf_output
        from .sys import online_cpus

        cpus = list(self.cpus) if self.cpus is not None else list(online_cpus())
        ep = select.epoll()
        self._epoll = ep
        fence = Fence()
        try:
            for cpu in cpus:
                ev = open_bpf_output(cpu, wakeup_events=self.wakeup_events,
                                     wakeup_watermark=self.wakeup_watermark)
                self._events.append(ev)
                ring = PerfRing.map(ev.fd, self.pages, cpu=cpu, fence=fence)
                self.rings.append(ring)
                self.slots(cpu, ev.fd)
                ep.register(ev.fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for ring in self.rings:
            ring.close()
        self.rings = []
        for ev in self._events:
            ev.close()
        self._events = []
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None

    def __enter__(self) -> PerfRingReader:
        return self.open() if not self.rings else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The epoll fd: readable when some CPU ring woke up."""
        if self._epoll is None:
            raise BPFError("the perf ring reader is not open")
        return self._epoll.fileno()

    # ------------------------------------------------------------ reading

    @property
    def lost(self) -> int:
        """Samples the kernel dropped on all CPUs so far (LOST records read)."""
        return sum(r.lost for r in self.rings)

    @property
    def records(self) -> int:
        return sum(r.records for r in self.rings)

    def _report(self, ring: PerfRing) -> None:
        seen = self._reported.get(ring.cpu, 0)
        if ring.lost != seen:
            self._reported[ring.cpu] = ring.lost
            if self.loss is not None:
                self.loss.note_lost(PERF_RING, ring.cpu, ring.lost - seen)

    def read_batch(self, out: Optional[List[Any]] = None,
                   record: Optional[struct.Struct] = None) -> List[Any]:
        """Every published sample of every CPU, CPU by CPU (in order within a CPU): raw
        bytes, or with ``record`` the tuples it unpacks from each (the fast path)."""
        if out is None:
            out = []
        for ring in self.rings:
            lost = ring.lost
            ring.read_batch(out, record)
            if ring.lost != lost:
                self._report(ring)
        return out

    def read(self, handler: RecordHandler, record: Optional[struct.Struct] = None) -> int:
        """Call ``handler(cpu, sample)`` for every published sample (its bytes, or with
        ``record`` its tuple); returns how many."""
        n = 0
        batch: List[Any] = []
        for ring in self.rings:
            lost = ring.lost
            ring.read_batch(batch, record)
            if ring.lost != lost:
                self._report(ring)
            cpu = ring.cpu
            for rec in batch:
                handler(cpu, rec)
            n += len(batch)
            batch.clear()
        return n

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until some ring woke the reader (True) or ``timeout`` seconds passed."""
        if self._epoll is None:
            raise BPFError("the perf ring reader is not open")
        return bool(self._epoll.poll(-1 if timeout is None else timeout))

    def poll(self, timeout: Optional[float] = None, handler: Optional[RecordHandler] = None,
             record: Optional[struct.Struct] = None) -> List[Any]:
        """Wait up to ``timeout`` seconds, then read every ring.

        With ``handler`` the samples go to it (and the returned list is empty);
        without, they are returned.  ``record`` unpacks each sample into a tuple.
        """
        self.wait(timeout)
        return self.drain(handler, record)

    def drain(self, handler: Optional[RecordHandler] = None,
              record: Optional[struct.Struct] = None) -> List[Any]:
        """Everything published now (at stop: after the program is detached)."""
        if handler is not None:
            self.read(handler, record)
            return []
        return self.read_batch(None, record)
