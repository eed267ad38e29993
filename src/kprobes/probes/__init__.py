"""Dynamic-event definitions (kprobe/kretprobe/uprobe text): model, parser, validator.

Pure code: text in, objects out.  ``parse``/``render`` handle the grammar,
``validate`` gives one kernel's verdict with its own error text,
``expand_friendly`` turns ``arg1``/``str(arg1)``/``retval`` into tracefs syntax.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .features import KernelFeatures
    from .friendly import expand_friendly
    from .spec import DeleteSpec, FetchArg, ProbeSpec, parse, render
    from .validate import validate

# Imported on first use: ``from kprobes.probes.arch import ...`` (the bpftrace
# engines) must not pay for the definition grammar and its dataclasses.
_LAZY = {
    "KernelFeatures": "features", "expand_friendly": "friendly", "DeleteSpec": "spec",
    "FetchArg": "spec", "ProbeSpec": "spec", "parse": "spec", "render": "spec",
    "validate": "validate",
}

__all__ = [
    "parse",
    "render",
    "validate",
    "ProbeSpec",
    "DeleteSpec",
    "FetchArg",
    "KernelFeatures",
    "expand_friendly",
]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'kprobes.probes' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value
