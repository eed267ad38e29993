"""``per_cpu/cpuN/stats``: counters of one CPU's ring buffer.

The file reads::

    entries: 0
    overrun: 0
    commit overrun: 0
    bytes: 0
    oldest event ts:     0.000000
    now ts:   232.732871
    dropped events: 0
    read events: 0

Timestamps are ``secs.usecs`` (or a bare count for counter clocks) and are
converted to int nanoseconds like the text parser does.
"""

from __future__ import annotations

from kprobes.events.format import EventFormatError

from .._record import dataclass

__all__ = ["CpuBufferStats", "parse_cpu_stats"]


@dataclass(frozen=True)
class CpuBufferStats:
    """Counters from ``per_cpu/cpuN/stats``; a counter missing on an old kernel is None."""

    entries: int
    overrun: int
    commit_overrun: int
    bytes: int
    oldest_event_ts_ns: int | None = None
    now_ts_ns: int | None = None
    dropped_events: int | None = None
    read_events: int | None = None

    @property
    def lost(self) -> int:
        """Events the reader will never see: overwritten + commit overruns + dropped."""
        return self.overrun + self.commit_overrun + (self.dropped_events or 0)


def _ts_ns(text: str) -> int:
    secs, dot, frac = text.partition(".")
    if not dot:
        return int(secs)
    frac = frac[:9]
    scale: int = 10 ** (9 - len(frac))
    return int(secs) * 1_000_000_000 + int(frac or "0") * scale


def parse_cpu_stats(text: str) -> CpuBufferStats:
    """Parse the contents of ``per_cpu/cpuN/stats``.

    Raises :class:`~kprobes.events.format.EventFormatError` when a required
    counter (entries, overrun, commit overrun, bytes) is missing or not a number.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()

    def convert(key: str, raw: str) -> int:
        try:
            return _ts_ns(raw) if key.endswith(" ts") else int(raw)
        except ValueError:
            raise EventFormatError(f"per-CPU stats: bad value {raw!r} for {key!r}") from None

    def required(key: str) -> int:
        raw = values.get(key)
        if raw is None:
            raise EventFormatError(f"per-CPU stats have no {key!r} line")
        return convert(key, raw)

    def optional(key: str) -> int | None:
        raw = values.get(key)
        return None if raw is None else convert(key, raw)

    return CpuBufferStats(
        entries=required("entries"),
        overrun=required("overrun"),
        commit_overrun=required("commit overrun"),
        bytes=required("bytes"),
        oldest_event_ts_ns=optional("oldest event ts"),
        now_ts_ns=optional("now ts"),
        dropped_events=optional("dropped events"),
        read_events=optional("read events"),
    )
