"""Types the checker infers for expressions, maps and variables.

They print the way bpftrace prints its ``SizedType``: ``int64``, ``uint32``,
``string[16]``, ``struct task_struct *``, ``count_t``, ``ksym_t``.
A :class:`TypeProvider` builds struct member types from these classes, e.g.
``PointerType(RecordType("struct sock"))`` or ``ArrayType(IntType(8, True), 16)``.
"""

from __future__ import annotations

from typing import Union

from .._record import dataclass

__all__ = [
    "IntType", "StringType", "PointerType", "RecordType", "ArrayType", "VoidType",
    "AggType", "SymType", "StackType", "FmtType", "NoneType", "Type", "INT64", "UINT64", "UINT32", "UINT8",
    "VOID", "NONE", "kind_name", "is_int_like", "same_kind", "READABLE_AGGS", "TupleType",
    "merge_kind",
]  # fmt: skip


@dataclass(frozen=True)
class IntType:
    """An integer of ``bits`` (8, 16, 32, 64) with a signedness."""

    bits: int
    signed: bool

    def __str__(self) -> str:
        return f"{'' if self.signed else 'u'}int{self.bits}"


@dataclass(frozen=True)
class StringType:
    """A NUL-terminated string in a buffer of ``size`` bytes (terminator included)."""

    size: int

    def __str__(self) -> str:
        return f"string[{self.size}]"


@dataclass(frozen=True)
class RecordType:
    """A C struct or union, named with its keyword: ``struct task_struct``."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class PointerType:
    """A pointer to ``pointee`` (``void *`` is ``PointerType(VoidType())``)."""

    pointee: Type

    def __str__(self) -> str:
        inner = str(self.pointee)
        return inner + ("*" if inner.endswith("*") else " *")


@dataclass(frozen=True)
class ArrayType:
    """A fixed-size C array ``elem[count]``."""

    elem: Type
    count: int

    def __str__(self) -> str:
        return f"{self.elem}[{self.count}]"


@dataclass(frozen=True)
class VoidType:
    """No value (calls like ``printf()``; ``void`` pointees)."""

    def __str__(self) -> str:
        return "void"


@dataclass(frozen=True)
class AggType:
    """The value of an aggregation map: ``kind`` is count/sum/avg/min/max/stats/hist/lhist."""

    kind: str
    signed: bool = True

    def __str__(self) -> str:
        return f"{self.kind}_t"


@dataclass(frozen=True)
class SymType:
    """A symbolised address (``ksym()``, ``func``): printed with ``%s``."""

    kernel: bool = True

    def __str__(self) -> str:
        return "ksym_t" if self.kernel else "usym_t"


@dataclass(frozen=True)
class StackType:
    """``kstack``/``ustack`` (``user``): printed in ``mode`` (``bpftrace``, ``perf``,
    ``raw``) with at most ``limit`` frames; a string in printf and map keys."""

    user: bool = False
    mode: str = "bpftrace"
    limit: int = 127

    def __str__(self) -> str:
        return "ustack" if self.user else "kstack"


@dataclass(frozen=True)
class FmtType:
    """A value formatted in user space when printed (bpftrace's ``timestamp``,
    ``strerror_t``, ``inet``, ``mac_address``, ``buffer``, ``username``...).

    ``kind`` names the formatter (``strftime``, ``strerror``, ``ntop``,
    ``macaddr``, ``buf``, ``username``), ``size`` the bytes of raw data the
    kernel side carries, ``fmt`` the strftime format.  Prints with ``%s``
    (``buf``: ``%r``); Python values of this type are the formatted strings.
    """

    kind: str
    size: int = 8
    fmt: str = ""

    def __str__(self) -> str:
        return _FMT_NAMES.get(self.kind, self.kind)


_FMT_NAMES = {"strftime": "timestamp", "strerror": "strerror_t", "ntop": "inet",
              "macaddr": "mac_address", "buf": "buffer", "username": "username"}


@dataclass(frozen=True)
class TupleType:
    """A tuple ``(a, b, ...)`` (two or more elements) of integers and strings."""

    elems: tuple[Type, ...]

    def __str__(self) -> str:
        return "(" + ",".join(str(e) for e in self.elems) + ")"

    @property
    def size(self) -> int:
        """Bytes of its packed form: 8 per integer, strings rounded up to 8."""
        return sum(8 if not isinstance(e, StringType) else (e.size + 7) // 8 * 8
                   for e in self.elems)


@dataclass(frozen=True)
class NoneType:
    """The type of an expression that already produced an error (suppresses cascades)."""

    def __str__(self) -> str:
        return "none"


Type = Union[
    IntType, StringType, RecordType, PointerType, ArrayType, VoidType, AggType, SymType, StackType,
    FmtType, NoneType, TupleType,
]

INT64 = IntType(64, True)
UINT64 = IntType(64, False)
UINT32 = IntType(32, False)
UINT8 = IntType(8, False)
VOID = VoidType()
NONE = NoneType()
#: Aggregations whose value can be read as an integer (``@x > 10`` on ``@x = count()``).
READABLE_AGGS = frozenset(["count", "sum", "avg", "min", "max"])


def kind_name(t: Type) -> str:
    """bpftrace's name for the kind of ``t`` (``integer``, ``string``, ``pointer``...)."""
    if isinstance(t, IntType):
        return "integer"
    if isinstance(t, StringType):
        return "string"
    if isinstance(t, PointerType):
        return "pointer"
    if isinstance(t, RecordType):
        return "record"
    if isinstance(t, ArrayType):
        return "array"
    if isinstance(t, VoidType):
        return "void"
    if isinstance(t, NoneType):
        return "none"
    return str(t)


def is_int_like(t: Type) -> bool:
    """Integers, and aggregation values that read as integers."""
    return isinstance(t, IntType) or (isinstance(t, AggType) and t.kind in READABLE_AGGS)


def same_kind(a: Type, b: Type) -> bool:
    """Whether a variable or map holding ``a`` may also be given ``b``.

    Integers mix freely, strings of any size mix, pointers and records must
    match exactly, aggregations must be the same aggregation.
    """
    if isinstance(a, NoneType) or isinstance(b, NoneType):
        return True
    if isinstance(a, IntType) and isinstance(b, IntType):
        return True
    if isinstance(a, StringType) and isinstance(b, StringType):
        return True
    if isinstance(a, AggType) and isinstance(b, AggType):
        return a.kind == b.kind
    if isinstance(a, TupleType) and isinstance(b, TupleType):
        return len(a.elems) == len(b.elems) and all(
            same_kind(x, y) and isinstance(x, IntType) == isinstance(y, IntType)
            for x, y in zip(a.elems, b.elems))
    if isinstance(a, FmtType) and isinstance(b, FmtType):
        return a.kind == b.kind
    return a == b


def merge_kind(a: Type, b: Type) -> Type:
    """The type holding both ``a`` and ``b`` (of the same kind): the larger string buffers."""
    if isinstance(a, StringType) and isinstance(b, StringType):
        return StringType(max(a.size, b.size))
    if isinstance(a, TupleType) and isinstance(b, TupleType) and len(a.elems) == len(b.elems):
        return TupleType(tuple(merge_kind(x, y) for x, y in zip(a.elems, b.elems)))
    return a
