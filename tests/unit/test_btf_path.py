"""resolve_path: member paths through pointers, typedefs, anonymous members, arrays."""

from __future__ import annotations

import pytest

from kprobes.btf import BTF, PathStep, parse_ctype, resolve_path
from kprobes.errors import BTFError
from tests.unit.btf_builder import kernel_like


@pytest.fixture(scope="module")
def kb() -> tuple[BTF, dict[str, int]]:
    b, ids = kernel_like()
    return BTF(b.build()), ids


def test_anonymous_members_and_typedefs(kb: tuple[BTF, dict[str, int]]) -> None:
    btf, ids = kb
    rp = resolve_path(btf, ids["sock_ptr"], "->__sk_common.skc_dport")
    assert rp.steps == (PathStep(4, True),)
    assert rp.size == 2 and not rp.signed and not rp.is_bitfield
    assert rp.type.name == "__be16"
    rp2 = resolve_path(btf, ids["sock_ptr"], "->__sk_common.skc_num")
    assert rp2.steps == (PathStep(6, True),)


def test_chained_dereferences(kb: tuple[BTF, dict[str, int]]) -> None:
    btf, ids = kb
    rp = resolve_path(btf, ids["file_p"], "->f_path.dentry->d_name.name")
    assert rp.steps == (PathStep(24, True), PathStep(40, True))
    assert rp.size == 8
    rp = resolve_path(btf, ids["sock_ptr"], "->sk_peer->sk_prio")  # via a FWD pointer
    assert rp.steps == (PathStep(32, True), PathStep(48, True)) and rp.signed


def test_arrays_and_indexing(kb: tuple[BTF, dict[str, int]]) -> None:
    btf, ids = kb
    rp = resolve_path(btf, ids["task_p"], "->comm")
    assert rp.steps == (PathStep(4, False),) and rp.size == 16
    rp = resolve_path(btf, ids["task_p"], "->comm[3]")
    assert rp.steps == (PathStep(7, True),) and rp.size == 1
    rp = resolve_path(btf, ids["sock_ptr"], "->__sk_common.skc_ports[2]")
    assert rp.steps == (PathStep(24, True),) and rp.size == 4
    rp = resolve_path(btf, ids["sock_ptr"], "[1].sk_prio")  # pointer indexing
    assert rp.steps == (PathStep(56 + 48, True),)
    with pytest.raises(BTFError, match="out of bounds"):
        resolve_path(btf, ids["task_p"], "->comm[16]")


def test_bitfields_both_encodings(kb: tuple[BTF, dict[str, int]]) -> None:
    btf, ids = kb
    rp = resolve_path(btf, ids["sock_ptr"], "->__sk_common.skc_ipv6only")
    assert (rp.steps, rp.bit_offset, rp.bitfield_size) == ((PathStep(9, True),), 4, 1)
    rp = resolve_path(btf, ids["sock_ptr"], "->sk_flags")  # kind_flag=0 encoding
    assert (rp.steps, rp.bit_offset, rp.bitfield_size) == ((PathStep(44, True),), 5, 3)
    with pytest.raises(BTFError, match="bitfield"):
        resolve_path(btf, ids["sock_ptr"], "->sk_flags.x")


def test_empty_path_is_the_value_itself(kb: tuple[BTF, dict[str, int]]) -> None:
    btf, ids = kb
    rp = resolve_path(btf, ids["int"], "")
    assert rp.steps == () and rp.size == 4 and rp.signed


def test_casts_with_synthetic_pointers(kb: tuple[BTF, dict[str, int]]) -> None:
    btf, ids = kb
    ct = parse_ctype(btf, "struct task_struct **")
    assert ct.type.id == ids["task"] and ct.pointers == 2
    rp = resolve_path(btf, ct, "[0]->pid")
    assert rp.steps == (PathStep(0, True), PathStep(0, True)) and rp.signed
    assert parse_ctype(btf, "unsigned int").type.id == ids["uint"]
    assert parse_ctype(btf, "long").type.id == ids["long"]
    assert parse_ctype(btf, "unsigned long").type.id == ids["ulong"]
    assert parse_ctype(btf, "const u32 *").type.id == ids["u32"]
    with pytest.raises(BTFError, match="unknown type 'u33'"):
        parse_ctype(btf, "u33")


@pytest.mark.parametrize(
    "root, path, message, hint, caret",
    [
        ("int", "->x", "'->' needs a pointer", None, 0),
        ("sock_ptr", ".sk_prio", "'.' needs a struct", "use '->'", 0),
        ("sock_ptr", "->__sk_common->skc_num", "'->' needs a pointer", "use '.'", 13),
        ("sock_ptr", "->sk_prioo", "has no member 'sk_prioo'", "sk_prio", 2),
        ("sock_ptr", "->__sk_common.skc_dprt", "has no member", "skc_dport", 14),
        ("file_p", "->private_data->x", "void pointer", "cast it first", 14),
        ("task_p", "->pid->x", "'->' needs a pointer", None, 5),
        ("task_p", "->pid[0]", "only arrays and pointers", None, 5),
        ("task_p", "->pid x", "expected '->' or '.'", None, 6),
        ("task_p", "->", "expected a member name", None, 2),
    ],
)
def test_errors_explain_and_point(
    kb: tuple[BTF, dict[str, int]], root: str, path: str, message: str, hint: str, caret: int
) -> None:
    btf, ids = kb
    with pytest.raises(BTFError, match=message) as ei:
        resolve_path(btf, ids[root], path, root_name="x")
    assert ei.value.position == caret
    if hint:
        assert hint in (ei.value.hint or "")
    assert "^" in str(ei.value)
