"""Dynamic-event definitions (kprobe/kretprobe/uprobe text): model, parser, validator.

Pure code: text in, objects out.  ``parse``/``render`` handle the grammar,
``validate`` gives one kernel's verdict with its own error text,
``expand_friendly`` turns ``arg1``/``str(arg1)``/``retval`` into tracefs syntax.
"""

from __future__ import annotations

from .features import KernelFeatures
from .friendly import expand_friendly
from .spec import DeleteSpec, FetchArg, ProbeSpec, parse, render
from .validate import validate

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
