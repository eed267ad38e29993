"""parse()/render() of dynamic-event definitions, and their round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.errors import ProbeSyntaxError
from kprobes.probes import DeleteSpec, FetchArg, ProbeSpec, parse, render
from kprobes.probes.spec import (
    AllArgs,
    ArgVar,
    BtfRef,
    Comm,
    Deref,
    Expr,
    FileOffset,
    Imm,
    ImmString,
    KprobePlace,
    MemAddr,
    Register,
    Retval,
    StackVar,
    SymbolAddr,
    UprobePlace,
)


def _probe(text: str, kind: str = "kprobe") -> ProbeSpec:
    spec = parse(text, kind)
    assert isinstance(spec, ProbeSpec)
    return spec


# --------------------------------------------------------------------------
# headers and places
# --------------------------------------------------------------------------


def test_kprobe_with_group_event_and_args() -> None:
    spec = _probe("p:grp/ev do_sys_open dfd=%di fn=+0(%si):string")
    assert spec.kind == "kprobe" and not spec.is_return
    assert (spec.group, spec.event, spec.maxactive) == ("grp", "ev", None)
    assert spec.place == KprobePlace(symbol="do_sys_open")
    assert spec.args == (
        FetchArg("dfd", Register("di")),
        FetchArg("fn", Deref(0, Register("si")), "string"),
    )
    assert render(spec) == "p:grp/ev do_sys_open dfd=%di fn=+0(%si):string"
    assert spec.render() == render(spec)


def test_kretprobe_maxactive_and_module_symbol() -> None:
    spec = _probe("r16:ev ext4:ext4_sync_file $retval")
    assert spec.is_return and spec.maxactive == 16 and spec.group is None
    assert spec.place == KprobePlace(symbol="ext4_sync_file", module="ext4")
    assert spec.args == (FetchArg(None, Retval()),)
    assert render(spec) == "r16:ev ext4:ext4_sync_file $retval"


def test_percent_return_is_rendered_as_r() -> None:
    spec = _probe("p:ev vfs_read%return ret=$retval")
    assert spec.is_return
    assert render(spec) == "r:ev vfs_read ret=$retval"


def test_symbol_offset_and_address_places() -> None:
    assert _probe("p vfs_read+0x10").place == KprobePlace(symbol="vfs_read", offset=16)
    spec = _probe("p:ev 0xffffffff81000000")
    assert spec.place == KprobePlace(address=0xFFFFFFFF81000000)
    assert render(spec) == "p:ev 0xffffffff81000000"


def test_uprobe_place_forms() -> None:
    spec = _probe("p:u/e /bin/bash:0x4a0(0x10)", "uprobe")
    assert spec.place == UprobePlace("/bin/bash", 0x4A0, 0x10)
    assert render(spec) == "p:u/e /bin/bash:0x4a0(0x10)"
    ret = _probe("p:u/e /usr/lib/libc.so.6:1184%return(0x8) r=$retval", "uprobe")
    assert ret.is_return and ret.place == UprobePlace("/usr/lib/libc.so.6", 1184, 8)
    assert render(ret) == "r:u/e /usr/lib/libc.so.6:0x4a0(0x8) r=$retval"


def test_uprobe_header_without_colon_has_no_name() -> None:
    # trace_uprobe.c only reads a name when the second character is ':'.
    spec = _probe("r5:grp/ev /bin/true:0x10", "uprobe")
    assert spec.is_return and (spec.group, spec.event, spec.maxactive) == (None, None, None)


def test_group_only_header_and_dot_separator() -> None:
    spec = _probe("p:grp/ do_exit")
    assert (spec.group, spec.event) == ("grp", None)
    assert render(spec) == "p:grp/ do_exit"
    assert _probe("p:grp.ev do_exit").group == "grp"


def test_delete_forms() -> None:
    assert parse("-:grp/ev") == DeleteSpec("kprobe", "grp", "ev")
    assert parse("-:ev", "uprobe") == DeleteSpec("uprobe", None, "ev")
    assert parse("-:grp/") == DeleteSpec("kprobe", "grp", "")
    spec = parse("-:grp/ev do_exit")
    assert isinstance(spec, DeleteSpec) and spec.match == ("do_exit",)
    assert render(spec) == "-:grp/ev do_exit"


# --------------------------------------------------------------------------
# fetchargs
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expr, typ",
    [
        ("%ax", Register("ax"), None),
        ("@0x1000:u32", MemAddr(0x1000), "u32"),
        ("@123", MemAddr(123), None),
        ("@jiffies+8:u64", SymbolAddr("jiffies", 8), "u64"),
        ("@jiffies-0x10", SymbolAddr("jiffies", -16), None),
        ("@+0x20", FileOffset(32), None),
        ("$stack", StackVar(None), None),
        ("$stack3:s32", StackVar(3), "s32"),
        ("$retval:x8", Retval(), "x8"),
        ("$comm", Comm(), None),
        ("$COMM:string", Comm(), "string"),
        ("$arg2:s16", ArgVar(2), "s16"),
        ("$arg*", AllArgs(), None),
        ("+8(%sp):u64[4]", Deref(8, Register("sp")), "u64[4]"),
        ("-0x10(+8($stack)):b3@2/8", Deref(-16, Deref(8, StackVar(None))), "b3@2/8"),
        ("+u0(%di):ustring", Deref(0, Register("di"), user=True), "ustring"),
        ("-u8(%sp)", Deref(-8, Register("sp"), user=True), None),
        ("\\1", Imm(1), None),
        ("\\-5:s8", Imm(-5), "s8"),
        ("\\0x10", Imm(16), None),
        ('\\"hello"', ImmString("hello"), None),
        ("skb->len:u32", BtfRef("skb->len"), "u32"),
        ("+0(%di):%pd", Deref(0, Register("di")), "%pd"),
        ("%di:symstr", Register("di"), "symstr"),
        ("+0(%si):char[8]", Deref(0, Register("si")), "char[8]"),
    ],
)
def test_fetcharg_forms(text: str, expr: Expr, typ: str) -> None:
    spec = _probe(f"p:ev vfs_read x={text}")
    assert spec.args == (FetchArg("x", expr, typ),)
    again = _probe(render(spec))
    assert again == spec


def test_normalized_numbers() -> None:
    spec = _probe("p:ev vfs_read a=+0x10(%di) b=@+0x8 c=\\+5 d=@4096")
    assert render(spec) == "p:ev vfs_read a=+16(%di) b=@+8 c=\\5 d=@0x1000"


def test_comments_and_whitespace_follow_the_kernel() -> None:
    spec = _probe("p:ev\t vfs_read   a=%di  # a comment\n")
    assert render(spec) == "p:ev vfs_read a=%di"


@pytest.mark.parametrize(
    "text, message, marker",
    [
        ("p:ev vfs_read a=%", "Invalid register name", "%"),
        ("p:ev vfs_read a=+8%di", "Dereference needs a brace", "+8"),
        ("p:ev vfs_read a=+8(%di", "Dereference brace is not closed", None),
        ("p:ev vfs_read a=%di:u7", "Unknown type is specified", "u7"),
        ("p:ev vfs_read a=$foo", "Invalid $-variable specified", "$foo"),
        ("p:ev vfs_read 9=%di", "Argument name must follow the same rules as C identifiers", "9="),
        ("p:1ev vfs_read", "Event name must follow the same rules as C identifiers", "1ev"),
        ("p:ev vfs_read a=%di:string", "String accepts only memory argument", "string"),
    ],
)
def test_parse_errors_carry_kernel_message_and_position(
    text: str, message: str, marker: str
) -> None:
    with pytest.raises(ProbeSyntaxError) as info:
        parse(text)
    assert info.value.kernel_message == message
    assert info.value.position == (text.index(marker) if marker else len(text))
    assert not info.value.from_kernel


def test_empty_and_multiline_text_are_refused() -> None:
    with pytest.raises(ProbeSyntaxError):
        parse("   ")
    with pytest.raises(ProbeSyntaxError):
        parse("p:a do_exit\np:b do_exit")


# --------------------------------------------------------------------------
# default names
# --------------------------------------------------------------------------


def test_default_names() -> None:
    k = _probe("p do_sys_open+4")
    assert (k.group_name, k.event_name) == ("kprobes", "p_do_sys_open_4")
    assert _probe("r ext4:ext4_sync_file").event_name == "r_ext4_ext4_sync_file_0"
    assert _probe("p foo.isra.0").event_name == "p_foo_isra_0_0"
    assert _probe("p 0xffffffff81000000").event_name is None
    u = _probe("r /usr/lib/x86_64-linux-gnu/libc.so.6:0x4a0", "uprobe")
    assert (u.group_name, u.event_name) == ("uprobes", "p_libc_0x4a0")
    named = _probe("p:g/ /bin/true:16", "uprobe")
    assert (named.group_name, named.event_name) == ("g", "p_true_0x10")
    # render() keeps the omission; the default is only a property
    assert render(k) == "p do_sys_open+4"


# --------------------------------------------------------------------------
# Hypothesis: spec -> render -> parse == spec; text -> parse -> render idempotent
# --------------------------------------------------------------------------

IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
REGS = st.sampled_from(["di", "si", "dx", "cx", "ax", "sp", "r8", "x0", "x1"])
NUMERIC = st.sampled_from(["u8", "u16", "u32", "u64", "s8", "s32", "x16", "x64", "char"])
SMALL = st.integers(min_value=0, max_value=1 << 20)
SIGNED = st.integers(min_value=-(1 << 20), max_value=1 << 20)
STRING_CHARS = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="_-.,/"),
    max_size=8,
)

LEAVES: st.SearchStrategy[Expr] = st.one_of(
    REGS.map(Register),
    SMALL.map(MemAddr),
    st.builds(SymbolAddr, IDENT, SIGNED),
    SIGNED.map(FileOffset),
    st.one_of(st.none(), SMALL).map(StackVar),
    st.just(Retval()),
    st.integers(min_value=1, max_value=64).map(ArgVar),
    SIGNED.map(Imm),
)


def _deref(inner: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.builds(Deref, SIGNED, inner, st.booleans())


EXPRS = st.recursive(LEAVES, _deref, max_leaves=3)


@st.composite
def fetchargs(draw: st.DrawFn) -> FetchArg:
    name = draw(st.one_of(st.none(), IDENT))
    kind = draw(st.sampled_from(["expr", "comm", "immstr", "btf"]))
    if kind == "comm":
        return FetchArg(name, Comm(), draw(st.sampled_from([None, "string"])))
    if kind == "immstr":
        return FetchArg(
            name, ImmString(draw(STRING_CHARS)), draw(st.sampled_from([None, "string"]))
        )
    if kind == "btf":
        text = draw(IDENT) + draw(st.sampled_from(["", "->len", "->dev->name"]))
        return FetchArg(name, BtfRef(text), draw(st.sampled_from([None, "u32"])))
    expr = draw(EXPRS)
    choices = [None, draw(NUMERIC)]
    width = draw(st.integers(min_value=1, max_value=8))
    choices.append(f"b{width}@{draw(st.integers(min_value=0, max_value=8 - width))}/8")
    if isinstance(expr, Deref):
        choices += ["string", "ustring", f"{draw(NUMERIC)}[{draw(st.integers(1, 64))}]"]
    typ = draw(st.sampled_from(choices))
    if isinstance(expr, Deref) and expr.user and typ is not None and "[" in typ:
        typ = None  # user loads store as ST_UMEM, which arrays refuse
    return FetchArg(name, expr, typ)


@st.composite
def probe_specs(draw: st.DrawFn) -> ProbeSpec:
    kind = draw(st.sampled_from(["kprobe", "uprobe"]))
    is_return = draw(st.booleans())
    group = draw(st.one_of(st.none(), IDENT))
    event = draw(st.one_of(st.none(), IDENT))
    place: KprobePlace | UprobePlace
    maxactive = None
    if kind == "kprobe":
        if draw(st.booleans()):
            place = KprobePlace(
                symbol=draw(IDENT),
                offset=draw(SMALL),
                module=draw(st.one_of(st.none(), IDENT)),
            )
        else:
            place = KprobePlace(address=draw(st.integers(min_value=0, max_value=(1 << 64) - 1)))
        if is_return and draw(st.booleans()):
            maxactive = draw(st.integers(min_value=1, max_value=4096))
    else:
        path = "/" + "/".join(draw(st.lists(IDENT, min_size=1, max_size=3)))
        place = UprobePlace(path, draw(SMALL), draw(st.one_of(st.none(), SMALL)))
    args = tuple(draw(st.lists(fetchargs(), max_size=5)))
    return ProbeSpec(kind, is_return, place, args, group, event, maxactive)


@settings(max_examples=60, deadline=None)
@given(probe_specs())
def test_render_then_parse_gives_the_spec(spec: ProbeSpec) -> None:
    assert parse(render(spec), spec.kind) == spec


@settings(max_examples=40, deadline=None)
@given(probe_specs(), st.lists(st.sampled_from([" ", "\t", "  "]), min_size=1, max_size=8))
def test_text_parse_render_is_idempotent(spec: ProbeSpec, gaps: list[str]) -> None:
    words = render(spec).split(" ")
    noisy = "".join(w + gaps[i % len(gaps)] for i, w in enumerate(words))
    once = render(parse(noisy, spec.kind))
    assert render(parse(once, spec.kind)) == once
    assert once == render(spec)
