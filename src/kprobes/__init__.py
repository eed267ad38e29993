"""kprobes: dynamic interception of Linux kernel functions from pure Python.

    import kprobes
    with kprobes.Session() as s:
        s.add("p:myprobe do_sys_openat2 filename=+0(%si):string")
        for ev in s.events(duration=5):
            print(ev.comm, ev.fields["filename"])

    # a bpftrace program on the best engine here (auto: bpf, else tracefs)
    sel = kprobes.prepare_program('kprobe:vfs_read { @ = count(); }', engine="auto")
    print(sel.name, sel.reason)          # which engine and why
    sel.run(kprobes.RunOptions(duration=5), sys.stdout, sys.stderr)

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
    "prepare_program": "kprobes.engines.base",
    "PlanOptions": "kprobes.engines.base",
    "RunOptions": "kprobes.engines.lifecycle",
}

if TYPE_CHECKING:
    from .backends.tracefs.fs import TraceFS
    from .backends.tracefs.session import Probe, Session, SessionInterrupted
    from .engines.base import PlanOptions, prepare_program
    from .engines.lifecycle import RunOptions
    from .errors import KprobesError, ProbeSyntaxError
    from .events.model import TraceEvent

__all__ = [
    "KprobesError",
    "PlanOptions",
    "Probe",
    "ProbeSyntaxError",
    "RunOptions",
    "Session",
    "SessionInterrupted",
    "TraceEvent",
    "TraceFS",
    "prepare_program",
]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'kprobes' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)
