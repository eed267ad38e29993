"""The recording file of ``kprobes record``: one self-contained file, written as a stream.

Format choice: **NDJSON of decoded events**, not raw ring-buffer pages.

* The session reads events already decoded (:class:`~kprobes.events.model.TraceEvent`)
  and decoding happens once, on the machine whose kernel produced them, with
  that kernel's own event formats.  Nothing kernel-specific is needed to read the
  file back: another machine (another kernel, another architecture, another
  kprobes version that reads format version 1) prints exactly the same lines.
* Raw pages would need the recorder to splice ``per_cpu/cpuN/trace_pipe_raw``
  itself and the reader to re-implement every kernel's page layout; they save
  space, not information, for the probe rates a file recording is for.
* One JSON object per line means the writer appends and flushes as events
  arrive (memory stays bounded however long the run), a killed recorder leaves a
  readable file (only the trailer is missing: :attr:`Recording.complete` is
  False), and the reader streams it twice without holding it.

Layout (each line one JSON object, ``"t"`` tells which)::

    {"t": "header", "magic": "kprobes-recording", "version": 1, "kernel_release": ...,
     "machine": ..., "clock": ..., "created": EPOCH, "command": [...],
     "events": ["probe:do_sys_openat2", ...],
     "formats": {"probe:do_sys_openat2": "<events/probe/do_sys_openat2/format text>"},
     "definitions": {"probe:do_sys_openat2": "p:probe/do_sys_openat2 do_sys_openat2 ..."}}
    {"t": "e", "ts": NS, "cpu": 1, "comm": "cat", "pid": 42, "ev": "probe:do_sys_openat2",
     "loc": "do_sys_openat2+0x0/0x1b0", "f": {"filename": "/etc/passwd"}}
    ...
    {"t": "trailer", "events": N, "duration": SECS, "lost": {"CPU": N}, "overrun": {...},
     "dropped": {...}, "unparsed": N, "kallsyms": {"do_sys_openat2": ADDR}}

The kernel's event ``format`` files are kept so that a reader knows each
field's C type and print format (hex or decimal); ``kallsyms`` holds only the
symbols that events mention (their probed places and callers by name, and
the functions holding the raw kernel addresses events carry), with their
addresses on the recording machine.  Field values: ints and strings as JSON;
arrays (tuples) as JSON lists; bytes as ``{"hex": "..."}``.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import time
from typing import IO, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from .._record import dataclass, field
from ..errors import KprobesError
from ..events.model import FieldValue, TraceEvent

__all__ = [
    "MAGIC",
    "VERSION",
    "RecordingError",
    "RecordingHeader",
    "RecordingTrailer",
    "RecordingWriter",
    "Recording",
    "event_to_record",
    "event_from_record",
    "kallsyms_subset",
    "symbol_of_location",
    "read_loss_stats",
    "release_and_machine",
]

MAGIC = "kprobes-recording"
VERSION = 1
_FLUSH_EVERY = 256
_MAX_SYMBOLS = 4096
_LOC_SYM = re.compile(r"^([\w.$]+)(?:\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+)?(?: \[([\w-]+)\])?$")
_KERNEL_MIN = 0xFFFF000000000000


class RecordingError(KprobesError):
    """A file that is not a kprobes recording, or one this version cannot read."""


@dataclass(frozen=True)
class RecordingHeader:
    """What the recording machine knew when recording started.

    ``events`` are ``GROUP:EVENT`` names; ``formats`` their tracefs ``format``
    file text; ``definitions`` the dynamic-event text of kprobe/uprobe events
    (tracepoints have none).
    """

    kernel_release: str
    machine: str
    clock: str = "mono"
    created: float = 0.0
    command: Tuple[str, ...] = ()
    events: Tuple[str, ...] = ()
    formats: Mapping[str, str] = field(default_factory=dict)
    definitions: Mapping[str, str] = field(default_factory=dict)
    version: int = VERSION

    def to_record(self) -> Dict[str, Any]:
        return {
            "t": "header", "magic": MAGIC, "version": self.version,
            "kernel_release": self.kernel_release, "machine": self.machine,
            "clock": self.clock, "created": self.created, "command": list(self.command),
            "events": list(self.events), "formats": dict(self.formats),
            "definitions": dict(self.definitions),
        }  # fmt: skip

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> RecordingHeader:
        return cls(
            kernel_release=str(rec.get("kernel_release", "")),
            machine=str(rec.get("machine", "")),
            clock=str(rec.get("clock", "")),
            created=float(rec.get("created", 0.0)),
            command=tuple(str(c) for c in rec.get("command", ())),
            events=tuple(str(e) for e in rec.get("events", ())),
            formats={str(k): str(v) for k, v in dict(rec.get("formats", {})).items()},
            definitions={str(k): str(v) for k, v in dict(rec.get("definitions", {})).items()},
            version=int(rec.get("version", VERSION)),
        )


@dataclass(frozen=True)
class RecordingTrailer:
    """The loss ledger and symbol subset, written when recording ends.

    ``lost`` counts events the kernel reported lost per CPU (``[LOST N EVENTS]``),
    ``overrun``/``dropped`` the per-CPU buffer statistics at the end (events
    overwritten / not written because the buffer was full), ``unparsed`` lines
    that were not events.  ``kallsyms`` maps the symbols events mention to their
    addresses on the recording machine (empty when addresses were hidden).
    """

    events: int = 0
    duration: float = 0.0
    lost: Mapping[int, int] = field(default_factory=dict)
    overrun: Mapping[int, int] = field(default_factory=dict)
    dropped: Mapping[int, int] = field(default_factory=dict)
    unparsed: int = 0
    kallsyms: Mapping[str, int] = field(default_factory=dict)

    @property
    def total_lost(self) -> int:
        return sum(self.lost.values()) + sum(self.overrun.values()) + sum(self.dropped.values())

    def to_record(self) -> Dict[str, Any]:
        def keyed(m: Mapping[int, int]) -> Dict[str, int]:
            return {str(k): v for k, v in sorted(m.items())}

        return {
            "t": "trailer", "events": self.events, "duration": self.duration,
            "lost": keyed(self.lost), "overrun": keyed(self.overrun),
            "dropped": keyed(self.dropped), "unparsed": self.unparsed,
            "kallsyms": dict(sorted(self.kallsyms.items())),
        }  # fmt: skip

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> RecordingTrailer:
        def ints(key: str) -> Dict[int, int]:
            return {int(k): int(v) for k, v in dict(rec.get(key, {})).items()}

        return cls(
            events=int(rec.get("events", 0)),
            duration=float(rec.get("duration", 0.0)),
            lost=ints("lost"), overrun=ints("overrun"), dropped=ints("dropped"),
            unparsed=int(rec.get("unparsed", 0)),
            kallsyms={str(k): int(v) for k, v in dict(rec.get("kallsyms", {})).items()},
        )  # fmt: skip


# ---------------------------------------------------------------------- events


def _encode_value(v: FieldValue) -> Any:
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    if isinstance(v, tuple):
        return [_encode_value(x) for x in v]  # type: ignore[arg-type]
    return v


def _decode_value(v: Any) -> FieldValue:
    if isinstance(v, dict):
        return bytes.fromhex(str(v.get("hex", "")))
    if isinstance(v, list):
        return tuple(_decode_value(x) for x in v)
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, str)):
        return v
    raise RecordingError(f"unexpected field value {v!r} in recording")


def event_to_record(ev: TraceEvent) -> Dict[str, Any]:
    """The JSON object for one event (``ev.group`` must be set; see :class:`RecordingWriter`)."""
    rec: Dict[str, Any] = {
        "t": "e", "ts": ev.timestamp_ns, "cpu": ev.cpu, "comm": ev.comm, "pid": ev.pid,
        "ev": f"{ev.group}:{ev.event}" if ev.group else ev.event,
    }  # fmt: skip
    for key, val in (("tgid", ev.tgid), ("flags", ev.flags), ("loc", ev.location),
                     ("caller", ev.caller), ("ip", ev.probe_ip), ("ret_ip", ev.ret_ip)):  # fmt: skip
        if val is not None:
            rec[key] = val
    rec["f"] = {k: _encode_value(v) for k, v in ev.fields.items()}
    return rec


def event_from_record(rec: Mapping[str, Any]) -> TraceEvent:
    """Inverse of :func:`event_to_record`."""
    try:
        group, sep, name = str(rec["ev"]).partition(":")
        return TraceEvent(
            comm=str(rec["comm"]), pid=int(rec["pid"]), cpu=int(rec["cpu"]),
            timestamp_ns=int(rec["ts"]), event=name if sep else group,
            fields={str(k): _decode_value(v) for k, v in dict(rec.get("f", {})).items()},
            group=group if sep else None, flags=rec.get("flags"), location=rec.get("loc"),
            caller=rec.get("caller"), probe_ip=rec.get("ip"), ret_ip=rec.get("ret_ip"),
            tgid=rec.get("tgid"),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise RecordingError(f"malformed event record {dict(rec)!r}: {e}") from None


def symbol_of_location(text: str) -> Optional[str]:
    """``do_sys_openat2+0x0/0x1b0`` → ``do_sys_openat2`` (None for ``0x55...`` user addresses)."""
    if text.startswith("0x"):
        return None
    m = _LOC_SYM.match(text)
    return m.group(1) if m else None


def kallsyms_subset(lines: Iterable[str], names: Set[str], addrs: Iterable[int] = ()) -> Dict[str, int]:
    """The kallsyms entries events need: ``names`` and the text symbols holding ``addrs``.

    Streams the lines keeping O(len(names) + len(addrs)) memory: each symbol is
    filed under the smallest wanted address at or above it, and a prefix maximum
    at the end gives, for every address, the closest symbol below it.  Zero
    addresses (hidden by kptr_restrict) are skipped.
    """
    wanted = sorted(set(addrs))
    best: List[Optional[Tuple[int, str]]] = [None] * len(wanted)
    out: Dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[1] not in ("t", "T", "w", "W"):
            continue
        try:
            addr = int(parts[0], 16)
        except ValueError:
            continue
        if not addr:
            continue
        name = parts[2]
        if name in names and name not in out:
            out[name] = addr
        if wanted:
            i = bisect.bisect_left(wanted, addr)
            if i < len(wanted):
                cur = best[i]
                if cur is None or addr > cur[0]:
                    best[i] = (addr, name)
    top: Optional[Tuple[int, str]] = None
    for cand in best:
        if cand is not None and (top is None or cand[0] > top[0]):
            top = cand
        if top is not None:
            out.setdefault(top[1], top[0])
    return out


# ---------------------------------------------------------------------- writer


class RecordingWriter:
    """Streams a recording to ``path``: header now, events as they come, trailer at close.

    Memory use is bounded: events are written (and flushed every few hundred),
    and only the set of symbol names seen is kept (at most 4096).
    """

    def __init__(self, path: str, header: RecordingHeader) -> None:
        self.path = path
        self.header = header
        self.count = 0
        self.symbols: Set[str] = set()
        self.addresses: Set[int] = set()
        self._t0 = time.monotonic()
        try:
            self._f: Optional[IO[str]] = open(path, "w", encoding="utf-8", errors="surrogateescape")
        except OSError as e:
            raise KprobesError(f"cannot write {path}: {e.strerror}",
                               hint="choose another file with -o FILE") from None  # fmt: skip
        self._write(header.to_record())

    def _write(self, rec: Mapping[str, Any]) -> None:
        if self._f is None:
            raise RecordingError(f"{self.path} is already closed")
        self._f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")

    def write_event(self, ev: TraceEvent) -> None:
        self._write(event_to_record(ev))
        self.count += 1
        if len(self.symbols) < _MAX_SYMBOLS:
            for where in (ev.location, ev.caller):
                sym = symbol_of_location(where) if where else None
                if sym:
                    self.symbols.add(sym)
        if len(self.addresses) < _MAX_SYMBOLS:
            for a in (ev.probe_ip, ev.ret_ip):
                if a is not None and a >= _KERNEL_MIN:
                    self.addresses.add(a)
        if self.count % _FLUSH_EVERY == 0 and self._f is not None:
            self._f.flush()

    def close(
        self,
        *,
        lost: Optional[Mapping[int, int]] = None,
        overrun: Optional[Mapping[int, int]] = None,
        dropped: Optional[Mapping[int, int]] = None,
        unparsed: int = 0,
        kallsyms_path: Optional[str] = "/proc/kallsyms",
        duration: Optional[float] = None,
    ) -> RecordingTrailer:
        """Write the trailer (loss ledger, symbol subset) and close; returns the trailer.

        ``duration`` is how long events were read (default: since the writer was made).
        """
        syms: Dict[str, int] = {}
        if (self.symbols or self.addresses) and kallsyms_path:
            try:
                with open(kallsyms_path, encoding="utf-8", errors="replace") as f:
                    syms = kallsyms_subset(f, self.symbols, self.addresses)
            except OSError:
                syms = {}
        trailer = RecordingTrailer(
            events=self.count,
            duration=round(time.monotonic() - self._t0 if duration is None else duration, 6),
            lost=dict(lost or {}), overrun=dict(overrun or {}), dropped=dict(dropped or {}),
            unparsed=unparsed, kallsyms=syms,
        )  # fmt: skip
        self._write(trailer.to_record())
        self.abort()
        return trailer

    def abort(self) -> None:
        """Close without a trailer (the file stays readable, marked incomplete)."""
        if self._f is not None:
            self._f.close()
            self._f = None


# ---------------------------------------------------------------------- reader


class Recording:
    """A recording file, read as a stream.

    :meth:`open` reads the header and scans for the trailer (one pass, nothing
    kept but those two); :meth:`events` streams the events in a second pass.
    """

    def __init__(self, path: str, header: RecordingHeader, trailer: Optional[RecordingTrailer]) -> None:
        self.path = path
        self.header = header
        self.trailer = trailer

    @property
    def complete(self) -> bool:
        """False when the recorder died before writing the trailer."""
        return self.trailer is not None

    @property
    def kallsyms(self) -> Mapping[str, int]:
        return self.trailer.kallsyms if self.trailer else {}

    @classmethod
    def open(cls, path: str) -> Recording:
        header: Optional[RecordingHeader] = None
        trailer: Optional[RecordingTrailer] = None
        for lineno, rec in _records(path):
            kind = rec.get("t")
            if lineno == 1:
                if kind != "header" or rec.get("magic") != MAGIC:
                    raise RecordingError(f"{path} is not a kprobes recording",
                                         hint="record one with: kprobes record -e GROUP:EVENT")  # fmt: skip
                if int(rec.get("version", 0)) > VERSION:
                    raise RecordingError(
                        f"{path} is format version {rec.get('version')}; this kprobes reads {VERSION}",
                        hint="read it with a newer kprobes",
                    )
                header = RecordingHeader.from_record(rec)
            elif kind == "trailer":
                trailer = RecordingTrailer.from_record(rec)
        if header is None:
            raise RecordingError(f"{path} is empty", hint="record with: kprobes record -e GROUP:EVENT")
        return cls(path, header, trailer)

    def events(self) -> Iterator[TraceEvent]:
        for _lineno, rec in _records(self.path):
            if rec.get("t") == "e":
                yield event_from_record(rec)


def _records(path: str) -> Iterator[Tuple[int, Dict[str, Any]]]:
    try:
        f = open(path, encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        raise RecordingError(f"{path} does not exist",
                             hint="record one with: kprobes record -e GROUP:EVENT [-o FILE]") from None  # fmt: skip
    except OSError as e:
        raise RecordingError(f"cannot read {path}: {e.strerror}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                if not line.endswith("\n"):
                    return  # a recorder killed mid-line: the rest is lost
                raise RecordingError(f"{path}:{lineno}: not a JSON record") from None
            if not isinstance(rec, dict):
                raise RecordingError(f"{path}:{lineno}: not a JSON object")
            yield lineno, rec


def read_loss_stats(stats_texts: Sequence[Tuple[int, str]]) -> Tuple[Dict[int, int], Dict[int, int]]:
    """Per-CPU ``overrun`` and ``dropped events`` from ``per_cpu/cpuN/stats`` texts."""
    overrun: Dict[int, int] = {}
    dropped: Dict[int, int] = {}
    for cpu, text in stats_texts:
        for line in text.splitlines():
            key, _, val = line.partition(":")
            try:
                n = int(val.strip())
            except ValueError:
                continue
            if key.strip() == "overrun" and n:
                overrun[cpu] = n
            elif key.strip() == "dropped events" and n:
                dropped[cpu] = n
    return overrun, dropped


def release_and_machine() -> Tuple[str, str]:
    u = os.uname()
    return u.release, u.machine
