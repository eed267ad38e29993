"""expand_friendly(): arg1/str(arg1)/retval/comm to tracefs syntax, on both arches."""

from __future__ import annotations

import pytest

from kprobes.errors import KprobesError, ProbeSyntaxError
from kprobes.probes import FetchArg, KernelFeatures, ProbeSpec, expand_friendly, validate
from kprobes.probes.arch import ARCHES
from kprobes.probes.spec import ArgVar, Comm, Deref, Register, Retval, StackVar

FEATURES = KernelFeatures.for_version("6.18")


# fmt: off
EXPANSIONS = [
    ("x86_64", "kprobe", "p:ev vfs_read arg1 arg2", "p:ev vfs_read arg1=%di arg2=%si"),
    ("arm64", "kprobe", "p:ev vfs_read arg1 arg2", "p:ev vfs_read arg1=%x0 arg2=%x1"),
    ("x86_64", "kprobe", "r:ev vfs_read retval comm", "r:ev vfs_read retval=$retval comm=$comm"),
    ("x86_64", "kprobe", "p:ev vfs_read str(arg2)", "p:ev vfs_read arg2=+0(%si):string"),
    ("arm64", "uprobe", "p:ev /bin/true:0x10 str(arg2)", "p:ev /bin/true:0x10 arg2=+0(%x1):ustring"),
    ("x86_64", "kprobe", "p:ev vfs_read fn=arg2:string", "p:ev vfs_read fn=+0(%si):string"),
    ("x86_64", "uprobe", "p:ev /bin/true:0x10 fn=arg2:string", "p:ev /bin/true:0x10 fn=+0(%si):ustring"),
    ("x86_64", "kprobe", "p:ev vfs_read n=+8(arg1):u32", "p:ev vfs_read n=+8(%di):u32"),
    ("x86_64", "kprobe", "p:ev vfs_read s=str(+8(arg1))", "p:ev vfs_read s=+0(+8(%di)):string"),
    ("x86_64", "kprobe", "p:ev vfs_read arg7", "p:ev vfs_read arg7=$arg7"),
    ("x86_64", "uprobe", "p:ev /bin/true:0x10 arg7 arg8", "p:ev /bin/true:0x10 arg7=$stack1 arg8=$stack2"),
    ("arm64", "uprobe", "p:ev /bin/true:0x10 arg9", "p:ev /bin/true:0x10 arg9=$stack0"),
    ("x86_64", "kprobe", "p:ev vfs_read  %di   x=$arg1", "p:ev vfs_read %di x=$arg1"),
    ("x86_64", "kprobe", "-:ev", "-:ev"),
]
# fmt: on


@pytest.mark.parametrize("arch, kind, text, expected", EXPANSIONS)
def test_expansions(arch: str, kind: str, text: str, expected: str) -> None:
    assert expand_friendly(text, kind, arch) == expected


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_every_argument_register_comes_from_arch(arch: str) -> None:
    regs = ARCHES[arch].arg_regs
    words = " ".join(f"arg{i + 1}" for i in range(len(regs)))
    out = expand_friendly(f"p:ev vfs_read {words}", "kprobe", arch)
    assert out.split()[2:] == [f"arg{i + 1}=%{r}" for i, r in enumerate(regs)]


def test_names_never_collide_with_kernel_auto_names() -> None:
    # The kernel calls an unnamed fetcharg "argN" after its position.
    out = expand_friendly("p:ev vfs_read %ax arg1 str(arg1)", "kprobe")
    assert out == "p:ev vfs_read arg1_3=%ax arg1=%di arg1_2=+0(%di):string"
    assert isinstance(validate(out, "kprobe", FEATURES), ProbeSpec)


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_expanded_text_validates_and_parses(arch: str) -> None:
    text = "r:ev vfs_read retval comm arg1 str(arg2) n=+8(arg3):u32"
    spec = validate(expand_friendly(text, "kprobe", arch), "kprobe", FEATURES, arch)
    assert isinstance(spec, ProbeSpec)
    a1, a2, a3 = ARCHES[arch].arg_regs[:3]
    assert spec.args == (
        FetchArg("retval", Retval()),
        FetchArg("comm", Comm()),
        FetchArg("arg1", Register(a1)),
        FetchArg("arg2", Deref(0, Register(a2)), "string"),
        FetchArg("n", Deref(8, Register(a3)), "u32"),
    )


def test_uprobe_stack_arguments_validate() -> None:
    out = expand_friendly("p:ev /bin/true:0x10 arg7 str(arg1)", "uprobe", "x86_64")
    spec = validate(out, "uprobe", FEATURES)
    assert isinstance(spec, ProbeSpec)
    assert spec.args[0] == FetchArg("arg7", StackVar(1))
    assert spec.args[1].type == "ustring"


def test_kernel_syntax_passes_through() -> None:
    text = "p:ev vfs_read a=%di b=+0(%si):string c=$arg3 \\1"
    assert expand_friendly(text, "kprobe") == text
    spec = validate(expand_friendly("p:ev vfs_read x=$arg3"), "kprobe", FEATURES)
    assert isinstance(spec, ProbeSpec) and spec.args[0].expr == ArgVar(3)


def test_errors() -> None:
    with pytest.raises(ProbeSyntaxError):
        expand_friendly("p:ev vfs_read str(arg1", "kprobe")
    with pytest.raises(KprobesError):
        expand_friendly("p:ev vfs_read arg1", "kprobe", "sparc")
