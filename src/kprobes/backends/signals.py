"""SIGTERM/SIGHUP as an exception: :class:`SessionInterrupted` (shared by every session).

A run that owns kernel objects must end through its cleanup when it is told to
stop; the tracefs :class:`~kprobes.backends.tracefs.session.Session` turns the
signals into :class:`SessionInterrupted` itself (deferring them while it arms),
and :func:`stop_on_signals` does it for code with no such session (the BPF
engine's kernel objects are fds, dropped by the kernel anyway, but END and the
maps must still be printed).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Any, Dict, Iterator, Optional

__all__ = ["SessionInterrupted", "stop_on_signals"]


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


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`SessionInterrupted` where nobody
    else handles them (their handler is the default); the handlers are restored after."""
    old: Dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                old[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
