"""Offline validation: the verdict the kernel would give, in its own words.

``validate(text, kind, features)`` runs a model of the kernel's parser
(trace_kprobe.c / trace_uprobe.c / trace_probe.c, see :mod:`._parser`) with
the rules of one kernel (:class:`KernelFeatures`) and the registers of one
architecture (:mod:`.arch`).  A definition the kernel would refuse raises
:class:`kprobes.errors.ProbeSyntaxError` whose ``kernel_message`` is the
text the kernel writes to ``error_log`` (``"Invalid fetch argument"``...)
and whose ``position`` is where the ``error_log`` caret points, in
``text`` = the words of the definition joined by single spaces (what the
kernel's error_log shows after ``Command:``).

When the kernel refuses a line without logging anything (an unknown
prefix, a uprobe place without ``/``...), ``kernel_message`` is
:data:`SILENT_EINVAL` (``"Invalid argument"``, what ``write(2)`` reports)
and ``position`` is 0.

What cannot be known offline is not checked: whether a kernel symbol
exists or is traceable, BTF parameter names, whether an event name is
already taken.  Uprobe binaries are checked only when ``file_check`` is
given (it touches the filesystem, so it is the caller's choice).
"""

from __future__ import annotations

import os
import stat

from ._parser import FileCheck, kernel_registers, parse_definition
from .arch import Arch
from .features import KernelFeatures
from .kmsg import KERNEL_ERRORS, SILENT_E2BIG, SILENT_EINVAL
from .spec import KIND_KPROBE, DeleteSpec, ProbeSpec

__all__ = [
    "validate",
    "KernelFeatures",
    "KERNEL_ERRORS",
    "SILENT_EINVAL",
    "SILENT_E2BIG",
    "kernel_registers",
    "local_file_check",
]


def local_file_check(path: str) -> str | None:
    """A ``file_check`` for this machine: kern_path() + d_is_reg() via stat(2)."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return None if stat.S_ISREG(st.st_mode) else "not_regular"


def validate(
    text: str,
    kind: str = KIND_KPROBE,
    features: KernelFeatures | None = None,
    arch: str | Arch = "x86_64",
    *,
    file_check: FileCheck | None = None,
) -> ProbeSpec | DeleteSpec:
    """Check one definition as ``kind``'s kernel parser would; return the normalized spec.

    ``features`` defaults to :meth:`KernelFeatures.latest`.  The returned
    spec is what the kernel makes of the text: a uprobe header such as
    ``r5:grp/ev`` comes back without name (the kernel ignores it), ``p ...%return``
    as a return probe.
    """
    feats = features if features is not None else KernelFeatures.latest()
    return parse_definition(text, kind, feats, arch, strict=True, file_check=file_check)
