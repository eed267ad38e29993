"""The BPF engine's code generator, run in a Python eBPF interpreter (tests/bpf_interp.py).

The strongest offline check of integer semantics: the same expressions are
evaluated by the tracefs engine's evaluator (in a BEGIN probe) and by the
generated eBPF (in a kprobe), and must agree bit for bit.  Aggregations,
keys, strings and output records are decoded with the engine's own layouts.
"""

from __future__ import annotations

import io
import random
from typing import Dict, List, Tuple

import pytest

from kprobes.agg import compile_printf
from kprobes.agg.aggregations import Avg, LinearHist, Log2Hist, Max, Min, Stats
from kprobes.bpf.insn import isa_version
from kprobes.engines.bpf.codegen import ProbeCodegen
from kprobes.engines.bpf.unit import Caps, Unit
from kprobes.engines.evaluator import ProbeCompiler, Runtime
from kprobes.engines.plan import Variant
from kprobes.engines.runtime import Output, make_maps
from kprobes.engines.targets import Target
from kprobes.events.model import TraceEvent
from kprobes.lang import check, parse_program
from kprobes.lang.checked import CheckedProgram
from tests.bpf_interp import CTX, Machine, pt_regs


def checked(text: str) -> CheckedProgram:
    return check(parse_program(text), None, max_args=6, arch_name="x86_64")


def compile_kprobe(text: str, caps: Caps | None = None, index: int = 0) -> Tuple[Unit, object]:
    c = checked(text)
    unit = Unit(c, caps or Caps())
    prog = ProbeCodegen(unit, index, "kprobe", [("kprobe:f", "f")]).compile()
    return unit, prog


def run_bpf(text: str, *ctxs: bytes, machine: Machine | None = None) -> Tuple[Unit, Machine]:
    unit, prog = compile_kprobe(text)
    m = machine or Machine()
    for ctx in ctxs or (pt_regs(),):
        m.run(prog, ctx)  # type: ignore[arg-type]
    return unit, m


def bpf_map(unit: Unit, m: Machine, name: str) -> Dict[Tuple[object, ...], object]:
    mp = unit.maps[name]
    fake = m.maps.get(mp.spec)
    if fake is None:
        return {}
    out = {}
    for k, v in fake.data.items():
        out[mp.key.decode(k, unit.names)] = mp.value.reduce([bytes(v)])
    return out


def evaluate(body: str) -> Dict[str, object]:
    """Run ``body`` in a BEGIN probe with the tracefs engine's evaluator."""
    c = checked("BEGIN { " + body + " }")
    maps = make_maps(c)
    rt = Runtime(maps, Output(io.StringIO()), 0)
    run = ProbeCompiler(c, Variant(0, "BEGIN"), rt).compile()
    run(TraceEvent(comm="x", pid=1, cpu=0, timestamp_ns=0, event="BEGIN", tgid=1),
        Target("BEGIN", "", "BEGIN", ""))
    return {name: m.get(()) for name, m in maps.items()}


VALUES = ["0", "1", "7", "-7", "3", "-1", "255", "300", "0x7fffffffffffffff", "0x8000000000000000",
          "0xffffffffffffffff", "4294967296", "-4294967297", "63", "64", "65"]
CASTS = ["", "(int8)", "(uint8)", "(int16)", "(uint32)", "(int32)", "(uint64)", "(int64)"]
OPS = ["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>", "==", "!=", "<", "<=", ">", ">="]


def _cases(n: int, seed: int) -> List[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.choice(VALUES), rng.choice(VALUES)
        ca, cb = rng.choice(CASTS), rng.choice(CASTS)
        op = rng.choice(OPS)
        if rng.random() < 0.3:
            out.append(f"$a = {ca}({a}); $b = {cb}({b}); @v = ($a {op} $b) {rng.choice(OPS)} $a;")
        elif rng.random() < 0.2:
            out.append(f"$a = {ca}({a}); @v = $a > 5 ? -$a : ~$a; @w = !$a; @u = $a && {b} || 0;")
        else:
            cop = rng.choice(OPS[:10])
            out.append(f"$a = {ca}({a}); $b = {cb}({b}); @v = $a {op} $b; $a {cop}= 3; @w = $a;")
    return out


@pytest.mark.parametrize("body", _cases(120, 12))
def test_integer_semantics_match_the_evaluator(body: str) -> None:
    want = evaluate(body)
    unit, m = run_bpf("kprobe:f { " + body + " }")
    for name, agg in want.items():
        got = bpf_map(unit, m, name).get(())
        assert got is not None and got.value == agg.value, (name, body)  # type: ignore[attr-defined]


def test_aggregations_reduce_like_agg_values() -> None:
    values = [0, 1, 2, 3, 5, 1000, 1 << 40, -3, 99, 100, 101, 150, -1 << 63]
    text = ("kprobe:f { @h = hist(arg0); @l = lhist(arg0, 0, 100, 10); @mn = min(arg0);"
            " @mx = max(arg0); @a = avg(arg0); @s = stats(arg0); @c[arg0 > 50] = count();"
            " @u = sum((uint64)arg0); }")
    unit, m = run_bpf(text, *(pt_regs(di=v) for v in values))
    want_h, want_l = Log2Hist(), LinearHist(0, 100, 10)
    want_mn, want_mx = Min(signed=False), Max(signed=False)  # arg0 is a uint64
    want_a, want_s = Avg(), Stats()
    for v in values:
        for agg in (want_h, want_l, want_mn, want_mx, want_a, want_s):
            agg.add(v)
    got = {n: bpf_map(unit, m, n)[()] for n in ("h", "l", "mn", "mx", "a", "s")}
    assert got["h"].counts() == want_h.counts()  # type: ignore[attr-defined]
    assert got["l"].counts() == want_l.counts()  # type: ignore[attr-defined]
    assert got["mn"].value == want_mn.value and got["mx"].value == want_mx.value  # type: ignore[attr-defined]
    assert (got["a"].average, got["s"].count, got["s"].total) == (  # type: ignore[attr-defined]
        want_a.average, want_s.count, want_s.total)
    c = bpf_map(unit, m, "c")
    assert c[(1,)].count == 8 and c[(0,)].count == 5  # unsigned: -3 > 50  # type: ignore[attr-defined]
    assert bpf_map(unit, m, "u")[()].total == sum(values) % (1 << 64)  # type: ignore[attr-defined]


def test_strings_keys_comparisons_and_user_pointers() -> None:
    m = Machine(comm=b"bash")
    m.kmem[0x7000] = b"/etc/passwd\0"
    text = ('kprobe:f { @[comm, str(arg1)] = count(); @e = comm == "bash"; @n = comm != "bas";'
            ' $s = str(arg1, 4); @short[$s] = count(); @cut = str(arg1, 2) == "/e";'
            ' if (comm == "zsh") { @never = 1; } else { @else = 2; } }')
    unit, _ = run_bpf(text, pt_regs(si=0x7000), pt_regs(si=0x7000), machine=m)
    assert bpf_map(unit, m, "")[("bash", "/etc/passwd")].count == 2  # type: ignore[attr-defined]
    assert bpf_map(unit, m, "e")[()].value == 1 and bpf_map(unit, m, "n")[()].value == 1  # type: ignore[attr-defined]
    assert bpf_map(unit, m, "short")[("/etc",)].count == 2  # type: ignore[attr-defined]
    assert bpf_map(unit, m, "cut")[()].value == 1  # type: ignore[attr-defined]
    assert bpf_map(unit, m, "never") == {} and bpf_map(unit, m, "else")[()].value == 2  # type: ignore[attr-defined]


def test_printf_records_decode_to_the_same_text() -> None:
    from kprobes.engines.bpf.layout import KeyPart

    m = Machine(comm=b"cat", pid=42)
    text = 'kprobe:f { printf("%s pid=%d x=%x neg=%d %-6s| %lu\\n", comm, pid, arg0, -5, "ab", arg0 * 2); exit(); @never = 1; }'
    unit, _ = run_bpf(text, pt_regs(di=255), machine=m)
    assert len(m.records) == 2
    rec = unit.records[int.from_bytes(m.records[0][:8], "little")]
    assert rec.kind == "printf"
    pos, args = 8, []
    for p in rec.parts:
        assert isinstance(p, KeyPart)
        args.append(p.decode(m.records[0][pos:pos + p.size]))
        pos += p.size
    assert rec.text is not None
    assert compile_printf(rec.text)(args) == "cat pid=42 x=ff neg=-5 ab    | 510\n"
    assert unit.records[int.from_bytes(m.records[1][:8], "little")].kind == "exit"
    assert bpf_map(unit, m, "never") == {}


def test_map_reads_incdec_delete_and_missing_keys() -> None:
    text = ("kprobe:f { @start[tid] = nsecs; @n = @n + 1; @i++; if (0) { @missing[1] = 1; } $x = @missing[5] + 3; @x = $x;"
            " @d[1] = 1; @d[2] = 2; delete(@d[1]); delete(@d, 2); @d[3] = @start[tid] / 1000; }")
    unit, m = run_bpf(text, pt_regs(), pt_regs(), pt_regs())
    assert bpf_map(unit, m, "n")[()].value == 3 and bpf_map(unit, m, "i")[()].value == 3  # type: ignore[attr-defined]
    assert bpf_map(unit, m, "x")[()].value == 3  # type: ignore[attr-defined]
    assert set(bpf_map(unit, m, "d")) == {(3,)}
    assert bpf_map(unit, m, "d")[(3,)].value == 5_000_000  # type: ignore[attr-defined]
    assert bpf_map(unit, m, "start")[(1001,)].value == 5_000_000_000  # type: ignore[attr-defined]


def test_generated_code_is_isa_v3_and_kernel_6_1_safe() -> None:
    text = ("kprobe:f { @a = avg(arg0); $v = @a; @h = hist(arg0 / 3); @q = (int8)arg0 >> 1;"
            " @s = (int32)arg1 < 0; }")
    _unit, prog = compile_kprobe(text)
    assert max(isa_version(i) for i in prog.insns) <= 3  # type: ignore[attr-defined]


def test_wildcard_probe_and_func_keys_use_the_cookie() -> None:
    c = checked("kprobe:vfs_* { @[probe, func] = count(); }")
    unit = Unit(c, Caps())
    names = [("kprobe:vfs_read", "vfs_read"), ("kprobe:vfs_write", "vfs_write")]
    base = unit.add_targets(names)
    prog = ProbeCodegen(unit, 0, "kprobe", names, target_base=base).compile()
    m = Machine(cookie=1)
    m.run(prog, pt_regs())
    m.cookie = 0
    m.run(prog, pt_regs())
    m.run(prog, pt_regs())
    got = {k: v.count for k, v in bpf_map(unit, m, "").items()}  # type: ignore[attr-defined]
    assert got == {("kprobe:vfs_write", "vfs_write"): 1, ("kprobe:vfs_read", "vfs_read"): 2}


def test_perf_event_array_output_without_ringbuf() -> None:
    text = 'kprobe:f { printf("%d\\n", arg0); }'
    unit, prog = compile_kprobe(text, Caps(ringbuf=False))
    m = Machine()
    m.run(prog, pt_regs(di=9))  # type: ignore[arg-type]
    assert unit.ring is not None and unit.ring.name == "kp_perf"
    assert m.records and int.from_bytes(m.records[0][8:16], "little") == 9
    assert CTX  # the context pointer was passed to perf_event_output
