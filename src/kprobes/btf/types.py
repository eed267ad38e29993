"""BTF type records as immutable values (include/uapi/linux/btf.h).

Every record of the type section becomes one frozen dataclass.  Types refer to
other types by *id* (``type`` fields are ints), never by object, so decoding one
type never decodes the whole graph; :class:`kprobes.btf.btf.BTF` turns ids into
objects on demand.  Id 0 is ``void`` (:class:`Void`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .._record import dataclass, fields

__all__ = [
    "Record",
    "KIND_NAMES",
    "Type",
    "Void",
    "Int",
    "Ptr",
    "Array",
    "Member",
    "Composite",
    "Struct",
    "Union",
    "EnumValue",
    "Enum",
    "Enum64",
    "Fwd",
    "RefType",
    "Typedef",
    "Volatile",
    "Const",
    "Restrict",
    "TypeTag",
    "Func",
    "Param",
    "FuncProto",
    "Var",
    "VarSecinfo",
    "Datasec",
    "Float",
    "DeclTag",
]

# BTF_KIND_* numbers (include/uapi/linux/btf.h).
KIND_UNKN = 0
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

KIND_NAMES = {
    KIND_UNKN: "void",
    KIND_INT: "int",
    KIND_PTR: "ptr",
    KIND_ARRAY: "array",
    KIND_STRUCT: "struct",
    KIND_UNION: "union",
    KIND_ENUM: "enum",
    KIND_FWD: "fwd",
    KIND_TYPEDEF: "typedef",
    KIND_VOLATILE: "volatile",
    KIND_CONST: "const",
    KIND_RESTRICT: "restrict",
    KIND_FUNC: "func",
    KIND_FUNC_PROTO: "func_proto",
    KIND_VAR: "var",
    KIND_DATASEC: "datasec",
    KIND_FLOAT: "float",
    KIND_DECL_TAG: "decl_tag",
    KIND_TYPE_TAG: "type_tag",
    KIND_ENUM64: "enum64",
}

# BTF_INT_ENCODING bits.
INT_SIGNED = 1 << 0
INT_CHAR = 1 << 1
INT_BOOL = 1 << 2

# BTF_FUNC_* linkage values.
LINKAGE_NAMES = ("static", "global", "extern")


class Record:
    """Value semantics shared by the frozen dataclasses of this package.

    The dataclasses are declared ``@dataclass(frozen=True, eq=False, repr=False)``
    and take ``__eq__``/``__hash__``/``__repr__`` from here: the behaviour of the
    generated methods (equal when same class and same field values), without
    paying for three ``exec()`` calls per class at import time.
    """

    __slots__ = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.__class__.__qualname__}({inner})"


# Subclasses that add no field (Struct, Union, Enum64, Typedef, Volatile, Const,
# Restrict) are not re-decorated: they inherit the generated frozen __init__ and
# the Record methods, and skipping the decorator keeps import time down (each
# @dataclass costs ~0.5-1 ms of exec()).


@dataclass(frozen=True, eq=False, repr=False)
class Type(Record):
    """Common part of every BTF type: its id (index in the type section) and name."""

    id: int
    name: str

    kind: ClassVar[int] = 0

    @property
    def kind_name(self) -> str:
        """The kind as the lowercase word used by bpftool (``struct``, ``func``...)."""
        return KIND_NAMES[self.kind]


@dataclass(frozen=True, eq=False, repr=False)
class Void(Type):
    """Type id 0: ``void``."""

    kind = KIND_UNKN


@dataclass(frozen=True, eq=False, repr=False)
class Int(Type):
    """BTF_KIND_INT: ``size`` bytes; ``encoding`` is BTF_INT_SIGNED|CHAR|BOOL bits.

    ``bits``/``offset`` are BTF_INT_BITS/BTF_INT_OFFSET; they differ from
    ``size*8``/0 only for the old (kind_flag=0) bitfield encoding.
    """

    kind = KIND_INT

    size: int
    encoding: int
    bits: int
    offset: int

    @property
    def is_signed(self) -> bool:
        return bool(self.encoding & INT_SIGNED)

    @property
    def is_char(self) -> bool:
        return bool(self.encoding & INT_CHAR) or self.name in (
            "char",
            "signed char",
            "unsigned char",
        )

    @property
    def is_bool(self) -> bool:
        return bool(self.encoding & INT_BOOL)


@dataclass(frozen=True, eq=False, repr=False)
class Ptr(Type):
    """BTF_KIND_PTR: pointer to ``type``."""

    kind = KIND_PTR

    type: int


@dataclass(frozen=True, eq=False, repr=False)
class Array(Type):
    """BTF_KIND_ARRAY: ``nelems`` elements of ``type`` indexed by ``index_type``."""

    kind = KIND_ARRAY

    type: int
    index_type: int
    nelems: int


@dataclass(frozen=True, eq=False, repr=False)
class Member(Record):
    """One struct/union member, with the bitfield encoding already normalized.

    ``bit_offset`` counts from the start of the enclosing struct; ``bitfield_size``
    is 0 for ordinary members.  Anonymous struct/union members have ``name == ""``.
    """

    name: str
    type: int
    bit_offset: int
    bitfield_size: int

    @property
    def offset(self) -> int:
        """Byte offset of the member (of the byte holding its first bit)."""
        return self.bit_offset // 8

    @property
    def is_bitfield(self) -> bool:
        return self.bitfield_size != 0


@dataclass(frozen=True, eq=False, repr=False)
class Composite(Type):
    """Common shape of STRUCT and UNION: ``size`` bytes and ``members``."""

    size: int
    members: tuple[Member, ...]


class Struct(Composite):
    """BTF_KIND_STRUCT."""

    kind = KIND_STRUCT


class Union(Composite):
    """BTF_KIND_UNION."""

    kind = KIND_UNION


@dataclass(frozen=True, eq=False, repr=False)
class EnumValue(Record):
    """One enumerator; ``value`` is already sign-adjusted."""

    name: str
    value: int


@dataclass(frozen=True, eq=False, repr=False)
class Enum(Type):
    """BTF_KIND_ENUM (32-bit values); ``signed`` comes from kind_flag."""

    kind = KIND_ENUM

    size: int
    signed: bool
    values: tuple[EnumValue, ...]

    def value_of(self, name: str) -> int:
        """Value of enumerator ``name``; KeyError when absent."""
        for v in self.values:
            if v.name == name:
                return v.value
        raise KeyError(name)


class Enum64(Enum):
    """BTF_KIND_ENUM64 (64-bit values, lo32/hi32 pairs in the file)."""

    kind = KIND_ENUM64


@dataclass(frozen=True, eq=False, repr=False)
class Fwd(Type):
    """BTF_KIND_FWD: a forward declaration (``struct x;`` or ``union x;``)."""

    kind = KIND_FWD

    is_union: bool


@dataclass(frozen=True, eq=False, repr=False)
class RefType(Type):
    """Kinds that only name or qualify another type (``type``)."""

    type: int


class Typedef(RefType):
    """BTF_KIND_TYPEDEF."""

    kind = KIND_TYPEDEF


class Volatile(RefType):
    """BTF_KIND_VOLATILE."""

    kind = KIND_VOLATILE


class Const(RefType):
    """BTF_KIND_CONST."""

    kind = KIND_CONST


class Restrict(RefType):
    """BTF_KIND_RESTRICT."""

    kind = KIND_RESTRICT


@dataclass(frozen=True, eq=False, repr=False)
class TypeTag(RefType):
    """BTF_KIND_TYPE_TAG (``__user``, ``__rcu``...); ``attr`` is kind_flag."""

    kind = KIND_TYPE_TAG

    attr: bool


@dataclass(frozen=True, eq=False, repr=False)
class Func(Type):
    """BTF_KIND_FUNC: a function named ``name`` whose prototype is ``type``."""

    kind = KIND_FUNC

    type: int
    linkage: int

    @property
    def linkage_name(self) -> str:
        if 0 <= self.linkage < len(LINKAGE_NAMES):
            return LINKAGE_NAMES[self.linkage]
        return str(self.linkage)


@dataclass(frozen=True, eq=False, repr=False)
class Param(Record):
    """One FUNC_PROTO parameter; ``type == 0`` with no name marks ``...``."""

    name: str
    type: int


@dataclass(frozen=True, eq=False, repr=False)
class FuncProto(Type):
    """BTF_KIND_FUNC_PROTO: return type and parameters (``variadic`` drops the ``...``)."""

    kind = KIND_FUNC_PROTO

    return_type: int
    params: tuple[Param, ...]
    variadic: bool


@dataclass(frozen=True, eq=False, repr=False)
class Var(Type):
    """BTF_KIND_VAR: a global variable of ``type``."""

    kind = KIND_VAR

    type: int
    linkage: int


@dataclass(frozen=True, eq=False, repr=False)
class VarSecinfo(Record):
    """One DATASEC entry: variable ``type`` at ``offset`` of ``size`` bytes."""

    type: int
    offset: int
    size: int


@dataclass(frozen=True, eq=False, repr=False)
class Datasec(Type):
    """BTF_KIND_DATASEC: a data section (``.data..percpu``...)."""

    kind = KIND_DATASEC

    size: int
    vars: tuple[VarSecinfo, ...]


@dataclass(frozen=True, eq=False, repr=False)
class Float(Type):
    """BTF_KIND_FLOAT."""

    kind = KIND_FLOAT

    size: int


@dataclass(frozen=True, eq=False, repr=False)
class DeclTag(Type):
    """BTF_KIND_DECL_TAG on ``type``; ``component_idx`` -1 tags the type itself."""

    kind = KIND_DECL_TAG

    type: int
    component_idx: int
    attr: bool
