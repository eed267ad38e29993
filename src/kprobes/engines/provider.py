"""Kernel types for the bpftrace checker: BTF structs and tracepoint format files.

:class:`KernelTypeProvider` implements :class:`kprobes.lang.TypeProvider`:

* ``struct_members("struct sock")`` comes from vmlinux BTF.  Members of
  anonymous struct/union members are flattened into their parent (C lets a
  program name them directly: ``sk->__sk_common.skc_dport`` reaches a member
  two anonymous levels down).  Typedefs and qualifiers are looked through;
  ``char x[N]`` stays an array (the checker reads it as ``string[N]``).  A
  member whose type is an anonymous struct/union gets the record name
  ``struct <anon#ID>`` (``ID`` the BTF type id) so that it can be walked too.
* ``tracepoint_fields(SYS, EVENT)`` parses ``events/SYS/EVENT/format`` of a
  tracefs tree.  Integer signedness follows the declared C type (the
  ``signed:`` column is wrong for syscall arguments, e.g. ``int dfd`` with
  ``size:8 signed:0``), the size follows ``size:`` (bpftrace does the same).

Both are cached.  Nothing is read until a question is asked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable, Dict, Optional

from ..errors import KprobesError
from ..lang.provider import MemberInfo
from ..lang.typesys import (
    VOID,
    ArrayType,
    IntType,
    PointerType,
    RecordType,
    StringType,
    Type,
)

if TYPE_CHECKING:
    from ..btf import BTF
    from ..events.format import FieldFormat

__all__ = ["KernelTypeProvider", "btf_lang_type", "field_lang_type", "field_fetch_type"]

_ANON = re.compile(r"^(struct|union) <anon#(\d+)>$")
_UNSIGNED_NAMES = frozenset(
    ["size_t", "umode_t", "dev_t", "gfp_t", "uid_t", "gid_t", "bool", "_Bool", "u8", "u16",
     "u32", "u64", "__u8", "__u16", "__u32", "__u64", "unsigned", "pgoff_t", "ino_t",
     "sector_t", "blkcnt_t", "fmode_t", "key_serial_t"]
)  # fmt: skip
_SIGNED_NAMES = frozenset(
    ["int", "long", "short", "char", "signed char", "long long", "s8", "s16", "s32", "s64",
     "__s8", "__s16", "__s32", "__s64", "pid_t", "ssize_t", "loff_t", "off_t", "time64_t",
     "clockid_t", "timer_t", "key_t", "mqd_t"]
)  # fmt: skip
#: Size of the string bpftrace gives a ``__data_loc char[]`` field (BPFTRACE_MAX_STRLEN).
DYNAMIC_STRING_SIZE = 64


def btf_lang_type(btf: BTF, tid: int, depth: int = 0) -> Type:
    """The :mod:`kprobes.lang.typesys` type of BTF type ``tid``."""
    from ..btf import types as T

    t = btf.resolve(tid)
    if isinstance(t, T.Int):
        if t.is_bool:
            return IntType(8, False)
        if t.size in (1, 2, 4, 8):
            return IntType(8 * t.size, t.is_signed)
        return ArrayType(IntType(8, False), t.size)
    if isinstance(t, T.Enum):
        return IntType(8 * t.size, t.signed) if t.size in (1, 2, 4, 8) else IntType(64, False)
    if isinstance(t, T.Ptr):
        if depth > 8:
            return PointerType(VOID)
        return PointerType(btf_lang_type(btf, t.type, depth + 1))
    if isinstance(t, T.Array):
        return ArrayType(btf_lang_type(btf, t.type, depth + 1), t.nelems)
    if isinstance(t, T.Composite):
        kw = "union" if isinstance(t, T.Union) else "struct"
        return RecordType(f"{kw} {t.name}" if t.name else f"{kw} <anon#{t.id}>")
    if isinstance(t, T.Fwd):
        return RecordType(f"{'union' if t.is_union else 'struct'} {t.name}")
    if isinstance(t, T.Float):
        return IntType(8 * t.size, False) if t.size in (4, 8) else ArrayType(IntType(8, False), t.size)
    return VOID


def _int_signed(type_text: str, fallback: bool) -> bool:
    words = type_text.replace("const ", "").replace("volatile ", "").strip()
    if "unsigned" in words or words in _UNSIGNED_NAMES:
        return False
    if words in _SIGNED_NAMES or words.startswith("signed"):
        return True
    return fallback


def field_lang_type(f: FieldFormat) -> Type:
    """The checker's type of one tracepoint field."""
    if f.is_string:
        return StringType(f.array_len if f.array_len else DYNAMIC_STRING_SIZE)
    if "*" in f.type:
        base = f.type.replace("const ", "").replace("*", "").strip()
        pointee: Type = IntType(8, True) if base in ("char", "signed char", "unsigned char") else VOID
        m = re.fullmatch(r"(struct|union) (\w+)", base)
        if m is not None:  # struct __kernel_timespec *rqtp: args->rqtp->tv_sec reads through BTF
            pointee = RecordType(f"{m.group(1)} {m.group(2)}")
        for _ in range(f.type.count("*") - 1):  # const char *const *argv: char **
            pointee = PointerType(pointee)
        return PointerType(pointee)
    if f.array_len is not None and f.elem_size in (1, 2, 4, 8):
        return ArrayType(IntType(8 * f.elem_size, _int_signed(f.type, f.signed)), f.array_len)
    if f.size in (1, 2, 4, 8):
        return IntType(8 * f.size, _int_signed(f.type, f.signed))
    return ArrayType(IntType(8, False), f.size)


def field_fetch_type(f: FieldFormat) -> str:
    """The tracefs fetcharg type that reads field ``f`` whole (``s64``, ``u32``, ``string``)."""
    t = field_lang_type(f)
    if isinstance(t, StringType):
        return "string"
    if isinstance(t, IntType):
        return f"{'s' if t.signed else 'u'}{t.bits}"
    if isinstance(t, PointerType):
        return "u64"
    raise KprobesError(f"tracepoint field {f.name!r} ({f.type}) cannot be fetched as a value")


class KernelTypeProvider:
    """A :class:`kprobes.lang.TypeProvider` over BTF and a tracefs tree.

    ``btf`` is a BTF object or a zero-argument callable returning one (called
    at the first struct question; may raise :class:`~kprobes.errors.BTFError`).
    ``tracefs_root`` is the tracefs directory (None: no tracepoints known).
    """

    def __init__(
        self,
        btf: BTF | Callable[[], Optional[BTF]] | None = None,
        tracefs_root: Optional[str] = None,
    ) -> None:
        self._btf_src = btf
        self._btf: BTF | None = None
        self._btf_tried = False
        self.tracefs_root = tracefs_root
        self._structs: Dict[str, Optional[Dict[str, MemberInfo]]] = {}
        self._formats: Dict[tuple[str, str], Optional[object]] = {}
        self._funcs: Dict[str, Optional[tuple[Mapping[str, MemberInfo], Type]]] = {}

    # -- BTF ---------------------------------------------------------------
    @property
    def btf(self) -> BTF | None:
        """The BTF in use (loaded on first use), or None when there is none."""
        if not self._btf_tried and self._btf_src is not None:
            self._btf_tried = True
            src = self._btf_src
            from ..btf import BTF as _BTF

            self._btf = src if isinstance(src, _BTF) else src()
        return self._btf

    def _record(self, name: str) -> object | None:
        from ..btf import types as T

        btf = self.btf
        if btf is None:
            return None
        m = _ANON.match(name)
        if m:
            try:
                t = btf.type(int(m.group(2)))
            except (KprobesError, IndexError):
                return None
            return t if isinstance(t, T.Composite) else None
        kw, _, bare = name.partition(" ")
        kind = T.KIND_UNION if kw == "union" else T.KIND_STRUCT
        for tid in btf.ids_by_name(bare, kind):
            t = btf.type(tid)
            if isinstance(t, T.Composite):
                return t
        return None

    def struct_size(self, name: str) -> int | None:
        """``sizeof(struct NAME)`` from BTF, or None."""
        from ..btf import types as T

        comp = self._record(name)
        return comp.size if isinstance(comp, T.Composite) else None

    def struct_members(self, name: str) -> Mapping[str, MemberInfo] | None:
        if name in self._structs:
            return self._structs[name]
        from ..btf import types as T

        comp = self._record(name)
        members: Optional[Dict[str, MemberInfo]] = None
        if isinstance(comp, T.Composite):
            btf = self.btf
            assert btf is not None
            members = {}
            self._flatten(btf, comp, 0, members)
        self._structs[name] = members
        return members

    def _flatten(self, btf: BTF, comp: object, base_bits: int, out: Dict[str, MemberInfo]) -> None:
        from ..btf import types as T

        assert isinstance(comp, T.Composite)
        for m in comp.members:
            bits = base_bits + m.bit_offset
            if not m.name:
                sub = btf.resolve(m.type)
                if isinstance(sub, T.Composite):
                    self._flatten(btf, sub, bits, out)
                continue
            if m.name in out:
                continue
            out[m.name] = MemberInfo(
                m.name,
                btf_lang_type(btf, m.type),
                bits // 8,
                bit_offset=bits % 8 if m.bitfield_size else 0,
                bit_size=m.bitfield_size,
            )

    # -- functions (kfunc/kretfunc) ------------------------------------------
    def function_args(self, func: str) -> tuple[Mapping[str, MemberInfo], Type] | None:
        """Parameters of kernel function ``func`` as the fentry context lays them out
        (parameter i at byte 8*i; an unnamed one is called ``_i``) and its return type
        (VOID for void), from BTF; None when BTF or the function is missing."""
        if func in self._funcs:
            return self._funcs[func]
        from ..btf import types as T

        btf = self.btf
        got: tuple[Mapping[str, MemberInfo], Type] | None = None
        if btf is not None:
            for tid in btf.ids_by_name(func, T.KIND_FUNC):
                fn = btf.type(tid)
                proto = btf.type(fn.type) if isinstance(fn, T.Func) else None
                if not isinstance(proto, T.FuncProto):
                    continue
                params = {(p.name or f"_{i}"): MemberInfo(p.name, btf_lang_type(btf, p.type), 8 * i)
                          for i, p in enumerate(proto.params)}
                ret = btf_lang_type(btf, proto.return_type) if proto.return_type else VOID
                got = (params, ret)
                break
        self._funcs[func] = got
        return got

    # -- tracepoints -------------------------------------------------------
    def event_format(self, category: str, event: str) -> object | None:
        """The parsed :class:`~kprobes.events.format.EventFormat` (None when unknown)."""
        key = (category, event)
        if key in self._formats:
            return self._formats[key]
        fmt: object | None = None
        if self.tracefs_root is not None and "/" not in category + event:
            path = os.path.join(self.tracefs_root, "events", category, event, "format")
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
            except OSError:
                text = None
            if text is not None:
                from ..events.format import parse_event_format

                fmt = parse_event_format(text, system=category)
        self._formats[key] = fmt
        return fmt

    def tracepoint_fields(self, category: str, event: str) -> Mapping[str, MemberInfo] | None:
        from ..events.format import EventFormat

        fmt = self.event_format(category, event)
        if not isinstance(fmt, EventFormat):
            return None
        return {
            f.name: MemberInfo(f.name, field_lang_type(f), f.offset)
            for f in fmt.own_fields
        }

    def tracepoint_field(self, category: str, event: str, name: str) -> FieldFormat | None:
        """The raw format line of one field (for fetch types)."""
        from ..events.format import EventFormat

        fmt = self.event_format(category, event)
        if not isinstance(fmt, EventFormat):
            return None
        for f in fmt.own_fields:
            if f.name == name:
                return f
        return None
