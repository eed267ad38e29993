"""Diagnostics and the one exception the language front end raises.

Rendering follows bpftrace's ``Log::log_with_location``::

    stdin:1:12-16: ERROR: Unknown identifier: 'fake'
    kprobe:f { fake }
               ~~~~

A span over several lines prints only ``FILE:LINE-LINE: ERROR: message``.
Tabs in the source line are shown as four spaces (and four markers), like
bpftrace does.  Hints follow on ``HINT:`` lines.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._record import dataclass
from ..errors import KprobesError
from .source import Source, Span

__all__ = ["Diagnostic", "LangError", "render_diagnostic", "render_diagnostics", "ERROR", "WARNING",
           "close_matches"]

ERROR = "ERROR"
WARNING = "WARNING"


@dataclass(frozen=True)
class Diagnostic:
    """One message about one span; ``severity`` is ``"ERROR"`` or ``"WARNING"``."""

    severity: str
    message: str
    span: Span | None
    hints: tuple[str, ...] = ()


def render_diagnostic(diag: Diagnostic, source: Source) -> str:
    """The bpftrace-style text for ``diag`` (no trailing newline)."""
    lines: list[str] = []
    span = diag.span
    prefix = f"{source.filename}:" if source.filename else ""
    if span is None:
        lines.append(f"{diag.severity}: {diag.message}")
    elif span.line < span.end_line:
        lines.append(f"{prefix}{span.location}: {diag.severity}: {diag.message}")
    else:
        lines.append(f"{prefix}{span.location}: {diag.severity}: {diag.message}")
        src = source.line_text(span.line)
        if src:
            lines.append(src.replace("\t", "    "))
            marks: list[str] = []
            for x, ch in enumerate(src):
                if x >= span.end_col - 1:
                    break
                mark = " " if x < span.col - 1 else "~"
                marks.append(mark * 4 if ch == "\t" else mark)
            lines.append("".join(marks))
    for hint in diag.hints:
        lines.append(f"HINT: {hint}")
    return "\n".join(lines)


def render_diagnostics(diags: Sequence[Diagnostic], source: Source) -> str:
    """All of ``diags``, one block after the other."""
    return "\n".join(render_diagnostic(d, source) for d in diags)


class LangError(KprobesError):
    """A bpftrace program that does not parse or does not type-check.

    ``diagnostics`` holds every error found (and any warnings seen before
    them); ``source`` the program text they point into.  ``message`` is the
    rendered text, exactly as bpftrace would print it.
    """

    exit_code = 1

    def __init__(
        self,
        diagnostics: Sequence[Diagnostic],
        source: Source,
        *,
        hint: str | None = None,
    ) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        self.source = source
        super().__init__(render_diagnostics(self.diagnostics, source), hint=hint)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """Only the diagnostics of severity ERROR."""
        return tuple(d for d in self.diagnostics if d.severity == ERROR)


def close_matches(word: str, candidates: Sequence[str]) -> list[str]:
    """The closest candidate to a misspelt ``word`` (at most one), for a "did you mean" hint.

    :mod:`difflib` is imported here, on the error path: importing it costs more than
    checking a one-liner.
    """
    import difflib

    return difflib.get_close_matches(word, candidates, n=1)

