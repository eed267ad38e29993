"""The loss ledger: every event a session did not deliver, counted where the kernel counts it.

Sources, per session:

* ``per_cpu/cpuN/stats`` of the session's instance (:mod:`kprobes.events.stats`):
  ``overrun`` (overwritten before the reader got to them), ``commit overrun``
  (nested writers wrapped the buffer) and ``dropped events`` (the buffer was
  full with ``overwrite`` off).  These are the kernel's own counts and the
  authoritative number of ring-buffer losses; they are taken as deltas from a
  baseline read when the session opened.
* the missed-events flag of the pages read from ``trace_pipe_raw``
  (RB_MISSED_EVENTS, with the count when RB_MISSED_STORED): the same
  ring-buffer losses seen from the reader's side;
* ``CPU:N [LOST M EVENTS]`` lines of the text path: the same again;
* records the page decoder could not decode and text lines the parser could
  not parse (delivered to nobody);
* events still in the buffer (``entries`` of the stats) when reading stopped:
  not lost by the kernel, but not delivered either (a later read would get them);

and per probe:

* ``kprobe_profile`` (global, read-only: ``event hits misses``): a kprobe's
  ``misses`` are hits the kprobe handler could not run (recursion, another
  kprobe running); for a kretprobe the column also holds the returns lost
  because all ``maxactive`` instances were in use (``r<N>:`` raises it).
  The lines carry no group, so they are matched to ours by position against
  ``kprobe_events``, which the kernel lists in the same order;
* ``uprobe_profile`` (``path event hits``): hits only.

The three ring-buffer views measure the same loss, so the session total takes
the largest of them and adds the per-probe misses and the undecodable records.
"""

from __future__ import annotations

import json
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

from ...errors import KprobesError
from ...events.format import EventFormatError
from ...events.stats import CpuBufferStats, parse_cpu_stats
from ..bpf.loss import LossCounts
from .fs import TraceFS

__all__ = [
    "CpuLoss",
    "EventsLost",
    "LossLedger",
    "ProbeCounters",
    "ProbeLoss",
    "parse_kprobe_profile",
    "parse_uprobe_profile",
    "read_cpu_stats",
    "read_probe_counters",
]

#: Exit status of ``kprobes trace --loss-is-error`` when events were lost.
EXIT_LOSS = 3


class EventsLost(KprobesError):
    """Events were lost and the session was asked to treat that as an error."""

    exit_code = EXIT_LOSS

    def __init__(self, ledger: LossLedger) -> None:
        self.ledger = ledger
        super().__init__(
            f"{ledger.total_lost} events were lost ({ledger.report().split(': ', 2)[-1]})",
            hint="a larger buffer (--buffer-size KB), fewer or filtered probes, or the raw reader help",
        )


class ProbeCounters(NamedTuple):
    """One probe's line of ``kprobe_profile``/``uprobe_profile`` (misses None for uprobes)."""

    event: str
    hits: int
    misses: Optional[int] = None


def parse_kprobe_profile(text: str) -> List[ProbeCounters]:
    """``kprobe_profile`` lines ``  EVENT HITS MISSES`` in file order (malformed lines skipped)."""
    out: List[ProbeCounters] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append(ProbeCounters(parts[0], int(parts[1]), int(parts[2])))
    return out


def parse_uprobe_profile(text: str) -> List[ProbeCounters]:
    """``uprobe_profile`` lines ``  PATH EVENT HITS`` in file order."""
    out: List[ProbeCounters] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1].isdigit():
            out.append(ProbeCounters(parts[-2], int(parts[-1])))
    return out


def _definition_names(text: str) -> List[Tuple[str, str]]:
    """(group, event) of each ``p:GROUP/EVENT ...`` line of kprobe_events/uprobe_events."""
    out: List[Tuple[str, str]] = []
    for line in text.splitlines():
        head = line.split(None, 1)[0] if line.strip() else ""
        _, colon, name = head.partition(":")
        if not colon:
            continue
        group, slash, event = name.partition("/")
        out.append((group, event) if slash else ("", group))
    return out


def read_probe_counters(fs: TraceFS, group: str) -> Dict[str, ProbeCounters]:
    """Kernel hit/miss counters of the dynamic events of ``group``, by event name.

    ``kprobe_profile``/``uprobe_profile`` print names without groups; the n-th
    profile line belongs to the n-th definition of ``kprobe_events``/``uprobe_events``
    (both walk the kernel's dyn_event list).  When the two files disagree (a
    definition was added or removed between the reads) they are read again
    once; if they still disagree nothing is returned for that kind.
    """
    out: Dict[str, ProbeCounters] = {}
    for defs_rel, prof_rel, parse in (
        ("kprobe_events", "kprobe_profile", parse_kprobe_profile),
        ("uprobe_events", "uprobe_profile", parse_uprobe_profile),
    ):
        if not fs.exists(defs_rel) or not fs.exists(prof_rel):
            continue
        for _attempt in range(2):
            try:
                names = _definition_names(fs.read(defs_rel))
                counters = parse(fs.read(prof_rel))
            except KprobesError:
                break
            if len(names) == len(counters) and all(n[1] == c.event for n, c in zip(names, counters)):
                for (grp, ev), c in zip(names, counters):
                    if grp == group:
                        out[ev] = c
                break
    return out


def read_cpu_stats(fs: TraceFS, instance: str) -> Dict[int, CpuBufferStats]:
    """``per_cpu/cpuN/stats`` of ``instance`` (a tracefs-relative path) by CPU number."""
    out: Dict[int, CpuBufferStats] = {}
    base = f"{instance}/per_cpu"
    for name in fs.listdir(base):
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue
        try:
            out[int(name[3:])] = parse_cpu_stats(fs.read(f"{base}/{name}/stats"))
        except (EventFormatError, KprobesError):
            continue
    return out


# Plain classes rather than dataclasses: @dataclass costs a code generation per class
# at import, which is most of the start-up time of a short session under emulation.


class CpuLoss:
    """Ring-buffer losses of one CPU since the session opened (kernel counters, deltas)."""

    __slots__ = ("overrun", "commit_overrun", "dropped")

    def __init__(self, overrun: int = 0, commit_overrun: int = 0, dropped: int = 0) -> None:
        self.overrun = overrun
        self.commit_overrun = commit_overrun
        self.dropped = dropped

    def __repr__(self) -> str:
        return f"CpuLoss(overrun={self.overrun}, commit_overrun={self.commit_overrun}, dropped={self.dropped})"

    @property
    def lost(self) -> int:
        return self.overrun + self.commit_overrun + self.dropped


class ProbeLoss:
    """What one probe delivered and what the kernel says about it.

    ``kernel_hits``/``misses`` come from the profile files (None when the
    kernel has no profile for this kind of event, e.g. tracepoints).
    """

    __slots__ = ("label", "kind", "is_return", "delivered", "kernel_hits", "misses")

    def __init__(self, label: str, kind: str, is_return: bool = False) -> None:
        self.label = label
        self.kind = kind
        self.is_return = is_return
        self.delivered = 0
        self.kernel_hits: Optional[int] = None
        self.misses: Optional[int] = None

    def __repr__(self) -> str:
        return f"ProbeLoss({self.label!r}, {self.kind!r}, delivered={self.delivered}, misses={self.misses})"

    def to_json(self) -> Dict[str, object]:
        return {
            "kind": self.kind, "delivered": self.delivered,
            "kernel_hits": self.kernel_hits, "misses": self.misses,
        }  # fmt: skip


class LossLedger:
    """Loss counters of one session; see the module docstring for what each one means."""

    def __init__(self, reader: str = "raw") -> None:
        self.reader = reader
        self.cpus: Dict[int, CpuLoss] = {}
        self.pages_flagged = 0
        self.page_missed_events = 0
        self.pages_flagged_uncounted = 0
        self.undecodable = 0
        self.unparsed_lines = 0
        self.text_lost = 0
        self.left_unread = 0
        self.probes: Dict[str, ProbeLoss] = {}
        self.stats_available = False
        self._baseline: Dict[int, CpuBufferStats] = {}
        #: losses reported from user space by other readers (BPF rings), see note_lost
        self.external = LossCounts()

    def __repr__(self) -> str:
        return f"<LossLedger {self.reader}: {self.total_lost} lost>"

    # ---------------------------------------------------------------- feeding

    def set_baseline(self, stats: Mapping[int, CpuBufferStats]) -> None:
        """Counters read when the session opened: later reads are reported as deltas."""
        self._baseline = dict(stats)

    def update_cpu_stats(self, stats: Mapping[int, CpuBufferStats]) -> None:
        """Set the ring-buffer losses from a fresh read of ``per_cpu/cpuN/stats``."""
        self.stats_available = bool(stats) or self.stats_available
        if stats:
            self.left_unread = sum(st.entries for st in stats.values())
        for cpu, now in stats.items():
            base = self._baseline.get(cpu)
            self.cpus[cpu] = CpuLoss(
                overrun=now.overrun - (base.overrun if base else 0),
                commit_overrun=now.commit_overrun - (base.commit_overrun if base else 0),
                dropped=(now.dropped_events or 0) - ((base.dropped_events or 0) if base else 0),
            )

    def note_page(self, missed: bool, missed_events: Optional[int], undecodable: int) -> None:
        """One page read from trace_pipe_raw (its missed-events flag and stored count)."""
        if missed:
            self.pages_flagged += 1
            if missed_events is None:
                self.pages_flagged_uncounted += 1
            else:
                self.page_missed_events += missed_events
        self.undecodable += undecodable

    def note_text(self, lost_by_cpu: Mapping[int, int], unparsed: int) -> None:
        """The text path's ``[LOST N EVENTS]`` totals (cumulative) and new unparsed lines."""
        self.text_lost = sum(lost_by_cpu.values())
        self.unparsed_lines += unparsed

    def note_lost(self, source: str, cpu: Optional[int], n: int) -> None:
        """``n`` records of ``source`` lost (on ``cpu``): the BPF rings' loss reports
        (:class:`kprobes.backends.bpf.loss.LossSink`)."""
        self.external.note_lost(source, cpu, n)

    def add_probe(self, label: str, kind: str, is_return: bool = False) -> None:
        self.probes.setdefault(label, ProbeLoss(label, kind, is_return))

    def note_delivered(self, label: str, n: int = 1) -> None:
        p = self.probes.get(label)
        if p is None:
            p = self.probes[label] = ProbeLoss(label, "unknown")
        p.delivered += n

    def update_probe_counters(self, counters: Mapping[str, ProbeCounters], event_of: Mapping[str, str]) -> None:
        """Kernel hits/misses from :func:`read_probe_counters`; ``event_of`` maps label → event name."""
        for label, p in self.probes.items():
            c = counters.get(event_of.get(label, label))
            if c is not None:
                p.kernel_hits = c.hits
                p.misses = c.misses

    # ---------------------------------------------------------------- totals

    @property
    def ring_buffer_lost(self) -> int:
        """Events lost in the ring buffer: the kernel's stats, or what readers saw if larger."""
        stats = sum(c.lost for c in self.cpus.values())
        # a flagged page whose count the kernel had no room to store lost at least one
        pages = self.page_missed_events + self.pages_flagged_uncounted
        return max(stats, pages, self.text_lost)

    @property
    def probe_misses(self) -> int:
        return sum(p.misses or 0 for p in self.probes.values())

    @property
    def total_lost(self) -> int:
        """Every event the session did not deliver, as far as the kernel lets us count."""
        return (self.ring_buffer_lost + self.probe_misses + self.undecodable + self.unparsed_lines
                + self.left_unread + self.external.total)

    @property
    def any_loss(self) -> bool:
        """True when any counter is non-zero (including a flagged page whose count was not stored)."""
        return self.total_lost > 0 or self.pages_flagged > 0

    # ---------------------------------------------------------------- output

    def report(self) -> str:
        """One sentence for stderr naming every non-zero cause, or "" when nothing was lost.

        ``kprobes: 4 events lost: ring buffer overrun on CPU 1 (raise --buffer-size)``
        """
        causes: List[str] = []
        rb = sum(c.lost for c in self.cpus.values())
        if rb:
            kinds = []
            for name, value in (
                ("overwritten", sum(c.overrun for c in self.cpus.values())),
                ("lost to nested writers", sum(c.commit_overrun for c in self.cpus.values())),
                ("dropped, buffer full", sum(c.dropped for c in self.cpus.values())),
            ):
                if value:
                    kinds.append(f"{value} {name}")
            cpus = [str(cpu) for cpu, c in sorted(self.cpus.items()) if c.lost]
            where = ("CPU " if len(cpus) == 1 else "CPUs ") + ", ".join(cpus)
            causes.append(f"ring buffer overrun on {where} ({', '.join(kinds)}; raise --buffer-size)")
        elif self.pages_flagged or self.text_lost:
            n = max(self.page_missed_events + self.pages_flagged_uncounted, self.text_lost)
            extra = (f", {self.pages_flagged_uncounted} pages with an unstored count"
                     if self.pages_flagged_uncounted else "")
            causes.append(f"ring buffer overrun seen by the reader ({n} events{extra}; "
                          "raise --buffer-size)")
        for p in self.probes.values():
            if p.misses:
                why = "maxactive exhausted or recursion" if p.is_return and p.kind == "kprobe" else "recursion"
                causes.append(f"probe {p.label}: kernel missed {p.misses} hits ({why})")
        if self.undecodable:
            causes.append(f"{self.undecodable} records could not be decoded")
        if self.unparsed_lines:
            causes.append(f"{self.unparsed_lines} trace lines could not be parsed")
        if self.left_unread:
            causes.append(f"{self.left_unread} events were still in the buffer when reading stopped")
        causes.extend(self.external.report())
        if not causes:
            return ""
        return f"kprobes: {self.total_lost} events lost: " + "; ".join(causes)

    def to_json(self) -> Dict[str, object]:
        """The ledger as one JSON-serialisable record."""
        return {
            "type": "summary",
            "reader": self.reader,
            "lost": self.total_lost,
            "ring_buffer": {
                "lost": self.ring_buffer_lost,
                "stats_available": self.stats_available,
                "cpus": {
                    str(cpu): {"overrun": c.overrun, "commit_overrun": c.commit_overrun, "dropped": c.dropped}
                    for cpu, c in sorted(self.cpus.items())
                },
                "pages_flagged": self.pages_flagged,
                "page_missed_events": self.page_missed_events,
                "text_lost": self.text_lost,
            },
            "undecodable": self.undecodable,
            "unparsed_lines": self.unparsed_lines,
            "left_unread": self.left_unread,
            "probes": {label: p.to_json() for label, p in self.probes.items()},
            **({"external": self.external.to_json()} if self.external.counts else {}),
        }

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

