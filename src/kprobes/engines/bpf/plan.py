"""Planning a checked program for the BPF engine: targets, programs, maps, ``--dry-run``.

Each probe gives one eBPF program per attach provider it uses (``kprobe`` and
``kretprobe`` of one probe are two programs): a KPROBE program for
kprobe/kretprobe/uprobe/uretprobe, attached to every target (a wildcard's
many functions share it, through kprobe_multi where the kernel has it), one
TRACEPOINT program per tracepoint (field offsets differ between tracepoints),
or one PERF_EVENT program per ``profile:UNIT:N`` (attached to a cpu-clock
event on every online CPU; its context starts with the sampled ``pt_regs``).
``BEGIN``, ``END`` and ``interval`` probes run in Python (the evaluator of the
tracefs engine) against the kernel maps.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ..._record import dataclass, field
from ...bpf.asm import Program
from ...bpf.maps import MapType, ProgType, enum_name
from ...lang import ast
from ...lang.checked import CheckedProgram
from ..targets import (
    DEFAULT_BUDGET,
    Governor,
    SymbolSource,
    Target,
    btf_targets,
    expand,
    not_found,
)
from ..variant import interval_ns
from .codegen import ProbeCodegen
from .unit import Caps, Unit

__all__ = ["BpfOptions", "BpfProgram", "UserProbe", "BpfPlan", "plan_checked"]

_USER_SPACE = ("BEGIN", "END", "interval")
#: Providers whose targets come from BTF (functions, raw tracepoints).
_BTF_PROVIDERS = ("kfunc", "kretfunc", "rawtracepoint")


@dataclass
class BpfOptions:
    """Planning choices: governor (``unsafe``/``budget``), ``wildcard_filter`` (see the
    tracefs engine), ``arch`` (None: this machine's), ``pid`` (-p: only this process)."""

    unsafe: bool = False
    budget: int = DEFAULT_BUDGET
    wildcard_filter: Optional[str] = None
    arch: Optional[str] = None
    pid: int = 0


@dataclass
class BpfProgram:
    """One eBPF program: what it runs for and where it attaches."""

    probe_index: int
    provider: str
    targets: List[Target]
    target_base: int
    code: Program
    name: str

    #: kfunc/kretfunc: the BTF id of the function the program is loaded for.
    attach_btf_id: int = 0

    @property
    def prog_type(self) -> int:
        if self.provider in ("profile", "software", "hardware"):
            return ProgType.PERF_EVENT
        if self.provider in ("kfunc", "kretfunc"):
            return ProgType.TRACING
        if self.provider == "rawtracepoint":
            return ProgType.RAW_TRACEPOINT
        return ProgType.TRACEPOINT if self.provider == "tracepoint" else ProgType.KPROBE

    @property
    def retprobe(self) -> bool:
        return self.provider in ("kretprobe", "uretprobe")


@dataclass(frozen=True)
class UserProbe:
    """A probe that runs in Python: BEGIN, END or interval (``period_ns``)."""

    probe_index: int
    provider: str
    name: str
    period_ns: int = 0


@dataclass
class BpfPlan:
    """Everything :mod:`.lifecycle` needs, and the ``--dry-run`` text."""

    checked: CheckedProgram
    unit: Unit
    programs: List[BpfProgram] = field(default_factory=list)
    user: List[UserProbe] = field(default_factory=list)
    symbols: Optional[SymbolSource] = None
    pid: int = 0

    @property
    def attach_count(self) -> int:
        return sum(len(p.targets) for p in self.programs) + len(self.user)

    def describe(self) -> str:
        unit = self.unit
        lines: List[str] = ["engine: bpf"]
        for mp in unit.maps.values():
            s = mp.spec
            parts = ", ".join(f"str[{p.field}]" if p.kind == "str" else
                              f"stack {p.field}" if p.kind == "stack" else p.kind for p in mp.key.parts)
            lines.append(f"map {mp.display}: {enum_name(MapType, s.type)} key {s.key_size} B"
                         f"{' (' + parts + ')' if parts else ''}, value {s.value_size} B "
                         f"({mp.value.kind}), max {s.max_entries}")
        for aux in (unit.ring, unit.drops, unit.globals, unit.zeros, *unit.stacks.values()):
            if aux is not None:
                lines.append(f"map {aux.name}: {enum_name(MapType, aux.type)} key {aux.key_size} B, "
                             f"value {aux.value_size} B, max {aux.max_entries}")
        for rec in unit.records:
            what = rec.text if rec.text is not None else (f"@{rec.map}" if rec.map else "")
            lines.append(f"record {rec.id}: {rec.kind} {what!r} ({rec.size} B)" if what
                         else f"record {rec.id}: {rec.kind} ({rec.size} B)")
        for up in self.user:
            lines.append(f"probe {up.probe_index + 1} [{up.provider}]: runs in Python"
                         + (f" every {up.period_ns} ns" if up.period_ns else ""))
        for p in self.programs:
            n = len(p.targets)
            where = p.targets[0].name if n == 1 else f"{n} targets ({p.targets[0].name}, ...)"
            lines.append(f"probe {p.probe_index + 1} [{p.provider}] program {p.name}: {where}, "
                         f"{len(p.code)} instructions, stack {p.code.stack_depth} B")
            for ln in p.code.listing().rstrip("\n").split("\n"):
                lines.append("    " + ln)
        lines.append(f"attach: {self.attach_count} probes")
        return "\n".join(lines) + "\n"


def _btf_id(types: Optional[object], func: str) -> int:
    """The vmlinux BTF id of function ``func`` (0: unknown; the load then fails clearly)."""
    btf = getattr(types, "btf", None)
    if btf is None:
        return 0
    from ...btf import types as T

    ids = btf.ids_by_name(func, T.KIND_FUNC)
    return int(ids[0]) if ids else 0


def plan_checked(
    checked: CheckedProgram,
    *,
    arch: str,
    types: Optional[object],
    symbols: SymbolSource,
    caps: Caps,
    opts: BpfOptions,
) -> BpfPlan:
    """Expand targets and compile every probe (pure apart from reading symbol lists)."""
    from ..functions import refuse_unsafe

    refuse_unsafe(checked, opts.unsafe)
    unit = Unit(checked, caps)
    plan = BpfPlan(checked, unit, symbols=symbols, pid=opts.pid)
    gov = Governor(opts.budget, opts.unsafe)
    total, biggest = 0, ("", 0)
    work: List[Tuple[int, str, List[Target], Optional[Tuple[str, str]]]] = []
    for index, probe in enumerate(checked.program.probes):
        by_provider: Dict[str, List[Target]] = {}
        unmatched: List[ast.AttachPoint] = []
        users = len(plan.user)
        for ap in probe.attach_points:
            if ap.provider in _USER_SPACE:
                period = interval_ns(ap) if ap.provider == "interval" else 0
                plan.user.append(UserProbe(index, ap.provider, ap.name, period))
                continue
            if ap.provider == "profile":
                # one cpu-clock perf event per online CPU, all running this program
                by_provider.setdefault(ap.raw, []).append(
                    Target("profile", f"{ap.unit}:{ap.period}", ap.name, ""))
                continue
            if ap.provider in ("software", "hardware"):
                # one counting perf event per online CPU, sampled every ap.period events
                by_provider.setdefault(f"{ap.provider}:{ap.raw}", []).append(
                    Target(ap.provider, f"{ap.target}:{ap.period}", ap.name, ""))
                continue
            narrow = opts.wildcard_filter if ap.provider in ("kprobe", "kretprobe", "kfunc",
                                                              "kretfunc") else None
            if ap.provider in _BTF_PROVIDERS:
                targets = btf_targets(ap, getattr(types, "btf", None), symbols, narrow)
            else:
                targets = expand(ap, symbols, narrow)
            if not targets:
                unmatched.append(ap)
                continue
            if len(targets) > biggest[1]:
                biggest = (ap.raw, len(targets))
            by_provider.setdefault(ap.provider, []).extend(targets)
        # as bpftrace 0.17: a wildcard matching nothing is skipped when the probe has other
        # attach points (dcsnoop's lookup_fast.constprop.*); alone it is an error
        if unmatched and not by_provider and len(plan.user) == users:
            raise not_found(unmatched[0])
        summary = checked.probes[index]
        needs_target = bool({"probe", "func"} & set(summary.builtins))
        for provider, targets in by_provider.items():
            total += len(targets)
            if provider.startswith(("profile:", "p:")):
                work.append((index, "profile", targets, None))
            elif provider.startswith(("software:", "hardware:")):
                work.append((index, provider.partition(":")[0], targets, None))
            elif provider in _BTF_PROVIDERS:  # a program per function (its own BTF id)
                work += [(index, provider, [t], None) for t in targets]
            elif provider == "usdt":  # a program per site: its own argument locations
                work += [(index, provider, [t], None) for t in targets]
            elif provider == "tracepoint":
                for t in targets:
                    sys_, _, ev = t.place.partition(":")
                    work.append((index, provider, [t], (sys_, ev)))
            elif len(targets) > 1 and needs_target and not caps.cookie:
                work += [(index, provider, [t], None) for t in targets]
            else:
                work.append((index, provider, targets, None))
    gov.check(total, f"{biggest[0]} expands to {biggest[1]}" if biggest[1] > 1 else "")
    unit.size_target_maps(total)
    for index, provider, group, tp in work:
        if provider == "kprobe":
            from ..functions import refuse_override

            refuse_override(checked, index, [t.func for t in group])
        base = unit.add_targets([(t.name, t.func) for t in group])
        gen = ProbeCodegen(unit, index, provider, [(t.name, t.func) for t in group],
                           arch=arch, types=types, target_base=base, tracepoint=tp, pid=opts.pid,
                           usdt=group[0].usdt if provider == "usdt" else None)
        code = gen.compile()
        name = f"kp{index}_{provider[:2]}{len(plan.programs)}"
        btf_id = _btf_id(types, group[0].func) if provider in ("kfunc", "kretfunc") else 0
        plan.programs.append(BpfProgram(index, provider, group, base, code, name, btf_id))
    return plan
