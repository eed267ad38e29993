"""validate(): the kernel's verdict, message and error_log caret position, offline."""

from __future__ import annotations

import pytest

from kprobes._record import replace
from kprobes.errors import ProbeSyntaxError
from kprobes.probes import DeleteSpec, KernelFeatures, ProbeSpec, render, validate
from kprobes.probes.arch import get_arch
from kprobes.probes.validate import SILENT_EINVAL, kernel_registers

LATEST = KernelFeatures.for_version("6.18")
V612 = KernelFeatures.for_version("6.12")
V61 = KernelFeatures.for_version("6.1")
V515 = KernelFeatures.for_version("5.15")
BTF = KernelFeatures(btf_args=True)
NOBTF = replace(LATEST, btf_args=False)

README_618 = """\
  uprobe_events\t\t- Create/append/remove/show the userspace dynamic events
\t  accepts: event-definitions (one definition per line)
\t   Format: p[:[<group>/][<event>]] <place> [<args>]
\t           r[maxactive][:[<group>/][<event>]] <place> [<args>]
\t           -:[<group>/][<event>]
   place (uprobe): <path>:<offset>[%return][(ref_ctr_offset)]
\t     args: <name>=fetcharg[:type]
\t fetcharg: (%<register>|$<efield>), @<address>, @<symbol>[+|-<offset>],
\t           $stack<index>, $stack, $retval, $comm, $arg<N>,
\t           +|-[u]<offset>(<fetcharg>), \\imm-value, \\"imm-string"
\t     kernel return probes support: $retval, $arg<N>, $comm
\t     type: s8/16/32/64, u8/16/32/64, x8/16/32/64, char, string, symbol,
\t           b<bit-width>@<bit-offset>/<container-size>, ustring,
\t           symstr, %pd/%pD, <type>\\[<array-size>\\]
\t    efield: For event probes ('e' types), the field is on of the fields
"""

README_515 = """\
  kprobe_events\t\t- Create/append/remove/show the kernel dynamic events
\t     args: <name>=fetcharg[:type]
\t fetcharg: %<register>, @<address>, @<symbol>[+|-<offset>],
\t           $stack<index>, $stack, $retval, $comm, $arg<N>,
\t           +|-[u]<offset>(<fetcharg>), \\imm-value, \\"imm-string"
\t     type: s8/16/32/64, u8/16/32/64, x8/16/32/64, string, symbol,
\t           b<bit-width>@<bit-offset>/<container-size>, ustring,
\t           <type>\\[<array-size>\\]
  events/\t\t- Directory containing all trace event subsystems:
"""


def _error(
    text: str, kind: str = "kprobe", features: KernelFeatures = LATEST, arch: str = "x86_64"
) -> ProbeSyntaxError:
    with pytest.raises(ProbeSyntaxError) as info:
        validate(text, kind, features, arch)
    return info.value


def _at(text: str, marker: str | None, after: str | None = None) -> int:
    """Where ``marker`` starts (searching from ``after``); None means past the end."""
    if marker is None:
        return len(text)
    start = text.index(after) if after else 0
    return text.index(marker, start)


# (kind, features, text, kernel message, caret marker[, search from])
# fmt: off
CASES = [
    # -- names ----------------------------------------------------------
    ("kprobe", LATEST, "p:1grp/ev vfs_read", "Group name must follow the same rules as C identifiers", "1grp"),
    ("kprobe", LATEST, "p:/ev vfs_read", "Group name is not specified", "/ev"),
    ("kprobe", LATEST, "p: vfs_read", "Event name is not specified", " vfs"),
    ("kprobe", LATEST, "p:grp/e-v vfs_read", "Event name must follow the same rules as C identifiers", "e-v"),
    ("kprobe", LATEST, f"p:grp/{'e' * 64} vfs_read", "Event name is too long", "eee"),
    ("kprobe", LATEST, f"p:{'g' * 64}/ev vfs_read", "Group name is too long", "ggg"),
    ("kprobe", V515, "p:my-g/ev vfs_read", "Group name must follow the same rules as C identifiers", "my-g"),
    ("kprobe", KernelFeatures.for_version("5.10"), "p:g.ev vfs_read", "Event name must follow the same rules as C identifiers", "g.ev"),
    # -- kprobe header and place ----------------------------------------
    ("kprobe", LATEST, "p5:ev vfs_read", "Maxactive is only for function exit", "5"),
    ("kprobe", V61, "p5:ev vfs_read", "Maxactive is not for kprobe", "5"),
    ("kprobe", LATEST, "r0:ev vfs_read", "Invalid maxactive number", "0"),
    ("kprobe", LATEST, "r5x:ev vfs_read", "Invalid maxactive number", "5x"),
    ("kprobe", LATEST, "r5000:ev vfs_read", "Maxactive is too big", "5000"),
    ("kprobe", LATEST, "p:ev vfs_read%exit", "Invalid probed address suffix", "%exit"),
    ("kprobe", LATEST, "p:ev vfs_read-4", "Invalid probed address or symbol", "vfs_read"),
    ("kprobe", LATEST, "p:ev vfs_read+0xzz", "Invalid probed address or symbol", "vfs_read"),
    ("kprobe", LATEST, "r:ev vfs_read+8", "Retprobe address must be an function entry", "vfs_read"),
    ("kprobe", LATEST, "p:ev vfs_read%return+8", "Invalid probed address suffix", "%return"),
    # -- variables ------------------------------------------------------
    ("kprobe", LATEST, "p:ev vfs_read a=$retval", "$retval is not available on probe", "$retval"),
    ("kprobe", LATEST, "p:ev vfs_read a=$stackx", "Invalid $-variable specified", "$stackx"),
    ("kprobe", V612, "p:ev vfs_read a=$stackx", "Invalid $-variable specified", "$stackx"),
    ("kprobe", V515, "p:ev vfs_read a=$stackx", "Invalid $-valiable specified", "$stackx"),
    ("kprobe", LATEST, "p:ev vfs_read a=$stack4096", "Invalid stack number", "$stack4096"),
    ("kprobe", LATEST, "p:ev vfs_read a=$arg0", "Invalid argument number", "$arg0"),
    ("kprobe", LATEST, "p:ev vfs_read+4 a=$arg1", "$arg* can be used only on function entry or exit", "$arg1"),
    ("kprobe", LATEST, "p:ev 0xffffffff81000000 $arg1", "$arg* can be used only on function entry or exit", "$arg1"),
    ("kprobe", KernelFeatures.for_version("6.8"), "r:ev vfs_read a=$arg1", "$arg* can be used only on function entry or exit", "$arg1"),
    ("kprobe", V61, "r:ev vfs_read a=$arg1", "Invalid $-variable specified", "$arg1"),
    ("kprobe", V61, "p:ev vfs_read+8 a=$arg0", "Invalid $-variable specified", "$arg0"),
    ("kprobe", V61, "p:ev vfs_read a=$arg0", "Invalid argument number", "$arg0"),
    ("kprobe", V515, "p:ev vfs_read a=$arg0", "Invalid argument number", "$arg0"),
    ("kprobe", V61, "p:ev vfs_read a=$argx", "Invalid $-variable specified", "$argx"),
    ("kprobe", V61, "r:ev vfs_read a=$retvalx", "Invalid $-variable specified", "$retvalx"),
    ("kprobe", V612, "r:ev vfs_read a=$retvalx", "This variable is not found at this probe point", "$retvalx"),
    ("kprobe", V612, "r:ev vfs_read a=$retval.x", "Non pointer structure/union argument is not supported.", "x"),
    ("kprobe", V612, "r:ev vfs_read a=$retval-x", "Failed to parse single hyphen. Forgot '>'?", "-x"),
    ("kprobe", V612, "r:ev vfs_read a=$retval:u8[2]", "String accepts only memory argument", "u8"),
    ("kprobe", V612, "p:ev vfs_read a=$arg*", "Invalid $-variable specified", "$arg*"),
    ("kprobe", V612, "r:ev vfs_read $arg1 $arg1", "This argument name is already used", "$arg1", "1 $"),
    ("kprobe", LATEST, "p:ev vfs_read a=$foo", "Invalid $-variable specified", "$foo"),
    ("uprobe", LATEST, "p:ev /bin/true:0x10 a=$stack", None, None),
    # -- registers, memory, immediates ------------------------------------
    ("kprobe", LATEST, "p:ev vfs_read a=%rdi", "Invalid register name", "%rdi"),
    ("kprobe", LATEST, "p:ev vfs_read a=%x0", "Invalid register name", "%x0"),
    ("kprobe", LATEST, "p:ev vfs_read a=@0x1g", "Invalid memory address", "@0x1g"),
    ("kprobe", LATEST, "p:ev vfs_read a=@+8", "File offset is not available with kprobe", "@+8"),
    ("uprobe", LATEST, "p:ev /bin/true:0x10 a=@jiffies", "Symbol is not available with uprobe", "@jiffies"),
    ("uprobe", LATEST, "p:ev /bin/true:0x10 a=@+0xq", "Invalid file offset value", "@+0xq"),
    ("kprobe", LATEST, "p:ev vfs_read a=@jiffies+zz", "Failed to register probe event", "vfs_read"),
    ("kprobe", LATEST, "p:ev vfs_read a=\\x", "Invalid immediate value", "x"),
    ("kprobe", LATEST, 'p:ev vfs_read a=\\"abc', "String is not closed with '\"'", None),
    ("kprobe", KernelFeatures.for_version("5.4"), "p:ev vfs_read a=\\1", "Invalid fetch argument", "\\1"),
    ("kprobe", LATEST, "p:ev vfs_read a=9", "Invalid fetch argument", "9"),
    # -- dereferences -----------------------------------------------------
    ("kprobe", LATEST, "p:ev vfs_read a=+8%di", "Dereference needs a brace", "+8"),
    ("kprobe", LATEST, "p:ev vfs_read a=+z(%di)", "Invalid dereference offset", "+z"),
    ("kprobe", LATEST, "p:ev vfs_read a=+8(%di", "Dereference brace is not closed", None),
    ("kprobe", LATEST, "p:ev vfs_read a=+8($comm)", "$comm can not be dereferenced", "$comm"),
    ("kprobe", LATEST, "p:ev vfs_read a=+0()", "Invalid fetch argument", ")"),
    # the kernel counts 'u' one place short: its caret lands on the '(' here
    ("kprobe", LATEST, "p:ev vfs_read a=+u8(%rax)", "Invalid register name", "(%rax"),
    ("kprobe", LATEST, "p:ev vfs_read a=" + "+0(" * 15 + "%sp" + ")" * 15, "Dereference is too much nested", "+0(", "(+0("),
    # -- types ----------------------------------------------------------
    ("kprobe", LATEST, "p:ev vfs_read a=%di:u7", "Unknown type is specified", "u7"),
    ("kprobe", V61, "p:ev vfs_read a=%di:%pd", "Unknown type is specified", "%pd"),
    ("kprobe", KernelFeatures.for_version("5.10"), "p:ev vfs_read a=%di:char", "Unknown type is specified", "char"),
    ("uprobe", LATEST, "p:ev /bin/true:0x10 a=%ax:symbol", "Unknown type is specified", "symbol"),
    ("kprobe", LATEST, "p:ev vfs_read a=%di:string", "String accepts only memory argument", "string"),
    ("kprobe", LATEST, "p:ev vfs_read a=$comm:symstr", "$comm and immediate-string only accepts string type", "symstr"),
    ("kprobe", LATEST, "p:ev vfs_read a=\\1:symstr", "Symbol String doesn't accept data/userdata", "symstr"),
    ("kprobe", LATEST, "p:ev vfs_read a=%di:u8[65]", "Array number is too big", "65"),
    ("kprobe", LATEST, "p:ev vfs_read a=%di:u8[0]", "Invalid array size", "0]"),
    ("kprobe", LATEST, "p:ev vfs_read a=%di:u8[2", "Array is not closed", None),
    ("kprobe", LATEST, "p:ev vfs_read a=%di:u8[2]x", "Array has wrong suffix", "x"),
    ("kprobe", LATEST, "p:ev vfs_read a=%di:u8[2]", "String accepts only memory argument", "u8["),
    ("kprobe", LATEST, "p:ev vfs_read a=%di:b4@6/8", "Invalid bitfield", "b4"),
    ("kprobe", LATEST, "p:ev vfs_read a=%di:b4@2/9", "Unknown type is specified", "b4"),
    # the caret of a type error after a dereference is shifted by the '+0('
    ("kprobe", LATEST, "p:ev vfs_read a=+0(%si):b9@0/8", "Invalid bitfield", "0/8"),
    # ... since 6.5; 6.1 logs it at the type
    ("kprobe", V61, "p:ev vfs_read a=+0(%si):b9@0/8", "Invalid bitfield", "b9"),
    ("kprobe", V612, "p:ev vfs_read a=+u0(%si):u8[2]", "String accepts only memory argument", "2]"),
    ("kprobe", V61, "p:ev vfs_read a=+u0(%si):u8[2]", "String accepts only memory argument", "u8"),
    ("kprobe", V612, "p:ev vfs_read a=$comm:u32", "$comm and immediate-string only accepts string type", "u32"),
    # -- arguments ------------------------------------------------------
    ("kprobe", LATEST, "p:ev vfs_read =%di", "Argument name is not specified", "=%di"),
    ("kprobe", LATEST, "p:ev vfs_read a=", "No argument expression", None),
    ("kprobe", LATEST, f"p:ev vfs_read {'a' * 33}=%di", "Argument name is too long", "aaa"),
    ("kprobe", LATEST, "p:ev vfs_read 2a=%di", "Argument name must follow the same rules as C identifiers", "2a"),
    ("kprobe", LATEST, "p:ev vfs_read a=%di a=%si", "This argument name is already used", "a=%si"),
    ("kprobe", LATEST, "p:ev vfs_read arg2=%di %si", "This argument name is already used", "%si"),
    ("kprobe", LATEST, "p:ev vfs_read common_pid=%di", "This argument name is already used", "common_pid"),
    ("kprobe", LATEST, "p:ev vfs_read a=+" + "0" * 62 + "(%di)", "Argument expression is too long", "+000"),
    ("kprobe", LATEST, "p:ev vfs_read " + " ".join(f"a{i}=%di" for i in range(129)), "Too many arguments are specified", "a0="),
    ("kprobe", LATEST, "p:ev vfs_read " + " ".join(f"a{i}=+0(%sp):u64[64]" for i in range(7)), "Event too big (too many fields?)", "%sp", "a6="),
    # -- BTF names ------------------------------------------------------
    ("kprobe", NOBTF, "p:ev vfs_read file", "BTF is not available or not supported", "file"),
    ("kprobe", BTF, "p:ev vfs_read+4 file", "BTF is not available or not supported", "file"),
    ("kprobe", BTF, "p:ev vfs_read file.f_mode", "Non pointer structure/union argument is not supported.", "f_mode"),
    ("kprobe", BTF, "p:ev vfs_read file-f_mode", "Failed to parse single hyphen. Forgot '>'?", "-f_mode"),
    ("kprobe", BTF, "p:ev vfs_read $arg* $arg*", "$arg* can be used only once in the parameters", "$arg*", "* "),
    ("kprobe", V515, "p:ev vfs_read file", "Invalid fetch argument", "file"),
    # -- uprobe places --------------------------------------------------
    ("uprobe", LATEST, "p:ev /bin/true:0x10%foo", "Invalid probed address suffix", "%foo"),
    ("uprobe", LATEST, "p:ev /bin/true:0x10(0x8", "Reference counter brace is not closed", None),
    ("uprobe", LATEST, "p:ev /bin/true:0x10(0x8)%return", "Reference counter has wrong suffix", "%return"),
    ("uprobe", LATEST, "p:ev /bin/true:0x10(q)", "Invalid reference counter offset", "q)"),
    ("uprobe", LATEST, "p:ev /bin/true:0x1q", "Invalid uprobe offset", "0x1q"),
    ("uprobe", LATEST, "p:ev /bin/true:0x10 $arg1", "$arg* can be used only on function entry or exit", "$arg1"),
    ("uprobe", LATEST, "p:ev /bin/true:0x10 a=%ax:%pd", "Unknown type is specified", "%pd"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[2][:60])
def test_kernel_message_and_caret(case: tuple) -> None:  # type: ignore[type-arg]
    kind, features, text, message, marker = case[:5]
    after = case[5] if len(case) > 5 else None
    if message is None:
        assert isinstance(validate(text, kind, features), ProbeSpec)
        return
    err = _error(text, kind, features)
    assert err.kernel_message == message
    assert err.text == text
    assert err.position == _at(text, marker, after)
    assert err.hint  # every logged error comes with advice


@pytest.mark.parametrize(
    "text, kind",
    [
        ("x:ev vfs_read", "kprobe"),
        ("p:ev", "kprobe"),
        ("p:ev /bin/true:0x10", "kprobe"),
        ("p:ev true:0x10", "uprobe"),
        ("p:ev /bin/true", "uprobe"),
        ("p:ev /bin/true:x10", "uprobe"),
        ("-", "kprobe"),
        ("-:", "uprobe"),
        ("p:ev vfs_read a=$comm:u32", "kprobe-6.1"),
        ('p:ev vfs_read a=\\"x":u8', "kprobe-6.1"),
    ],
)
def test_silent_refusals(text: str, kind: str) -> None:
    kind, _, version = kind.partition("-")
    err = _error(text, kind, KernelFeatures.for_version(version) if version else LATEST)
    assert (err.kernel_message, err.position) == (SILENT_EINVAL, 0)
    assert err.hint


def test_valid_definitions_come_back_normalized() -> None:
    spec = validate("p:grp/ev vfs_read%return r=$retval a=$arg2:u32", "kprobe", LATEST)
    assert isinstance(spec, ProbeSpec) and spec.is_return
    assert render(spec) == "r:grp/ev vfs_read r=$retval a=$arg2:u32"
    up = validate("r5:grp/ev /bin/true:0x10 c=$comm", "uprobe", LATEST)
    assert isinstance(up, ProbeSpec) and up.event_name == "p_true_0x10"
    assert validate("-:grp/ev", "uprobe") == DeleteSpec("uprobe", "grp", "ev")


def test_valid_edge_cases_of_the_latest_kernel() -> None:
    for text in [
        "p:ev vfs_read a=+0(%di):%pd b=+8(%si):%pD",
        "p:ev vfs_read a=%di:symstr b=+0(%si):symstr",
        "r100:ev vfs_read a=$arg1 r=$retval:s32",
        f"p:ev vfs_read a={'+0(' * 14}%sp{')' * 14}",
        "p:ev vfs_read " + " ".join(f"a{i}=%di" for i in range(128)),
        "p:ev vfs_read " + " ".join(f"a{i}=+0(%sp):u64[64]" for i in range(6)),
        f"p:ev vfs_read {'a' * 32}=%di",
    ]:
        assert isinstance(validate(text, "kprobe", LATEST), ProbeSpec), text


def test_6_1_ignores_fetchargs_past_the_limit() -> None:
    text = "p:ev vfs_read " + " ".join(f"a{i}=%di" for i in range(128)) + " z=%foo"
    spec = validate(text, "kprobe", V61)
    assert isinstance(spec, ProbeSpec) and len(spec.args) == 128
    assert _error(text, features=V612).kernel_message == "Argument list too long"


def test_btf_kernels_type_unnamed_argn_and_retval_themselves() -> None:
    # $argN (unnamed) becomes a BTF parameter and $retval is BTF-typed: a
    # string may be a char * the kernel loads, so only the kernel can refuse.
    for text in [
        "p:ev vfs_read $arg2:string $arg1:x32 arg1=%di",
        "r:ev vfs_read $retval:string r=$retval:ustring s=$retval:string[2]",
        "p:ev vfs_read $arg*:u32 a=%di",
        "r:ev vfs_read $retval->f_flags",
    ]:
        assert isinstance(validate(text, "kprobe", V612), ProbeSpec), text
    assert _error("p:ev vfs_read a=$arg2:string", features=V612).kernel_message == (
        "String accepts only memory argument"
    )
    assert _error("p:ev vfs_read $arg2:string", features=V61).kernel_message == (
        "String accepts only memory argument"
    )


def test_dentry_types_rewrite_like_the_kernel() -> None:
    err = _error("p:ev vfs_read f=$comm:%pd")
    assert err.kernel_message == "$comm can not be dereferenced"
    assert err.text == "p:ev vfs_read f=+0x0(+0x28($comm)):string"
    assert err.position == err.text.index("$comm")


def test_file_check_is_optional_and_used() -> None:
    def check(path: str) -> str | None:
        return {"/missing": "missing", "/etc": "not_regular"}.get(path)

    assert validate("p:ev /missing:0x10", "uprobe") is not None
    for path, message in [
        ("/missing", "Failed to find the given file"),
        ("/etc", "Not a regular file"),
    ]:
        with pytest.raises(ProbeSyntaxError) as info:
            validate(f"p:ev {path}:0x10", "uprobe", file_check=check)
        assert info.value.kernel_message == message
        assert info.value.position == len("p:ev ")


def test_arm64_registers() -> None:
    assert validate("p:ev vfs_read a=%x0 b=%sp c=%pstate", "kprobe", LATEST, "arm64")
    assert _error("p:ev vfs_read a=%di", arch="arm64").kernel_message == "Invalid register name"
    assert _error("p:ev vfs_read a=%lr", arch="aarch64").kernel_message == "Invalid register name"
    assert "rax" not in kernel_registers(get_arch("x86_64"))
    assert "orig_ax" in kernel_registers(get_arch("x86_64"))


# --------------------------------------------------------------------------
# KernelFeatures
# --------------------------------------------------------------------------


def test_from_readme_of_a_recent_kernel() -> None:
    f = KernelFeatures.from_readme(README_618, "6.18.4")
    assert f.has_arg_access and f.return_args and f.char_type and f.symstr_type
    assert f.dentry_types and f.ustring_type and f.arrays and f.immediates
    assert not f.btf_args
    assert f.bad_var_message == "Invalid $-variable specified"
    with_btf = README_618.replace(
        "$arg<N>,\n",
        "$arg<N>,\n\t           [(structname)]<argname>[->field[->field|.field...]],\n",
        1,
    )
    assert KernelFeatures.from_readme(with_btf).btf_args


def test_from_readme_of_an_older_kernel() -> None:
    f = KernelFeatures.from_readme(README_515, "5.15.0-91-generic")
    assert f.has_arg_access and not f.return_args
    assert not f.char_type and not f.symstr_type and not f.dentry_types
    assert f.ustring_type and f.arrays and f.immediate_strings
    assert f.bad_var_message == "Invalid $-valiable specified"
    err = _error("p:ev vfs_read a=%di:char", features=f)
    assert err.kernel_message == "Unknown type is specified"
    no_args = KernelFeatures.from_readme(README_515.replace(" $arg<N>,", ""))
    assert not no_args.has_arg_access
    assert _error("p:ev vfs_read a=$arg1", features=no_args).kernel_message.startswith("Invalid $-")


def test_presets_follow_upstream_history() -> None:
    assert not KernelFeatures.for_version("5.15").symstr_type
    assert KernelFeatures.for_version("6.1").symstr_type  # backported to 6.1.y
    assert not KernelFeatures.for_version("6.1").char_type
    assert KernelFeatures.for_version("6.12").char_type
    assert KernelFeatures.for_version("6.12").file_dentry_offset == 0x48
    assert KernelFeatures.for_version("6.10").file_dentry_offset == 0x18
    assert KernelFeatures.for_version("6.1").max_event_size == 3072
    assert not KernelFeatures.for_version("6.1").rejects_too_many_args
    assert not KernelFeatures.for_version("6.6").dentry_types
    assert KernelFeatures.for_version("6.10").dentry_types
    assert KernelFeatures.for_version("6.9").return_args
    assert not KernelFeatures.for_version("6.8").return_args
    assert KernelFeatures.for_version("6.12.9-amd64").version == "6.12"
    assert KernelFeatures.for_version("6.1").max_args == 128
    assert KernelFeatures.latest().max_event_size == 3072
