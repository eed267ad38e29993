"""What every engine shares of a plan: the kernel events, a probe's variant, timers, errors.

Kept apart from :mod:`.plan` (the tracefs engine's planner, with its fetchargs and
predicate push-down) so that the BPF engine and the Python evaluator, which use
these, do not import the tracefs planner: start-up time counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from .._record import dataclass, field
from ..lang import ast
from ..lang.diagnostics import ERROR, Diagnostic, LangError
from ..lang.source import Source

if TYPE_CHECKING:
    from ..lang.source import Span
    from .fetch import Fetch
    from .targets import Target

__all__ = ["KernelEvent", "Variant", "interval_ns", "plan_error"]

_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000}


def plan_error(program: ast.Program, message: str, span: Optional[Span]) -> LangError:
    """A bpftrace-style diagnostic pointing into the program."""
    return LangError([Diagnostic(ERROR, message, span)], Source(program.text, program.filename))


@dataclass(frozen=True)
class KernelEvent:
    """One event armed in the kernel.

    ``kind`` is ``kprobe``/``uprobe`` (``definition`` for the probe's events
    file), ``eprobe`` (``definition`` for ``dynamic_events``) or
    ``tracepoint`` (the tracepoint ``SYS:EVENT`` itself, no definition).
    ``event`` is the name its events carry; ``target`` the place it probes.
    """

    event: str
    kind: str
    target: Target
    definition: Optional[str]
    filter: Optional[str]
    types: Tuple[Tuple[str, str], ...] = ()


@dataclass
class Variant:
    """One probe's share of one fetch family (see the module docstring)."""

    probe_index: int
    family: str
    fetches: Tuple[Fetch, ...] = ()
    field_of: Dict[int, str] = field(default_factory=dict)
    kernel_filter: Optional[str] = None
    python_conjuncts: Tuple[ast.Expr, ...] = ()
    events: List[KernelEvent] = field(default_factory=list)
    period_ns: int = 0
    eprobe: bool = False


def interval_ns(ap: ast.AttachPoint) -> int:
    """Period of ``interval:UNIT:N`` in nanoseconds (``hz``: N times a second)."""
    if ap.unit == "hz":
        return max(1, 1_000_000_000 // ap.period)
    return ap.period * _UNITS[ap.unit]
