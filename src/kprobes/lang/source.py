"""Source text, positions and spans for the bpftrace language front end.

A :class:`Span` uses bpftrace's (bison's) convention: lines and columns are
1-based and ``end_col`` is one past the last character, so the span of ``fake``
starting in column 12 is ``12-16``.  ``start``/``end`` are offsets into the
program text (Python string indices, i.e. code points; equal to byte offsets
for ASCII programs).
"""

from __future__ import annotations

import bisect

from .._record import dataclass

__all__ = ["Span", "Source"]


@dataclass(frozen=True)
class Span:
    """A region of the program text (see module docstring for the conventions)."""

    line: int
    col: int
    end_line: int
    end_col: int
    start: int
    end: int

    def to(self, other: Span) -> Span:
        """The span from the start of ``self`` to the end of ``other``."""
        return Span(self.line, self.col, other.end_line, other.end_col, self.start, other.end)

    @property
    def location(self) -> str:
        """``LINE:COL-COL`` for one-line spans, ``LINE-LINE`` otherwise (as bpftrace)."""
        if self.line < self.end_line:
            return f"{self.line}-{self.end_line}"
        return f"{self.line}:{self.col}-{self.end_col}"


class Source:
    """A program text with a line index, able to turn offsets into spans."""

    def __init__(self, text: str, filename: str = "stdin") -> None:
        self.text = text
        self.filename = filename
        self._line_starts: list[int] = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self._line_starts.append(i + 1)

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of ``offset``."""
        offset = max(0, min(offset, len(self.text)))
        idx = bisect.bisect_right(self._line_starts, offset) - 1
        return idx + 1, offset - self._line_starts[idx] + 1

    def span(self, start: int, end: int) -> Span:
        """The span covering ``text[start:end]`` (an empty range still gets width 1)."""
        if end <= start:
            end = start + 1
        line, col = self.position(start)
        # The end position is that of the last character, plus one column.
        end_line, end_col = self.position(end - 1)
        return Span(line, col, end_line, end_col + 1, start, end)

    def line_text(self, line: int) -> str:
        """The text of 1-based ``line`` without its newline ("" when out of range)."""
        if line < 1 or line > len(self._line_starts):
            return ""
        begin = self._line_starts[line - 1]
        stop = self.text.find("\n", begin)
        return self.text[begin:] if stop < 0 else self.text[begin:stop]
