"""Build small BTF blobs in tests (a tiny independent encoder of include/uapi/linux/btf.h).

Each ``add`` method appends one type record and returns its id.  ``build()``
produces the raw bytes as found in ``/sys/kernel/btf/*``.  ``BTFBuilder.split(base)``
starts a module-style split BTF whose ids and string offsets continue the base's.
"""

from __future__ import annotations

import struct
from typing import Sequence

KINDS = {
    "int": 1, "ptr": 2, "array": 3, "struct": 4, "union": 5, "enum": 6, "fwd": 7,
    "typedef": 8, "volatile": 9, "const": 10, "restrict": 11, "func": 12,
    "func_proto": 13, "var": 14, "datasec": 15, "float": 16, "decl_tag": 17,
    "type_tag": 18, "enum64": 19,
}  # fmt: skip


class BTFBuilder:
    def __init__(self, byteorder: str = "<") -> None:
        self.order = byteorder
        self.strings = bytearray(b"\0")
        self.records: list[bytes] = []
        self.start_id = 1
        self.str_base = 0
        self._base: BTFBuilder | None = None

    @classmethod
    def split(cls, base: BTFBuilder) -> BTFBuilder:
        b = cls(base.order)
        b.start_id = base.next_id
        b.str_base = len(base.strings)
        b._base = base
        return b

    @property
    def next_id(self) -> int:
        return self.start_id + len(self.records)

    # -- encoding helpers ---------------------------------------------------

    def _u32(self, *vals: int) -> bytes:
        return struct.pack(self.order + "I" * len(vals), *[v & 0xFFFFFFFF for v in vals])

    def string(self, s: str) -> int:
        if not s:
            return 0
        key = b"\0" + s.encode() + b"\0"
        if self._base is not None:
            pos = bytes(self._base.strings).find(key)
            if pos >= 0:
                return pos + 1
        pos = bytes(self.strings).find(key)
        if pos >= 0:
            return self.str_base + pos + 1
        off = self.str_base + len(self.strings)
        self.strings += s.encode() + b"\0"
        return off

    def raw(self, name: str, kind: int, vlen: int, size_or_type: int, kflag: bool = False,
            extra: bytes = b"") -> int:  # fmt: skip
        info = (int(kflag) << 31) | ((kind & 0x1F) << 24) | (vlen & 0xFFFF)
        self.records.append(self._u32(self.string(name), info, size_or_type) + extra)
        return self.next_id - 1

    # -- one method per kind --------------------------------------------------

    def int_(self, name: str, size: int, *, signed: bool = False, char: bool = False,
             bool_: bool = False, bits: int | None = None, offset: int = 0) -> int:  # fmt: skip
        enc = (1 if signed else 0) | (2 if char else 0) | (4 if bool_ else 0)
        nbits = size * 8 if bits is None else bits
        return self.raw(name, 1, 0, size, extra=self._u32((enc << 24) | (offset << 16) | nbits))

    def ptr(self, target: int) -> int:
        return self.raw("", 2, 0, target)

    def array(self, elem: int, index: int, nelems: int) -> int:
        return self.raw("", 3, 0, 0, extra=self._u32(elem, index, nelems))

    def _composite(self, kind: int, name: str, size: int,
                   members: Sequence[tuple[str, int, int, int]], kflag: bool) -> int:  # fmt: skip
        extra = b""
        for mname, mtype, bit_off, bf_size in members:
            if kflag:
                word = (bf_size << 24) | bit_off
            else:
                assert bf_size == 0, "kind_flag=0 bitfields use an INT with bits/offset"
                word = bit_off
            extra += self._u32(self.string(mname), mtype, word)
        return self.raw(name, kind, len(members), size, kflag, extra)

    def struct(self, name: str, size: int, members: Sequence[tuple[str, int, int, int]],
               kflag: bool = False) -> int:  # fmt: skip
        """members: (name, type, bit_offset, bitfield_size)."""
        return self._composite(4, name, size, members, kflag)

    def union(self, name: str, size: int, members: Sequence[tuple[str, int, int, int]],
              kflag: bool = False) -> int:  # fmt: skip
        return self._composite(5, name, size, members, kflag)

    def enum(self, name: str, size: int, values: Sequence[tuple[str, int]],
             signed: bool = False) -> int:  # fmt: skip
        extra = b"".join(self._u32(self.string(n), v) for n, v in values)
        return self.raw(name, 6, len(values), size, signed, extra)

    def enum64(self, name: str, size: int, values: Sequence[tuple[str, int]],
               signed: bool = False) -> int:  # fmt: skip
        extra = b""
        for n, v in values:
            v &= (1 << 64) - 1
            extra += self._u32(self.string(n), v & 0xFFFFFFFF, v >> 32)
        return self.raw(name, 19, len(values), size, signed, extra)

    def fwd(self, name: str, union: bool = False) -> int:
        return self.raw(name, 7, 0, 0, union)

    def typedef(self, name: str, target: int) -> int:
        return self.raw(name, 8, 0, target)

    def volatile(self, target: int) -> int:
        return self.raw("", 9, 0, target)

    def const(self, target: int) -> int:
        return self.raw("", 10, 0, target)

    def restrict(self, target: int) -> int:
        return self.raw("", 11, 0, target)

    def func(self, name: str, proto: int, linkage: int = 1) -> int:
        return self.raw(name, 12, linkage, proto)

    def func_proto(self, ret: int, params: Sequence[tuple[str, int]],
                   variadic: bool = False) -> int:  # fmt: skip
        plist = list(params) + ([("", 0)] if variadic else [])
        extra = b"".join(self._u32(self.string(n), t) for n, t in plist)
        return self.raw("", 13, len(plist), ret, extra=extra)

    def var(self, name: str, target: int, linkage: int = 1) -> int:
        return self.raw(name, 14, 0, target, extra=self._u32(linkage))

    def datasec(self, name: str, size: int, entries: Sequence[tuple[int, int, int]]) -> int:
        extra = b"".join(self._u32(t, o, s) for t, o, s in entries)
        return self.raw(name, 15, len(entries), size, extra=extra)

    def float_(self, name: str, size: int) -> int:
        return self.raw(name, 16, 0, size)

    def decl_tag(self, name: str, target: int, component_idx: int = -1) -> int:
        return self.raw(name, 17, 0, target, extra=self._u32(component_idx))

    def type_tag(self, name: str, target: int) -> int:
        return self.raw(name, 18, 0, target)

    # -- output ---------------------------------------------------------------

    def build(self, header_extra: bytes = b"", version: int = 1) -> bytes:
        types = b"".join(self.records)
        hdr_len = 24 + len(header_extra)
        header = struct.pack(
            self.order + "HBBIIIII", 0xEB9F, version, 0, hdr_len, 0, len(types),
            len(types), len(self.strings),
        )  # fmt: skip
        return header + header_extra + types + bytes(self.strings)


def kernel_like() -> tuple[BTFBuilder, dict[str, int]]:
    """A small vmlinux-like BTF: ints, char strings, a sock with anonymous unions,
    bitfields in both encodings, a file/dentry chain, functions."""
    b = BTFBuilder()
    ids: dict[str, int] = {}
    ids["int"] = b.int_("int", 4, signed=True)
    ids["uint"] = b.int_("unsigned int", 4)
    ids["char"] = b.int_("char", 1, signed=True, char=True)
    ids["uchar"] = b.int_("unsigned char", 1, char=True)
    ids["u16raw"] = b.int_("short unsigned int", 2)
    ids["long"] = b.int_("long int", 8, signed=True)
    ids["ulong"] = b.int_("long unsigned int", 8)
    ids["bool"] = b.int_("_Bool", 1, bool_=True)
    ids["u16"] = b.typedef("__u16", ids["u16raw"])
    ids["be16"] = b.typedef("__be16", ids["u16"])
    ids["u32"] = b.typedef("u32", ids["uint"])
    ids["cchar"] = b.const(ids["char"])
    ids["cchar_p"] = b.ptr(ids["cchar"])
    ids["user_tag"] = b.type_tag("user", ids["cchar"])
    ids["ucchar_p"] = b.ptr(ids["user_tag"])
    ids["idx"] = ids["int"]
    ids["comm"] = b.array(ids["char"], ids["idx"], 16)
    ids["u32x4"] = b.array(ids["u32"], ids["idx"], 4)
    # kind_flag=0 bitfield: INT with bits=3, offset=0 at member bit offset 37
    ids["bf3"] = b.int_("unsigned int", 4, bits=3, offset=0)
    # struct inner { __be16 dport; __u16 num; } (anonymous)
    ids["anon_ports"] = b.struct(
        "", 4, [("skc_dport", ids["be16"], 0, 0), ("skc_num", ids["u16"], 16, 0)]
    )
    ids["anon_u"] = b.union(
        "", 4, [("skc_portpair", ids["u32"], 0, 0), ("", ids["anon_ports"], 0, 0)]
    )
    ids["sock_common"] = b.struct(
        "sock_common", 32,
        [("skc_hash", ids["uint"], 0, 0), ("", ids["anon_u"], 32, 0),
         ("skc_state", ids["uchar"], 64, 0), ("skc_reuse", ids["uchar"], 72, 4),
         ("skc_ipv6only", ids["uchar"], 76, 1), ("skc_bound", ids["int"], 96, 0),
         ("skc_ports", ids["u32x4"], 128, 0)],
        kflag=True,
    )  # fmt: skip
    ids["sock_fwd"] = b.fwd("sock")
    ids["sock_p"] = b.ptr(ids["sock_fwd"])
    ids["sock"] = b.struct(
        "sock", 56,
        [("__sk_common", ids["sock_common"], 0, 0), ("sk_peer", ids["sock_p"], 256, 0),
         ("sk_flags", ids["bf3"], 320 + 37, 0), ("sk_prio", ids["int"], 384, 0)],
    )  # fmt: skip
    ids["sock_ptr"] = b.ptr(ids["sock"])
    ids["qstr"] = b.struct(
        "qstr", 16, [("hash", ids["u32"], 0, 0), ("name", b.ptr(b.const(ids["uchar"])), 64, 0)]
    )
    ids["dentry"] = b.struct(
        "dentry", 56, [("d_flags", ids["uint"], 0, 0), ("d_name", ids["qstr"], 256, 0)]
    )
    ids["dentry_p"] = b.ptr(ids["dentry"])
    ids["path"] = b.struct(
        "path", 16, [("mnt", b.ptr(0), 0, 0), ("dentry", ids["dentry_p"], 64, 0)]
    )
    ids["file"] = b.struct(
        "file",
        80,
        [
            ("f_flags", ids["uint"], 0, 0),
            ("f_path", ids["path"], 128, 0),
            ("private_data", b.ptr(0), 384, 0),
        ],
    )
    ids["file_p"] = b.ptr(ids["file"])
    ids["task"] = b.struct(
        "task_struct",
        64,
        [
            ("pid", ids["int"], 0, 0),
            ("comm", ids["comm"], 32, 0),
            ("flags", ids["uint"], 160, 0),
            ("real_parent", 0, 192, 0),
        ],
    )
    ids["task_p"] = b.ptr(ids["task"])
    ids["proto_open"] = b.func_proto(
        ids["long"],
        [("dfd", ids["int"]), ("filename", ids["ucchar_p"]), ("how", b.ptr(ids["u32"]))],
    )
    ids["do_open"] = b.func("do_sys_openat2", ids["proto_open"], 0)
    ids["proto_conn"] = b.func_proto(
        ids["int"],
        [
            ("sk", ids["sock_ptr"]),
            ("task", ids["task_p"]),
            ("file", ids["file_p"]),
            ("data", b.ptr(0)),
        ],
    )
    ids["tcp_connect"] = b.func("tcp_connect", ids["proto_conn"])
    ids["printk_proto"] = b.func_proto(ids["int"], [("fmt", ids["cchar_p"])], variadic=True)
    ids["printk"] = b.func("_printk", ids["printk_proto"])
    ids["void_proto"] = b.func_proto(0, [])
    ids["schedule"] = b.func("schedule", ids["void_proto"])
    ids["state_enum"] = b.enum(
        "task_state", 4, [("TASK_RUNNING", 0), ("TASK_DEAD", -1)], signed=True
    )
    ids["big_enum"] = b.enum64("big", 8, [("BIG_ONE", 1 << 40), ("BIG_NEG", -2)], signed=True)
    return b, ids
