"""Reading a session's events: binary per-CPU pages (default) or trace_pipe text (fallback).

:class:`RawReader` opens ``per_cpu/cpuN/trace_pipe_raw`` of the session's
instance non-blocking, waits on all of them with ``poll(2)``, reads whole
sub-buffer pages (one ``read(2)`` returns at most one page, also a partly
filled one) and decodes them in pure Python with
:class:`~kprobes.events.raw.PageDecoder` using ``events/header_page`` and the
``format`` file of every event the session enabled.  Each read batch is merged
across CPUs by timestamp (:func:`~kprobes.events.raw.merge_by_time`); like
trace_pipe, ordering across two batches is not guaranteed for events that
were committed on another CPU while the batch was being read.

Raw events are the same :class:`~kprobes.events.model.TraceEvent` objects the
text parser makes, with these differences:

* ``timestamp_ns`` has full nanosecond precision (text: microseconds);
* ``comm`` comes from the global ``saved_cmdlines`` (read-only for us, re-read
  when a pid is missing), which is where trace_pipe takes it from too;
* ``flags`` (the irq/preempt column of the text) is None;
* ``location``/``caller`` of kprobe events are rendered as the kernel prints
  them (``do_sys_openat2+0x0/0x170``; for return probes
  ``caller=ksys_read+0x6b/0xf0``, ``location=vfs_read``) from ``/proc/kallsyms``,
  read once, lazily, the first time a kprobe event is seen; without readable
  addresses they stay ``0x...`` hex.  Uprobe locations are hex as in the text.
  Fields of fetcharg type ``symbol`` are rendered the same way.
* the session's private group is not reported (``group`` None, as in the
  text path); tracepoints keep their system (the text reader fills it in too).

:class:`TextReader` is the trace_pipe path (:class:`~kprobes.events.text.TextParser`).
:func:`open_reader` builds the requested reader and falls back to text when
the raw files are missing or cannot be understood.
"""

from __future__ import annotations

import bisect
import errno
import os
import select
from typing import (
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
)

from ...errors import FeatureMissing, KprobesError
from ...events.cmdlines import UNKNOWN_COMM, parse_saved_cmdlines
from ...events.format import (
    DEFAULT_PAGE_HEADER,
    EventFormat,
    EventFormatError,
    PageHeaderFormat,
    parse_event_format,
    parse_header_page,
)
from ...events.model import TraceEvent, UnparsedLine
from ...events.raw import PageDecoder, merge_by_time
from ..symbols.ksym import KernelSymbolizer, shared_symbolizer
from .fs import TraceFS
from .ledger import LossLedger

__all__ = [
    "KernelSymbolizer",
    "RawReader",
    "TextReader",
    "EventReader",
    "ReaderProbe",
    "open_reader",
    "COMM_FIELD",
    "CommTracker",
    "TrackedReader",
    "TASK_COMM_EVENTS",
]

Finisher = Callable[[TraceEvent], None]

#: The hidden fetcharg holding the task's comm at event time (``__comm=$comm:string``):
#: readers move it into ``TraceEvent.comm`` and drop it from the fields.
COMM_FIELD = "__comm"


class ReaderProbe(Protocol):
    """What a reader needs to know about a probe (:class:`~.session.Probe` has it)."""

    @property
    def label(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def definition(self) -> Optional[str]: ...
    @property
    def types(self) -> Mapping[str, str]: ...


class EventReader(Protocol):
    """The interface :class:`~.session.Session` drives."""

    kind: str
    unparsed: List[UnparsedLine]

    def update(self, probes: Sequence[ReaderProbe]) -> None: ...
    def wait(self, timeout_ms: int) -> None: ...
    def read(self) -> List[TraceEvent]: ...
    def flush(self) -> List[TraceEvent]: ...
    def close(self) -> None: ...


# ---------------------------------------------------------------------- kallsyms


# ---------------------------------------------------------------------- comms


class _CommTable:
    """pid → comm from ``saved_cmdlines``; re-read at most once per read batch.

    The decoder looks comms up with the plain dict's C ``get`` (a Python-level
    lookup would cost as much as decoding); events that came out as ``<...>``
    are fixed up after a refresh by :meth:`fix_unknown`.
    """

    def __init__(self, read: Callable[[], str]) -> None:
        self._read = read
        self.table: Dict[int, str] = {}
        self._fresh = False
        self.refreshes = 0

    def new_round(self) -> None:
        self._fresh = False

    def refresh(self) -> None:
        try:
            new = parse_saved_cmdlines(self._read())
        except KprobesError:
            new = {}
        self.table.update(new)  # same dict object: the decoder holds its .get
        self._fresh = True
        self.refreshes += 1

    def fix_unknown(self, events: List[TraceEvent]) -> None:
        """Give ``<...>`` events their comm when a fresh ``saved_cmdlines`` knows the pid."""
        unknown = [ev for ev in events if ev.comm == UNKNOWN_COMM]
        if not unknown:
            return
        if not self._fresh:
            self.refresh()
        get = self.table.get
        for ev in unknown:
            comm = get(ev.pid)
            if comm is not None:
                ev.__dict__["comm"] = comm


# ---------------------------------------------------------------------- comm tracking

#: Tracepoints that tell a task's comm in event order: exec and prctl(PR_SET_NAME)
#: rename (oldcomm/newcomm), fork names the child (comm).
TASK_COMM_EVENTS = (("task", "task_rename"), ("task", "task_newtask"))


class CommTracker:
    """pid → comm in event order, from ``task:task_rename``/``task:task_newtask`` events.

    :meth:`apply` walks one time-ordered batch: rename/fork events update the
    table and are dropped; every other event whose record has no comm of its
    own gets the comm its task had at that point: the last rename or fork
    seen for the pid, or for a pid first seen renamed later in the same
    batch, that rename's ``oldcomm``.  Pids never seen renamed or forked
    keep ``saved_cmdlines``' value.  ``exact`` names (own-group event names)
    whose comm came from the kernel at event time (``__comm``): left alone.
    """

    def __init__(self, exact: Iterable[str] = ()) -> None:
        self.exact = frozenset(exact)
        self.table: Dict[int, str] = {}

    def apply(self, events: Iterable[TraceEvent]) -> List[TraceEvent]:
        table = self.table
        exact = self.exact
        out: List[TraceEvent] = []
        pending: Dict[int, List[TraceEvent]] = {}
        for ev in events:
            key = (ev.group, ev.event)
            if key in TASK_COMM_EVENTS:
                f = ev.fields
                if key[1] == "task_rename":
                    pid = f.get("pid", ev.pid)
                    old, new = f.get("oldcomm"), f.get("newcomm")
                    if isinstance(pid, int) and isinstance(new, str):
                        if isinstance(old, str):
                            for early in pending.pop(pid, ()):
                                early.__dict__["comm"] = old
                        table[pid] = new
                else:
                    cpid, child = f.get("pid"), f.get("comm")
                    if isinstance(cpid, int) and isinstance(child, str):
                        table[cpid] = child
                continue
            if ev.group is None and ev.event in exact:
                out.append(ev)
                continue
            comm = table.get(ev.pid)
            if comm is not None:
                ev.__dict__["comm"] = comm
            elif ev.pid:
                pending.setdefault(ev.pid, []).append(ev)
            out.append(ev)
        return out


class TrackedReader:
    """A session reader plus a second instance that records only task renames and forks.

    The task events live in their own small instance so that they never
    take room from (or count as losses of) the session's events.  Each
    :meth:`read` reads the session's buffers first, then the task events (a
    rename that happened before a session event was committed before it),
    and lets a :class:`CommTracker` fix comms over the two merged by time.
    Task events newer than the newest session event of the batch wait for
    a later batch: the session events they precede have not been read yet
    (applied now, a rename would give its new name to the events before it).
    """

    #: Task events held back at most (beyond, the oldest are applied at once).
    max_queue = 65536

    def __init__(self, main: EventReader, tasks: EventReader, tracker: CommTracker) -> None:
        self.main = main
        self.tasks = tasks
        self.tracker = tracker
        self.kind = main.kind
        self.unparsed: List[UnparsedLine] = main.unparsed  # the same list
        self._queue: List[TraceEvent] = []

    def update(self, probes: Sequence[ReaderProbe]) -> None:
        self.main.update(probes)
        self.tracker.exact = frozenset(p.event for p in probes if COMM_FIELD in p.types)

    def wait(self, timeout_ms: int) -> None:
        self.main.wait(timeout_ms)

    def _merge(self, events: List[TraceEvent], tasks: List[TraceEvent]) -> List[TraceEvent]:
        self.tasks.unparsed.clear()
        queue = self._queue
        if tasks:
            queue = list(merge_by_time([queue, tasks])) if queue else tasks
        if len(queue) > self.max_queue:
            self.tracker.apply(queue[: len(queue) - self.max_queue])
            queue = queue[len(queue) - self.max_queue:]
        if not events:
            self._queue = queue
            return events
        cutoff = max(events[0].timestamp_ns, events[-1].timestamp_ns)
        n = bisect.bisect_right([t.timestamp_ns for t in queue], cutoff) if queue else 0
        ready, self._queue = queue[:n], queue[n:]
        if not ready:
            return self.tracker.apply(events) if self.tracker.table else events
        return self.tracker.apply(merge_by_time([ready, events]))

    def read(self) -> List[TraceEvent]:
        events = self.main.read()
        return self._merge(events, self.tasks.read())

    def flush(self) -> List[TraceEvent]:
        events = self.main.flush()
        return self._merge(events, self.tasks.flush())

    def close(self) -> None:
        self.main.close()
        self.tasks.close()


# ---------------------------------------------------------------------- raw


def _is_return(probe: ReaderProbe) -> bool:
    return bool(probe.definition) and (probe.definition or "")[:1] == "r"


class RawReader:
    """Reads and decodes the per-CPU binary pages of one instance (see the module docstring).

    ``instance`` is tracefs-relative (``instances/NAME``).  ``own_group`` is
    the session's private group (reported as no group).  Construction touches
    nothing; :meth:`open` opens the per-CPU files and raises
    :class:`~kprobes.errors.FeatureMissing` when raw reading is impossible.
    ``max_pages`` bounds the pages read from one CPU per :meth:`read`.
    """

    kind = "raw"

    def __init__(
        self,
        fs: TraceFS,
        instance: str,
        *,
        own_group: Optional[str] = None,
        ledger: Optional[LossLedger] = None,
        symbolizer: Optional[KernelSymbolizer] = None,
        max_pages: int = 64,
    ) -> None:
        self.fs = fs
        self.instance = instance
        self.own_group = own_group
        self.ledger = ledger if ledger is not None else LossLedger(reader="raw")
        self.symbolizer = symbolizer or shared_symbolizer()
        self.max_pages = max_pages
        self.unparsed: List[UnparsedLine] = []
        self.header: PageHeaderFormat = DEFAULT_PAGE_HEADER
        self.page_size = DEFAULT_PAGE_HEADER.page_size
        self.pages_read = 0
        self._fds: List[Tuple[int, int]] = []
        self._poller: Optional[select.poll] = None
        self._comms = _CommTable(lambda: fs.read("saved_cmdlines"))
        self._decoder: Optional[PageDecoder] = None
        self._finishers: Dict[Tuple[Optional[str], str], Finisher] = {}
        self._probe_key: Tuple[Tuple[str, str], ...] = ()

    # ------------------------------------------------------------ setup

    def open(self, probes: Sequence[ReaderProbe] = ()) -> None:
        """Read the page layout, the formats of ``probes``, and open every CPU's trace_pipe_raw."""
        fs = self.fs
        base = f"{self.instance}/per_cpu"
        cpus = sorted(int(n[3:]) for n in fs.listdir(base) if n.startswith("cpu") and n[3:].isdigit())
        if not cpus:
            raise FeatureMissing(f"{fs.path(base)} has no cpuN directories: no binary per-CPU buffers")
        try:
            self.header = parse_header_page(self._read_first(
                f"{self.instance}/events/header_page", "events/header_page"))
        except EventFormatError as e:
            raise FeatureMissing(f"cannot read the ring-buffer page layout: {e.message}") from None
        sub = f"{self.instance}/buffer_subbuf_size_kb"
        self.page_size = self.header.page_size
        if fs.exists(sub):
            try:
                self.page_size = max(self.page_size, int(fs.read(sub).strip()) * 1024)
            except ValueError:
                pass
        self.update(probes)
        poller = select.poll()
        try:
            for cpu in cpus:
                fd = os.open(fs.path(f"{base}/cpu{cpu}/trace_pipe_raw"), os.O_RDONLY | os.O_NONBLOCK)
                self._fds.append((cpu, fd))
                poller.register(fd, select.POLLIN)
        except OSError as e:
            self.close()
            raise FeatureMissing(f"cannot open trace_pipe_raw: {os.strerror(e.errno or 0)}") from None
        self._poller = poller
        # Wake poll() on any data rather than when the buffer is half full (instance-local).
        pct = f"{self.instance}/buffer_percent"
        if fs.exists(pct):
            try:
                fs.write(pct, "0")
            except (OSError, KprobesError):
                pass

    def _read_first(self, *rels: str) -> str:
        for rel in rels:
            if self.fs.exists(rel):
                return self.fs.read(rel)
        raise FeatureMissing(f"{self.fs.path(rels[0])} does not exist")

    def update(self, probes: Sequence[ReaderProbe]) -> None:
        """(Re)load event formats when the set of probes changed."""
        key = tuple((p.group, p.event) for p in probes)
        if key == self._probe_key and self._decoder is not None:
            return
        formats: Dict[int, EventFormat] = {}
        finishers: Dict[Tuple[Optional[str], str], Finisher] = {}
        for p in probes:
            rel = f"{self.instance}/events/{p.group}/{p.event}/format"
            try:
                fmt = parse_event_format(self.fs.read(rel), system=p.group)
            except EventFormatError as e:
                raise FeatureMissing(f"cannot decode {p.label}: {e.message}") from None
            formats[fmt.id] = fmt
            fin = self._finisher(p)
            if fin is not None:
                finishers[(p.group, p.event)] = fin
        self._decoder = PageDecoder(formats, self.header, self._comms.table)
        self._finishers = finishers
        self._probe_key = key

    def _finisher(self, p: ReaderProbe) -> Optional[Finisher]:
        own = p.group == self.own_group
        symbol_fields = [k for k, t in p.types.items() if t == "symbol"] if p.kind == "kprobe" else []
        ret = _is_return(p)
        event_comm = COMM_FIELD in p.types
        if p.kind == "tracepoint" and not own:
            return None
        render = self.symbolizer.render
        kprobe = p.kind == "kprobe"

        def finish(ev: TraceEvent) -> None:
            d = ev.__dict__  # a fresh, unshared event: set its fields like the decoder does
            if own:
                d["group"] = None
            if event_comm:
                c = d["fields"].pop(COMM_FIELD, None)
                if isinstance(c, str):
                    d["comm"] = c
            ip = d["probe_ip"]
            if ip is not None:
                if ret:
                    rip = d["ret_ip"] or 0
                    d["location"] = render(ip, False) if kprobe else f"0x{ip:x}"
                    d["caller"] = render(rip, True) if kprobe else f"0x{rip:x}"
                else:
                    d["location"] = render(ip, True) if kprobe else f"0x{ip:x}"
            if symbol_fields:
                fields = d["fields"]
                for k in symbol_fields:
                    v = fields.get(k)
                    if isinstance(v, int):
                        fields[k] = render(v, True)

        return finish

    # ------------------------------------------------------------ reading

    def wait(self, timeout_ms: int) -> None:
        """Block until some CPU has data or ``timeout_ms`` passed."""
        if self._poller is not None:
            try:
                self._poller.poll(timeout_ms)
            except InterruptedError:
                pass

    def _read_cpu(self, cpu: int, fd: int, decoder: PageDecoder) -> List[TraceEvent]:
        out: List[TraceEvent] = []
        size = self.page_size
        note = self.ledger.note_page
        for _ in range(self.max_pages):
            try:
                page = os.read(fd, size)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                if e.errno in (errno.EAGAIN, errno.ENODATA):
                    break
                raise
            if not page:
                break
            self.pages_read += 1
            result = decoder.decode(page, cpu)
            if result.missed or result.lost_undecodable:
                note(result.missed, result.missed_events, result.lost_undecodable)
            out.extend(result.events)
        return out

    def read(self) -> List[TraceEvent]:
        """Everything available now on every CPU (at most ``max_pages`` per CPU), in time order."""
        decoder = self._decoder
        if decoder is None:
            return []
        self._comms.new_round()
        streams = []
        for cpu, fd in self._fds:
            evs = self._read_cpu(cpu, fd, decoder)
            if evs:
                streams.append(evs)
        if not streams:
            return []
        events = streams[0] if len(streams) == 1 else list(merge_by_time(streams))
        finishers = self._finishers
        if finishers:
            get = finishers.get
            for ev in events:
                fin = get((ev.group, ev.event))
                if fin is not None:
                    fin(ev)
        self._comms.fix_unknown(events)  # after the finishers: event-time comms need no lookup
        return events

    def flush(self) -> List[TraceEvent]:
        return []

    def close(self) -> None:
        for _cpu, fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        self._poller = None


# ---------------------------------------------------------------------- text


class TextReader:
    """The trace_pipe text path: :class:`~kprobes.events.text.TextParser` over the instance's trace_pipe."""

    kind = "text"

    def __init__(self, fs: TraceFS, instance: str, *, ledger: Optional[LossLedger] = None) -> None:
        from ...events.text import TextParser

        self.fs = fs
        self.instance = instance
        self.ledger = ledger if ledger is not None else LossLedger(reader="text")
        self.unparsed: List[UnparsedLine] = []
        self.parser = TextParser({})
        self._fd: Optional[int] = None
        self._poller: Optional[select.poll] = None
        self._groups: Dict[str, str] = {}
        self._probe_key: Tuple[Tuple[str, str], ...] = ()

    def open(self, probes: Sequence[ReaderProbe] = ()) -> None:
        self.update(probes)
        self._fd = os.open(self.fs.path(f"{self.instance}/trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)

    def update(self, probes: Sequence[ReaderProbe]) -> None:
        from ...events.text import TextParser

        key = tuple((p.group, p.event) for p in probes)
        if key == self._probe_key:
            return
        self._probe_key = key
        types = {p.event: dict(p.types) for p in probes if p.types}
        # Called between reads, after a flush: the old parser holds no partial line.
        lost = self.parser.lost_events
        self.parser = TextParser(types)
        self.parser.lost_events = lost
        self._groups = {p.event: p.group for p in probes if p.kind == "tracepoint"}

    def wait(self, timeout_ms: int) -> None:
        if self._poller is not None:
            try:
                self._poller.poll(timeout_ms)
            except InterruptedError:
                pass

    def _take(self, items: Iterable[object]) -> List[TraceEvent]:
        out: List[TraceEvent] = []
        unparsed = 0
        groups = self._groups
        for item in items:
            if isinstance(item, UnparsedLine):
                self.unparsed.append(item)
                if not item.reason.startswith("lost events"):
                    unparsed += 1
            elif isinstance(item, TraceEvent):
                f = item.fields
                if COMM_FIELD in f and isinstance(f, dict):
                    c = f.pop(COMM_FIELD)
                    if isinstance(c, str):
                        item.__dict__["comm"] = c
                if item.group is None and groups:
                    g = groups.get(item.event)
                    if g is not None:
                        item.__dict__["group"] = g
                out.append(item)
        self.ledger.note_text(self.parser.lost_events, unparsed)
        return out

    def read(self) -> List[TraceEvent]:
        fd = self._fd
        if fd is None:
            return []
        chunks: List[bytes] = []
        for _ in range(64):
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            if not chunk:
                break
            chunks.append(chunk)
        if not chunks:
            return []
        return self._take(self.parser.feed(b"".join(chunks)))

    def flush(self) -> List[TraceEvent]:
        return self._take(self.parser.flush())

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        self._poller = None


def open_reader(
    kind: str,
    fs: TraceFS,
    instance: str,
    probes: Sequence[ReaderProbe],
    *,
    own_group: Optional[str] = None,
    ledger: Optional[LossLedger] = None,
    symbolizer: Optional[KernelSymbolizer] = None,
) -> Tuple[EventReader, Optional[str]]:
    """Open a ``"raw"`` or ``"text"`` reader; returns (reader, why raw fell back to text or None).

    Raw falls back to text when the per-CPU binary files or the formats cannot
    be used (:class:`~kprobes.errors.FeatureMissing`).
    """
    if kind not in ("raw", "text"):
        raise KprobesError(f"unknown reader {kind!r}", hint="the readers are 'raw' and 'text'")
    reason: Optional[str] = None
    if kind == "raw":
        raw = RawReader(fs, instance, own_group=own_group, ledger=ledger, symbolizer=symbolizer)
        try:
            raw.open(probes)
            if ledger is not None:
                ledger.reader = "raw"
            return raw, None
        except FeatureMissing as e:
            reason = e.message
    text = TextReader(fs, instance, ledger=ledger)
    text.open(probes)
    if ledger is not None:
        ledger.reader = "text"
    return text, reason

