"""Fetcharg generation from BTF: registers, offsets, strings, bitfields, casts, errors."""

from __future__ import annotations

import pytest

from kprobes.btf import BTF, compile_btf_arg, fetcharg_for_path
from kprobes.errors import BTFError
from kprobes.probes.arch import get_arch
from tests.unit.btf_builder import kernel_like


@pytest.fixture(scope="module")
def btf() -> BTF:
    b, _ = kernel_like()
    return BTF(b.build())


@pytest.mark.parametrize(
    "func, text, expected",
    [
        ("do_sys_openat2", "dfd", "dfd=%di:s32"),
        ("do_sys_openat2", "filename", "filename=+0(%si):string"),
        ("do_sys_openat2", "filename:string", "filename=+0(%si):string"),
        ("do_sys_openat2", "filename:x64", "filename=%si:x64"),
        ("do_sys_openat2", "how", "how=%dx:x64"),
        ("do_sys_openat2", "how[1]", "how=+4(%dx):u32"),
        ("do_sys_openat2", "f=arg2", "f=+0(%si):string"),
        ("do_sys_openat2", "$arg1", "arg1=%di:s32"),
        ("do_sys_openat2", "retval", "retval=$retval:s64"),
        ("tcp_connect", "sk->__sk_common.skc_dport", "skc_dport=+4(%di):u16"),
        ("tcp_connect", "port = sk->__sk_common.skc_num", "port=+6(%di):u16"),
        ("tcp_connect", "sk->__sk_common.skc_reuse", "skc_reuse=+9(%di):b4@0/8"),
        ("tcp_connect", "sk->sk_flags", "sk_flags=+44(%di):b3@5/8"),
        ("tcp_connect", "sk->sk_peer->sk_prio", "sk_prio=+48(+32(%di)):s32"),
        ("tcp_connect", "sk->__sk_common.skc_ports", "skc_ports=+16(%di):u32[4]"),
        ("tcp_connect", "sk->__sk_common.skc_ports[3]:x32", "skc_ports=+28(%di):x32"),
        ("tcp_connect", "task->comm", "comm=+4(%si):string"),
        ("tcp_connect", "task->pid", "pid=+0(%si):s32"),
        ("tcp_connect", "file->f_path.dentry->d_name.name", "name=+0(+40(+24(%dx))):string"),
        ("tcp_connect", "data", "data=%cx:x64"),
        ("tcp_connect", "((struct task_struct *)data)->comm", "comm=+4(%cx):string"),
        ("tcp_connect", "((struct task_struct *)arg4)->flags", "flags=+20(%cx):u32"),
        ("tcp_connect", "p=((struct task_struct *)%r8)->pid", "p=+0(%r8):s32"),
        ("tcp_connect", "x=((struct sock *)+8(%sp))->sk_prio", "x=+48(+8(%sp)):s32"),
        ("tcp_connect", "v=((u32)$stack2)", "v=$stack2:u32"),
        ("tcp_connect", "off=+8(%di):u32", "off=+8(%di):u32"),
        ("tcp_connect", "%ax", "ax=%ax"),
        ("tcp_connect", "$comm", "comm=$comm"),
        ("tcp_connect", "s=$stack3:x64", "s=$stack3:x64"),
    ],
)
def test_compile_btf_arg(btf: BTF, func: str, text: str, expected: str) -> None:
    assert compile_btf_arg(btf, func, text, "x86_64") == expected


def test_arm64_registers(btf: BTF) -> None:
    assert compile_btf_arg(btf, "tcp_connect", "task->pid", get_arch("arm64")) == "pid=+0(%x1):s32"
    assert compile_btf_arg(btf, "tcp_connect", "sk", "aarch64") == "sk=%x0:x64"


def test_fetcharg_for_path(btf: BTF) -> None:
    assert fetcharg_for_path(btf, "%dx", "struct task_struct *", "->pid") == "+0(%dx):s32"
    assert fetcharg_for_path(btf, "%dx", "struct task_struct *", "->comm") == "+4(%dx):string"
    assert fetcharg_for_path(btf, "$retval", "struct file *", "->f_flags") == "+0($retval):u32"
    assert (
        fetcharg_for_path(btf, "%di", "struct sock *", "->sk_prio", type_override="x32")
        == "+48(%di):x32"
    )


@pytest.mark.parametrize(
    "func, text, message, caret, hint",
    [
        ("do_sys_openat2", "filenme", "no parameter 'filenme'", 0, "filename"),
        ("do_sys_openat", "dfd", "no func do_sys_openat", None, "do_sys_openat2"),
        ("do_sys_openat2", "dfd->x", "'->' needs a pointer", 3, None),
        ("tcp_connect", "sk.sk_prio", "'.' needs a struct", 2, "'->'"),
        ("tcp_connect", "sk->__sk_common", "too large to fetch", 0, "member"),
        ("tcp_connect", "task->real_parent", "type void", 0, None),
        ("tcp_connect", "sk->sk_prio:string", "cannot fetch a string", 0, None),
        ("tcp_connect", "sk:str ing", "bad fetch type", 3, None),
        ("tcp_connect", "arg9", "no arg9", 0, None),
        ("tcp_connect", "retval->x", "'->' needs a pointer, but 'retval' is int", 6, None),
        ("tcp_connect", "%zz", "unknown register", 0, None),
        (
            "tcp_connect",
            "((struct task_strct *)arg2)->pid",
            "no struct task_strct",
            9,
            "task_struct",
        ),
        ("tcp_connect", "((struct task_struct *)arg2)->pidd", "no member 'pidd'", 30, "pid"),
    ],
)
def test_errors(
    btf: BTF, func: str, text: str, message: str, caret: int | None, hint: str | None
) -> None:
    with pytest.raises(BTFError, match=message) as ei:
        compile_btf_arg(btf, func, text, "x86_64")
    if caret is not None:
        assert ei.value.position == caret
        assert ei.value.text == text
    if hint is not None:
        assert hint in (ei.value.hint or "")
