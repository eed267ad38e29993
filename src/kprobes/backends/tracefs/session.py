"""A tracing session: a private tracefs instance and event group, always cleaned up.

    with Session() as s:
        s.add("p:myprobe do_sys_openat2 filename=+0(%si):string")
        for ev in s.events(duration=5):
            print(ev.comm, ev.fields["filename"])

The session owns an instance ``instances/kp<PID>_<BOOT>_<START>`` and an event
group of the same name.  Probes are defined in that group, enabled only in that
instance, and read from that instance's buffer: the top-level buffer, global
options and ``current_tracer`` are never written, and other owners' events are
never touched.  Leaving the ``with`` block — normally, by an exception, by
SIGINT/SIGTERM/SIGHUP — disables and deletes every event, filter and trigger and
removes the instance.  After SIGKILL, the next session (or ``kprobes gc``)
reaps what the dead owner left.
"""

from __future__ import annotations

import atexit
import errno
import functools
import os
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager
from types import FrameType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
    cast,
)

from ..._record import dataclass, field
from ..._record import replace as replace_fields
from ...errors import FeatureMissing, KprobesError
from ...events.model import TraceEvent, UnparsedLine
from ..signals import SessionInterrupted, listen_swallowed, unlisten_swallowed
from .fs import TraceFS

if TYPE_CHECKING:
    from .reader import EventReader
from .ledger import EventsLost, LossLedger, read_cpu_stats, read_probe_counters
from .owner import current_owner
from .reader import COMM_FIELD, TASK_COMM_EVENTS, CommTracker, TrackedReader
from .reaper import GcReport, list_dynamic_events, reap, remove_group_events, remove_instance

__all__ = ["Session", "Probe", "SessionInterrupted", "CleanupInterrupted", "EventsLost"]

Handler = Callable[[TraceEvent], None]
#: Most fetchargs one dynamic event may have (the kernel's MAX_TRACE_ARGS).
_MAX_ARGS = 128
_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(fn: _F) -> _F:
    """Run a Session method inside :meth:`Session.critical`."""

    @functools.wraps(fn)
    def wrapper(self: Session, *args: Any, **kwargs: Any) -> Any:
        with self.critical():
            return fn(self, *args, **kwargs)

    return cast(_F, wrapper)


class CleanupInterrupted(KprobesError):
    """A second interruption stopped the cleanup: some probes are still defined."""

    def __init__(self, left: int, group: str, instances: Sequence[str] = ()) -> None:
        extra = f" (and instance {', '.join(instances)})" if instances else ""
        super().__init__(
            f"cleanup interrupted: {left} probes of group {group} left{extra}",
            hint="run: kprobes gc",
        )
        self.left = left
        self.instances = list(instances)


@dataclass(frozen=True)
class Probe:
    """One event the session armed.

    ``label`` is the name the user gave (or the kernel's default name);
    ``group``/``event`` are where it lives in tracefs; ``definition`` the exact
    text written to the kernel (None for tracepoints); ``types`` the fetcharg
    types by field name (for typing values in the text parser).
    """

    label: str
    group: str
    event: str
    kind: str  # "kprobe" | "uprobe" | "tracepoint"
    definition: Optional[str] = None
    filter: Optional[str] = None
    types: Mapping[str, str] = field(default_factory=dict)

    @property
    def rel(self) -> str:
        return f"events/{self.group}/{self.event}"


class Session:
    """Owns one private tracefs instance and event group; see the module docstring.

    ``buffer_size_kb`` sets the instance's per-CPU buffer (default 4096 KiB).
    ``clock`` is the instance's trace clock (``mono``: the same clock as
    bpftrace's ``nsecs`` and ``time.monotonic_ns()``).  ``handle_signals``
    turns SIGTERM/SIGHUP into :class:`SessionInterrupted` so that cleanup runs
    (only when the session is entered from the main thread).  ``exclude_self``
    adds ``common_pid != <this pid>`` to every probe's filter: the reader's own
    reads would otherwise feed probes such as ``r:vfs_read`` in a loop.

    ``reader`` picks how events are read: ``"raw"`` (default) decodes the
    binary per-CPU pages (``per_cpu/cpuN/trace_pipe_raw``) and falls back to
    ``"text"`` (``trace_pipe``) when that is impossible; :attr:`reader_kind`
    tells which one runs and :attr:`reader_fallback` why raw was not used.
    :attr:`ledger` counts every event that was not delivered (ring-buffer
    overruns and drops, missed-events pages, kprobe misses, undecodable
    records); with ``loss_is_error`` :meth:`events` raises
    :class:`~.ledger.EventsLost` after the last event when anything was lost.

    ``event_comm`` adds a hidden ``__comm=$comm:string`` fetcharg to every
    kprobe/uprobe definition: the reader takes the event's ``comm`` from it
    (the task's name when the probe fired, as bpftrace's ``comm``) instead
    of ``saved_cmdlines`` (the name at some later context switch: wrong for
    a task that exec'd or renamed itself since).  Tracepoints have no fetch
    arguments; their comm is ``saved_cmdlines``' as in trace_pipe.
    """

    def __init__(
        self,
        tracefs: Optional[TraceFS] = None,
        *,
        buffer_size_kb: Optional[int] = 4096,
        clock: str = "mono",
        arch: Optional[str] = None,
        reap_dead: bool = True,
        handle_signals: bool = True,
        exclude_self: bool = True,
        reader: str = "raw",
        loss_is_error: bool = False,
        event_comm: bool = True,
    ) -> None:
        if reader not in ("raw", "text"):
            raise KprobesError(f"unknown reader {reader!r}", hint="the readers are 'raw' and 'text'")
        self._fs_given = tracefs
        self.fs: Optional[TraceFS] = None
        self.buffer_size_kb = buffer_size_kb
        self.clock = clock
        self.arch = arch
        self.reap_dead = reap_dead
        self.handle_signals = handle_signals
        self.exclude_self = exclude_self
        self.reader = reader
        self.loss_is_error = loss_is_error
        self.event_comm = event_comm
        self.reader_kind: Optional[str] = None
        self.reader_fallback: Optional[str] = None
        self.ledger = LossLedger(reader=reader)
        #: Upper bound of the final drain (normal end / after a signal), seconds.
        self.drain_seconds = 5.0
        self.signal_drain_seconds = 0.5
        #: Up to this many dynamic events are removed with one ``-:GROUP/`` write.
        self.batch_remove_max = 64
        owner = current_owner()
        self.name = owner.name
        self.group = owner.name
        self.probes: Dict[str, Probe] = {}
        self.unparsed: List[UnparsedLine] = []
        self.reaped: Optional[GcReport] = None
        self._handlers: Dict[str, List[Handler]] = {}
        self._old_signals: Dict[int, object] = {}
        self._open = False
        self._reader: Optional[EventReader] = None
        self._stop = False
        self._counter = 0
        self._iterating = False
        self._busy = 0
        self._closing = False
        self._signalled: Optional[int] = None
        self._pending_signal: Optional[int] = None
        self._quiesced = False
        #: task tracepoints recorded to follow renames (see :meth:`_track_comms`)
        self._comm_events: List[Probe] = []
        self._comm_instance: Optional[str] = None
        self._comm_cleanup_failed: Optional[str] = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close()
        pending = self._pending_signal or self._signalled
        self._pending_signal = self._signalled = None
        if pending is not None and exc_type is None:
            raise KeyboardInterrupt() if pending == signal.SIGINT else SessionInterrupted(pending)

    @property
    def instance(self) -> str:
        return f"instances/{self.name}"

    def open(self) -> None:
        if self._open:
            return
        fs = self._fs_given or TraceFS.discover()
        self.fs = fs
        if self.reap_dead:
            self.reaped = reap(fs, keep=self.group)
        # Handlers first (a signal between mkdir and their installation would leave the
        # instance behind); signals are deferred until the instance is set up.
        self._closing = False
        self._signalled = self._pending_signal = None
        self._busy = 1
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                cur = signal.getsignal(s)
                if s == signal.SIGINT and cur is not signal.default_int_handler:
                    continue  # somebody else handles Ctrl-C: leave it to them
                self._old_signals[s] = signal.signal(s, self._on_signal)
            listen_swallowed(self._on_swallowed)
        try:
            os.mkdir(fs.path(self.instance))
        except FileExistsError:
            pass
        except PermissionError as e:
            from ...errors import PermissionProblem

            self._busy = 0
            self._restore_signals()
            raise PermissionProblem(
                f"cannot create a tracefs instance in {fs.path('instances')}: permission denied",
                hint="run as root, or with CAP_PERFMON and write access to tracefs",
            ) from e
        except FileNotFoundError as e:
            self._busy = 0
            self._restore_signals()
            raise FeatureMissing(
                f"{fs.path('instances')} does not exist: this kernel has no tracefs instances",
            ) from e
        except BaseException:
            self._busy = 0
            self._restore_signals()
            raise
        self._open = True
        atexit.register(self.close)
        try:
            if self.clock:
                clocks = fs.read(f"{self.instance}/trace_clock")
                if self.clock in clocks.replace("[", " ").replace("]", " ").split():
                    fs.write(f"{self.instance}/trace_clock", self.clock)
            if self.buffer_size_kb:
                fs.write(f"{self.instance}/buffer_size_kb", str(self.buffer_size_kb))
            self.ledger.set_baseline(read_cpu_stats(fs, self.instance))
        except BaseException:
            self._busy = 0
            self.close()
            raise
        self._busy = 0
        if self._signalled is not None:
            self.close()
            self._raise_signalled()

    @contextmanager
    def critical(self) -> Iterator[None]:
        """A section that changes tracefs state: SIGINT/SIGTERM/SIGHUP wait for its end.

        A signal raising in the middle of a write (or between ``open`` and the
        ``try`` that closes the fd) would leave state the cleanup cannot see;
        it is raised when the outermost section ends instead.
        """
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy and not self._iterating and not self._closing and self._signalled is not None:
                self._raise_signalled()

    def _raise_signalled(self) -> None:
        signum, self._signalled = self._signalled, None
        if signum == signal.SIGINT:
            raise KeyboardInterrupt()
        if signum is not None:
            raise SessionInterrupted(signum)

    def _on_signal(self, signum: int, _frame: Optional[FrameType]) -> None:
        """SIGINT/SIGTERM/SIGHUP: stop reading (then drain), or raise, or defer during cleanup.

        * while :meth:`events` runs, the first signal stops it: recording stops,
          the buffers are drained (bounded by :attr:`signal_drain_seconds`) and
          :meth:`events` then raises the interruption;
        * during :meth:`close` SIGTERM/SIGHUP are remembered (cleanup goes on,
          ``with`` re-raises it afterwards); SIGINT interrupts the cleanup;
        * inside a :meth:`critical` section (arming, reading) it is raised when
          the section ends;
        * otherwise (the caller's own code, a second signal) it raises at once.
        """
        if self._closing:
            if signum != signal.SIGINT:
                self._pending_signal = self._pending_signal or signum
                return
            raise KeyboardInterrupt()  # Ctrl-C during cleanup: stop it, say what is left
        if (self._iterating or self._busy) and self._signalled is None:
            self._signalled = signum
            self._stop = True
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt()
        raise SessionInterrupted(signum)

    def _on_swallowed(self, signum: int) -> None:
        """A stop signal's exception was lost in a finalizer: stop as if it had been deferred.

        The reading loop ends on the flag, and the next :meth:`critical` end,
        :meth:`events` or ``with`` exit raises it (see :mod:`..signals`).
        """
        if self._closing:
            self._pending_signal = self._pending_signal or signum
            return
        if self._signalled is None:
            self._signalled = signum
        self._stop = True

    def _restore_signals(self) -> None:
        unlisten_swallowed(self._on_swallowed)
        for s, old in self._old_signals.items():
            try:
                signal.signal(s, old)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                pass
        self._old_signals.clear()

    def close(self) -> None:
        """Disable and remove everything this session made; safe to call twice.

        Each event is disabled with one write (the kernel's cost: a uprobe's
        disable waits for an RCU grace period, tens of ms; doing it in one
        group-wide write would cost as much and could not be interrupted),
        then one write disables whatever else the instance has, ``rmdir``
        removes the instance (filters and triggers with it), and one
        ``-:GROUP/`` write removes every dynamic event of the group (more than
        :attr:`batch_remove_max` are removed one write each, interruptible;
        anything the kernel kept is then removed by name).  SIGTERM/SIGHUP
        that arrive meanwhile are deferred; Ctrl-C interrupts the cleanup with
        :class:`CleanupInterrupted`, which says how many probes are left for
        ``kprobes gc``.
        """
        if not self._open:
            return
        self._open = False
        self._closing = True
        fs = self.fs
        assert fs is not None
        errors: List[str] = []
        try:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            for p in list(self.probes.values()):
                if p.kind == "tracepoint":
                    continue  # cheap: the instance-wide write below
                try:
                    fs.write(f"{self.instance}/{p.rel}/enable", "0")
                except (OSError, KprobesError):
                    pass
            try:
                if fs.exists(f"{self.instance}/events/enable"):
                    fs.write(f"{self.instance}/events/enable", "0")
            except (OSError, KprobesError):
                pass  # rmdir disables them anyway
            for delay in (0.0, 0.01, 0.05, 0.1, 0.3, 0.5):
                # EBUSY while something still holds one of its files open: retry briefly
                time.sleep(delay)
                try:
                    remove_instance(fs, self.name)
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or delay == 0.5:
                        errors.append(f"instance {self.name}: {os.strerror(e.errno or 0)}")
                        break
            self._remove_comm_instance(fs)
            if self._comm_cleanup_failed:
                errors.append(f"instance {self._comm_cleanup_failed}: busy")
                self._comm_cleanup_failed = None
            self._comm_events = []
            if any(p.kind != "tracepoint" for p in self.probes.values()):
                left = self._remove_group(fs)
                if left:
                    errors.append(f"group {self.group}: {', '.join(left[:5])} still defined")
        except KeyboardInterrupt:
            left_n = self._count_left(fs)
            insts = [n for n in (self.name, self._comm_instance) if n and fs.exists(f"instances/{n}")]
            self._finish_close()
            raise CleanupInterrupted(left_n, self.group, insts) from None
        self._finish_close()
        if errors:
            raise KprobesError("cleanup was incomplete: " + "; ".join(errors), hint="run: kprobes gc")

    def _remove_group(self, fs: TraceFS) -> List[str]:
        """Remove every dynamic event of our group; returns the names the kernel kept."""
        left: List[str] = []
        dyn = [p for p in self.probes.values() if p.kind != "tracepoint"]
        if len(dyn) > self.batch_remove_max:
            # kprobes: each removal waits for a grace period; one write per event keeps
            # a long cleanup interruptible (the group write below takes the rest)
            target = "dynamic_events" if fs.exists("dynamic_events") else None
            for p in dyn:
                rel = target or ("kprobe_events" if p.kind == "kprobe" else "uprobe_events")
                try:
                    fs.write(rel, f"-:{p.group}/{p.event}\n", append=True)
                except (OSError, KprobesError):
                    pass
        # The kernel can refuse a removal with EBUSY for a moment after the instance
        # went away (its event files are released asynchronously): retry briefly.
        for delay in (0.0, 0.02, 0.05, 0.1, 0.2):
            time.sleep(delay)
            try:
                remove_group_events(fs, self.group)
                left = [e[3] for e in list_dynamic_events(fs) if e[2] == self.group]
            except (OSError, KprobesError) as e:
                left = [str(e)]
            if not left:
                break
        return left

    def _count_left(self, fs: TraceFS) -> int:
        try:
            return sum(1 for e in list_dynamic_events(fs) if e[2] == self.group)
        except (OSError, KprobesError):
            return len(self.probes)

    def _finish_close(self) -> None:
        self.probes.clear()
        self._restore_signals()
        self._closing = False
        try:
            atexit.unregister(self.close)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def _require_open(self) -> TraceFS:
        if not self._open or self.fs is None:
            raise KprobesError("the session is not open", hint="use 'with Session() as s:'")
        return self.fs

    # ------------------------------------------------------------------ probes

    @_guarded
    def add(
        self,
        definition: str,
        *,
        filter: Optional[str] = None,
        enable: bool = True,
        unsafe: bool = False,
    ) -> Probe:
        """Define a kprobe/kretprobe/uprobe/uretprobe in the session's group and enable it.

        ``definition`` is tracefs dynamic-event syntax (``p:NAME SYM ARGS``),
        optionally with friendly arguments (``arg2``, ``str(arg2)``,
        ``retval``, ``comm``), BTF names (``filename:string``,
        ``sk->__sk_common.skc_dport``) and uprobe symbols (``/bin/bash:readline``).
        A group in the definition is replaced by the session's own.
        ``filter`` is a kernel event filter (events.rst syntax).
        """
        fs = self._require_open()
        from ..prepare import prepare_definition

        prepared = prepare_definition(definition, arch=self.arch, features_source=fs, unsafe=unsafe)
        spec = prepared.spec
        label = spec.event or spec.default_event or self._fresh_label(spec.kind)
        event = label
        spec = replace_fields(spec, group=self.group, event=event)
        text = spec.render()
        types = dict(prepared.types)
        if self.event_comm and len(spec.args) < _MAX_ARGS and COMM_FIELD not in types:
            # the task's comm when the probe fired (not saved_cmdlines' later value)
            text += f" {COMM_FIELD}=$comm:string"
            types[COMM_FIELD] = "string"
        target = "kprobe_events" if spec.kind == "kprobe" else "uprobe_events"
        if not fs.exists(target):
            target = "dynamic_events" if fs.exists("dynamic_events") else target
        if not fs.exists(target):
            raise FeatureMissing(
                f"this kernel has no {target} (CONFIG_{spec.kind.upper()}_EVENTS is off)",
                hint="kprobes doctor lists what this kernel supports",
            )
        if label in self.probes:
            raise KprobesError(f"a probe named {label!r} already exists in this session",
                               hint="give each probe its own name: p:NAME ...")
        try:
            fs.write_definition(target, text)
        except KprobesError as e:
            from ..livecheck import explain_write_refusal

            raise explain_write_refusal(e, text, spec.kind, fs.root) from None
        probe = Probe(
            label=label, group=self.group, event=event, kind=spec.kind, definition=text,
            filter=filter, types=types,
        )  # fmt: skip
        self.probes[label] = probe
        self.ledger.add_probe(label, spec.kind, spec.is_return)
        try:
            self._arm(probe, enable)
        except BaseException:
            self.probes.pop(label, None)
            fs.write(target, f"-:{self.group}/{event}\n", append=True)
            raise
        return probe

    @_guarded
    def add_tracepoint(self, name: str, *, filter: Optional[str] = None, enable: bool = True) -> Probe:
        """Enable tracepoint ``SYS:EVENT`` (or ``SYS/EVENT``) in the session's instance."""
        fs = self._require_open()
        sys_, sep, ev = name.replace("/", ":").partition(":")
        if not sep or not fs.exists(f"{self.instance}/events/{sys_}/{ev}"):
            from ...errors import NotTraceableError

            near: List[str] = []
            if fs.exists(f"events/{sys_}"):
                import difflib

                near = difflib.get_close_matches(ev, fs.listdir(f"events/{sys_}"), n=5)
            raise NotTraceableError(
                name, "no such tracepoint", suggestions=[f"{sys_}:{n}" for n in near],
                hint="list them with: kprobes list 'tracepoint:*'",
            )  # fmt: skip
        probe = Probe(label=ev, group=sys_, event=ev, kind="tracepoint", filter=filter)
        if ev in self.probes:
            raise KprobesError(f"tracepoint {name!r} is already in this session")
        self.probes[ev] = probe
        self.ledger.add_probe(ev, "tracepoint")
        self._arm(probe, enable)
        self._track_comms(fs)
        return probe

    def _track_comms(self, fs: TraceFS) -> None:
        """Record ``task:task_rename``/``task:task_newtask`` in a second private instance (once).

        A tracepoint's record has no comm; these two events let the reader
        give each event the comm its task had then (:class:`~.reader.CommTracker`)
        rather than ``saved_cmdlines``' later one.  They get an instance of
        their own (named like a session, so ``gc`` reaps it after SIGKILL):
        they must not take room in, or add losses to, the session's buffer.
        Skipped when the kernel lacks them or ``event_comm`` is off.
        """
        if not self.event_comm or self._comm_instance is not None:
            return
        avail = [(g, e) for g, e in TASK_COMM_EVENTS if fs.exists(f"events/{g}/{e}")]
        if not avail:
            return
        name = current_owner().name
        inst = f"instances/{name}"
        try:
            os.mkdir(fs.path(inst))
        except OSError:
            return
        self._comm_instance = name
        try:
            clocks = fs.read(f"{inst}/trace_clock")
            if self.clock and self.clock in clocks.replace("[", " ").replace("]", " ").split():
                fs.write(f"{inst}/trace_clock", self.clock)
            fs.write(f"{inst}/buffer_size_kb", "256")
            for g, e in avail:
                fs.write(f"{inst}/events/{g}/{e}/enable", "1")
                self._comm_events.append(Probe(label=f"__{e}", group=g, event=e, kind="tracepoint"))
        except (OSError, KprobesError):
            self._comm_events = []
            self._remove_comm_instance(fs)

    def _remove_comm_instance(self, fs: TraceFS) -> None:
        name, self._comm_instance = self._comm_instance, None
        if name is None:
            return
        for delay in (0.0, 0.01, 0.05, 0.1, 0.3):
            time.sleep(delay)
            try:
                remove_instance(fs, name)
                return
            except OSError as e:
                if e.errno != errno.EBUSY:
                    break
        self._comm_cleanup_failed = name

    def _fresh_label(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}_{self._counter}"

    def _arm(self, probe: Probe, enable: bool) -> None:
        fs = self._require_open()
        rel = f"{self.instance}/{probe.rel}"
        if self.exclude_self:
            me = f"common_pid != {os.getpid()}"
            probe = replace_fields(probe, filter=f"({probe.filter}) && {me}" if probe.filter else me)
            self.probes[probe.label] = probe
        if probe.filter:
            try:
                fs.write(f"{rel}/filter", probe.filter)
            except OSError as e:
                raise KprobesError(
                    f"the kernel refused the filter {probe.filter!r} for {probe.label}: "
                    f"{os.strerror(e.errno or 0)}\n{self._filter_error(rel)}",
                    hint="filters compare fields with == != < <= > >= & ~ (glob for strings): "
                    "see Documentation/trace/events.rst",
                ) from None
        if enable:
            self.enable(probe.label)

    def _filter_error(self, rel: str) -> str:
        fs = self._require_open()
        try:
            return fs.read(f"{rel}/filter").strip()
        except KprobesError:
            return ""

    @_guarded
    def enable(self, label: str, on: bool = True) -> None:
        fs = self._require_open()
        p = self.probes[label]
        fs.write(f"{self.instance}/{p.rel}/enable", "1" if on else "0")

    @_guarded
    def remove(self, label: str) -> None:
        """Disable and delete one probe now (close() does this for all)."""
        fs = self._require_open()
        p = self.probes.pop(label)
        fs.write(f"{self.instance}/{p.rel}/enable", "0")
        if p.kind != "tracepoint":
            target = "dynamic_events" if fs.exists("dynamic_events") else (
                "kprobe_events" if p.kind == "kprobe" else "uprobe_events")
            fs.write(target, f"-:{p.group}/{p.event}\n", append=True)

    @_guarded
    def set_pids(self, pids: Sequence[int], *, follow_forks: bool = True) -> None:
        """Record only events of these pids (the instance's set_event_pid)."""
        fs = self._require_open()
        fs.write(f"{self.instance}/set_event_pid", " ".join(str(p) for p in pids))
        opt = f"{self.instance}/options/event-fork"
        if follow_forks and fs.exists(opt):
            fs.write(opt, "1")

    # ------------------------------------------------------------------ events

    @_guarded
    def _open_reader(self) -> EventReader:
        fs = self._require_open()
        probes = list(self.probes.values())
        if self._reader is None:
            from .reader import open_reader

            reader, why = open_reader(
                self.reader, fs, self.instance, probes, own_group=self.group, ledger=self.ledger
            )
            self.reader_kind = reader.kind
            self.reader_fallback = why
            if self._comm_instance is not None and self._comm_events:
                try:
                    tasks, _why = open_reader(reader.kind, fs, f"instances/{self._comm_instance}",
                                              self._comm_events, ledger=LossLedger(reader.kind))
                except (OSError, KprobesError):
                    pass  # comms stay saved_cmdlines'
                else:
                    tracker = CommTracker(p.event for p in probes if COMM_FIELD in p.types)
                    reader = TrackedReader(reader, tasks, tracker)
            self._reader = reader
        else:
            self._reader.update(probes)
        return self._reader

    def events(
        self,
        duration: Optional[float] = None,
        *,
        until: Optional[Callable[[], bool]] = None,
        poll_ms: int = 100,
    ) -> Iterator[TraceEvent]:
        """Yield events from the instance's buffer as they arrive.

        Stops after ``duration`` seconds, when ``until()`` returns True, when
        :meth:`stop` is called or on SIGINT/SIGTERM/SIGHUP (see
        :meth:`_on_signal`).  Then the instance stops recording (its
        ``tracing_on``; :meth:`events` turns it on again when called anew) and
        every per-CPU buffer is read until the kernel's own count of unread
        entries is zero, for at most :attr:`drain_seconds`
        (:attr:`signal_drain_seconds` after a signal): whatever happened before
        the stop is delivered.  After a signal the drain ends by raising
        :class:`KeyboardInterrupt` (SIGINT) or :class:`SessionInterrupted`.

        Lines/records that cannot be decoded are kept in :attr:`unparsed`
        (text) and counted in :attr:`ledger`, never dropped silently; the ledger
        is brought up to date when the iteration ends.
        """
        reader = self._open_reader()
        fs = self._require_open()
        if self._quiesced:
            self._set_recording(fs, True)
        deadline = None if duration is None else time.monotonic() + duration
        # a signal already taken (its exception lost in a finalizer): drain and raise it now
        self._stop = self._signalled is not None
        by_event = {(p.group, p.event): p.label for p in self.probes.values()}
        own = self.group
        batch: List[TraceEvent] = []
        pos = 0
        self._iterating = True
        try:
            while not (self._stop or (until is not None and until()) or (
                deadline is not None and time.monotonic() >= deadline
            )):
                timeout = poll_ms
                if deadline is not None:
                    timeout = max(0, min(poll_ms, int((deadline - time.monotonic()) * 1000)))
                reader.wait(timeout)
                self._tally(batch, pos, by_event, own)
                batch, pos = reader.read(), 0
                self._take_unparsed(reader)
                for ev in batch:
                    pos += 1
                    yield ev
            # Stop recording, then read until the kernel says nothing is left.
            self._set_recording(fs, False)
            limit = self.drain_seconds if self._signalled is None else self.signal_drain_seconds
            drain_end = time.monotonic() + limit
            while True:
                self._tally(batch, pos, by_event, own)
                batch, pos = reader.read(), 0
                self._take_unparsed(reader)
                for ev in batch:
                    pos += 1
                    yield ev
                if batch and time.monotonic() < drain_end:
                    continue
                self._tally(batch, pos, by_event, own)
                batch, pos = reader.flush(), 0
                for ev in batch:
                    pos += 1
                    yield ev
                self._take_unparsed(reader)
                if time.monotonic() >= drain_end or not self._quiesced or self._buffer_empty(fs):
                    break  # (still recording: "empty" can never be reached under load)
                time.sleep(0.002)  # a writer that passed tracing_on is still committing
        finally:
            self._iterating = False
            self._tally(batch, pos, by_event, own)
            self.refresh_ledger()
        self._raise_signalled()
        if self.loss_is_error and self.ledger.any_loss:
            raise EventsLost(self.ledger)

    def _set_recording(self, fs: TraceFS, on: bool) -> None:
        """The instance's ``tracing_on`` (only this instance's buffer)."""
        try:
            fs.write(f"{self.instance}/tracing_on", "1" if on else "0")
            self._quiesced = not on
        except (OSError, KprobesError):
            pass

    def _buffer_empty(self, fs: TraceFS) -> bool:
        """Whether every CPU's ``entries`` (committed, unread events) is zero."""
        stats = read_cpu_stats(fs, self.instance)
        return all(st.entries == 0 for st in stats.values())

    def _tally(
        self, batch: List[TraceEvent], n: int, by_event: Mapping[Tuple[str, str], str], own: str
    ) -> None:
        """Count the first ``n`` events of ``batch`` (those handed out) as delivered, per probe."""
        if not n:
            return
        counts = Counter((ev.group or own, ev.event) for ev in (batch if n == len(batch) else batch[:n]))
        note = self.ledger.note_delivered
        for (group, event), k in counts.items():
            note(by_event.get((group, event), event), k)
        batch.clear()

    def _take_unparsed(self, reader: EventReader) -> None:
        if reader.unparsed:
            self.unparsed.extend(reader.unparsed)
            reader.unparsed.clear()

    @_guarded
    def refresh_ledger(self) -> LossLedger:
        """Read the kernel's loss counters now (per-CPU stats, kprobe_profile) into :attr:`ledger`."""
        if not self._open or self.fs is None:
            return self.ledger
        fs = self.fs
        try:
            self.ledger.update_cpu_stats(read_cpu_stats(fs, self.instance))
            if any(p.kind != "tracepoint" for p in self.probes.values()):
                counters = read_probe_counters(fs, self.group)
                self.ledger.update_probe_counters(
                    counters, {p.label: p.event for p in self.probes.values()}
                )
        except (OSError, KprobesError):
            pass
        return self.ledger

    def stop(self) -> None:
        """Make :meth:`events`/:meth:`run` return after draining what is buffered."""
        self._stop = True

    def on(self, label: str) -> Callable[[Handler], Handler]:
        """Decorator: call the function for every event of probe ``label`` (``"*"``: all)."""

        def deco(fn: Handler) -> Handler:
            self._handlers.setdefault(label, []).append(fn)
            return fn

        return deco

    def run(self, duration: Optional[float] = None, *, until: Optional[Callable[[], bool]] = None) -> int:
        """Dispatch events to the :meth:`on` handlers; returns how many events were dispatched.

        An exception in a handler propagates (after which ``with`` cleans up).
        """
        n = 0
        by_event = {p.event: p.label for p in self.probes.values()}
        for ev in self.events(duration, until=until):
            label = by_event.get(ev.event, ev.event)
            for fn in self._handlers.get(label, []) + self._handlers.get("*", []):
                fn(ev)
            n += 1
        return n

    def label_of(self, ev: Union[TraceEvent, str]) -> str:
        name = ev if isinstance(ev, str) else ev.event
        for p in self.probes.values():
            if p.event == name:
                return p.label
        return name
