"""kfunc/kretfunc, rawtracepoint, software/hardware probes: parsing, checking, planning and
the generated code (run in tests/bpf_interp.py against a synthetic BTF).

fentry programs read their arguments from a u64 array (argument i at ctx + 8*i, the
return value of fexit after the last argument); raw tracepoints the same for argN.
"""

from __future__ import annotations

import struct
from typing import Dict, Tuple

import pytest

from kprobes.bpf.maps import ProgType
from kprobes.btf import BTF
from kprobes.engines.bpf.plan import BpfOptions, BpfPlan, plan_checked
from kprobes.engines.bpf.unit import Caps
from kprobes.engines.provider import KernelTypeProvider
from kprobes.engines.targets import SymbolSource, btf_targets
from kprobes.errors import KprobesError
from kprobes.lang import LangError, check, parse_program
from tests.bpf_interp import Machine
from tests.unit.btf_builder import BTFBuilder

FILE_ADDR = 0xFFFF_8880_0010_0000


def _btf() -> BTF:
    """vfs_read(struct file *file, char *buf, size_t count, loff_t *pos) -> ssize_t,
    do_thing(int fd, unsigned short flags) -> int, nothing(void) -> void,
    many(6+1 ints), and a raw tracepoint btf_trace_sys_enter."""
    b = BTFBuilder()
    u32 = b.int_("unsigned int", 4)
    i32 = b.int_("int", 4, signed=True)
    u16 = b.int_("unsigned short", 2)
    u64 = b.int_("long unsigned int", 8)
    s64 = b.int_("long int", 8, signed=True)
    char = b.int_("char", 1, char=True)
    size_t = b.typedef("size_t", u64)
    ssize_t = b.typedef("ssize_t", s64)
    loff_t = b.typedef("loff_t", s64)
    file = b.struct("file", 64, [("f_flags", u32, 8 * 8, 0), ("f_pos", loff_t, 16 * 8, 0)])
    pfile, pchar, ploff = b.ptr(file), b.ptr(char), b.ptr(loff_t)
    b.func("vfs_read", b.func_proto(ssize_t, [("file", pfile), ("buf", pchar), ("count", size_t),
                                              ("pos", ploff)]))
    b.func("vfs_write", b.func_proto(ssize_t, [("file", pfile), ("buf", pchar), ("count", size_t),
                                               ("pos", ploff)]))
    b.func("do_thing", b.func_proto(i32, [("fd", i32), ("flags", u16)]))
    b.func("nothing", b.func_proto(0, []))
    b.func("vfs_many", b.func_proto(i32, [(f"a{i}", i32) for i in range(7)]))
    regs = b.struct("pt_regs", 168, [])
    b.typedef("btf_trace_sys_enter", b.ptr(b.func_proto(0, [("", b.ptr(0)), ("regs", b.ptr(regs)),
                                                            ("id", s64)])))
    b.typedef("btf_trace_sched_switch", b.ptr(b.func_proto(0, [("", b.ptr(0))])))
    return BTF(b.build())


@pytest.fixture(scope="module")
def types() -> KernelTypeProvider:
    return KernelTypeProvider(_btf())


def _check(text: str, types: KernelTypeProvider):  # type: ignore[no-untyped-def]
    return check(parse_program(text), types, max_args=6, arch_name="x86_64")


def _plan(text: str, types: KernelTypeProvider) -> BpfPlan:
    c = _check(text, types)
    return plan_checked(c, arch="x86_64", types=types, symbols=SymbolSource(loader=lambda: None),
                        caps=Caps(), opts=BpfOptions())


def _map(plan: BpfPlan, m: Machine, name: str) -> Dict[Tuple[object, ...], object]:
    mp = plan.unit.maps[name]
    fake = m.maps.get(mp.spec)
    out: Dict[Tuple[object, ...], object] = {}
    for k, v in (fake.data.items() if fake is not None else ()):
        val = mp.value.reduce([bytes(v)])
        out[mp.key.decode(k, plan.unit.names)] = getattr(val, "count", getattr(val, "total", val))
    return out


def _ctx(*slots: int) -> bytes:
    return struct.pack(f"<{len(slots)}Q", *(s & (2**64 - 1) for s in slots))


def test_kfunc_args_are_btf_typed_slots_of_the_context(types: KernelTypeProvider) -> None:
    plan = _plan('kfunc:vfs_read { @c[args->count] = count(); @f[args.file->f_flags] = count(); '
                 '@p[probe, func] = count(); }', types)
    (p,) = plan.programs
    assert p.prog_type == ProgType.TRACING and p.attach_btf_id > 0
    assert types.btf is not None and types.btf.name_of(p.attach_btf_id) == "vfs_read"
    m = Machine()
    m.kmem[FILE_ADDR] = struct.pack("<QQQ", 0, 0o2 | 0x8000, 0)
    for count in (100, 100, 8192):
        m.run(p.code, _ctx(FILE_ADDR, 0x7000, count, 0))  # type: ignore[arg-type]
    assert _map(plan, m, "c") == {(100,): 2, (8192,): 1}
    assert _map(plan, m, "f") == {(0x8002,): 3}
    assert _map(plan, m, "p") == {("kfunc:vmlinux:vfs_read", "vfs_read"): 3}


def test_kretfunc_retval_follows_the_arguments_and_keeps_its_c_type(types: KernelTypeProvider) -> None:
    plan = _plan("kretfunc:do_thing { @r[retval] = count(); @a[args->flags, args->fd] = sum(retval); }",
                 types)
    (p,) = plan.programs
    assert p.prog_type == ProgType.TRACING
    m = Machine()
    # int retval -2 with garbage above bit 31 (a trampoline saves the whole register);
    # an unsigned short with junk above bit 15
    m.run(p.code, _ctx(0xAAAA_0000_0000_0003, 0x5555_0000_0001_0007, 0x1234_5678_FFFF_FFFE))  # type: ignore[arg-type]
    m.run(p.code, _ctx(3, 7, 40))  # type: ignore[arg-type]
    assert _map(plan, m, "r") == {(-2,): 1, (40,): 1}
    assert _map(plan, m, "a") == {(7, 3): 38}


def test_rawtracepoint_args_are_context_slots(types: KernelTypeProvider) -> None:
    plan = _plan("rawtracepoint:sys_enter /arg1 == 39/ { @[arg0, arg1] = count(); } "
                 "rt:sched_switch { @s = count(); }", types)
    p0, p1 = plan.programs
    assert p0.prog_type == p1.prog_type == ProgType.RAW_TRACEPOINT
    assert [t.place for t in p0.targets + p1.targets] == ["sys_enter", "sched_switch"]
    m = Machine()
    for sysno in (39, 39, 0):
        m.run(p0.code, _ctx(0xFFFF_C900_0000_0F58, sysno))  # type: ignore[arg-type]
    assert _map(plan, m, "") == {(0xFFFF_C900_0000_0F58, 39): 2}


def test_software_and_hardware_probes_are_perf_event_programs(types: KernelTypeProvider) -> None:
    plan = _plan("software:faults:10 { @[comm] = count(); } h:cycles { @c = count(); } "
                 "s:cs, s:cpu-migrations { @m[probe] = count(); }", types)
    assert [(p.provider, p.prog_type, [t.place for t in p.targets]) for p in plan.programs] == [
        ("software", ProgType.PERF_EVENT, ["page-faults:10"]),
        ("hardware", ProgType.PERF_EVENT, ["cpu-cycles:1000000"]),
        ("software", ProgType.PERF_EVENT, ["context-switches:1000"]),
        ("software", ProgType.PERF_EVENT, ["cpu-migrations:1"]),
    ]
    m = Machine()
    m.run(plan.programs[3].code, b"\0" * 64)  # type: ignore[arg-type]
    assert _map(plan, m, "m") == {("software:cpu-migrations:1",): 1}


def test_kfunc_wildcards_expand_over_btf_functions_a_trampoline_can_carry(
        types: KernelTypeProvider) -> None:
    plan = _plan("kfunc:vfs_* { @[func] = count(); }", types)
    # vfs_many has 7 arguments: more than a 6.1 trampoline passes
    assert sorted(t.func for p in plan.programs for t in p.targets) == ["vfs_read", "vfs_write"]
    assert len({p.attach_btf_id for p in plan.programs}) == 2  # one program per function
    ap = parse_program("rt:sched_* { }").probes[0].attach_points[0]
    assert [t.place for t in btf_targets(ap, types.btf, SymbolSource(loader=lambda: None))] == [
        "sched_switch"]


@pytest.mark.parametrize("text, message", [
    ("kfunc:vfs_read { @[args->counts] = count(); }", "Can't find function parameter counts"),
    ("kfunc:vfs_* { @[args->count] = count(); }",
     "The args builtin is not supported yet with wildcard kfunc probes"),
    ("kretfunc:nothing { @[retval] = count(); }", "'nothing' returns void: kretfunc has no retval"),
    ("kfunc:vfs_read { @[retval] = count(); }",
     "The retval builtin can only be used with 'kretprobe' and 'uretprobe' probes"),
    ("kfunc:vfs_read { @[arg0] = count(); }",
     "The arg0 builtin can only be used with 'kprobes' and 'uprobes' probes"),
    ("kfunc:vfs_read, tracepoint:a:b { @[args->count] = count(); }",
     "The args builtin can only be used with tracepoint probes (kfunc used here)"),
    ("rawtracepoint:sys_enter { @[arg12] = count(); }",
     "rawtracepoint probes have at most 12 arguments (arg12 asked)"),
    ("software:faults { @[retval] = count(); }",
     "The retval builtin can only be used with 'kretprobe' and 'uretprobe' probes"),
])
def test_checker_errors(types: KernelTypeProvider, text: str, message: str) -> None:
    with pytest.raises(LangError) as exc:
        _check(text, types)
    assert exc.value.errors[0].message == message


def test_typed_retval_and_args_allow_member_access(types: KernelTypeProvider) -> None:
    c = _check("kretfunc:vfs_read { @[args->file->f_pos, retval] = count(); }", types)
    assert str(c.maps["@"].key_types[1] if "@" in c.maps else c.maps[""].key_types[1]) == "int64"


def test_unknown_function_and_module_are_refused_with_a_reason(types: KernelTypeProvider) -> None:
    with pytest.raises(KprobesError, match="the kernel's BTF has no function 'vfs_raed'") as exc:
        _plan("kfunc:vfs_raed { @ = count(); }", types)
    assert exc.value.hint is not None and "vfs_read" in exc.value.hint
    with pytest.raises(KprobesError, match="module functions are not supported yet"):
        _plan("kfunc:ext4:ext4_sync_fs { @ = count(); }", types)


def test_tracefs_engine_refuses_them_naming_the_bpf_engine(types: KernelTypeProvider) -> None:
    from kprobes.engines.plan import refuse_bpf_only

    for text in ("kfunc:vfs_read { @ = count(); }", "rt:sys_enter { @ = count(); }",
                 "software:faults { @ = count(); }", "hardware:cycles { @ = count(); }"):
        with pytest.raises(LangError) as exc:
            refuse_bpf_only(_check(text, types))
        assert "probes need --engine bpf (" in exc.value.errors[0].message


def test_bpf_refusal_gives_the_fentry_reason() -> None:
    from kprobes.backends.bpf.features import Features
    from kprobes.backends.kernel import bpf_refusal

    feats = Features(bpf=True, prog_types={"KPROBE": True, "TRACING": True, "PERF_EVENT": True,
                                           "RAW_TRACEPOINT": False},
                     fentry=False, fentry_reason="the kernel refuses fentry programs (EPERM)")
    why = bpf_refusal(feats, {"kfunc"})
    assert why is not None and "the kernel refuses fentry programs (EPERM)" in why
    assert "kprobe:" in why
    assert bpf_refusal(feats, {"rawtracepoint"}) == (
        "this kernel refuses BPF RAW_TRACEPOINT programs (needed by rawtracepoint probes)")
    feats.fentry = True
    assert bpf_refusal(feats, {"kfunc", "software"}) is None
