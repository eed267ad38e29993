"""USDT: .note.stapsdt parsing, argument specs, attach points, per-site tracefs fetchargs."""

from __future__ import annotations

import struct
from typing import Optional

import pytest

from kprobes.errors import KprobesError
from kprobes.probes.usdt import UsdtArg, UsdtError, UsdtNote, parse_arg, parse_args, parse_notes


def note(provider: str, name: str, args: str, pc: int, base: int, sem: int, *, is64: bool = True,
         little: bool = True, owner: bytes = b"stapsdt", ntype: int = 3) -> bytes:
    o = "<" if little else ">"
    desc = struct.pack(o + ("QQQ" if is64 else "III"), pc, base, sem)
    desc += provider.encode() + b"\0" + name.encode() + b"\0" + args.encode() + b"\0"
    name_b = owner + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack(o + "III", len(name_b), len(desc), ntype) + pad(name_b) + pad(desc)


def test_parse_notes_64_and_32_bit_both_byte_orders() -> None:
    data = (note("kpt", "sizes", "1@%cl -2@%ax", 0x1261, 0x2024, 0)
            + note("gnu", "x", "", 1, 2, 3, owner=b"GNU")             # another owner: skipped
            + note("kpt", "gated", "-4@%edi", 0x1290, 0x2024, 0x4064))
    notes = parse_notes(data)
    assert notes == [UsdtNote("kpt", "sizes", 0x1261, 0x2024, 0, "1@%cl -2@%ax"),
                     UsdtNote("kpt", "gated", 0x1290, 0x2024, 0x4064, "-4@%edi")]
    be32 = note("p", "n", "", 0x10, 0x20, 0x30, is64=False, little=False)
    assert parse_notes(be32, is64=False, little=False) == [UsdtNote("p", "n", 0x10, 0x20, 0x30, "")]
    # a truncated note ends the walk without an error
    assert parse_notes(data[:-5]) == notes[:1]


def test_prelink_adjustment() -> None:
    n = UsdtNote("p", "n", pc=0x1000, base=0x2000, semaphore=0x4000, args_text="")
    moved = n.adjusted(0x12000)
    assert (moved.pc, moved.semaphore, moved.base) == (0x11000, 0x14000, 0x12000)
    assert n.adjusted(0x2000) is n and n.adjusted(None) is n
    assert UsdtNote("p", "n", 0x1000, 0x2000, 0, "").adjusted(0x3000).semaphore == 0


@pytest.mark.parametrize("spec, want", [
    ("-4@%edi", UsdtArg(4, True, "reg", reg="di")),
    ("1@%cl", UsdtArg(1, False, "reg", reg="cx")),
    ("1@%ah", UsdtArg(1, False, "reg", reg="ax", shift=8)),
    ("-2@%r9w", UsdtArg(2, True, "reg", reg="r9")),
    ("8@%rip", UsdtArg(8, False, "reg", reg="ip")),
    ("8@-16(%rbp)", UsdtArg(8, False, "mem", reg="bp", offset=-16)),
    ("-8@(%rdx,%rdi,8)", UsdtArg(8, True, "mem", reg="dx", index="di", scale=8)),
    ("4@0x10(%rax,%rbx)", UsdtArg(4, False, "mem", reg="ax", offset=16, index="bx")),
    ("-4@g_vol(%rip)", UsdtArg(4, True, "mem", reg="ip", symbol="g_vol")),
    ("8@tab+8(%rip)", UsdtArg(8, False, "mem", reg="ip", offset=8, symbol="tab")),
    ("-4@$5", UsdtArg(4, True, "const", offset=5)),
    ("-8@$-1", UsdtArg(8, True, "const", offset=-1)),
    ("%esi", UsdtArg(4, False, "reg", reg="si")),  # no size: the register's
])
def test_x86_specs(spec: str, want: UsdtArg) -> None:
    from kprobes._record import replace

    assert parse_arg(spec) == replace(want, text=spec)


@pytest.mark.parametrize("spec, kind, reg, offset, size, signed", [
    ("-4@x0", "reg", "x0", 0, 4, True),
    ("4@w1", "reg", "x1", 0, 4, False),
    ("8@[sp, 16]", "mem", "sp", 16, 8, False),
    ("-8@[x29, -12]", "mem", "x29", -12, 8, True),
    ("8@[x1]", "mem", "x1", 0, 8, False),
    ("4@5", "const", "", 5, 4, False),
])
def test_arm64_specs(spec: str, kind: str, reg: str, offset: int, size: int, signed: bool) -> None:
    a = parse_arg(spec, "arm64")
    assert (a.kind, a.reg, a.offset, a.size, a.signed) == (kind, reg, offset, size, signed)


def test_parse_args_splits_outside_brackets_and_types() -> None:
    args = parse_args("8@[sp, 16] -4@x0", "arm64")
    assert [a.text for a in args] == ["8@[sp, 16]", "-4@x0"]
    args = parse_args("1@%cl -2@%ax -4@%edx 8@%rdi")
    assert [a.fetch_type for a in args] == ["u8", "s16", "s32", "u64"]
    assert parse_args("") == ()
    assert parse_args("-4@g(%rip)")[0].with_symbol(0x4010, 0x1289).offset == 0x4010 - 0x1289


@pytest.mark.parametrize("spec, arch, msg", [
    ("3@%eax", "x86_64", "size 3"),
    ("4@%xyz", "x86_64", "unknown register"),
    ("4@$sym", "x86_64", "not a number"),
    ("4@g(%rbx)", "x86_64", "only supported relative to %rip"),
    ("4@(%ax,%bx,3)", "x86_64", "cannot address memory"),
    ("4@(%rax,%rbx,3)", "x86_64", "scale 3"),
    ("4@[q9]", "arm64", "cannot decode"),
    ("4@%eax", "s390x", "not supported"),
])
def test_bad_specs(spec: str, arch: str, msg: str) -> None:
    with pytest.raises(UsdtError, match=msg):
        parse_arg(spec, arch)
    assert issubclass(UsdtError, KprobesError)


def test_too_many_args() -> None:
    with pytest.raises(UsdtError, match="at most 12"):
        parse_args(" ".join(["8@%rax"] * 13))


# -- attach points ---------------------------------------------------------------------

def parse_ap(text: str) -> Optional[object]:
    from kprobes.lang.attach import parse_attach_point
    from kprobes.lang.source import Span

    return parse_attach_point(text, Span(1, 1, 1, len(text) + 1, 0, len(text)))


@pytest.mark.parametrize("text, target, module, func, name", [
    ("usdt:/bin/x:prov:probe", "/bin/x", "prov", "probe", "usdt:/bin/x:prov:probe"),
    ("U:/bin/x:probe", "/bin/x", "", "probe", "usdt:/bin/x:probe"),
    ("usdt:libc:libc:setjmp", "libc", "libc", "setjmp", "usdt:libc:libc:setjmp"),
    ("usdt:/bin/x:*:gc__*", "/bin/x", "*", "gc__*", "usdt:/bin/x:*:gc__*"),
])
def test_attach_points(text: str, target: str, module: str, func: str, name: str) -> None:
    ap = parse_ap(text)
    assert (ap.provider, ap.target, ap.module, ap.func, ap.name) == ("usdt", target, module, func, name)  # type: ignore[attr-defined]


@pytest.mark.parametrize("text, msg", [
    ("usdt:/bin/x", "must have a target"),
    ("usdt::p:n", "must have a target"),
    ("usdt:/bin/x:p:", "must have a probe name"),
    ("usdt:/bin/x::n", "must have a probe name"),
    ("usdt:/bin/x:a:b:c", "invalid usdt attach point"),
    ("usdt:/bin/x:p:n{", "invalid character"),
])
def test_bad_attach_points(text: str, msg: str) -> None:
    from kprobes.lang.attach import AttachError

    with pytest.raises(AttachError, match=msg):
        parse_ap(text)


# -- tracefs fetchargs per site ----------------------------------------------------------

def site(args: str) -> object:
    from kprobes.backends.symbols.usdt import UsdtProbe

    parsed = tuple(a.with_symbol(0x4010, 0x1000) if a.symbol else a for a in parse_args(args))
    return UsdtProbe("/bin/x", "p", "n", 0x1000, 0x1000, 0, 0, parsed, args)


def test_usdt_fetches_replace_placeholders_per_site() -> None:
    from kprobes.engines.fetch import Fetch, usdt_slot
    from kprobes.engines.targets import Target
    from kprobes.engines.usdt import usdt_fetches

    fetches = (Fetch("arg0", usdt_slot(0), usdt_slot(0)), Fetch("str_arg1", f"+0({usdt_slot(1)})", "ustring"),
               Fetch("arg2", usdt_slot(2), usdt_slot(2)), Fetch("arg3", usdt_slot(3), usdt_slot(3)),
               Fetch("comm", "$comm", "string"))
    t = Target("usdt", "/bin/x:0x1000", "usdt:/bin/x:p:n", "n", usdt=site("-4@%edi 8@-16(%rbp) -4@$-5 2@g(%rip)"))  # type: ignore[arg-type]
    got = [f.render() for f in usdt_fetches(fetches, t)]
    assert got == ["arg0=%di:s32", "str_arg1=+0(-16(%bp)):ustring", "arg2=\\-5:s32",
                   f"arg3=+{0x4010 - 0x1000}(%ip):u16", "comm=$comm:string"]
    with pytest.raises(KprobesError, match="4 arguments: arg5 does not exist"):
        usdt_fetches((Fetch("arg5", usdt_slot(5), usdt_slot(5)),), t)
    t2 = Target("usdt", "", "usdt:/bin/x:p:n", "n", usdt=site("-8@(%rdx,%rdi,8) 1@%ah 4@$1"))  # type: ignore[arg-type]
    for n, msg in ((0, "base \\+ index"), (1, "high-byte")):
        with pytest.raises(KprobesError, match=msg):
            usdt_fetches((Fetch(f"arg{n}", usdt_slot(n), usdt_slot(n)),), t2)
    with pytest.raises(KprobesError, match="constant 1: it cannot be dereferenced"):
        usdt_fetches((Fetch("s", f"+0({usdt_slot(2)})", "ustring"),), t2)


def test_checker_usdt_builtins() -> None:
    from kprobes.lang import LangError, check, parse_program

    checked = check(parse_program('usdt:/bin/x:p:n { @[arg0, probe] = count(); printf("%d %s\\n", '
                                  'arg5, str(arg1)); }'))
    assert checked.probes[0].args == {0, 1, 5}
    for text, msg in (("usdt:/bin/x:n { print(sarg0) }", "sarg0 builtin can only be used"),
                      ("usdt:/bin/x:n { print(retval) }", "retval builtin can only be used"),
                      ("usdt:/bin/x:n { print(arg6) }", "doesn't support arg6")):
        with pytest.raises(LangError, match=msg):
            check(parse_program(text))
