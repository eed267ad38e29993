"""kstack/ustack, usym, curtask/rand/cgroup and profile in the BPF engine, offline.

The generated code runs in tests/bpf_interp.py (its ``get_stackid`` stores the
machine's fake stacks in the STACK_TRACE map); the keys are then printed by
the engine's own :class:`~kprobes.engines.bpf.stacks.Symbolizer` against a
fake kallsyms and a synthetic ELF file mapped by a fake ``/proc/PID/maps``,
in the layout bpftrace 0.17 prints (checked against bpftrace on the host).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

from kprobes.agg import compile_printf
from kprobes.agg.bpfmap import BpfMap
from kprobes.agg.text import format_map
from kprobes.bpf.maps import MapType, ProgType
from kprobes.engines.bpf.codegen import ProbeCodegen
from kprobes.engines.bpf.plan import BpfOptions, plan_checked
from kprobes.engines.bpf.stacks import Symbolizer, UserSymbols, format_stack, parse_proc_maps
from kprobes.engines.bpf.unit import Caps, Unit
from kprobes.engines.plan import plan_program
from kprobes.engines.targets import SymbolSource
from kprobes.lang import LangError, check, parse_program
from kprobes.lang.checked import CheckedProgram
from kprobes.probes.arch import get_arch
from tests.bpf_interp import Machine, pt_regs
from tests.unit.test_symbols_elf_synthetic import Spec, Sym, build_elf

K0 = 0xFFFFFFFF81000000
KSYMS = [(K0, "entry_SYSCALL_64", 0x100), (K0 + 0x100, "do_syscall_64", 0x200),
         (K0 + 0x300, "ksys_read", 0x80)]


class FakeKallsyms:
    def lookup(self, addr: int) -> Optional[Tuple[str, int, int, Optional[str]]]:
        for start, name, size in KSYMS:
            if start <= addr < start + size:
                return name, addr - start, size, None
        return None


class StackMapView:
    """A FakeMap of the interpreter seen through the ``lookup(key)`` of a kernel map."""

    def __init__(self, fake: object) -> None:
        self.fake = fake

    def lookup(self, key: bytes) -> Optional[bytes]:
        v = self.fake.data.get(key)  # type: ignore[attr-defined]
        return bytes(v) if v is not None else None


def checked(text: str) -> CheckedProgram:
    return check(parse_program(text), None, max_args=6, arch_name="x86_64")


def run(text: str, m: Machine, times: int = 1, provider: str = "kprobe") -> Unit:
    unit = Unit(checked(text), Caps())
    prog = ProbeCodegen(unit, 0, provider, [(f"{provider}:f", "f")]).compile()
    for _ in range(times):
        m.run(prog, pt_regs(di=0x1234))
    return unit


def symbolizer(unit: Unit, m: Machine, user: Optional[UserSymbols] = None, indent: int = 4) -> Symbolizer:
    maps = {d: StackMapView(m.maps[spec]) for d, spec in unit.stacks.items() if spec in m.maps}
    return Symbolizer(maps, FakeKallsyms(), user or UserSymbols(lambda pid: None), indent)


def printed(unit: Unit, m: Machine, name: str, sym: Symbolizer) -> str:
    mp = unit.maps[name]
    bm = BpfMap(mp.display, mp.value.template(), scalar=not mp.key.parts)
    for k, v in m.maps[mp.spec].data.items():
        bm.set(mp.key.decode(k, unit.names, None, sym), mp.value.reduce([bytes(v)]))
    return format_map(bm)


@pytest.fixture
def elf_process(tmp_path: Path) -> Tuple[UserSymbols, int, Dict[str, int]]:
    """A synthetic executable 'mapped' at 0x55550000 (file offset 0x1000 = .text)."""
    t = 0x401000
    spec = Spec(text_vaddr=t, symtab=[Sym("main", t + 0x10, 0x40), Sym("a", t + 0x50, 0x30),
                                       Sym("b", t + 0x80, 0x20), Sym("__GI_b", t + 0x80, 0x20,
                                                                    bind=0)])
    path = tmp_path / "chain"
    path.write_bytes(build_elf(spec))
    base = 0x55550000
    maps = (f"55550000-55551000 r-xp 00001000 08:01 42 {path}\n"
            "7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]\n")
    addr = {n: base + (v - t) for n, v in (("main", t + 0x10), ("a", t + 0x50), ("b", t + 0x80))}
    return UserSymbols(lambda pid: maps if pid == 1000 else None), base, addr


def test_kernel_stacks_as_keys_in_three_modes_and_limits() -> None:
    m = Machine()
    m.kstack = [K0 + 0x310, K0 + 0x1A3, K0 + 0x42]
    unit = run("kprobe:f { @[kstack] = count(); @p[kstack(perf, 2)] = count(); @r[kstack(raw)] = count();"
               " @two[kstack(2), pid] = count(); }", m, times=3)
    assert set(unit.stacks) == {127, 2}  # depth 2 needs its own (smaller) map
    assert all(s.type == MapType.STACK_TRACE and s.value_size == 8 * d for d, s in unit.stacks.items())
    sym = symbolizer(unit, m)
    assert printed(unit, m, "", sym) == (
        "@[\n    ksys_read+16\n    do_syscall_64+163\n    entry_SYSCALL_64+66\n]: 3\n")
    assert printed(unit, m, "p", sym) == (
        "@p[\n\tffffffff81000310 ksys_read+16\n\tffffffff810001a3 do_syscall_64+163\n]: 3\n")
    assert printed(unit, m, "r", sym) == "@r[\nffffffff81000310\nffffffff810001a3\nffffffff81000042\n]: 3\n"
    assert printed(unit, m, "two", sym) == "@two[\n    ksys_read+16\n    do_syscall_64+163\n, 1000]: 3\n"


def test_no_stack_prints_empty_and_printf_indents_eight() -> None:
    m = Machine()  # no user stack: get_stackid fails with -EFAULT
    m.kstack = [K0 + 0x300]
    unit = run('kprobe:f { @u[ustack] = count(); printf("%s|%s|\\n", kstack, ustack); }', m)
    sym = symbolizer(unit, m)
    assert printed(unit, m, "u", sym) == "@u[]: 1\n"
    rec = unit.records[0]
    raw = m.records[0]
    args, pos = [], 8
    for p in rec.parts:
        args.append(p.decode(raw[pos:pos + p.size], unit.names, None, sym.with_indent(8)))
        pos += p.size
    assert rec.text is not None
    assert compile_printf(rec.text)(args) == "\n        ksys_read+0\n||\n"


def test_user_stacks_and_usym_through_proc_maps_and_elf(
        elf_process: Tuple[UserSymbols, int, Dict[str, int]]) -> None:
    user, _base, addr = elf_process
    m = Machine(pid=1000, tid=1001)
    m.ustack = [addr["b"], addr["a"] + 12, addr["main"] + 42, 0x7FFD0010]
    unit = run("uprobe:/x:b { @[ustack] = count(); @p[ustack(perf, 3)] = count(); @s[usym(arg0)] = count(); }",
               m, times=2, provider="uprobe")
    sym = symbolizer(unit, m, user)
    assert printed(unit, m, "", sym) == "@[\n    b+0\n    a+12\n    main+42\n    0x7ffd0010\n]: 2\n"
    path = parse_proc_maps(user._read_maps(1000) or "")[0][3]
    assert printed(unit, m, "p", sym) == (
        f"@p[\n\t{addr['b']:x} b+0 ({path})\n\t{addr['a'] + 12:x} a+12 ({path})\n"
        f"\t{addr['main'] + 42:x} main+42 ({path})\n]: 2\n")
    # the ustack key carries the process: (stack id) | tgid << 32
    key = next(iter(m.maps[unit.maps[""].spec].data))
    assert int.from_bytes(key[:8], "little") >> 32 == 1000
    # usym(arg0): arg0 = 0x1234 is no mapping: printed in hex, as bpftrace does
    assert printed(unit, m, "s", sym) == "@s[0x1234]: 2\n"
    assert sym.usym(addr["a"] + 3, 1000) == "a+3" and sym.usym(addr["a"] + 3, 1000, offset=False) == "a"


def test_gone_process_prints_addresses() -> None:
    user = UserSymbols(lambda pid: None)
    assert user.lookup(0x401000, 77) == ("", 0, "")
    assert format_stack(["0x401000"], [0x401000], "bpftrace", 4) == "\n    0x401000\n"


def test_curtask_rand_cgroup_builtins() -> None:
    m = Machine()
    unit = run("kprobe:f { @t = curtask; @r = rand; @c = cgroup; @ok[rand % 3 < 3] = count(); }", m)
    got = {n: mp.value.reduce([bytes(v) for v in m.maps[mp.spec].data.values()])
           for n, mp in unit.maps.items()}
    assert got["t"].value == m.task and got["r"].value == m.rand  # type: ignore[attr-defined]
    assert got["c"].value == m.cgroup  # type: ignore[attr-defined]


def test_profile_plans_a_perf_event_program_with_stacks() -> None:
    c = checked("profile:hz:99 { @[kstack] = count(); } profile:ms:10 { @n = count(); } interval:s:1 { exit(); }")
    plan = plan_checked(c, arch="x86_64", types=None, symbols=SymbolSource(), caps=Caps(),
                        opts=BpfOptions())
    progs = {p.targets[0].place: p for p in plan.programs}
    assert set(progs) == {"hz:99", "ms:10"}
    assert all(p.prog_type == ProgType.PERF_EVENT and p.provider == "profile" for p in progs.values())
    assert plan.attach_count == 3  # as bpftrace counts: one per profile probe, one interval
    assert "kp_stack127: STACK_TRACE" in plan.describe()
    m = Machine()
    m.kstack = [K0 + 0x1A0]
    m.run(progs["hz:99"].code, pt_regs(ip=K0 + 0x1A0))
    sym = symbolizer(plan.unit, m)
    assert printed(plan.unit, m, "", sym) == "@[\n    do_syscall_64+160\n]: 1\n"


@pytest.mark.parametrize("text,what", [
    ("kprobe:f { @[kstack] = count(); }", "the kstack builtin needs --engine bpf"),
    ("kprobe:f { @[ustack(perf)] = count(); }", "ustack() needs --engine bpf"),
    ("uprobe:/bin/sh:main { printf(\"%s\\n\", usym(arg0)); }", "usym() needs --engine bpf"),
    ("profile:hz:99 { @ = count(); }", "'profile' probes need --engine bpf"),
    ("kprobe:f { @[curtask] = count(); }", "the curtask builtin needs --engine bpf"),
    ("kprobe:f { @[cgroup, rand] = count(); }", "the cgroup builtin needs --engine bpf"),
])
def test_tracefs_engine_refuses_with_the_reason(text: str, what: str) -> None:
    with pytest.raises(LangError) as ei:
        plan_program(checked(text), arch=get_arch("x86_64"), symbols=SymbolSource(loader=_no_symbols))
    assert what in ei.value.message
    assert "^" in ei.value.message or "~" in ei.value.message  # points at the use


def _no_symbols() -> object:
    raise AssertionError("refused before any symbol is read")


def test_parse_proc_maps_keeps_executable_file_mappings() -> None:
    text = ("00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus-daemon\n"
            "00651000-00652000 r--p 00051000 08:02 173521 /usr/bin/dbus-daemon\n"
            "7f0000000000-7f0000001000 r-xp 00002000 08:02 99 /lib/with space.so\n"
            "7ffc3a1f9000-7ffc3a21a000 rw-p 00000000 00:00 0 [stack]\n"
            "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n")
    assert parse_proc_maps(text) == [(0x400000, 0x452000, 0, "/usr/bin/dbus-daemon"),
                                     (0x7F0000000000, 0x7F0000001000, 0x2000, "/lib/with space.so")]
