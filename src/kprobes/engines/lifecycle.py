"""The lifecycle every engine shares: what happens around the engine's own event loop.

Order of things, as bpftrace does them: ``Attaching N probes...``; the engine
arms its probes; ``BEGIN`` runs; the ``-c`` command (started before arming,
held at a gate) is released; the engine's loop reads events while
``interval`` probes fire on time; the program ends on ``exit()``, when the
``-c`` command exits, after ``--duration`` seconds (ours: bpftrace has no such
option), on Ctrl-C, or on SIGTERM/SIGHUP (which sessions turn into
:class:`~kprobes.backends.tracefs.session.SessionInterrupted`, a
KeyboardInterrupt); the engine stops its probes and says what it lost;
``END`` runs and every map is printed; the exit status is 0.

An engine builds a :class:`Lifecycle` and calls, in order,
:meth:`Lifecycle.attaching`, its arming, :func:`run_main` with its loop,
its loss report (:meth:`Lifecycle.report_loss`), :meth:`Lifecycle.finish`.
"""

from __future__ import annotations

import os
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, TextIO, Tuple

from .._record import dataclass
from ..events.model import TraceEvent
from .evaluator import ExitProgram
from .runtime import own_comm

if TYPE_CHECKING:
    import subprocess

    from .evaluator import ProbeRunner, Runtime
    from .runtime import Output
    from .targets import Target

__all__ = ["RunOptions", "Timers", "UserProbes", "Lifecycle", "run_main", "synthetic"]


@dataclass
class RunOptions:
    """How to run: ``command`` (-c), ``pid`` (-p), ``duration`` (ours), output format."""

    command: Optional[str] = None
    pid: Optional[int] = None
    duration: Optional[float] = None
    fmt: str = "text"
    buffer_size_kb: int = 4096
    progress_every: int = 100
    #: -q: no ``Attaching N probes...`` (nor its JSON record)
    quiet: bool = False
    #: bpftrace's ``__BPFTRACE_NOTIFY_PROBES_ATTACHED`` line on stderr once every probe is armed
    notify_attached: bool = False
    #: (kprobes serve) called with the :class:`Lifecycle` once the probes are armed:
    #: ``lc.rt.maps`` are the live maps, ``lc.loss`` what the engine lost so far.
    observe: Optional[Callable[["Lifecycle"], None]] = None


def synthetic(name: str, ts: int) -> TraceEvent:
    """The event a Python-side probe (BEGIN, END, interval) runs on: this process at ``ts``."""
    pid = os.getpid()
    return TraceEvent(comm=own_comm(), pid=pid, cpu=0, timestamp_ns=ts, event=name, tgid=pid)


Entry = Tuple["ProbeRunner", "Target"]


class Timers:
    """interval probes: each fires every ``period`` ns from the program start (``due``: the next)."""

    def __init__(self, entries: List[Tuple[int, "ProbeRunner", "Target"]], start_ns: int) -> None:
        self.entries = list(entries)
        self.next = [start_ns + period for period, _, _ in self.entries]
        self.due: Optional[int] = min(self.next) if self.next else None

    def fire(self, now_ns: int) -> None:
        """Run every interval probe due at ``now_ns`` (CLOCK_MONOTONIC), in tick order."""
        while self.due is not None and now_ns >= self.due:
            i = self.next.index(self.due)
            period, runner, target = self.entries[i]
            tick = self.next[i]
            self.next[i] = tick + period
            self.due = min(self.next)
            runner(synthetic("interval", tick), target)

    def timeout(self, cap: float) -> float:
        """Seconds to wait before the next tick, at most ``cap``."""
        if self.due is None:
            return cap
        return min(cap, max(0.0, (self.due - time.monotonic_ns()) / 1e9))


@dataclass
class UserProbes:
    """The probes that run in Python whatever the engine: BEGIN, END, intervals."""

    begin: List[Entry]
    end: List[Entry]
    timers: List[Tuple[int, "ProbeRunner", "Target"]]

    @classmethod
    def empty(cls) -> "UserProbes":
        return cls([], [], [])


#: First words that are the shell's own (reserved words, builtins without a program).
_SHELL_WORDS = frozenset(["!", "{", "if", "for", "while", "until", "case", "time", "cd", "export",
                          "set", "unset", "ulimit", "umask", ".", "source", "eval", "alias",
                          "read", "wait", "trap", "exit", "shift", "local", "return"])


def _simple_command(cmd: str) -> bool:
    """``cmd`` is one command without shell operators (``exec`` may prefix it)."""
    import shlex

    if "\n" in cmd:
        return False
    try:
        lex = shlex.shlex(cmd, posix=True, punctuation_chars=";&|<>()")
        lex.whitespace_split = True
        words = list(lex)
    except ValueError:
        return False
    if not words or "=" in words[0] or words[0] in _SHELL_WORDS:  # VAR=x cmd, if, cd...
        return False
    return not any(w and all(c in ";&|<>()" for c in w) for w in words)


#: Characters after which a ``-c`` command needs its shell (expansions, globs, quoting).
_SHELL_SYNTAX = frozenset("$`*?[]{}~\\\"'#")


def _plain_argv(cmd: str) -> Optional[List[str]]:
    """``cmd`` as argv when it is plain words (no shell syntax at all), else None."""
    if any(c in _SHELL_SYNTAX for c in cmd) or not _simple_command(cmd):
        return None
    words = cmd.split()
    return words if words and "=" not in words[0] else None


def _wait_at_gate(pid: int, timeout: float = 2.0) -> None:
    """Until the gate's shell sleeps in its ``read`` of the gate pipe (its start-up done)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
            with open(f"/proc/{pid}/wchan", "rb") as fh:
                wchan = fh.read()
        except (OSError, IndexError):
            return
        if state == b"S" and (b"pipe" in wchan or wchan in (b"", b"0")):
            return
        if state == b"Z":
            return
        time.sleep(0.001)


def _kill_unreleased(proc: "subprocess.Popen[bytes]", gate: int) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    try:
        os.close(gate)
    except OSError:
        pass


class Lifecycle:
    """The engine-neutral parts of a run (see the module docstring)."""

    def __init__(self, opts: RunOptions, output: "Output", rt: "Runtime", user: UserProbes,
                 err: TextIO) -> None:
        self.opts = opts
        self.output = output
        self.rt = rt
        self.user = user
        self.err = err
        self.clock = Timers([], 0)
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self.gate: Optional[int] = None
        self.deadline: Optional[float] = None
        #: Called at :meth:`start`, once the ``-c`` command's pid (``cpid``) is known.
        self.on_start: List[Callable[[], None]] = []
        #: set by engines that count losses as they read: ``by_source() -> {source: n}``
        self.loss: Optional[Any] = None
        self._unreleased: Any = None

    def attaching(self, n: int) -> None:
        """bpftrace's ``Attaching N probes...`` (before anything is armed).

        The ``-c`` command is started here, held at its gate, as bpftrace forks
        it before attaching: its shell's start-up is over before any probe is armed.
        """
        self.spawn_command()
        if self.opts.quiet:
            return
        self.output.attached(n)
        self.output.flush()

    def start(self) -> None:
        """The probes are armed: the program's clock starts (``elapsed``, intervals, --duration)."""
        if self.opts.notify_attached:
            self.err.write("__BPFTRACE_NOTIFY_PROBES_ATTACHED\n")
            self.err.flush()
        self.rt.start_ns = time.monotonic_ns()
        self.clock = Timers(self.user.timers, self.rt.start_ns)
        if self.opts.duration:
            self.deadline = time.monotonic() + self.opts.duration
        self.spawn_command()
        for hook in self.on_start:
            hook()
        if self.opts.observe is not None:
            self.opts.observe(self)

    def run_begin(self) -> None:
        for runner, target in self.user.begin:
            runner(synthetic("BEGIN", time.monotonic_ns()), target)
        self.output.flush()  # BEGIN's output is out before any event (a reader may wait for it)

    def spawn_command(self) -> None:
        """Start ``-c CMD`` held at its gate: its pid is ``cpid`` from BEGIN on."""
        if not self.opts.command or self.proc is not None:
            return
        from ..backends.process import spawn_gated

        cmd = self.opts.command
        argv = _plain_argv(cmd)
        if argv is not None:  # the gate's shell exec()s it: cpid is the command's, as in bpftrace
            self.proc, self.gate = spawn_gated(argv)
        else:
            if _simple_command(cmd):
                cmd = "exec " + cmd  # its pid is the shell's: cpid is the command's
            self.proc, self.gate = spawn_gated(["sh", "-c", cmd])
        self.rt.cpid = self.proc.pid
        # never released (an error before the program started): killed, not let run
        self._unreleased = weakref.finalize(self, _kill_unreleased, self.proc, self.gate)
        _wait_at_gate(self.proc.pid)

    def release_command(self) -> None:
        """Let ``-c CMD`` run now that everything is armed (it exec()s only past its gate)."""
        if not self.opts.command:
            return
        self.spawn_command()
        gate, self.gate = self.gate, None
        if gate is not None:
            self._unreleased.detach()
            os.write(gate, b"go\n")
            os.close(gate)

    def command_exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def stop_command(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait()
        gate, self.gate = self.gate, None
        if gate is not None:  # never released (exit() in BEGIN): closed only once it is dead
            self._unreleased.detach()
            os.close(gate)

    def report_loss(self, lines: Iterable[str], lost: int = 0) -> None:
        """One stderr line per loss report (never hides the program's output); with
        ``-f json`` and ``lost`` events, bpftrace's ``lost_events`` record on the output too."""
        if lost > 0 and getattr(self.output, "json", False):
            from ..agg.json_output import lost_events_json

            self.output.write(lost_events_json(lost))
            self.output.flush()
        for ln in lines:
            self.err.write(ln.rstrip("\n") + "\n")
        self.err.flush()

    def finish(self, maps: Iterable[object]) -> int:
        """``END``, then every map printed; the exit status."""
        try:
            for runner, target in self.user.end:
                runner(synthetic("END", time.monotonic_ns()), target)
        except ExitProgram:
            pass
        self.output.exit_maps(list(maps))  # type: ignore[arg-type]
        self.output.flush()
        return 0


def run_main(lc: Lifecycle, loop: Callable[[Lifecycle], None],
             stop: Optional[Callable[[], None]] = None) -> None:
    """BEGIN, release -c, the engine's ``loop`` until the program ends; ``stop`` the probes.

    exit(), Ctrl-C and SIGTERM/SIGHUP (KeyboardInterrupt subclasses) end the loop
    quietly: END still runs and the maps are printed (bpftrace does the same).
    """
    from ..backends.signals import stop_on_signals

    lc.start()
    with stop_on_signals():  # where no session turns SIGTERM/SIGHUP into SessionInterrupted
        try:
            lc.run_begin()
            if not lc.rt.exit_requested:
                lc.release_command()
                loop(lc)
        except ExitProgram:
            pass
        except KeyboardInterrupt:
            pass
        finally:
            try:
                if stop is not None:
                    stop()
            finally:
                lc.stop_command()
