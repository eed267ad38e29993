"""Running a planned program: arm its events in a Session, evaluate events, time the timers.

Order of things, as bpftrace does them: ``Attaching N probes...``; every
kernel event is armed (in batches, with a progress line on stderr for large
wildcards); ``BEGIN`` runs; the ``-c`` command is released; events are
evaluated in the order the kernel recorded them while ``interval`` probes
fire on time; the program ends on ``exit()``, when the ``-c`` command exits,
after ``--duration`` seconds (ours: bpftrace has no such option) or on Ctrl-C;
``END`` runs and every map is printed.

``interval`` probes fire from the event loop: before an event whose timestamp
is past the next tick (the instance's clock is CLOCK_MONOTONIC, the clock of
``time.monotonic_ns()``), or when the loop wakes up with no event (at least
every 100 ms).  So an interval sees every event that happened before its tick
that the kernel had handed over by then.

Event probes (``e:`` in ``dynamic_events``) are armed by :func:`add_eprobe`,
a small wrapper over the Session's public state: the Session has no method
for them, and its cleanup (disable, remove the group's dynamic events)
already covers them.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, TextIO, Tuple

from ..backends.process import spawn_gated
from ..errors import FeatureMissing, KprobesError
from ..events.cmdlines import IDLE_COMM
from .evaluator import ExitProgram, ProbeRunner, Runtime, compile_variants
from .lifecycle import Lifecycle, RunOptions, UserProbes, run_main
from .plan import KernelEvent, ProgramPlan
from .runtime import Output, make_maps
from .targets import Target, explain_refusal

if TYPE_CHECKING:
    from ..backends.tracefs.session import Session

__all__ = ["RunOptions", "run_plan", "add_eprobe", "spawn_gated"]

def add_eprobe(session: object, definition: str, *, filter: Optional[str] = None) -> object:
    """Arm ``e:NAME SYS.EVENT ARGS`` in ``session``'s group and instance (see module docstring)."""
    from ..backends.tracefs.session import Probe, Session

    assert isinstance(session, Session)
    fs = session.fs
    if fs is None:
        raise KprobesError("the session is not open")
    head, _, rest = definition.partition(" ")
    name = head.split(":", 1)[1]
    text = f"e:{session.group}/{name} {rest}"
    fs.write_definition("dynamic_events", text)
    types: Dict[str, str] = {}
    for word in rest.split()[1:]:
        fname, _, fetch = word.partition("=")
        types[fname] = fetch.rpartition(":")[2]
    flt = filter
    if session.exclude_self:
        me = f"common_pid != {os.getpid()}"
        flt = f"({flt}) && {me}" if flt else me
    probe = Probe(label=name, group=session.group, event=name, kind="eprobe",
                  definition=text, filter=flt, types=types)
    session.probes[name] = probe
    rel = f"{session.instance}/{probe.rel}"
    if flt:
        try:
            fs.write(f"{rel}/filter", flt)
        except OSError as e:
            raise KprobesError(
                f"the kernel refused the filter {flt!r} for {name}: {os.strerror(e.errno or 0)}"
            ) from None
    session.enable(name)
    return probe


def _arm(session: object, ev: KernelEvent, unsafe: bool = False) -> None:
    from ..backends.tracefs.session import Session

    assert isinstance(session, Session)
    with session.critical():  # a signal waits until this event is armed (and cleanable)
        _arm_one(session, ev, unsafe)


def _arm_one(session: object, ev: KernelEvent, unsafe: bool = False) -> None:
    from ..backends.tracefs.session import Session

    assert isinstance(session, Session)
    if ev.kind == "tracepoint":
        if ev.event not in session.probes:
            session.add_tracepoint(ev.target.place, filter=ev.filter)
    elif ev.kind == "eprobe":
        assert ev.definition is not None
        add_eprobe(session, ev.definition, filter=ev.filter)
    else:
        assert ev.definition is not None
        # --unsafe: the plan did not check uprobe placement, nor may the session; a USDT
        # site is the compiler's own nop: an instruction start even in a stripped binary
        if unsafe or ev.kind == "usdt":
            session.add(ev.definition, filter=ev.filter, unsafe=True)
        else:
            session.add(ev.definition, filter=ev.filter)


def run_plan(
    plan: ProgramPlan,
    opts: RunOptions,
    out: TextIO,
    err: TextIO,
    *,
    session_factory: Optional[Callable[[], object]] = None,
) -> int:
    """Run ``plan`` to its end; returns the exit status (see :mod:`.lifecycle`)."""
    from ..backends.tracefs.session import Session

    checked = plan.checked
    output = Output(out, opts.fmt)
    rt = Runtime(make_maps(checked), output, time.monotonic_ns())
    runners = compile_variants(checked, plan.variants, rt)
    user = UserProbes.empty()
    table: Dict[str, List[Tuple[ProbeRunner, Target]]] = {}
    for v, runner in zip(plan.variants, runners):
        if v.family in ("BEGIN", "END"):
            (user.begin if v.family == "BEGIN" else user.end).append(
                (runner, Target(v.family, "", v.family, "")))
        elif v.family == "interval":
            probe = checked.program.probes[v.probe_index]
            ap = next(a for a in probe.attach_points if a.provider == "interval")
            user.timers.append((v.period_ns, runner, Target("interval", "", ap.name, "")))
        for ev in v.events:
            table.setdefault(ev.event, []).append((runner, ev.target))
    factory = session_factory or (lambda: Session(buffer_size_kb=opts.buffer_size_kb))
    lc = Lifecycle(opts, output, rt, user, err)
    lc.attaching(plan.attach_count)
    session = factory()
    assert isinstance(session, Session)
    with session as s:
        if opts.pid:
            s.set_pids([opts.pid])  # before arming: nothing of other processes gets recorded
        _arm_all(s, plan, opts, err)
        from .usdt import held_semaphores  # USDT semaphores a kernel < 4.20 does not count

        with held_semaphores((ev.target for ev in plan.kernel_events), opts.pid or 0):
            run_main(lc, lambda lc: _loop(s, lc, table))
        lc.report_loss(_loss_lines(s), _lost_count(s))
    return lc.finish(rt.maps.values())


def _arm_all(s: object, plan: ProgramPlan, opts: RunOptions, err: TextIO) -> None:
    events = plan.kernel_events
    n = len(events)
    t0 = time.monotonic()
    skipped: List[Tuple[str, str]] = []
    wild = {ev.event for v in plan.variants if len(v.events) > 1 for ev in v.events}
    for i, ev in enumerate(events, 1):
        try:
            _arm(s, ev, plan.unsafe)
        except KprobesError as e:
            if isinstance(e, FeatureMissing):
                raise  # no kprobes at all: one clear error, not one per wildcard match
            if ev.event not in wild:
                if ev.kind == "kprobe" and plan.symbols is not None:
                    better = explain_refusal(ev.target, plan.symbols)
                    if better is not None:
                        raise better from e
                raise
            skipped.append((ev.target.func, str(e).splitlines()[0]))
        if n >= opts.progress_every and (i % opts.progress_every == 0 or i == n):
            err.write(f"\rattaching probes: {i}/{n}")
            err.flush()
    if n >= opts.progress_every:
        err.write("\n")
    if skipped:
        first = "; ".join(f"{f}: {why}" for f, why in skipped[:3])
        if len(skipped) == n:
            raise KprobesError(f"the kernel refused every probe ({first})")
        err.write(f"kprobes: the kernel refused {len(skipped)} of {n} wildcard probes ({first})\n")
    if wild:
        err.write(f"kprobes: attached {n - len(skipped)} probes in {time.monotonic() - t0:.2f} s\n")
    err.flush()


def _loop(s: "Session", lc: Lifecycle, table: Dict[str, List[Tuple[ProbeRunner, Target]]]) -> None:
    rt, clock = lc.rt, lc.clock

    def until() -> bool:
        if rt.exit_requested:
            return True
        if clock.due is not None:
            clock.fire(time.monotonic_ns())
        return rt.exit_requested or lc.command_exited()

    get = table.get
    for ev in s.events(lc.opts.duration, until=until):
        if rt.exit_requested:
            continue
        if not ev.pid and ev.comm == IDLE_COMM:
            ev.__dict__["comm"] = f"swapper/{ev.cpu}"  # the idle task's comm, as bpftrace shows it
        handlers = get(ev.event)
        if handlers is None:
            continue
        if clock.due is not None and ev.timestamp_ns >= clock.due:
            clock.fire(ev.timestamp_ns)
        try:
            for runner, target in handlers:
                runner(ev, target)
        except ExitProgram:
            s.stop()


def _lost_count(s: object) -> int:
    """How many events the kernel dropped (bpftrace's ``lost_events`` count), 0 if unknown."""
    ledger = getattr(s, "ledger", None)
    try:
        return int(ledger.total_lost) if ledger is not None else 0
    except (OSError, ValueError, KprobesError):
        return 0


def _loss_lines(s: object) -> List[str]:
    """What the kernel dropped, in one sentence (bpftrace prints "Lost N events")."""
    ledger = getattr(s, "ledger", None)
    if ledger is not None:
        try:
            if ledger.any_loss:
                return [ledger.report()]  # "kprobes: N events lost: why"
        except (OSError, ValueError, KprobesError):  # the report never hides the program's output
            pass
        return []
    unparsed = getattr(s, "unparsed", [])
    lost = sum(1 for u in unparsed if u.reason.startswith("lost events"))
    if lost:
        return [f"kprobes: the kernel dropped events ({lost} report(s) of lost events); "
                "raise the buffer with --buffer-size"]
    return []
