"""The engine seam: every engine plans a checked program for a kernel, describes it, runs it.

    from kprobes.engines.base import PlanOptions, prepare
    sel = prepare(text, "stdin", engine="auto")   # parse, check, choose, plan
    print(sel.describe())                          # what --dry-run prints
    sel.run(RunOptions(duration=5), sys.stdout, sys.stderr)

An engine is a module listed in :data:`ENGINES` whose ``ENGINE`` attribute
follows :class:`Engine`; the CLI names engines only by these strings, so adding
one is a new module and one line here.  ``auto`` picks ``bpf`` where the kernel
allows it and the program compiles, else ``tracefs``, and says why
(:attr:`Selection.reason`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Dict, List, Optional, Protocol, Sequence, TextIO

from .._record import dataclass, field
from ..errors import KprobesError

if TYPE_CHECKING:
    from ..backends.kernel import Kernel
    from ..lang.checked import CheckedProgram
    from ..probes.arch import Arch
    from .lifecycle import RunOptions
    from .provider import KernelTypeProvider
    from .targets import SymbolSource

__all__ = [
    "ENGINES", "AUTO", "Engine", "Plan", "PlanOptions", "Checked", "Selection", "get_engine",
    "check_program", "prepare", "prepare_program",
]  # fmt: skip

#: Engine name -> module defining ``ENGINE`` (imported only when chosen).
ENGINES: Dict[str, str] = {
    "bpf": "kprobes.engines.bpf",
    "tracefs": "kprobes.engines.tracefs_engine",
}
AUTO = "auto"
#: What ``auto`` tries, in order.
AUTO_ORDER = ("bpf", "tracefs")


@dataclass
class PlanOptions:
    """Planning choices shared by every engine: the governor (``unsafe``, ``budget``),
    ``wildcard_filter`` (a second glob every kprobe wildcard must also match), ``pid``
    (-p), ``arch`` (None: this machine's), ``eprobes`` (tracefs; None: detect), ``child``
    (a ``-c`` command will run: ``cpid`` needs one; None: not checked)."""

    unsafe: bool = False
    budget: Optional[int] = None
    wildcard_filter: Optional[str] = None
    pid: int = 0
    arch: Optional[str] = None
    eprobes: Optional[bool] = None
    child: Optional[bool] = None


@dataclass
class Checked:
    """A checked program with what planning it needs (shared by all engines)."""

    checked: "CheckedProgram"
    kernel: "Kernel"
    provider: "KernelTypeProvider"
    arch: "Arch"
    symbols: "SymbolSource"


class Plan(Protocol):
    """What an engine's planner returns."""

    checked: "CheckedProgram"

    @property
    def attach_count(self) -> int: ...

    def describe(self) -> str: ...


class Engine(Protocol):
    """One way to run bpftrace programs."""

    name: str

    def refusal(self, prog: Checked) -> Optional[str]:
        """Why this engine cannot run ``prog`` on its kernel (None: it can try)."""

    def plan(self, prog: Checked, opts: PlanOptions) -> Plan:
        """Plan ``prog`` (raises :class:`~kprobes.lang.LangError` for what it cannot run)."""

    def run(self, plan: Plan, opts: "RunOptions", out: TextIO, err: TextIO) -> int:
        """Run ``plan`` to its end; returns the exit status."""


def get_engine(name: str) -> Engine:
    """The engine called ``name`` (see :data:`ENGINES`)."""
    mod = ENGINES.get(name)
    if mod is None:
        raise KprobesError(f"no engine {name!r}", hint="engines: auto, " + ", ".join(sorted(ENGINES)))
    return importlib.import_module(mod).ENGINE  # type: ignore[no-any-return]


def check_program(
    text: str,
    filename: str = "stdin",
    *,
    kernel: Optional["Kernel"] = None,
    arch: Optional[str] = None,
    provider: Optional["KernelTypeProvider"] = None,
    symbols: Optional["SymbolSource"] = None,
    params: Sequence[str] = (),
    child: Optional[bool] = None,
) -> Checked:
    """Parse and type-check ``text`` for ``kernel`` (raises :class:`~kprobes.lang.LangError`);
    ``params``: the positional parameters ``$1``.. (``$#`` is their count)."""
    from ..backends.kernel import running_kernel
    from ..lang import check, parse_program
    from ..probes.arch import get_arch, host_arch
    from .provider import KernelTypeProvider
    from .targets import SymbolSource

    k = kernel if kernel is not None else running_kernel()
    a = get_arch(arch) if arch else host_arch()
    prov = provider if provider is not None else KernelTypeProvider(k.btf_or_none, k.tracefs_root)
    program = parse_program(text, filename)
    checked = check(program, prov, max_args=len(a.arg_regs), arch_name=a.name, params=params,
                    child=child)
    syms = symbols if symbols is not None else SymbolSource(lambda: k.symbols, tracefs_root=k.tracefs_root)
    return Checked(checked, k, prov, a, syms)


@dataclass
class Selection:
    """The chosen engine, its plan, and why (``reason``: why ``auto`` fell back; ``tried``)."""

    engine: Engine
    plan: Plan
    requested: str
    reason: str = ""
    notes: List[str] = field(default_factory=list)
    #: (auto) the checked program and options, to plan it again on the next engine
    #: when this one cannot arm it (:class:`~kprobes.errors.EngineArmError`)
    checked: Optional[Checked] = field(default=None, compare=False, repr=False)
    options: Optional[PlanOptions] = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def fallback_line(self) -> Optional[str]:
        """The one stderr line ``auto`` prints when it did not choose its first engine."""
        if self.requested == AUTO and self.reason:
            return f"kprobes: using the {self.name} engine: {self.reason}"
        return None

    def describe(self) -> str:
        """``--dry-run``: which engine and why, then the engine's plan."""
        if self.requested == AUTO:
            why = self.reason or "the kernel allows BPF and the program compiles"
            head = f"engine: {self.name} (auto: {why})\n"
        else:
            head = f"engine: {self.name} (--engine {self.name})\n"
        body = self.plan.describe()
        if body.startswith(f"engine: {self.name}\n"):
            body = body[len(f"engine: {self.name}\n"):]
        return head + body

    def run(self, opts: "RunOptions", out: TextIO, err: TextIO) -> int:
        """Run the plan; under ``auto``, an engine that cannot arm it (nothing ran yet)
        hands it to the next engine that can plan it, with one stderr line saying why."""
        from ..errors import EngineArmError
        from ..lang.diagnostics import LangError

        try:
            return self.engine.run(self.plan, opts, out, err)
        except EngineArmError as e:
            if self.requested != AUTO or self.checked is None or self.options is None:
                raise
            failed, error = self.engine.name, e
        later = AUTO_ORDER[AUTO_ORDER.index(failed) + 1:] if failed in AUTO_ORDER else []
        for name in later:
            eng = get_engine(name)
            if eng.refusal(self.checked) is not None:
                continue
            try:
                plan = eng.plan(self.checked, self.options)
            except LangError:
                continue
            err.write(f"kprobes: using the {name} engine: the {failed} engine could not arm the "
                      f"program: {_first_line(error)}\n")
            err.flush()
            from .._record import replace

            # "Attaching N probes..." was printed already
            return eng.run(plan, replace(opts, quiet=True), out, err)
        raise error


def _first_line(e: Exception) -> str:
    from ..lang.diagnostics import LangError

    if isinstance(e, LangError) and e.diagnostics:
        return e.diagnostics[0].message
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def choose(prog: Checked, opts: PlanOptions, engine: str = AUTO) -> Selection:
    """Plan ``prog`` on ``engine`` (``auto``: the first of :data:`AUTO_ORDER` that can run it)."""
    from ..lang.diagnostics import LangError

    if engine != AUTO:
        eng = get_engine(engine)
        return Selection(eng, eng.plan(prog, opts), engine)
    reasons: List[str] = []
    last: Optional[Exception] = None
    for name in AUTO_ORDER:
        eng = get_engine(name)
        why = eng.refusal(prog)
        if why is not None:
            reasons.append(why)
            continue
        try:
            plan = eng.plan(prog, opts)
        except LangError as e:  # the program uses what this engine cannot do
            if name == AUTO_ORDER[-1] and last is None and reasons:
                # an earlier engine was refused by the kernel: say why, next to this error
                raise KprobesError("no engine can run this program here: " + "; ".join(
                    reasons + [f"the {name} engine: {_first_line(e)}"]),
                    hint="see kprobes doctor") from None
            if name == AUTO_ORDER[-1]:
                raise (last if last is not None else e) from None
            reasons.append(f"the {name} engine cannot run this program: {_first_line(e)}")
            last = e
            continue
        return Selection(eng, plan, AUTO, reason="; ".join(reasons), checked=prog, options=opts)
    raise KprobesError("no engine can run this program here: " + "; ".join(reasons),
                       hint="see kprobes doctor")


def prepare(
    text: str,
    filename: str = "stdin",
    *,
    engine: str = AUTO,
    opts: Optional[PlanOptions] = None,
    kernel: Optional["Kernel"] = None,
    params: Sequence[str] = (),
) -> Selection:
    """Parse, check, choose an engine and plan (no kernel object is made).

    ``params`` are the program's positional parameters (``bpftrace PROG a b``:
    ``("a", "b")``): ``$1`` is ``a`` (an integer when it reads as one, else
    usable as ``str($1)``), missing ones are 0 / "", ``$#`` is their count.
    """
    o = opts if opts is not None else PlanOptions()
    if engine != AUTO and engine not in ENGINES:
        get_engine(engine)  # raises
    prog = check_program(text, filename, kernel=kernel, arch=o.arch, params=params, child=o.child)
    return choose(prog, o, engine)


#: :func:`prepare` under the name :mod:`kprobes` exports it as.
prepare_program = prepare
