"""BTF parsing: header, every kind, strings, bitfields, split BTF, cache, errors."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.btf import (
    BTF,
    Array,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Ptr,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    Void,
    Volatile,
    load_file,
    load_module,
    load_vmlinux,
)
from kprobes.btf import cache as btf_cache
from kprobes.btf.header import parse_header, scan_offsets
from kprobes.btf.load import read_blob
from kprobes.errors import BTFError
from tests.unit.btf_builder import BTFBuilder, kernel_like


def every_kind(order: str = "<") -> tuple[BTFBuilder, dict[str, int]]:
    b = BTFBuilder(order)
    i: dict[str, int] = {}
    i["int"] = b.int_("int", 4, signed=True)
    i["char"] = b.int_("char", 1, signed=True, char=True)
    i["bool"] = b.int_("_Bool", 1, bool_=True)
    i["ptr"] = b.ptr(i["int"])
    i["arr"] = b.array(i["char"], i["int"], 7)
    i["struct"] = b.struct("pair", 8, [("a", i["int"], 0, 0), ("b", i["int"], 32, 0)])
    i["union"] = b.union("u", 4, [("x", i["int"], 0, 0), ("c", i["char"], 0, 0)])
    i["enum"] = b.enum("color", 4, [("RED", 0), ("BLUE", 0xFFFFFFFF)])
    i["senum"] = b.enum("sign", 4, [("NEG", -5)], signed=True)
    i["fwd"] = b.fwd("later", union=True)
    i["typedef"] = b.typedef("myint", i["int"])
    i["volatile"] = b.volatile(i["int"])
    i["const"] = b.const(i["int"])
    i["restrict"] = b.restrict(i["ptr"])
    i["proto"] = b.func_proto(i["int"], [("x", i["int"]), ("", i["ptr"])], variadic=True)
    i["func"] = b.func("f", i["proto"], 2)
    i["var"] = b.var("jiffies", i["int"], 1)
    i["datasec"] = b.datasec(".data", 16, [(i["var"], 8, 4)])
    i["float"] = b.float_("double", 8)
    i["decl_tag"] = b.decl_tag("kfunc", i["func"], 1)
    i["type_tag"] = b.type_tag("user", i["int"])
    i["enum64"] = b.enum64("e64", 8, [("BIG", 1 << 63), ("SMALL", 3)])
    return b, i


@pytest.mark.parametrize("order", ["<", ">"])
def test_every_kind_decodes(order: str) -> None:
    b, i = every_kind(order)
    btf = BTF(b.build())
    assert btf.header.byteorder == order
    assert len(btf) == b.next_id
    assert btf.type(0) == Void(0, "void")
    assert btf.type(i["int"]) == Int(i["int"], "int", 4, 1, 32, 0)
    assert btf.type(i["char"]).is_char  # type: ignore[attr-defined]
    assert btf.type(i["bool"]).is_bool  # type: ignore[attr-defined]
    assert btf.type(i["ptr"]) == Ptr(i["ptr"], "", i["int"])
    assert btf.type(i["arr"]) == Array(i["arr"], "", i["char"], i["int"], 7)
    s = btf.type(i["struct"])
    assert isinstance(s, Struct) and s.size == 8
    assert [(m.name, m.offset, m.bitfield_size) for m in s.members] == [("a", 0, 0), ("b", 4, 0)]
    assert isinstance(btf.type(i["union"]), Union)
    e = btf.type(i["enum"])
    assert isinstance(e, Enum) and not e.signed and e.value_of("BLUE") == 0xFFFFFFFF
    se = btf.type(i["senum"])
    assert isinstance(se, Enum) and se.signed and se.value_of("NEG") == -5
    assert btf.type(i["fwd"]) == Fwd(i["fwd"], "later", True)
    assert btf.type(i["typedef"]) == Typedef(i["typedef"], "myint", i["int"])
    assert isinstance(btf.type(i["volatile"]), Volatile)
    assert isinstance(btf.type(i["const"]), Const)
    assert isinstance(btf.type(i["restrict"]), Restrict)
    p = btf.type(i["proto"])
    assert isinstance(p, FuncProto) and p.variadic and p.return_type == i["int"]
    assert [(q.name, q.type) for q in p.params] == [("x", i["int"]), ("", i["ptr"])]
    f = btf.type(i["func"])
    assert isinstance(f, Func) and f.linkage_name == "extern" and f.type == i["proto"]
    assert btf.type(i["var"]) == Var(i["var"], "jiffies", i["int"], 1)
    ds = btf.type(i["datasec"])
    assert isinstance(ds, Datasec) and ds.vars[0].offset == 8 and ds.vars[0].size == 4
    assert btf.type(i["float"]) == Float(i["float"], "double", 8)
    assert btf.type(i["decl_tag"]) == DeclTag(i["decl_tag"], "kfunc", i["func"], 1, False)
    assert btf.type(i["type_tag"]) == TypeTag(i["type_tag"], "user", i["int"], False)
    e64 = btf.type(i["enum64"])
    assert isinstance(e64, Enum64) and e64.value_of("BIG") == 1 << 63 and e64.kind_name == "enum64"


def test_signed_enum64_and_negative_decl_tag() -> None:
    b = BTFBuilder()
    e = b.enum64("s64", 8, [("MINUS", -(1 << 40))], signed=True)
    t = b.decl_tag("tag", e)
    btf = BTF(b.build())
    assert btf.type(e).value_of("MINUS") == -(1 << 40)  # type: ignore[attr-defined]
    assert btf.type(t).component_idx == -1  # type: ignore[attr-defined]


def test_header_extension_is_skipped() -> None:
    b, i = every_kind()
    blob = b.build(header_extra=b"\x11" * 8)
    btf = BTF(blob)
    assert btf.header.hdr_len == 32
    assert btf.type(i["func"]).name == "f"
    assert btf.find("pair").id == i["struct"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"\x00\x00" + d[2:], "bad BTF magic"),
        (lambda d: d[:2] + b"\x02" + d[3:], "unsupported BTF version"),
        (lambda d: d[:10], "too short"),
        (lambda d: d[:-3], "past the end"),
        (lambda d: d[:4] + struct.pack("<I", 12) + d[8:], "header length"),
    ],
)
def test_malformed_headers(mutate: object, message: str) -> None:
    b, _ = every_kind()
    with pytest.raises(BTFError, match=message):
        BTF(mutate(b.build()))  # type: ignore[operator]


def test_unknown_kind_is_reported() -> None:
    b = BTFBuilder()
    b.int_("int", 4)
    b.raw("mystery", 25, 0, 0)
    b.int_("after", 4)
    btf = BTF(b.build())
    with pytest.raises(BTFError, match=r"unknown BTF kind 25 in type #2"):
        btf.type(1)


def test_truncated_record_is_reported() -> None:
    b = BTFBuilder()
    b.int_("int", 4)
    b.raw("s", 4, 5, 8)  # claims 5 members, has none
    with pytest.raises(BTFError, match="runs past the end"):
        len(BTF(b.build()))


def test_string_section_checks() -> None:
    b, _ = every_kind()
    blob = bytearray(b.build())
    blob[-1] = ord("x")
    with pytest.raises(BTFError, match="string section"):
        BTF(bytes(blob))


def test_both_bitfield_encodings_agree() -> None:
    b = BTFBuilder()
    u = b.int_("unsigned int", 4)
    bf = b.int_("unsigned int", 4, bits=5, offset=2)
    old = b.struct("old", 8, [("a", u, 0, 0), ("f", bf, 32, 0)])
    new = b.struct("new", 8, [("a", u, 0, 0), ("f", u, 34, 5)], kflag=True)
    btf = BTF(b.build())
    mo = btf.type(old).members[1]  # type: ignore[attr-defined]
    mn = btf.type(new).members[1]  # type: ignore[attr-defined]
    assert (mo.bit_offset, mo.bitfield_size) == (34, 5) == (mn.bit_offset, mn.bitfield_size)
    assert mo.is_bitfield and mo.offset == 4
    assert not btf.type(old).members[0].is_bitfield  # type: ignore[attr-defined]


def test_lookup_by_name_and_kind() -> None:
    b, i = kernel_like()
    btf = BTF(b.build())
    assert btf.find("sock").id == i["sock"]  # the complete struct beats the FWD
    assert btf.find("sock", "fwd").id == i["sock_fwd"]
    assert sorted(btf.ids_by_name("sock")) == sorted([i["sock"], i["sock_fwd"]])
    assert btf.find("tcp_connect", "func").id == i["tcp_connect"]
    assert btf.ids_by_name("unsigned int", "int") == [i["uint"], i["bf3"]]
    assert btf.ids_by_name("no_such_thing") == []
    with pytest.raises(BTFError) as ei:
        btf.find("tcp_conect", "func")
    assert "tcp_connect" in (ei.value.hint or "")


def test_name_index_gives_same_answers_after_many_lookups() -> None:
    b, i = kernel_like()
    btf = BTF(b.build())
    first = {n: btf.ids_by_name(n) for n in ("sock", "int", "qstr", "u32", "dfd")}
    for _ in range(40):
        btf.ids_by_name("int")
    assert btf._index is not None
    assert {n: btf.ids_by_name(n) for n in first} == first


def test_func_proto_and_enum_values() -> None:
    b, i = kernel_like()
    btf = BTF(b.build())
    sig = btf.func_proto("do_sys_openat2")
    assert [(p.index, p.name) for p in sig.params] == [(1, "dfd"), (2, "filename"), (3, "how")]
    assert sig.return_type.name == "long int"
    assert btf.func_proto("_printk").variadic
    assert btf.func_proto("schedule").params == ()
    assert btf.enum_value("TASK_DEAD")[1] == -1
    enum, val = btf.enum_value("BIG_ONE")
    assert enum.id == i["big_enum"] and val == 1 << 40
    with pytest.raises(BTFError, match="no enumerator") as ei:
        btf.enum_value("TASK_RUNING")
    assert "TASK_RUNNING" in (ei.value.hint or "")


def test_resolve_and_sizes() -> None:
    b, i = kernel_like()
    btf = BTF(b.build())
    assert btf.resolve(i["be16"]).id == i["u16raw"]
    assert btf.size_of(i["comm"]) == 16
    assert btf.size_of(i["u32x4"]) == 16
    assert btf.size_of(i["sock_ptr"]) == 8
    assert btf.strip_qualifiers(i["cchar"]).id == i["char"]
    with pytest.raises(BTFError, match="has no size"):
        btf.size_of(i["sock_fwd"])


def test_split_btf_continues_ids_and_strings() -> None:
    base_b, bi = kernel_like()
    base = BTF(base_b.build())
    mod_b = BTFBuilder.split(base_b)
    own = mod_b.struct("nf_conn", 8, [("status", bi["ulong"], 0, 0), ("task", bi["task_p"], 0, 0)])
    fn_proto = mod_b.func_proto(bi["int"], [("ct", mod_b.ptr(own)), ("sk", bi["sock_ptr"])])
    fn = mod_b.func("nf_conntrack_confirm", fn_proto)
    # A module type whose name lives in the base string section.
    reused = mod_b.typedef("u32", bi["uint"])
    mod = BTF(mod_b.build(), base=base, name="nf_conntrack")
    assert mod.start_id == base.nr_types == base_b.next_id
    assert own == base.nr_types
    assert mod.type(own).name == "nf_conn"
    assert mod.type(bi["sock"]).name == "sock"  # base ids resolve through the base
    sig = mod.func_proto("nf_conntrack_confirm")
    assert [p.name for p in sig.params] == ["ct", "sk"]
    assert mod.find("nf_conntrack_confirm").id == fn
    assert mod.ids_by_name("u32") == [reused, bi["u32"]]
    assert mod.find("task_struct").id == bi["task"]
    assert [t.id for t in mod.types()] == list(range(own, mod.nr_types))
    with pytest.raises(BTFError, match="out of range"):
        mod.type(mod.nr_types)


def test_cache_roundtrip_and_failures(tmp_path: object) -> None:
    b, i = kernel_like()
    path = os.path.join(str(tmp_path), "vmlinux")
    with open(path, "wb") as f:
        f.write(b.build())
    cdir = os.path.join(str(tmp_path), "cache")
    first = load_vmlinux(path, cache_dir=cdir)
    files = os.listdir(cdir)
    assert len(files) == 1 and files[0].endswith(".idx")
    second = load_vmlinux(path, cache_dir=cdir)
    assert list(second.offsets) == list(first.offsets)
    assert second.func_proto("tcp_connect").params[0].name == "sk"
    # Corrupt cache: ignored and rewritten.
    with open(os.path.join(cdir, files[0]), "r+b") as f:
        f.seek(0)
        f.write(b"garbage!")
    assert list(load_vmlinux(path, cache_dir=cdir).offsets) == list(first.offsets)
    # An unwritable cache location: still works.
    blocker = os.path.join(str(tmp_path), "file-not-dir")
    open(blocker, "w").close()
    assert load_vmlinux(path, cache_dir=os.path.join(blocker, "sub")).find("sock").id == i["sock"]
    assert btf_cache.store_offsets("k-0-00000000.idx", [0], 12, os.path.join(blocker, "x")) is False


def test_cache_env_disable(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("KPROBES_CACHE_DIR", "")
    assert btf_cache.cache_dir() is None
    monkeypatch.setenv("KPROBES_CACHE_DIR", str(tmp_path))
    assert btf_cache.cache_dir() == str(tmp_path)
    monkeypatch.delenv("KPROBES_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert btf_cache.cache_dir() == "/xdg/kprobes"


def test_missing_files_explain_themselves(tmp_path: object) -> None:
    with pytest.raises(BTFError, match="CONFIG_DEBUG_INFO_BTF") as ei:
        load_vmlinux("/sys/kernel/btf/definitely-not-here")
    assert ei.value.hint and "CONFIG_DEBUG_INFO_BTF=y" in ei.value.hint
    b, _ = kernel_like()
    base = BTF(b.build())
    with pytest.raises(BTFError, match="no BTF for module 'nope'") as ei:
        load_module("nope", base, root=str(tmp_path))
    assert ei.value.hint and "CONFIG_DEBUG_INFO_BTF_MODULES" in ei.value.hint
    with pytest.raises(BTFError, match="no BTF file"):
        load_file(os.path.join(str(tmp_path), "x"))


def test_load_module_from_file(tmp_path: object) -> None:
    base_b, bi = kernel_like()
    base = BTF(base_b.build())
    mod_b = BTFBuilder.split(base_b)
    fn = mod_b.func("mod_fn", mod_b.func_proto(bi["int"], [("sk", bi["sock_ptr"])]))
    p = os.path.join(str(tmp_path), "mymod")
    with open(p, "wb") as f:
        f.write(mod_b.build())
    mod = load_module("mymod", base, root=str(tmp_path))
    assert mod.name == "mymod" and mod.find("mod_fn").id == fn


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([1, 2, 4, 8]), st.booleans(), st.integers(0, 3)),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(["<", ">"]),
)
def test_random_struct_layouts_roundtrip(fields: list[tuple[int, bool, int]], order: str) -> None:
    b = BTFBuilder(order)
    ints = {}
    members = []
    off = 0
    for n, (size, signed, pad) in enumerate(fields):
        key = (size, signed)
        if key not in ints:
            ints[key] = b.int_(f"{'s' if signed else 'u'}{size * 8}", size, signed=signed)
        off += pad * size
        members.append((f"m{n}", ints[key], off * 8, 0))
        off += size
    sid = b.struct("rand", off, members)
    btf = BTF(b.build())
    s = btf.find("rand", "struct")
    assert s.id == sid
    got = [(m.name, m.type, m.bit_offset) for m in s.members]  # type: ignore[attr-defined]
    assert got == [(m[0], m[1], m[2]) for m in members]
    assert list(scan_offsets(btf._words)) == list(btf.offsets)
    assert parse_header(b.build()).type_len == sum(len(r) for r in b.records)


def test_types_are_frozen_values() -> None:
    from kprobes import _record as dataclasses
    from kprobes.btf import Member

    a = Struct(3, "s", 8, (Member("x", 1, 0, 0),))
    assert a == Struct(3, "s", 8, (Member("x", 1, 0, 0),))
    assert hash(a) == hash(Struct(3, "s", 8, (Member("x", 1, 0, 0),)))
    assert a != Union(3, "s", 8, (Member("x", 1, 0, 0),))
    assert a != Struct(3, "s", 8, (Member("x", 1, 8, 0),))
    assert (
        repr(a)
        == "Struct(id=3, name='s', size=8, members=(Member(name='x', type=1, bit_offset=0, bitfield_size=0),))"
    )
    assert dataclasses.is_dataclass(a) and [f.name for f in dataclasses.fields(a)] == [
        "id", "name", "size", "members",
    ]  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.size = 4  # type: ignore[misc]
    assert a.kind_name == "struct" and Typedef(1, "t", 2).kind_name == "typedef"


def test_read_fallback_when_mmap_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    import mmap

    b, i = kernel_like()
    path = os.path.join(str(tmp_path), "vmlinux")
    with open(path, "wb") as f:
        f.write(b.build())

    def refuse(*args: object, **kwargs: object) -> mmap.mmap:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(mmap, "mmap", refuse)
    data = read_blob(path)
    assert isinstance(data, bytes) and data == b.build()
    btf = load_vmlinux(path, use_cache=False)
    assert btf.find("task_struct").id == i["task"]
    assert BTF(memoryview(b.build())).find("sock").id == i["sock"]
