"""Running a BPF plan: maps, programs, links, the output ring, the Python probes.

The lifecycle mirrors :mod:`..runner` (the tracefs engine's): ``Attaching N
probes...``; every program is loaded and attached; ``BEGIN`` runs (in Python);
the ``-c`` command is released; output records are read from the ring in
order while ``interval`` probes fire on time; the program ends on ``exit()``,
when the ``-c`` command exits, after ``--duration`` or on Ctrl-C; the links
are closed (no more events), the ring is drained, ``END`` runs and every map
is read back from the kernel and printed through agg/.

Every kernel object is an fd owned by one :class:`~kprobes.backends.bpf.BpfSession`:
if the process dies, SIGKILL included, the kernel drops them all.
"""

from __future__ import annotations

import re
import struct
import time
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from ...agg import compile_printf, format_time
from ...errors import EngineArmError, KprobesError, VerifierError
from ..evaluator import ProbeCompiler, Runtime
from ..lifecycle import Lifecycle, RunOptions, UserProbes, run_main
from ..runtime import Output
from ..targets import Target
from ..variant import Variant
from .kmaps import KernelMap
from .layout import KeyPart
from .plan import BpfPlan, BpfProgram
from .unit import Record

__all__ = ["run_plan", "RecordDecoder", "MAX_ATTACH_SECONDS"]

#: Refuse a wildcard whose per-function attach (no kprobe_multi) would take longer.
MAX_ATTACH_SECONDS = 120.0


class RecordDecoder:
    """Turns ring records into output (printf, print, clear, exit...) in Python."""

    def __init__(self, plan: BpfPlan, maps: Dict[str, KernelMap], output: Output,
                 ksym: Callable[[int], str],
                 sym: Optional[Callable[[KeyPart, bytes], str]] = None) -> None:
        self.plan = plan
        self.maps = maps
        self.out = output
        self.ksym = ksym
        self.sym = sym
        self.names = plan.unit.names
        self.exit_requested = False
        self._printf: Dict[int, Any] = {}
        self._layout: Dict[int, List[Tuple[KeyPart, int]]] = {}
        for rec in plan.unit.records:
            pos, lay = 8, []
            for p in rec.parts:
                lay.append((p, pos))
                pos += p.size
            self._layout[rec.id] = lay
            if rec.kind in ("printf", "cat", "system"):
                assert rec.text is not None
                self._printf[rec.id] = compile_printf(rec.text)

    def args(self, rec: Record, raw: bytes) -> List[object]:
        return [p.decode(raw[off:off + p.size], self.names, self.ksym, self.sym)
                for p, off in self._layout[rec.id]]

    def __call__(self, raw: bytes) -> None:
        if self.exit_requested or len(raw) < 8:
            return
        (rid,) = struct.unpack_from("=Q", raw)
        records = self.plan.unit.records
        if rid >= len(records):
            return
        rec = records[rid]
        k = rec.kind
        out = self.out
        if k == "printf":
            out.printf(self._printf[rid](self.args(rec, raw)))
        elif k == "time":
            out.time(format_time(rec.text))
        elif k == "exit":
            self.exit_requested = True
        elif k == "print_map":
            out.print_map(self.maps[rec.map], rec.top, rec.div)
        elif k == "print_value":
            out.print_value(self.args(rec, raw)[0])
        elif k in ("cat", "system"):
            from ..functions import read_for_cat, run_system

            text = self._printf[rid](self.args(rec, raw))
            out.message("cat", read_for_cat(text)) if k == "cat" else out.message("syscall", run_system(text))
        elif k == "join":
            args = self.args(rec, raw)
            count = int(args[0])  # type: ignore[call-overload]
            out.message("join", (rec.text or "").join(str(x) for x in args[1:1 + count]), newline=True)
        elif k == "clear":
            self.maps[rec.map].clear()
        elif k == "zero":
            self.maps[rec.map].zero()


def _has_while(node: object) -> bool:
    from ...lang import ast

    return any(isinstance(n, ast.While) for n in ast.walk(node))


def _verifier_failure(plan: BpfPlan, p: BpfProgram, e: VerifierError) -> EngineArmError:
    """A verifier rejection is a kprobes bug: name the probe, its source line, the log's end."""
    src = ""
    slots = [m.group(1) for m in re.finditer(r"^(\d+): \(", e.log, re.M)]
    if slots:
        want = int(slots[-1])
        pc = 0
        for i, insn in enumerate(p.code.insns):
            if pc >= want:
                src = p.code.sources[i] or ""
                break
            pc += insn.slots
    probe = plan.checked.program.probes[p.probe_index]
    where = ", ".join(ap.raw for ap in probe.attach_points)
    tail = "\n".join("  " + ln for ln in e.last_lines)
    line = f" at line {src}" if src else ""
    if _has_while(probe.body) and re.search(r"too large|infinite loop|back-edge|loop", e.log):
        return EngineArmError(
            f"the kernel's BPF verifier could not prove that a while loop of probe "
            f"{p.probe_index + 1} ({where}) ends{line}\nverifier log (last lines):\n{tail}",
            hint="bound the loop by a constant (while ($i < 100 && ...)), as bpftrace needs too; "
                 "--engine tracefs runs it without BPF")
    return EngineArmError(
        f"kprobes bug: the kernel's BPF verifier refused the program of probe {p.probe_index + 1} "
        f"({where}){line}\nverifier log (last lines):\n{tail}",
        hint="please report this with the program; --engine tracefs runs it without BPF")


def _load(s: Any, plan: BpfPlan, p: BpfProgram, fds: Dict[Any, Any]) -> Callable[[Optional[int]], Any]:
    from ...backends.bpf.prog import Program

    def load(expected: Optional[int]) -> Any:
        if p.provider in ("kfunc", "kretfunc"):
            from ...bpf.maps import AttachType

            expected = AttachType.TRACE_FENTRY if p.provider == "kfunc" else AttachType.TRACE_FEXIT
            if not p.attach_btf_id:
                raise KprobesError(f"{p.targets[0].name}: the kernel's BTF has no function "
                                   f"{p.targets[0].func!r}", hint="kfunc probes need "
                                   "/sys/kernel/btf/vmlinux; the kprobe form works without it")
        try:
            return Program.load(p.prog_type, p.code, name=p.name, maps=fds,
                                expected_attach_type=expected, attach_btf_id=p.attach_btf_id)
        except VerifierError as e:
            raise _verifier_failure(plan, p, e) from None

    return load


def _attach(s: Any, plan: BpfPlan, p: BpfProgram, fds: Dict[Any, Any], pid: int, err: TextIO) -> None:
    load = _load(s, plan, p, fds)
    kind = p.provider
    if kind == "profile":
        _attach_profile(s, p, load(None))
        return
    if kind in ("software", "hardware"):
        _attach_counter(s, p, load(None))
        return
    if kind in ("kfunc", "kretfunc", "rawtracepoint"):
        from ...backends.bpf.attach import attach_raw_tracepoint, attach_tracing

        prog = s.own(load(None))
        s.programs.append(prog)
        t = p.targets[0]
        link = attach_tracing(prog, t.name) if kind != "rawtracepoint" else \
            attach_raw_tracepoint(prog, t.place)
        s.links.append(s.own(link))
        return
    if kind in ("kprobe", "kretprobe") and len(p.targets) > 1:
        t0 = time.monotonic()
        att = s.attach_kprobes(load, [t.place for t in p.targets], retprobe=p.retprobe,
                               cookies=plan.unit.caps.cookie, max_seconds=MAX_ATTACH_SECONDS)
        why = f" (per-function perf events: {att.reason})" if att.reason else ""
        err.write(f"kprobes: attached {len(p.targets)} {kind}s by {att.method} in "
                  f"{time.monotonic() - t0:.2f} s{why}\n")
        return
    prog = s.own(load(None))
    s.programs.append(prog)
    for i, t in enumerate(p.targets):
        cookie = i if len(p.targets) > 1 else 0
        if kind in ("uprobe", "uretprobe"):
            s.attach(prog, f"{kind}:{t.place}", cookie=cookie, pid=pid or -1)
        elif kind == "usdt" and t.usdt is not None:
            from ...backends.bpf.attach import attach_uprobe
            from ...backends.symbols.usdt import kernel_ref_ctr
            from ..usdt import held_semaphores

            site = t.usdt  # its semaphore: the uprobe reference counter (Linux 4.20+), else by hand
            ref = site.semaphore_offset if kernel_ref_ctr() else 0
            s.links.append(s.own(attach_uprobe(prog, site.path, site.offset, pid=pid or -1, cookie=cookie,
                                               ref_ctr_offset=ref)))
            s.own(held_semaphores([t], pid))
        elif kind == "tracepoint":
            s.attach(prog, f"tracepoint:{t.place}")
        else:
            from ...backends.bpf.attach import attach_kprobe
            from ..targets import explain_refusal

            func, _, off = t.place.partition("+")

            def explain(name: str, t: Target = t, syms: Any = plan.symbols) -> Optional[KprobesError]:
                return explain_refusal(t, syms) if syms is not None else None

            link = attach_kprobe(prog, func, retprobe=p.retprobe, offset=int(off, 0) if off else 0,
                                 cookie=cookie, explain=explain)
            s.links.append(s.own(link))


def _attach_profile(s: Any, p: BpfProgram, prog: Any) -> None:
    """``profile:UNIT:N``: a cpu-clock sampling event on every online CPU runs ``prog``."""
    from ...backends.bpf.attach import attach_perf_event
    from ...backends.bpf.perf import open_cpu_clock
    from ...backends.bpf.sys import online_cpus

    s.own(prog)
    s.programs.append(prog)
    unit, _, n = p.targets[0].place.partition(":")
    hz = int(n) if unit == "hz" else 0
    period = 0 if hz else int(n) * {"s": 10**9, "ms": 10**6, "us": 10**3}.get(unit, 1)
    for cpu in online_cpus():
        ev = open_cpu_clock(cpu, hz=hz, period_ns=period)
        s.links.append(s.own(attach_perf_event(prog, ev)))


def _attach_counter(s: Any, p: BpfProgram, prog: Any) -> None:
    """``software:EVENT:N`` / ``hardware:EVENT:N``: a perf event counting EVENT on every
    online CPU runs ``prog`` every N events."""
    from ...backends.bpf.attach import attach_perf_event, open_perf_counter
    from ...backends.bpf.sys import online_cpus
    from ...lang.attach import HARDWARE_EVENTS, SOFTWARE_EVENTS

    s.own(prog)
    s.programs.append(prog)
    event, _, n = p.targets[0].place.partition(":")
    hw = p.provider == "hardware"
    config = (HARDWARE_EVENTS if hw else SOFTWARE_EVENTS)[event][0]
    for cpu in online_cpus():
        ev = open_perf_counter(0 if hw else 1, config, int(n), cpu, f"{p.provider}:{event}")
        s.links.append(s.own(attach_perf_event(prog, ev)))


def _ring_reader(plan: BpfPlan, fds: Dict[Any, Any], loss: Any) -> Any:
    from ...bpf.maps import MapType

    unit = plan.unit
    if unit.ring is None:
        return None
    ring = fds[unit.ring]
    drops = fds.get(unit.drops) if unit.drops is not None else None
    if unit.ring.type == MapType.RINGBUF:
        from ...backends.bpf.ringbuf import DropCounter, RingBufReader

        dc = DropCounter.for_map(drops, loss) if drops is not None else None
        return RingBufReader.for_map(ring, drops=dc).open()
    from ...backends.bpf.perfring import PerfRingReader

    return PerfRingReader.for_map(ring, loss=loss).open()


def run_plan(plan: BpfPlan, opts: RunOptions, out: TextIO, err: TextIO) -> int:
    """Run ``plan`` to its end; returns the exit status (see :mod:`..lifecycle`)."""
    from ...backends.bpf import BpfSession, Map
    from ...backends.bpf.loss import LossCounts

    checked = plan.checked
    unit = plan.unit
    output = Output(out, opts.fmt)
    from ...backends.symbols.ksym import shared_symbolizer

    ksym = shared_symbolizer()
    loss = LossCounts()
    with BpfSession() as s:
        fds: Dict[Any, Any] = {}
        for spec in unit.all_specs():
            fds[spec] = s.adopt_map(Map.from_spec(spec))
        from .stacks import Symbolizer

        sym = Symbolizer({depth: fds[spec] for depth, spec in unit.stacks.items()})
        maps = {name: KernelMap(mp, fds[mp.spec], unit.names, ksym, sym)
                for name, mp in unit.maps.items()}
        reader = _ring_reader(plan, fds, loss)
        if reader is not None:
            s.own(reader)
        decoder = RecordDecoder(plan, maps, output, ksym, sym.with_indent(8))
        rt = Runtime(dict(maps), output, time.monotonic_ns())
        user = UserProbes.empty()
        for up in plan.user:
            probe = checked.program.probes[up.probe_index]
            conj = (probe.predicate,) if probe.predicate is not None else ()
            runner = ProbeCompiler(checked, Variant(up.probe_index, up.provider, python_conjuncts=conj),
                                   rt).compile()
            target = Target(up.provider, "", up.name, "")
            if up.provider == "BEGIN":
                user.begin.append((runner, target))
            elif up.provider == "END":
                user.end.append((runner, target))
            else:
                user.timers.append((up.period_ns, runner, target))
        lc = Lifecycle(opts, output, rt, user, err)
        lc.loss = loss  # kprobes serve reports it while the program runs
        lc.attaching(plan.attach_count)
        for p in plan.programs:
            _attach(s, plan, p, fds, opts.pid or 0, err)

        def set_globals() -> None:  # elapsed's start and cpid, before BEGIN and -c run
            if unit.globals is not None:
                fds[unit.globals].update(struct.pack("=I", 0),
                                         struct.pack("=QQ", lc.rt.start_ns, lc.rt.cpid))

        lc.on_start.append(set_globals)

        def started(lc: Lifecycle) -> None:
            _loop(reader, decoder, lc)

        def stop() -> None:
            for ln in list(s.links):
                ln.close()

        run_main(lc, started, stop)
        if reader is not None and not decoder.exit_requested and not rt.exit_requested:
            _drain(reader, decoder)
        if reader is not None and getattr(reader, "drops", None) is not None:
            reader.drops.update()
        status = lc.finish(maps.values())
    if loss.total:
        lc.report_loss(["kprobes: " + "; ".join(loss.report())], loss.total)
    return status


def _handler(reader: Any, decoder: RecordDecoder) -> Callable[..., None]:
    from ...backends.bpf.perfring import PerfRingReader

    if isinstance(reader, PerfRingReader):
        return lambda cpu, rec: decoder(rec)
    return decoder


def _drain(reader: Any, decoder: RecordDecoder) -> None:
    reader.drain(_handler(reader, decoder))


def _loop(reader: Any, decoder: RecordDecoder, lc: Lifecycle) -> None:
    rt, clock = lc.rt, lc.clock
    handler = _handler(reader, decoder) if reader is not None else None
    from ...backends.signals import SessionInterrupted, swallowed_stop

    while not (decoder.exit_requested or rt.exit_requested):
        lost = swallowed_stop()
        if lost is not None:  # the signal's exception was lost in a finalizer: stop anyway
            raise SessionInterrupted(lost)
        timeout = clock.timeout(0.1)
        if lc.deadline is not None:
            now = time.monotonic()
            if now >= lc.deadline:
                return
            timeout = min(timeout, lc.deadline - now)
        if reader is not None:
            reader.poll(timeout, handler)
        else:
            time.sleep(timeout)
        if clock.due is not None:
            clock.fire(time.monotonic_ns())
        lc.output.flush()  # printf output as it comes, as bpftrace writes it
        if lc.command_exited():
            if reader is not None:
                _drain(reader, decoder)
            return
