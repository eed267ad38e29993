"""The plan of a checked program on the tracefs engine: what runs in the kernel, what in Python.

:func:`plan_program` turns a :class:`~kprobes.lang.CheckedProgram` into a
:class:`ProgramPlan`.  For every probe and every fetch family it uses
(kprobe/kretprobe, uprobe/uretprobe, tracepoint) there is one :class:`Variant`:

* ``fetches``: the fetchargs (see :mod:`.fetch`), shared by all its events;
* ``kernel_filter`` and ``python_conjuncts``: the predicate split by
  :mod:`.pushdown`;
* ``events``: one :class:`KernelEvent` per concrete place (a wildcard gives
  many), each with the exact definition written to the kernel.

``BEGIN``, ``END`` and ``interval`` probes have no kernel event: they are
Python timers of the event loop.  :meth:`ProgramPlan.describe` is the
``--dry-run`` text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from .._record import dataclass
from ..errors import KprobesError
from ..lang import ast
from ..lang.checked import CheckedProgram
from ..probes.arch import Arch
from .fetch import FAMILY, Fetch, FetchFinder, plan_error
from .pushdown import split_predicate
from .targets import (
    DEFAULT_BUDGET,
    Governor,
    SymbolSource,
    Target,
    expand,
    misplaced_uprobe,
    not_found,
)
from .variant import KernelEvent, Variant, interval_ns

if TYPE_CHECKING:
    from ..lang.source import Span
    from .provider import KernelTypeProvider

__all__ = ["KernelEvent", "Variant", "ProgramPlan", "plan_program", "interval_ns"]

_PREFIX = {"kprobe": "kp", "uprobe": "up", "usdt": "us", "tracepoint": "ep"}


@dataclass
class ProgramPlan:
    """Everything the runner needs, and what ``--dry-run`` prints."""

    checked: CheckedProgram
    variants: List[Variant]
    symbols: Optional[SymbolSource] = None
    #: --unsafe: uprobe offsets were not checked, and are not at arming either
    unsafe: bool = False

    @property
    def kernel_events(self) -> List[KernelEvent]:
        return [ev for v in self.variants for ev in v.events]

    @property
    def attach_count(self) -> int:
        """What bpftrace's ``Attaching N probes...`` counts: every place plus BEGIN/END/intervals."""
        return sum(len(v.events) if v.events else 1 for v in self.variants
                   if v.events or v.family in ("BEGIN", "END", "interval"))

    def describe(self) -> str:
        """The ``--dry-run`` report: kernel definitions, filters, and what runs in Python."""
        text = self.checked.program.text
        lines: List[str] = []
        for v in self.variants:
            probe = self.checked.program.probes[v.probe_index]
            head = ", ".join(ap.raw for ap in probe.attach_points)
            lines.append(f"probe {v.probe_index + 1} [{v.family}]: {head}")
            if v.family == "interval":
                lines.append(f"  python timer: every {v.period_ns} ns")
            elif v.family in ("BEGIN", "END"):
                lines.append(f"  python: runs {'before the first' if v.family == 'BEGIN' else 'after the last'} event")
            else:
                lines.append(f"  kernel events: {len(v.events)}")
                for ev in v.events[:20]:
                    what = ev.definition if ev.definition else f"tracepoint {ev.target.place}"
                    lines.append(f"    {what}")
                if len(v.events) > 20:
                    lines.append(f"    ... {len(v.events) - 20} more")
                lines.append(f"  kernel filter: {v.kernel_filter or '(none)'}")
                src = text[probe.span.start:probe.span.end] if probe.span else ""
                if v.family == "tracepoint" and not v.eprobe and "comm" in src:
                    lines.append("  comm: not in the record (no event probes on this kernel): saved_cmdlines, "
                                 "corrected in event order by task:task_rename/task_newtask")
            if v.python_conjuncts:
                parts = [text[c.span.start:c.span.end] for c in v.python_conjuncts]
                lines.append("  python predicate: " + " && ".join(parts))
            body = text[probe.body.span.start:probe.body.span.end]
            body = " ".join(body.split())
            lines.append(f"  python action: {body if len(body) <= 100 else body[:97] + '...'}")
        lines.append(f"attach: {self.attach_count} probes")
        return "\n".join(lines) + "\n"


def _definition(ev_name: str, target: Target, fetches: Tuple[Fetch, ...], eprobe: bool) -> str:
    args = " ".join(f.render() for f in fetches)
    if eprobe:
        sys_, _, event = target.place.partition(":")
        head = f"e:{ev_name} {sys_}.{event}"
    else:
        kind = "r" if target.provider in ("kretprobe", "uretprobe") else "p"
        head = f"{kind}:{ev_name} {target.place}"
    return f"{head} {args}".rstrip()


def plan_program(
    checked: CheckedProgram,
    *,
    arch: Arch,
    provider: Optional[KernelTypeProvider] = None,
    symbols: Optional[SymbolSource] = None,
    eprobes: bool = True,
    governor: Optional[Governor] = None,
    wildcard_filter: Optional[str] = None,
) -> ProgramPlan:
    """Plan ``checked`` for the tracefs engine (pure apart from reading symbol lists).

    ``eprobes`` says whether the kernel has event probes; ``wildcard_filter``
    (ours, for CI) intersects every kprobe wildcard with a second glob.
    """
    from .functions import refuse_unsafe

    gov = governor or Governor(DEFAULT_BUDGET)
    refuse_unsafe(checked, gov.unsafe)
    refuse_bpf_only(checked)
    src = symbols or SymbolSource()
    variants: List[Variant] = []
    total = 0
    biggest = ("", 0)
    for index, probe in enumerate(checked.program.probes):
        by_family: Dict[str, List[Target]] = {}
        order: List[str] = []
        unmatched: List[ast.AttachPoint] = []
        for ap in probe.attach_points:
            fam = FAMILY[ap.provider]
            if fam not in by_family:
                by_family[fam] = []
                order.append(fam)
            if fam in ("BEGIN", "END", "interval"):
                continue
            targets = expand(ap, src, wildcard_filter if fam == "kprobe" else None)
            if not targets:
                unmatched.append(ap)
                continue
            if fam == "uprobe" and not gov.unsafe:
                _check_placement(checked, ap)
            if len(targets) > biggest[1]:
                biggest = (ap.raw, len(targets))
            by_family[fam].extend(targets)
        # as bpftrace 0.17: a wildcard matching nothing is skipped when the probe has other
        # attach points (dcsnoop's lookup_fast.constprop.*); alone it is an error
        if unmatched and not any(by_family[f] or f in ("BEGIN", "END", "interval") for f in order):
            raise not_found(unmatched[0])
        for fam in order:
            if not by_family[fam] and fam not in ("BEGIN", "END", "interval"):
                continue
            variants.append(_variant(checked, index, probe, fam, by_family[fam], arch, provider, eprobes))
            total += len(by_family[fam])
    gov.check(total, f"{biggest[0]} expands to {biggest[1]}" if biggest[1] > 1 else "")
    _share_tracepoints(checked, variants)
    return ProgramPlan(checked, variants, src, unsafe=gov.unsafe)


def refuse_bpf_only(checked: CheckedProgram) -> None:
    """Stacks, ``profile``, ``curtask``/``rand``/``cgroup``, ``usym()`` run code in the
    kernel: the tracefs engine refuses them, pointing at the first use."""
    from ..lang.builtins import (
        BPF_ONLY_BUILTINS,
        BPF_ONLY_FUNCTIONS,
        BPF_ONLY_PROVIDER_REASONS,
        BPF_ONLY_PROVIDERS,
    )

    found: List[Tuple[str, Optional[Span]]] = []

    def visit(root: object) -> None:
        for node in ast.walk(root):
            if found:
                return
            if isinstance(node, ast.Builtin) and node.name in BPF_ONLY_BUILTINS:
                found.append((f"the {node.name} builtin needs", node.span))
            elif isinstance(node, ast.Call) and node.name in BPF_ONLY_FUNCTIONS:
                found.append((f"{node.name}() needs", node.span))

    for probe in checked.program.probes:
        for ap in probe.attach_points:
            if ap.provider in BPF_ONLY_PROVIDERS and not found:
                why = BPF_ONLY_PROVIDER_REASONS.get(ap.provider)
                if why is not None:
                    raise plan_error(checked.program, f"'{ap.provider}' probes need --engine bpf "
                                     f"({why})", ap.span)
                found.append((f"'{ap.provider}' probes need", ap.span))
        visit(probe.predicate)
        visit(probe.body)
    if found:
        what, span = found[0]
        why = next((v for k, v in _BPF_ONLY_WHY.items() if k in what.split("(")[0].split()),
                   "to walk stacks, sample CPUs or read the task")
        raise plan_error(checked.program, f"{what} --engine bpf (the tracefs engine has no "
                         f"in-kernel code {why})", span)


#: Why the tracefs engine refuses a BPF-only function (default: stacks, CPUs, the task).
_BPF_ONLY_WHY = {
    "signal": "to send a signal from the probed task (bpf_send_signal)",
    "override": "to change a function's return value (bpf_override_return)",
    "numaid": "to read the NUMA node (bpf_get_numa_node_id)",
    "macaddr": "to copy the bytes of an address",
    "buf": "to copy the bytes of a buffer",
    "join": "to walk an argv array",
}


def _check_placement(checked: CheckedProgram, ap: ast.AttachPoint) -> None:
    """``uprobe:PATH:FUNC+OFFS`` / ``uprobe:PATH:0xOFF`` must start an instruction."""
    bad = misplaced_uprobe(ap)
    if bad is None:
        return
    from ..lang.diagnostics import ERROR, Diagnostic, LangError
    from ..lang.source import Source

    program = checked.program
    raise LangError([Diagnostic(ERROR, bad.message, ap.span, (bad.hint,))],
                    Source(program.text, program.filename))


def _share_tracepoints(checked: CheckedProgram, variants: List[Variant]) -> None:
    """A tracepoint enabled for two probes gets one filter: keep none, check in Python."""
    from .pushdown import conjuncts

    seen: Dict[str, int] = {}
    for v in variants:
        for ev in v.events:
            if ev.kind == "tracepoint":
                seen[ev.event] = seen.get(ev.event, 0) + 1
    for v in variants:
        if not any(ev.kind == "tracepoint" and seen[ev.event] > 1 for ev in v.events):
            continue
        pred = checked.program.probes[v.probe_index].predicate
        v.kernel_filter = None
        v.python_conjuncts = tuple(conjuncts(pred)) if pred is not None else ()
        v.events = [KernelEvent(ev.event, ev.kind, ev.target, ev.definition, None, ev.types)
                    for ev in v.events]


def _variant(
    checked: CheckedProgram,
    index: int,
    probe: ast.Probe,
    fam: str,
    targets: List[Target],
    arch: Arch,
    provider: Optional[KernelTypeProvider],
    eprobes: bool,
) -> Variant:
    v = Variant(index, fam)
    if fam == "interval":
        ap = next(a for a in probe.attach_points if a.provider == "interval")
        v.period_ns = interval_ns(ap)
    tps = tuple(tuple(t.place.split(":", 1)) for t in targets if fam == "tracepoint")
    finder = FetchFinder(
        checked, probe, fam, arch, provider, eprobe=eprobes, tracepoints=tps  # type: ignore[arg-type]
    ).run()
    v.fetches = finder.fetch_list
    v.field_of = finder.field_of
    plain = fam == "tracepoint" and not eprobes
    v.eprobe = fam == "tracepoint" and eprobes and bool(v.fetches)
    if fam in ("BEGIN", "END", "interval"):
        v.python_conjuncts = (probe.predicate,) if probe.predicate is not None else ()
        return v
    by_name = {f.name: f for f in v.fetches}
    v.kernel_filter, v.python_conjuncts = split_predicate(
        checked, probe.predicate, v.field_of, by_name, plain_fields=plain
    )
    prefix = _PREFIX.get(fam, "kp")
    for j, t in enumerate(targets):
        fetches = v.fetches
        if t.usdt is not None:  # each USDT site has its own argument locations
            from .usdt import usdt_fetches

            fetches = usdt_fetches(fetches, t)
        types = tuple((f.name, f.type) for f in fetches)
        if fam == "tracepoint" and not v.eprobe:
            event = t.place.split(":", 1)[1]
            v.events.append(KernelEvent(event, "tracepoint", t, None, v.kernel_filter))
            continue
        name = f"{prefix}{index}_{j}"
        kind = "eprobe" if v.eprobe else fam
        if fam == "tracepoint" and v.eprobe is False:  # pragma: no cover - handled above
            raise KprobesError("internal: tracepoint without event probe")
        v.events.append(
            KernelEvent(name, kind, t, _definition(name, t, fetches, v.eprobe), v.kernel_filter, types)
        )
    return v
