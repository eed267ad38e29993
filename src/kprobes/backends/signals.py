"""SIGTERM/SIGHUP as an exception: :class:`SessionInterrupted` (shared by every session).

A run that owns kernel objects must end through its cleanup when it is told to
stop; the tracefs :class:`~kprobes.backends.tracefs.session.Session` turns the
signals into :class:`SessionInterrupted` itself (deferring them while it arms),
and :func:`stop_on_signals` does it for code with no such session (the BPF
engine's kernel objects are fds, dropped by the kernel anyway, but END and the
maps must still be printed).

A signal handler's exception is raised in whatever Python code runs when the
signal arrives.  When that code is a finalizer (``__del__``, a generator closed
by the garbage collector, a ``weakref.finalize`` callback) Python cannot raise
it: it goes to :data:`sys.unraisablehook` and is lost, and a loop that waits for
it would run on.  :func:`listen_swallowed` (or :func:`watch_swallowed` for a
block) catches exactly those: each listener hears the signal number, so the
loop stops on a flag instead.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, Dict, Iterator, List, Optional

__all__ = ["SessionInterrupted", "listen_swallowed", "stop_on_signals", "swallowed_stop",
           "unlisten_swallowed", "watch_swallowed"]


class SessionInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: the session stops, cleans up, and the program should exit.

    A :class:`KeyboardInterrupt` (not a :class:`~kprobes.errors.KprobesError`,
    not an :class:`Exception`), so that no ``except Exception``/``except
    KprobesError`` on the way can swallow it, and code that already stops on
    Ctrl-C stops on these signals the same way.  ``exit_code`` is 128 + signal.
    """

    hint: Optional[str] = None

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.message = f"interrupted by {signal.Signals(signum).name}; probes removed"
        super().__init__(self.message)
        self.exit_code = 128 + signum

    def format(self) -> str:
        return self.message


def _raise(signum: int, _frame: Optional[FrameType]) -> None:
    raise SessionInterrupted(signum)


_listeners: List[Callable[[int], None]] = []
_previous_hook: Optional[Callable[[Any], Any]] = None


def _unraisable(unraisable: Any) -> None:
    """sys.unraisablehook: a swallowed stop (KeyboardInterrupt) goes to the listeners."""
    exc_type = getattr(unraisable, "exc_type", None)
    if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) and _listeners:
        signum = getattr(unraisable.exc_value, "signum", signal.SIGINT)
        for listener in list(_listeners):
            listener(int(signum))
        return
    hook = _previous_hook if _previous_hook is not _unraisable else None
    (hook or sys.__unraisablehook__)(unraisable)


def listen_swallowed(listener: Callable[[int], None]) -> None:
    """From now on, a stop signal's exception that Python had to swallow calls ``listener(signum)``."""
    global _previous_hook
    if not _listeners and sys.unraisablehook is not _unraisable:
        _previous_hook = sys.unraisablehook
        sys.unraisablehook = _unraisable
    _listeners.append(listener)


def unlisten_swallowed(listener: Callable[[int], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)
    global _previous_hook
    if not _listeners:
        if sys.unraisablehook is _unraisable:  # (somebody may have replaced it meanwhile)
            sys.unraisablehook = _previous_hook or sys.__unraisablehook__
            _previous_hook = None


@contextmanager
def watch_swallowed(listener: Callable[[int], None]) -> Iterator[None]:
    """:func:`listen_swallowed` for the block."""
    listen_swallowed(listener)
    try:
        yield
    finally:
        unlisten_swallowed(listener)


_swallowed: List[int] = []


def swallowed_stop() -> Optional[int]:
    """The stop signal that :func:`stop_on_signals` saw swallowed (None: none)."""
    return _swallowed[0] if _swallowed else None


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`SessionInterrupted` where nobody
    else handles them (their handler is the default); the handlers are restored after.

    A loop inside the block must also stop when :func:`swallowed_stop` says so."""
    old: Dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                old[sig] = signal.signal(sig, _raise)
    del _swallowed[:]
    try:
        with watch_swallowed(_swallowed.append):
            yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
