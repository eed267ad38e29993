"""A BTF blob with lazy, on-demand decoding.

Opening a 5-6 MB ``/sys/kernel/btf/vmlinux`` costs one pass that records where
each type record starts (:func:`~kprobes.btf.header.scan_offsets`, or a disk
cache of it, see :mod:`kprobes.btf.cache`).  A type is decoded into its frozen
dataclass the first time it is asked for.  A name lookup finds the name in the
string section (one C-speed ``find``) and then the records naming that string
(another ``find`` of the packed ``name_off``) — no name index is built unless
many lookups are made.

Split BTF (``/sys/kernel/btf/<module>``): the module's type ids continue after
the base's last id and its string offsets continue after the base's string
section; pass the base :class:`BTF` as ``base``.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from typing import Union

from .._record import dataclass
from ..errors import BTFError
from . import types as T
from .header import Blob, BTFHeader, Buffer, parse_header, scan_offsets
from .types import Record

__all__ = ["BTF", "FuncParam", "FuncSignature", "KindSpec"]

KindSpec = Union[int, str, None]
_KIND_BY_NAME = {v: k for k, v in T.KIND_NAMES.items()}
_QUALIFIERS = (T.KIND_CONST, T.KIND_VOLATILE, T.KIND_RESTRICT, T.KIND_TYPE_TAG)
_INDEX_AFTER = 24  # build the in-memory name index after this many lookups
VOID = T.Void(0, "void")


def kind_number(kind: KindSpec) -> int | None:
    """Map ``"struct"``/``T.KIND_STRUCT``/None to a kind number (None = any)."""
    if kind is None or isinstance(kind, int):
        return kind
    try:
        return _KIND_BY_NAME[kind]
    except KeyError:
        raise BTFError(f"unknown BTF kind name {kind!r}") from None


@dataclass(frozen=True, eq=False, repr=False)
class FuncParam(Record):
    """A parameter of a function: 1-based ``index``, ``name`` and decoded ``type``."""

    index: int
    name: str
    type: T.Type


@dataclass(frozen=True, eq=False, repr=False)
class FuncSignature(Record):
    """A function's prototype with its types decoded (the answer of :meth:`BTF.func_proto`)."""

    name: str
    func: T.Func
    proto: T.FuncProto
    return_type: T.Type
    params: tuple[FuncParam, ...]
    variadic: bool

    def param(self, name: str) -> FuncParam | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


class BTF:
    """One BTF blob (vmlinux, or a module on top of ``base``).

    ``data`` is the whole file (``bytes`` or an ``mmap``); ``offsets`` may carry a
    precomputed record index (word offsets into the type section), e.g. from the
    disk cache.  Type ids of a split BTF start at ``base.nr_types``.
    """

    def __init__(
        self,
        data: Buffer,
        *,
        base: BTF | None = None,
        name: str = "vmlinux",
        offsets: Sequence[int] | None = None,
    ) -> None:
        buf: Blob = data.tobytes() if isinstance(data, memoryview) else data
        self.name = name
        self.base = base
        self.header: BTFHeader = parse_header(buf, name)
        self._data = buf
        h = self.header
        self._ts = h.type_start
        self._te = h.type_start + h.type_len
        self._ss = h.str_start
        self._se = h.str_start + h.str_len
        self.start_id = base.nr_types if base is not None else 1
        self._str_base = base.strings_end if base is not None else 0
        if h.str_len and (buf[self._se - 1] != 0 or (base is None and buf[self._ss] != 0)):
            raise BTFError(f"{name}: malformed BTF string section")
        self._words = self._make_words()
        self._offsets: Sequence[int] | None = offsets
        self._types: dict[int, T.Type] = {}
        self._strings: dict[int, str] = {0: ""}
        self._lookups = 0
        self._index: tuple[array[int], list[int]] | None = None
        self._ptr_size: int | None = None

    def _make_words(self) -> Sequence[int]:
        h = self.header
        if h.native and self._ts % 4 == 0:
            try:
                return memoryview(self._data)[self._ts : self._te].cast("I")
            except TypeError:
                pass
        words = array("I")
        words.frombytes(bytes(self._data[self._ts : self._te]))
        if not h.native:
            words.byteswap()
        return words

    # -- sizes and raw access ---------------------------------------------

    @property
    def offsets(self) -> Sequence[int]:
        """Word offset of each own type record (index 0 is id ``start_id``)."""
        if self._offsets is None:
            self._offsets = scan_offsets(self._words, self.name)
        return self._offsets

    @property
    def nr_types(self) -> int:
        """One past the last valid type id (ids of a base BTF count ``void``)."""
        return self.start_id + len(self.offsets)

    @property
    def strings_end(self) -> int:
        """First string offset after this BTF's strings (where a split BTF's begin)."""
        return self._str_base + self.header.str_len

    def __len__(self) -> int:
        return self.nr_types

    def __repr__(self) -> str:
        return f"<BTF {self.name}: ids {self.start_id}..{self.nr_types - 1}>"

    def string(self, off: int) -> str:
        """The NUL-terminated string at string-section offset ``off``."""
        s = self._strings.get(off)
        if s is not None:
            return s
        if off < self._str_base:
            assert self.base is not None
            return self.base.string(off)
        pos = self._ss + off - self._str_base
        if pos >= self._se:
            raise BTFError(f"{self.name}: string offset {off} out of range")
        end = self._data.find(b"\0", pos, self._se)
        s = self._data[pos:end].decode("utf-8", "replace")
        self._strings[off] = s
        return s

    def _raw(self, tid: int) -> tuple[int, int]:
        """(word offset, info) of own type ``tid``."""
        off = self.offsets[tid - self.start_id]
        return off, self._words[off + 1]

    def kind_of(self, tid: int) -> int:
        """The kind number of ``tid`` without decoding it."""
        if tid < self.start_id:
            if tid == 0:
                return T.KIND_UNKN
            assert self.base is not None
            return self.base.kind_of(tid)
        self._check_id(tid)
        return (self._raw(tid)[1] >> 24) & 0x1F

    def name_of(self, tid: int) -> str:
        """The name of ``tid`` without decoding the rest of it."""
        if tid < self.start_id:
            if tid == 0:
                return "void"
            assert self.base is not None
            return self.base.name_of(tid)
        self._check_id(tid)
        return self.string(self._words[self._raw(tid)[0]])

    def _check_id(self, tid: int) -> None:
        if not self.start_id <= tid < self.nr_types:
            raise BTFError(f"{self.name}: type id {tid} out of range")

    # -- decoding -----------------------------------------------------------

    def type(self, tid: int) -> T.Type:
        """Decode type ``tid`` (cached); base ids are delegated to the base BTF."""
        t = self._types.get(tid)
        if t is not None:
            return t
        if tid < self.start_id:
            if tid == 0:
                return VOID
            if self.base is None:
                raise BTFError(f"{self.name}: type id {tid} out of range")
            return self.base.type(tid)
        offs = self.offsets
        idx = tid - self.start_id
        if idx >= len(offs):
            raise BTFError(f"{self.name}: type id {tid} out of range")
        t = self._decode(tid, offs[idx])
        self._types[tid] = t
        return t

    __getitem__ = type

    def _decode(self, tid: int, off: int) -> T.Type:
        w = self._words
        name = self.string(w[off])
        info = w[off + 1]
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        st = w[off + 2]
        p = off + 3
        if kind == T.KIND_FUNC:
            return T.Func(tid, name, st, vlen)
        if kind == T.KIND_FUNC_PROTO:
            params = [T.Param(self.string(w[i]), w[i + 1]) for i in range(p, p + 2 * vlen, 2)]
            variadic = bool(params) and params[-1].type == 0 and not params[-1].name
            if variadic:
                params.pop()
            return T.FuncProto(tid, name, st, tuple(params), variadic)
        if kind == T.KIND_PTR:
            return T.Ptr(tid, name, st)
        if kind in (T.KIND_STRUCT, T.KIND_UNION):
            members = tuple(
                self._member(w[i], w[i + 1], w[i + 2], kflag) for i in range(p, p + 3 * vlen, 3)
            )
            cls = T.Struct if kind == T.KIND_STRUCT else T.Union
            return cls(tid, name, st, members)
        if kind == T.KIND_CONST:
            return T.Const(tid, name, st)
        if kind == T.KIND_ARRAY:
            return T.Array(tid, name, w[p], w[p + 1], w[p + 2])
        if kind == T.KIND_TYPEDEF:
            return T.Typedef(tid, name, st)
        if kind == T.KIND_ENUM:
            vals = []
            for i in range(p, p + 2 * vlen, 2):
                v = w[i + 1]
                if kflag and v >= 1 << 31:
                    v -= 1 << 32
                vals.append(T.EnumValue(self.string(w[i]), v))
            return T.Enum(tid, name, st, kflag, tuple(vals))
        if kind == T.KIND_INT:
            enc = w[p]
            return T.Int(tid, name, st, (enc >> 24) & 0x0F, enc & 0xFF, (enc >> 16) & 0xFF)
        if kind == T.KIND_ENUM64:
            vals = []
            for i in range(p, p + 3 * vlen, 3):
                v = w[i + 1] | (w[i + 2] << 32)
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                vals.append(T.EnumValue(self.string(w[i]), v))
            return T.Enum64(tid, name, st, kflag, tuple(vals))
        if kind == T.KIND_FWD:
            return T.Fwd(tid, name, kflag)
        if kind == T.KIND_VOLATILE:
            return T.Volatile(tid, name, st)
        if kind == T.KIND_RESTRICT:
            return T.Restrict(tid, name, st)
        if kind == T.KIND_TYPE_TAG:
            return T.TypeTag(tid, name, st, kflag)
        if kind == T.KIND_VAR:
            return T.Var(tid, name, st, w[p])
        if kind == T.KIND_DATASEC:
            secs = tuple(T.VarSecinfo(w[i], w[i + 1], w[i + 2]) for i in range(p, p + 3 * vlen, 3))
            return T.Datasec(tid, name, st, secs)
        if kind == T.KIND_FLOAT:
            return T.Float(tid, name, st)
        if kind == T.KIND_DECL_TAG:
            idx = w[p]
            return T.DeclTag(tid, name, st, idx - (1 << 32) if idx >= 1 << 31 else idx, kflag)
        raise BTFError(f"{self.name}: unknown BTF kind {kind} in type id {tid}")

    def _member(self, name_off: int, mtype: int, moff: int, kflag: bool) -> T.Member:
        name = self.string(name_off)
        if kflag:
            # kind_flag=1: offset = bitfield_size << 24 | bit_offset.
            return T.Member(name, mtype, moff & 0xFFFFFF, moff >> 24)
        # kind_flag=0: a bitfield's width/extra offset live in its INT type.
        t = self.resolve(mtype)
        if isinstance(t, T.Int) and (t.offset or t.bits != t.size * 8):
            return T.Member(name, mtype, moff + t.offset, t.bits)
        return T.Member(name, mtype, moff, 0)

    def types(self, kind: KindSpec = None) -> Iterator[T.Type]:
        """Decode and yield this BTF's own types (not the base's), optionally of one kind."""
        k = kind_number(kind)
        w = self._words
        for i, off in enumerate(self.offsets):
            if k is None or (w[off + 1] >> 24) & 0x1F == k:
                yield self.type(self.start_id + i)

    def __iter__(self) -> Iterator[T.Type]:
        return self.types()

    # -- type helpers -------------------------------------------------------

    def resolve(self, t: int | T.Type) -> T.Type:
        """Strip typedefs, const/volatile/restrict and type tags."""
        if isinstance(t, int):
            t = self.type(t)
        seen = 0
        while isinstance(t, T.RefType):
            t = self.type(t.type)
            seen += 1
            if seen > 64:
                raise BTFError(f"{self.name}: typedef/qualifier loop at type id {t.id}")
        return t

    def strip_qualifiers(self, t: int | T.Type) -> T.Type:
        """Strip const/volatile/restrict and type tags, but keep typedefs."""
        if isinstance(t, int):
            t = self.type(t)
        while isinstance(t, (T.Const, T.Volatile, T.Restrict, T.TypeTag)):
            t = self.type(t.type)
        return t

    @property
    def pointer_size(self) -> int:
        """Size of a pointer: 8, unless this BTF's ``long`` is 4 bytes."""
        if self._ptr_size is None:
            self._ptr_size = 8
            for tid in self.ids_by_name("long int", T.KIND_INT):
                t = self.type(tid)
                if isinstance(t, T.Int):
                    self._ptr_size = t.size
        return self._ptr_size

    def size_of(self, t: int | T.Type) -> int:
        """Size in bytes of a type (arrays multiply, typedefs resolve)."""
        r = self.resolve(t)
        if isinstance(r, (T.Int, T.Float, T.Composite, T.Enum, T.Datasec)):
            return r.size
        if isinstance(r, T.Ptr):
            return self.pointer_size
        if isinstance(r, T.Array):
            return r.nelems * self.size_of(r.type)
        raise BTFError(f"{self.name}: type {r.kind_name} {r.name or r.id} has no size")

    # -- names ----------------------------------------------------------------

    def _string_offsets(self, name: str) -> list[int]:
        """Every string offset (base strings first) that holds exactly ``name``."""
        out = self.base._string_offsets(name) if self.base is not None else []
        key = b"\0" + name.encode() + b"\0"
        data = self._data
        pos = data.find(key, self._ss, self._se)
        while pos >= 0:
            out.append(pos + 1 - self._ss + self._str_base)
            pos = data.find(key, pos + 1, self._se)
        return out

    def _own_ids_with_name_off(self, name_off: int) -> list[int]:
        if self._index is not None:
            keys, order = self._index
            i = bisect_left(keys, name_off)
            hits = []
            while i < len(keys) and keys[i] == name_off:
                hits.append(self.start_id + order[i])
                i += 1
            return hits
        packed = struct.pack(self.header.byteorder + "I", name_off)
        offs = self.offsets
        data, ts, te = self._data, self._ts, self._te
        out: list[int] = []
        pos = data.find(packed, ts, te)
        while pos >= 0:
            rel = pos - ts
            if rel % 4 == 0:
                widx = rel // 4
                i = bisect_left(offs, widx)
                if i < len(offs) and offs[i] == widx:
                    out.append(self.start_id + i)
                pos = data.find(packed, pos + 4, te)
            else:
                pos = data.find(packed, pos + 1, te)
        return out

    def _build_index(self) -> None:
        """Sort record indices by name offset, for bisect lookups (C-speed sort)."""
        w = self._words
        nos = [w[off] for off in self.offsets]
        order = sorted(range(len(nos)), key=nos.__getitem__)
        self._index = (array("I", [nos[i] for i in order]), order)

    def ids_by_name(self, name: str, kind: KindSpec = None) -> list[int]:
        """Ids of all types called ``name`` (own first, then the base's)."""
        if not name:
            return []
        k = kind_number(kind)
        self._lookups += 1
        if self._index is None and self._lookups > _INDEX_AFTER:
            self._build_index()
        out: list[int] = []
        for no in self._string_offsets(name):
            for tid in self._own_ids_with_name_off(no):
                if k is None or self.kind_of(tid) == k:
                    out.append(tid)
        out.sort()
        if self.base is not None:
            out.extend(self.base.ids_by_name(name, k))
        return out

    def find_all(self, name: str, kind: KindSpec = None) -> list[T.Type]:
        """All types called ``name`` (optionally of one kind), decoded."""
        return [self.type(tid) for tid in self.ids_by_name(name, kind)]

    def find(self, name: str, kind: KindSpec = None) -> T.Type:
        """The type called ``name``; prefers a complete struct over a forward declaration.

        Raises :class:`BTFError` with close-match suggestions when there is none.
        """
        found = self.find_all(name, kind)
        if not found:
            k = kind_number(kind)
            what = f"{T.KIND_NAMES[k]} {name}" if k is not None else repr(name)
            raise BTFError(f"no {what} in {self.name} BTF", hint=self.suggestion_hint(name, k))
        for t in found:
            if not isinstance(t, T.Fwd):
                return t
        return found[0]

    def names(self, kind: KindSpec = None) -> list[str]:
        """Names of all own (and base) types, optionally of one kind, deduplicated."""
        k = kind_number(kind)
        out = set(self.base.names(k)) if self.base is not None else set()
        w = self._words
        for off in self.offsets:
            if w[off] and (k is None or (w[off + 1] >> 24) & 0x1F == k):
                out.add(self.string(w[off]))
        return sorted(out)

    def suggest(self, name: str, kind: KindSpec = None, n: int = 5) -> list[str]:
        """Up to ``n`` known names close to ``name`` (difflib), for error hints."""
        return close_matches(name, self.names(kind), n)

    def suggestion_hint(self, name: str, kind: KindSpec = None) -> str | None:
        s = self.suggest(name, kind)
        return "did you mean: " + ", ".join(s) + "?" if s else None

    # -- queries --------------------------------------------------------------

    def func(self, name: str) -> T.Func:
        """The BTF_KIND_FUNC called ``name``."""
        t = self.find(name, T.KIND_FUNC)
        assert isinstance(t, T.Func)
        return t

    def func_proto(self, func: str | T.Func) -> FuncSignature:
        """Parameters (names + types) and return type of a function."""
        f = self.func(func) if isinstance(func, str) else func
        proto = self.type(f.type)
        if not isinstance(proto, T.FuncProto):
            raise BTFError(f"{self.name}: function {f.name} has no prototype (type {f.type})")
        params = tuple(
            FuncParam(i + 1, p.name, self.type(p.type)) for i, p in enumerate(proto.params)
        )
        return FuncSignature(f.name, f, proto, self.type(proto.return_type), params, proto.variadic)

    def enum_value(self, name: str) -> tuple[T.Enum, int]:
        """The enum defining enumerator ``name`` and its value."""
        for sb in self._lineage():
            for no in self._string_offsets(name):
                hit = sb._enumerator_with_name_off(no)
                if hit is not None:
                    enum = sb.type(hit)
                    assert isinstance(enum, T.Enum)
                    return enum, enum.value_of(name)
        names: set[str] = set()
        for sb in self._lineage():
            for t in sb.types(T.KIND_ENUM):
                names.update(v.name for v in t.values)  # type: ignore[attr-defined]
        s = close_matches(name, sorted(names), 5)
        raise BTFError(
            f"no enumerator {name!r} in {self.name} BTF",
            hint="did you mean: " + ", ".join(s) + "?" if s else None,
        )

    def _lineage(self) -> list[BTF]:
        out: list[BTF] = []
        b: BTF | None = self
        while b is not None:
            out.append(b)
            b = b.base
        return out

    def _enumerator_with_name_off(self, name_off: int) -> int | None:
        packed = struct.pack(self.header.byteorder + "I", name_off)
        offs, w = self.offsets, self._words
        data, ts, te = self._data, self._ts, self._te
        pos = data.find(packed, ts, te)
        while pos >= 0:
            rel = pos - ts
            if rel % 4 == 0:
                widx = rel // 4
                i = bisect_right(offs, widx) - 1
                start = offs[i]
                kind = (w[start + 1] >> 24) & 0x1F
                stride = 2 if kind == T.KIND_ENUM else 3
                if kind in (T.KIND_ENUM, T.KIND_ENUM64) and widx > start + 2:
                    if (widx - start - 3) % stride == 0:
                        return self.start_id + i
            pos = data.find(packed, pos + 1, te)
        return None


def close_matches(name: str, candidates: Sequence[str], n: int = 5) -> list[str]:
    """difflib close matches, pre-filtered by length so 100k names stay quick."""
    import difflib

    slack = max(3, len(name) // 2)
    pool = [c for c in candidates if abs(len(c) - len(name)) <= slack]
    return difflib.get_close_matches(name, pool, n=n, cutoff=0.6)
