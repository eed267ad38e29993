"""C rendering of BTF types: declarators, signatures, pahole-like struct layouts."""

from __future__ import annotations

import re

import pytest

from kprobes.btf import BTF, format_func, format_struct, type_name
from kprobes.errors import BTFError
from tests.unit.btf_builder import BTFBuilder, kernel_like


@pytest.fixture(scope="module")
def kbtf() -> tuple[BTF, dict[str, int]]:
    b, ids = kernel_like()
    return BTF(b.build()), ids


def test_format_func(kbtf: tuple[BTF, dict[str, int]]) -> None:
    btf, _ = kbtf
    assert (
        format_func(btf, "do_sys_openat2")
        == "long int do_sys_openat2(int dfd, const char *filename, u32 *how)"
    )
    assert format_func(btf, "_printk") == "int _printk(const char *fmt, ...)"
    assert format_func(btf, "schedule") == "void schedule(void)"
    assert format_func(btf, btf.func_proto("tcp_connect")).startswith(
        "int tcp_connect(struct sock *sk, struct task_struct *task,"
    )


def test_declarators() -> None:
    b = BTFBuilder()
    char = b.int_("char", 1, signed=True, char=True)
    intt = b.int_("int", 4, signed=True)
    arr = b.array(char, intt, 16)
    ptr_arr = b.ptr(arr)
    proto = b.func_proto(intt, [("x", intt)], variadic=True)
    fptr = b.ptr(proto)
    cptr = b.const(b.ptr(char))
    pp = b.ptr(b.ptr(b.volatile(char)))
    arr_of_fptr = b.array(fptr, intt, 2)
    anon = b.struct("", 4, [("a", intt, 0, 0)])
    enum = b.enum("e", 4, [("A", 1)])
    btf = BTF(b.build())
    assert type_name(btf, arr, "comm") == "char comm[16]"
    assert type_name(btf, ptr_arr, "p") == "char (*p)[16]"
    assert type_name(btf, fptr, "cb") == "int (*cb)(int x, ...)"
    assert type_name(btf, cptr, "s") == "char *const s"
    assert type_name(btf, pp) == "volatile char **"
    assert type_name(btf, arr_of_fptr, "ops") == "int (*ops[2])(int x, ...)"
    assert type_name(btf, anon) == "struct {...}"
    assert type_name(btf, enum, "v") == "enum e v"
    assert type_name(btf, 0) == "void"


def _offsets(text: str) -> dict[str, tuple[int, int]]:
    out = {}
    for line in text.splitlines():
        m = re.search(r"(\w+)(?:\[\d+\])?(?::\d+)?;\s+/\*\s+(\d+)(?::\s*\d+)?\s+(\d+) \*/", line)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def test_format_struct_like_pahole(kbtf: tuple[BTF, dict[str, int]]) -> None:
    btf, _ = kbtf
    text = format_struct(btf, "struct sock_common")
    assert text.splitlines()[0] == "struct sock_common {"
    assert text.endswith("};")
    offs = _offsets(text)
    assert offs["skc_dport"] == (4, 2)
    assert offs["skc_num"] == (6, 2)
    assert offs["skc_ports"] == (16, 16)
    assert "skc_reuse:4;" in text and re.search(r"\b9:\s*0\s+1 \*/", text)
    assert "skc_ipv6only:1;" in text and re.search(r"\b9:\s*4\s+1 \*/", text)
    assert "union {" in text and "struct {" in text
    assert "XXX 2 bytes hole" in text
    assert "size: 32, cachelines: 1, members: 7" in text


def test_format_struct_lookups(kbtf: tuple[BTF, dict[str, int]]) -> None:
    btf, ids = kbtf
    assert format_struct(btf, "sock") == format_struct(btf, ids["sock"])
    assert "struct sock_common __sk_common;" in format_struct(btf, "struct sock")
    with pytest.raises(BTFError, match="not a struct or union"):
        format_struct(btf, ids["int"])
    with pytest.raises(BTFError) as ei:
        format_struct(btf, "struct sok")
    assert "sock" in (ei.value.hint or "")
    with pytest.raises(BTFError, match="forward-declared"):
        format_struct(btf, ids["sock_fwd"])
