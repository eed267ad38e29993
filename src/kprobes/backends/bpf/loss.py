"""Loss counts of the BPF rings: "source lost N on CPU c", for the session's loss report.

The tracefs :class:`~kprobes.backends.tracefs.ledger.LossLedger` reads its counters
from tracefs files; BPF rings report theirs from user space as they read:

* ``bpf perf ring``: ``PERF_RECORD_LOST`` records of a ``PERF_EVENT_ARRAY`` CPU ring
  (the kernel counts samples it had no room for and writes the count once room
  returns), see :mod:`.perfring`;
* ``bpf ringbuf``: failed ``bpf_ringbuf_output``/``bpf_ringbuf_reserve`` calls, which
  the ring itself does not count: the BPF program must count them into a drop-counter
  map, read by :class:`.ringbuf.DropCounter`.

Anything with a ``note_lost(source, cpu, n)`` method (:class:`LossSink`) can take
these reports: :class:`LossCounts` is the plain implementation, and the session's
:class:`~kprobes.backends.tracefs.ledger.LossLedger` is one too (it keeps a
``LossCounts`` as ``external`` and adds it to its total, its report and its JSON).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Protocol, Tuple

__all__ = ["LossCounts", "LossSink", "PERF_RING", "RINGBUF"]

PERF_RING = "bpf perf ring"
RINGBUF = "bpf ringbuf"


class LossSink(Protocol):
    def note_lost(self, source: str, cpu: Optional[int], n: int) -> None:
        """``n`` more records of ``source`` were lost (on ``cpu``, None when unknown)."""


class LossCounts:
    """Lost-record counts by (source, CPU); CPU None means "not attributed to a CPU"."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Dict[Tuple[str, Optional[int]], int] = {}

    def __repr__(self) -> str:
        return f"<LossCounts {self.total} lost>"

    def note_lost(self, source: str, cpu: Optional[int], n: int) -> None:
        if n:
            key = (source, cpu)
            self.counts[key] = self.counts.get(key, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def by_source(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for (source, _cpu), n in self.counts.items():
            out[source] = out.get(source, 0) + n
        return out

    def lost(self, source: str, cpu: Optional[int] = None) -> int:
        """Lost by ``source`` (on ``cpu``; all CPUs when None)."""
        if cpu is not None:
            return self.counts.get((source, cpu), 0)
        return self.by_source().get(source, 0)

    def report(self) -> List[str]:
        """One line per source with a non-zero count: ``bpf perf ring lost 12 records (cpu0: 12)``."""
        lines: List[str] = []
        for source, n in sorted(self.by_source().items()):
            per = ", ".join(
                f"cpu{cpu}: {c}" for (s, cpu), c in sorted(
                    ((k, v) for k, v in self.counts.items() if k[0] == source and k[1] is not None),
                    key=lambda kv: kv[0][1] or 0,
                ) if s == source
            )
            lines.append(f"{source} lost {n} records" + (f" ({per})" if per else ""))
        return lines

    def to_json(self) -> Dict[str, object]:
        out: Dict[str, object] = {}
        for source, n in sorted(self.by_source().items()):
            cpus = {str(cpu): c for (s, cpu), c in sorted(self.counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or -1))
                    if s == source and cpu is not None}
            out[source] = {"lost": n, "cpus": cpus}
        return out
