"""Decoder for the binary sub-buffer pages read from ``per_cpu/cpuN/trace_pipe_raw``.

Page layout (``struct buffer_data_page``, kernel/trace/ring_buffer.c; offsets
come from ``events/header_page``)::

    u64     time_stamp      base time of the page
    local_t commit          data length; bit 31 RB_MISSED_EVENTS, bit 30 RB_MISSED_STORED
    char    data[]          events, 4-byte aligned; when RB_MISSED_STORED the
                            count of lost events (unsigned long) follows the data

Each event starts with a 32-bit header ``type_len:5, time_delta:27`` and
``array[]`` words:

* ``type_len`` 1..28: data of ``type_len * 4`` bytes in ``array[0..]``;
* ``type_len`` 0: ``array[0]`` holds the length (data + the length word), data at ``array[1]``;
* 29 PADDING: ``time_delta == 0`` ends the page, otherwise a discarded event of
  ``array[0] + 4`` bytes.  Like the kernel's reader (``rb_update_read_stamp``)
  it does not move the clock;
* 30 TIME_EXTEND: ``delta = array[0] << 27 | time_delta`` added to the clock;
* 31 TIME_STAMP: an absolute time of 59 bits (``array[0] << 27 | time_delta``);
  the 5 top bits come from the current time and a wrap adds ``1 << 59``
  (ring_buffer.c ``rb_fix_abs_ts``).

A data event's payload is a ``struct trace_entry`` (``common_type`` u16 = the
event format's ID, flags, preempt count, ``common_pid``) then the event's
fields as its ``format`` file lays them out.

Speed: each format gets one precompiled ``struct.Struct`` for all its fixed
fields and a closure that builds the :class:`TraceEvent`; the page walk reads
header words from an ``array('I')``.  :func:`decode_page` only walks the page
and indexes the records; :class:`TraceEvent` objects are built when the
result's ``events`` sequence is read (``PageResult.iter_values`` skips them).
"""

from __future__ import annotations

import heapq
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import (
    Callable,
    overload,
)

from kprobes.events.cmdlines import IDLE_COMM, UNKNOWN_COMM
from kprobes.events.format import DEFAULT_PAGE_HEADER, EventFormat, FieldFormat, PageHeaderFormat
from kprobes.events.model import FieldValue, TraceEvent
from kprobes.events.values import FAULT, decode_c_string

from .._record import dataclass, field

__all__ = [
    "RB_MISSED_EVENTS",
    "RB_MISSED_STORED",
    "CompiledFormat",
    "PageDecoder",
    "PageResult",
    "decode_page",
    "merge_by_time",
]

RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
_COMMIT_MASK = (1 << 27) - 1  # the length part of the commit word (as libtraceevent's kbuffer)
_TS_MSB = 0xF8 << 56
_TYPE_PADDING = 29
_TYPE_TIME_EXTEND = 30
_TYPE_TIME_STAMP = 31
_LITTLE = sys.byteorder == "little"

_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
              (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}
_PROBE_FIELDS = frozenset({"__probe_ip", "__probe_func", "__probe_ret_ip"})

_new = object.__new__
_set = object.__setattr__

Post = Callable[[FieldValue, bytes, int], FieldValue]
Maker = Callable[[bytes, int, int, int, Callable[[int, str], str]], TraceEvent]
ValuesFn = Callable[[bytes, int], tuple[int, dict[str, FieldValue]]]


def fix_abs_ts(abs_ts: int, current: int) -> int:
    """Absolute stamps keep 59 bits: take the 5 MSBs from ``current`` (ring_buffer.c rb_fix_abs_ts)."""
    if current & _TS_MSB:
        abs_ts |= current & _TS_MSB
        if abs_ts < current:
            abs_ts += 1 << 59
    return abs_ts


def _array_post(elem_size: int, signed: bool) -> Callable[[bytes], tuple[int, ...]]:
    code = _INT_CODES.get((elem_size, signed))
    if code is None:
        def split(raw: bytes) -> tuple[int, ...]:
            return tuple(
                int.from_bytes(raw[i:i + elem_size], "little", signed=signed)
                for i in range(0, len(raw) - elem_size + 1, elem_size)
            )
        return split
    unpack = struct.Struct("<" + code).iter_unpack

    def items(raw: bytes) -> tuple[int, ...]:
        usable = len(raw) - len(raw) % elem_size
        return tuple(v for (v,) in unpack(raw[:usable]))

    return items


def _fixed_post(f: FieldFormat) -> Post | None:
    """Post-processing of the raw struct value for field ``f`` (None: the int is final)."""
    if f.array_len is not None:
        if f.is_string:
            return lambda v, buf, base: decode_c_string(v) if isinstance(v, bytes) else v
        split = _array_post(f.elem_size or 1, f.signed)
        return lambda v, buf, base: split(v) if isinstance(v, bytes) else v
    if (f.size, f.signed) not in _INT_CODES:
        signed = f.signed
        return lambda v, buf, base: int.from_bytes(v, "little", signed=signed) if isinstance(v, bytes) else v
    return None


def _dynamic_post(f: FieldFormat) -> Post:
    rel = f.offset + 4 if f.is_rel_loc else 0
    if f.is_string:
        def string(v: FieldValue, buf: bytes, base: int) -> FieldValue:
            if not isinstance(v, int):
                return v
            length = v >> 16
            if length == 0:
                return FAULT  # probes store an empty location for a faulting string fetch
            start = base + rel + (v & 0xFFFF)
            return decode_c_string(buf[start:start + length])
        return string
    split = _array_post(f.elem_size or 1, f.signed)

    def items(v: FieldValue, buf: bytes, base: int) -> FieldValue:
        if not isinstance(v, int):
            return v
        start = base + rel + (v & 0xFFFF)
        return split(buf[start:start + (v >> 16)])

    return items


class CompiledFormat:
    """An :class:`EventFormat` turned into one ``struct.Struct`` plus a record → event closure."""

    __slots__ = ("format", "name", "group", "min_size", "struct", "names", "make", "values")

    def __init__(self, fmt: EventFormat) -> None:
        self.format = fmt
        self.name = fmt.name
        self.group = fmt.system
        try:
            pid_field = fmt.field("common_pid")
        except KeyError:
            pid_field = FieldFormat("common_pid", "int", 4, 4, True, elem_size=4)
        fields = [f for f in fmt.fields if not f.is_common]
        fields.sort(key=lambda f: f.offset)
        codes = ["<"]
        pos = 0
        plan: list[tuple[FieldFormat, bool]] = [(pid_field, False)]
        overlapping: list[FieldFormat] = []
        for f in [pid_field] + fields:
            if f.offset < pos:
                overlapping.append(f)  # overlaps an earlier field: read on its own
                continue
            if f.offset > pos:
                codes.append(f"{f.offset - pos}x")
            if f.is_dynamic:
                codes.append("I")
            elif f.array_len is not None or (f.size, f.signed) not in _INT_CODES:
                codes.append(f"{f.size}s")
            else:
                codes.append(_INT_CODES[(f.size, f.signed)])
            pos = f.offset + f.size
            if f is not pid_field:
                plan.append((f, False))
        for f in overlapping:
            plan.append((f, True))
        self.struct = struct.Struct("".join(codes))
        self.min_size = max([self.struct.size] + [f.offset + f.size for f in overlapping])
        self.names = tuple(f.name for f, _ in plan[1:])
        self.make, self.values = self._build(plan)

    def _build(self, plan: list[tuple[FieldFormat, bool]]) -> tuple[Maker, ValuesFn]:
        """Generate the two per-format functions as straight-line code (no per-field calls
        for plain ints): ``make`` builds a TraceEvent, ``values`` returns (pid, fields)."""
        env: dict[str, object] = {
            "unpack_from": self.struct.unpack_from, "_new": _new, "_set": _set,
            "TraceEvent": TraceEvent, "UNKNOWN": UNKNOWN_COMM, "IDLE": IDLE_COMM,
            "TEMPLATE": {
                "comm": UNKNOWN_COMM, "pid": 0, "cpu": 0, "timestamp_ns": 0, "event": self.name,
                "fields": None, "group": self.group, "flags": None, "location": None,
                "caller": None, "probe_ip": None, "ret_ip": None,
            },
        }
        lines: list[str] = []
        fixed = ["v0"]
        items: list[str] = []
        probe: dict[str, str] = {}
        for idx, (f, separate) in enumerate(plan[1:], start=1):
            var = f"v{idx}"
            post = _dynamic_post(f) if f.is_dynamic else _fixed_post(f)
            if separate:
                code = "I" if f.is_dynamic else _INT_CODES.get((f.size, f.signed), f"{f.size}s")
                if f.array_len is not None:
                    code = f"{f.size}s"
                env[f"X{idx}"] = struct.Struct("<" + code).unpack_from
                lines.append(f"    ({var},) = X{idx}(buf, off + {f.offset})")
            else:
                fixed.append(var)
            expr = var
            if post is not None:
                env[f"P{idx}"] = post
                expr = f"P{idx}({var}, buf, off)"
            if f.name in _PROBE_FIELDS:
                probe[f.name] = var
            else:
                items.append(f"{f.name!r}: {expr}")
        unpack = f"    {', '.join(fixed)}, = unpack_from(buf, off)"
        fields = "{" + ", ".join(items) + "}"
        probe_ip = probe.get("__probe_func", probe.get("__probe_ip", "None"))
        ret_ip = probe.get("__probe_ret_ip", "None")
        body = "\n".join([unpack] + lines)
        source = (
            "def make(buf, off, ts, cpu, comm_of):\n"
            f"{body}\n"
            "    ev = _new(TraceEvent)\n"
            "    d = TEMPLATE.copy()\n"
            "    d['comm'] = comm_of(v0, UNKNOWN) if v0 else IDLE\n"
            "    d['pid'] = v0\n"
            "    d['cpu'] = cpu\n"
            "    d['timestamp_ns'] = ts\n"
            f"    d['fields'] = {fields}\n"
            + (f"    d['probe_ip'] = {probe_ip}\n" if probe_ip != "None" else "")
            + (f"    d['ret_ip'] = {ret_ip}\n" if ret_ip != "None" else "")
            + "    _set(ev, '__dict__', d)\n"
            "    return ev\n"
            "def values(buf, off):\n"
            f"{body}\n"
            f"    return v0, {fields}\n"
        )
        namespace: dict[str, object] = {}
        exec(compile(source, f"<event format {self.name}>", "exec"), env, namespace)
        return namespace["make"], namespace["values"]  # type: ignore[return-value]


# One record of a page: (timestamp, payload offset in the page, payload length, compiled format)
_Record = tuple[int, int, int, CompiledFormat]


class _LazyEvents(Sequence[TraceEvent]):
    """The events of one page, built into TraceEvent objects on first access."""

    __slots__ = ("_buf", "_records", "_cpu", "_comm_of", "_cache")

    def __init__(self, buf: bytes, records: list[_Record], cpu: int, comm_of: Callable[[int, str], str]) -> None:
        self._buf = buf
        self._records = records
        self._cpu = cpu
        self._comm_of = comm_of
        self._cache: list[TraceEvent] | None = None

    def _all(self) -> list[TraceEvent]:
        if self._cache is None:
            buf, cpu, comm_of = self._buf, self._cpu, self._comm_of
            self._cache = [c.make(buf, off, ts, cpu, comm_of) for ts, off, _n, c in self._records]
        return self._cache

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, index: int) -> TraceEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[TraceEvent]: ...

    def __getitem__(self, index: int | slice) -> TraceEvent | Sequence[TraceEvent]:
        return self._all()[index]

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self)} events>"


@dataclass(frozen=True)
class PageResult:
    """What one page held.

    ``events`` is a sequence of :class:`TraceEvent` in page order (built on
    first access).  ``missed`` is True when the kernel flagged lost events
    before this page (RB_MISSED_EVENTS); ``missed_events`` is their count when
    the kernel had room to store it (RB_MISSED_STORED), else None.
    ``lost_undecodable`` counts records that could not be decoded (unknown
    ``common_type``, a record shorter than its format, a header running past
    the data) — counted, never silently dropped.
    """

    events: Sequence[TraceEvent]
    missed: bool = False
    missed_events: int | None = None
    lost_undecodable: int = 0
    page_timestamp: int = 0
    data_length: int = 0
    _records: Sequence[_Record] = field(default=(), repr=False, compare=False)
    _buf: bytes = field(default=b"", repr=False, compare=False)

    def iter_values(self) -> Iterator[tuple[int, str, int, dict[str, FieldValue]]]:
        """Fast path without TraceEvent objects: ``(timestamp_ns, event name, pid, fields)``."""
        buf = self._buf
        for ts, off, _n, c in self._records:
            pid, fields = c.values(buf, off)
            yield ts, c.name, pid, fields


class PageDecoder:
    """Decodes pages of one instance; compiles each event format once.

    ``formats_by_id`` maps ``common_type`` ids to formats; ``comms`` maps
    pids to comms (``saved_cmdlines``); it may be replaced between pages with
    :meth:`set_comms`.
    """

    def __init__(
        self,
        formats_by_id: Mapping[int, EventFormat],
        header: PageHeaderFormat = DEFAULT_PAGE_HEADER,
        comms: Mapping[int, str] | None = None,
    ) -> None:
        self._compiled: dict[int, CompiledFormat] = {i: CompiledFormat(f) for i, f in formats_by_id.items()}
        self._header = header
        ts_code = {8: "Q", 4: "I"}.get(header.timestamp_size, "Q")
        commit_code = {8: "Q", 4: "I"}.get(header.commit_size, "Q")
        self._ts = struct.Struct("<" + ts_code)
        self._commit = struct.Struct("<" + commit_code)
        self._comm_of: Callable[[int, str], str] = (comms if comms is not None else {}).get

    def set_comms(self, comms: Mapping[int, str]) -> None:
        """Use ``comms`` (pid → comm) for the pages decoded from now on."""
        self._comm_of = comms.get

    def decode(self, buf: bytes, cpu: int) -> PageResult:
        """Walk one page (``buf`` is exactly one sub-buffer as read from trace_pipe_raw)."""
        h = self._header
        if len(buf) < h.data_offset:
            return PageResult(events=(), lost_undecodable=1 if buf else 0)
        buf = bytes(buf)
        page_ts = self._ts.unpack_from(buf, h.timestamp_offset)[0]
        commit = self._commit.unpack_from(buf, h.commit_offset)[0]
        length = commit & _COMMIT_MASK
        data_off = h.data_offset
        lost = 0
        if data_off + length > len(buf):
            lost += 1  # commit claims more data than the page holds
            length = len(buf) - data_off
        missed = bool(commit & RB_MISSED_EVENTS)
        missed_count: int | None = None
        if commit & RB_MISSED_STORED:
            at = data_off + length
            if at + h.commit_size <= len(buf):
                missed_count = self._commit.unpack_from(buf, at)[0]
        usable = length - length % 4
        words = array("I")
        words.frombytes(buf[data_off:data_off + usable])
        if not _LITTLE:
            words.byteswap()
        records: list[_Record] = []
        append = records.append
        compiled_get = self._compiled.get
        ts = page_ts
        i, n = 0, len(words)
        while i < n:
            w = words[i]
            tl = w & 31
            if 0 < tl <= 28:
                ts += w >> 5
                start = i + 1
                i = start + tl
                plen = tl << 2
            elif tl == 0:
                if i + 1 >= n:
                    lost += 1
                    break
                ts += w >> 5
                size = words[i + 1]
                start = i + 2
                plen = size - 4
                i += 1 + ((size + 3) >> 2)
                if size < 4:
                    lost += 1
                    break
            elif tl == _TYPE_TIME_EXTEND:
                if i + 1 >= n:
                    lost += 1
                    break
                ts += (words[i + 1] << 27) + (w >> 5)
                i += 2
                continue
            elif tl == _TYPE_TIME_STAMP:
                if i + 1 >= n:
                    lost += 1
                    break
                ts = fix_abs_ts((words[i + 1] << 27) | (w >> 5), ts)
                i += 2
                continue
            else:  # padding
                if (w >> 5) == 0 or i + 1 >= n:
                    break  # rest of the page is empty
                i += 1 + ((words[i + 1] + 3) >> 2)
                continue
            if i > n:
                lost += 1  # record runs past the committed data
                break
            c = compiled_get(words[start] & 0xFFFF)
            if c is None or plen < c.min_size:
                lost += 1
                continue
            append((ts, data_off + (start << 2), plen, c))
        return PageResult(
            events=_LazyEvents(buf, records, cpu, self._comm_of),
            missed=missed,
            missed_events=missed_count,
            lost_undecodable=lost,
            page_timestamp=page_ts,
            data_length=length,
            _records=records,
            _buf=buf,
        )

    def decode_stream(self, data: bytes, cpu: int, page_size: int | None = None) -> Iterator[PageResult]:
        """Decode consecutive pages of ``page_size`` bytes (default: the header's page size)."""
        size = page_size or self._header.page_size
        for off in range(0, len(data) - size + 1, size):
            yield self.decode(data[off:off + size], cpu)


_decoders: dict[tuple[int, int], tuple[Mapping[int, EventFormat], PageHeaderFormat, PageDecoder]] = {}


def decode_page(
    buf: bytes,
    cpu: int,
    formats_by_id: Mapping[int, EventFormat],
    header: PageHeaderFormat = DEFAULT_PAGE_HEADER,
    comms: Mapping[int, str] | None = None,
) -> PageResult:
    """Decode one trace_pipe_raw page (see :class:`PageDecoder`).

    The compiled decoders are cached per ``formats_by_id`` object, so calling
    this for every page of a stream compiles each format once.
    """
    key = (id(formats_by_id), id(header))
    hit = _decoders.get(key)
    if hit is None or hit[0] is not formats_by_id or hit[1] is not header:
        if len(_decoders) > 64:
            _decoders.clear()
        decoder = PageDecoder(formats_by_id, header)
        _decoders[key] = (formats_by_id, header, decoder)
    else:
        decoder = hit[2]
    decoder.set_comms(comms or {})
    return decoder.decode(buf, cpu)


def merge_by_time(streams: Iterable[Iterable[TraceEvent]]) -> Iterator[TraceEvent]:
    """K-way merge of per-CPU event streams (each already in time order) by ``timestamp_ns``.

    Ties keep the order of ``streams`` (lower CPU first when given in CPU order).
    """
    return heapq.merge(*streams, key=_ts_key)


def _ts_key(ev: TraceEvent) -> int:
    return ev.timestamp_ns
