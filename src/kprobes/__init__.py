"""kprobes: dynamic interception of Linux kernel functions from pure Python.

    import kprobes
    with kprobes.Session() as s:
        s.add("p:myprobe do_sys_openat2 filename=+0(%si):string")
        for ev in s.events(duration=5):
            print(ev.comm, ev.fields["filename"])

Names are imported lazily: ``import kprobes`` costs almost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Session": "kprobes.backends.tracefs.session",
    "Probe": "kprobes.backends.tracefs.session",
    "SessionInterrupted": "kprobes.backends.tracefs.session",
    "TraceFS": "kprobes.backends.tracefs.fs",
    "TraceEvent": "kprobes.events.model",
    "KprobesError": "kprobes.errors",
    "ProbeSyntaxError": "kprobes.errors",
}

if TYPE_CHECKING:
    from .backends.tracefs.fs import TraceFS
    from .backends.tracefs.session import Probe, Session, SessionInterrupted
    from .errors import KprobesError, ProbeSyntaxError
    from .events.model import TraceEvent

__all__ = [
    "KprobesError",
    "Probe",
    "ProbeSyntaxError",
    "Session",
    "SessionInterrupted",
    "TraceEvent",
    "TraceFS",
]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'kprobes' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)
