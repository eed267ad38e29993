"""Resolve a C member path (``->a.b[3]->c``) against BTF into memory accesses.

The root of a path is a *value* (a register holding ``struct sock *sk``).  Each
``->`` dereferences: the current value must be a pointer to a struct/union and
the member lives in memory at ``value + offset``.  ``.`` and ``[i]`` on an
array only add to that offset; ``[i]`` on a pointer dereferences like ``->``.
Typedefs, const/volatile and type tags are looked through, and members of
anonymous struct/union members are found as if they were direct members (as C
does), their offsets added up.

The result is a list of :class:`PathStep` — "add ``offset``; then load a value
(``deref``) or keep the address" — that maps one-to-one onto tracefs
``+OFFS(...)`` fetchargs.
"""

from __future__ import annotations

import re

from .._record import dataclass
from ..errors import BTFError
from . import types as T
from .btf import BTF, close_matches
from .ctype import CType, as_ctype
from .render import type_name

__all__ = ["PathStep", "ResolvedPath", "resolve_path", "parse_path", "find_member", "member_names"]

_PATH_TOKEN = re.compile(
    r"\s*(?:(->)|(\.)|\[\s*(\d+|0x[0-9a-fA-F]+)\s*\]|([A-Za-z_][A-Za-z0-9_]*)|(\S))"
)


@dataclass(frozen=True)
class PathStep:
    """Add ``offset`` bytes to the current base; if ``deref``, load the new base from there."""

    offset: int
    deref: bool


@dataclass(frozen=True)
class ResolvedPath:
    """Where a path leads and what is there.

    ``steps`` are applied to the root value in order; when the last step has
    ``deref=False`` the path names an object that is not loaded (an array or a
    struct) and the base is its address.  ``type`` (plus ``pointers`` extra
    levels) is the declared C type at the end, ``size`` its size in bytes.
    ``bit_offset``/``bitfield_size`` locate a bitfield inside the bytes loaded by
    the last step (``bitfield_size == 0`` for ordinary members).
    """

    steps: tuple[PathStep, ...]
    type: T.Type
    pointers: int
    size: int
    signed: bool
    bit_offset: int = 0
    bitfield_size: int = 0

    @property
    def is_bitfield(self) -> bool:
        return self.bitfield_size != 0


@dataclass(frozen=True)
class _Op:
    op: str  # "->", ".", "[]"
    name: str  # member name, or the index text for "[]"
    index: int
    position: int
    width: int
    op_position: int  # where the '->'/'.'/'[' starts


def parse_path(text: str, position: int = 0) -> list[_Op]:
    """Split ``->a.b[3]`` into operations; ``position`` is where ``text`` starts in the user's text."""
    ops: list[_Op] = []
    pending: tuple[str, int] | None = None
    full = text
    for m in _PATH_TOKEN.finditer(text):
        arrow, dot, index, ident, other = m.groups()
        if other is not None:
            raise BTFError(f"unexpected {other!r} in member path", text=full, position=m.start(5))
        if arrow or dot:
            if pending is not None:
                raise BTFError("expected a member name", text=full, position=m.start())
            pending = ("->" if arrow else ".", m.start())
        elif index is not None:
            if pending is not None:
                raise BTFError("expected a member name", text=full, position=m.start())
            ops.append(_Op("[]", index, int(index, 0), m.start(), m.end() - m.start(), m.start()))
        elif ident is not None:
            if pending is None:
                raise BTFError(
                    f"expected '->' or '.' before {ident!r}", text=full, position=m.start(4)
                )
            ops.append(_Op(pending[0], ident, 0, m.start(4), len(ident), pending[1]))
            pending = None
    if pending is not None:
        raise BTFError("expected a member name", text=full, position=len(text))
    return [
        _Op(o.op, o.name, o.index, o.position + position, o.width, o.op_position + position)
        for o in ops
    ]


def member_names(btf: BTF, comp: T.Composite) -> list[str]:
    """All member names reachable with ``.`` (anonymous members flattened)."""
    out: list[str] = []
    for m in comp.members:
        if m.name:
            out.append(m.name)
        else:
            sub = btf.resolve(m.type)
            if isinstance(sub, T.Composite):
                out.extend(member_names(btf, sub))
    return out


def find_member(btf: BTF, comp: T.Composite, name: str) -> T.Member | None:
    """Member ``name`` of ``comp``, searching anonymous struct/union members.

    The returned member's ``bit_offset`` counts from the start of ``comp``.
    """
    for m in comp.members:
        if m.name == name:
            return m
    for m in comp.members:
        if not m.name:
            sub = btf.resolve(m.type)
            if isinstance(sub, T.Composite):
                found = find_member(btf, sub, name)
                if found is not None:
                    return T.Member(
                        found.name, found.type, m.bit_offset + found.bit_offset, found.bitfield_size
                    )
    return None


def _describe(btf: BTF, ct: CType) -> str:
    return type_name(btf, ct.type) + (" " + "*" * ct.pointers if ct.pointers else "")


def _pointee(btf: BTF, ct: CType) -> CType | None:
    d = ct.deref()
    if d is not None:
        return d
    r = btf.resolve(ct.type)
    if isinstance(r, T.Ptr):
        return CType(btf.type(r.type))
    return None


def _composite(btf: BTF, ct: CType) -> T.Type | None:
    if ct.pointers:
        return None
    r = btf.resolve(ct.type)
    return r if isinstance(r, (T.Composite, T.Fwd)) else None


def _complete(btf: BTF, fwd: T.Fwd) -> T.Type:
    """The full definition of a forward-declared struct/union, when BTF has one."""
    kind = T.KIND_UNION if fwd.is_union else T.KIND_STRUCT
    for tid in btf.ids_by_name(fwd.name, kind):
        return btf.type(tid)
    return fwd


class _Walker:
    def __init__(self, btf: BTF, text: str, root_name: str) -> None:
        self.btf = btf
        self.text = text
        self.shown = root_name  # the prefix walked so far, for messages

    def fail(self, message: str, op: _Op, hint: str | None = None) -> BTFError:
        """An error with the caret under the member name (or index)."""
        return BTFError(message, text=self.text, position=op.position, width=op.width, hint=hint)

    def fail_op(self, message: str, op: _Op, hint: str | None = None) -> BTFError:
        """An error with the caret under the operator and its member name."""
        width = op.position + op.width - op.op_position
        return BTFError(message, text=self.text, position=op.op_position, width=width, hint=hint)

    def member(self, ct: CType, op: _Op) -> T.Member:
        r = _composite(self.btf, ct)
        if isinstance(r, T.Fwd):
            r = _complete(self.btf, r)
        if isinstance(r, T.Fwd):
            raise self.fail(
                f"{_describe(self.btf, ct)} is only forward-declared in BTF; its members are unknown",
                op,
            )
        if not isinstance(r, T.Composite):
            raise self.fail(
                f"{self.shown!r} is {_describe(self.btf, ct)}, which has no members", op
            )
        m = find_member(self.btf, r, op.name)
        if m is None:
            sugg = close_matches(op.name, member_names(self.btf, r))
            raise self.fail(
                f"{_describe(self.btf, CType(r))} has no member {op.name!r}",
                op,
                hint="did you mean: " + ", ".join(sugg) + "?" if sugg else None,
            )
        return m


def resolve_path(
    btf: BTF,
    root_type: str | int | T.Type | CType,
    path: str,
    *,
    text: str | None = None,
    offset: int = 0,
    root_name: str = "",
) -> ResolvedPath:
    """Walk ``path`` (e.g. ``"->a.b[3]->c"``) from a value of ``root_type``.

    ``text``/``offset`` say where ``path`` sits in the user's input so that
    errors put their caret in the right place.
    """
    full = text if text is not None else path
    ops = parse_path(path, offset)
    walker = _Walker(btf, full, root_name or "value")
    ct = as_ctype(btf, root_type)
    steps: list[PathStep] = []
    in_memory = False
    pending = 0
    bit_offset = 0
    bitfield = 0
    for op in ops:
        if bitfield:
            raise walker.fail(f"{walker.shown!r} is a bitfield and has no members", op)
        if op.op == "->":
            target = _pointee(btf, ct)
            if target is None:
                hint = "use '.' to reach a member of a struct" if _composite(btf, ct) else None
                raise walker.fail_op(
                    f"'->' needs a pointer, but {walker.shown!r} is {_describe(btf, ct)}", op, hint
                )
            if isinstance(btf.resolve(target.type), T.Void) and not target.pointers:
                raise walker.fail_op(
                    f"{walker.shown!r} is a void pointer: it has no members",
                    op,
                    hint="cast it first, e.g. ((struct foo *)ptr)->member",
                )
            if in_memory:
                steps.append(PathStep(pending, True))
            m = walker.member(target, op)
            pending = m.bit_offset // 8
            in_memory = True
        elif op.op == ".":
            if _pointee(btf, ct) is not None:
                raise walker.fail_op(
                    f"'.' needs a struct, but {walker.shown!r} is a pointer ({_describe(btf, ct)})",
                    op,
                    hint="use '->' to dereference it",
                )
            m = walker.member(ct, op)
            if not in_memory:
                raise walker.fail(
                    f"{walker.shown!r} is a struct value, not in memory; cannot take a member",
                    op,
                    hint="start from a pointer and use '->'",
                )
            pending += m.bit_offset // 8
        else:
            r = btf.resolve(ct.type) if not ct.pointers else None
            if isinstance(r, T.Array):
                if not in_memory:
                    raise walker.fail(f"{walker.shown!r} is not in memory; cannot index it", op)
                if r.nelems and op.index >= r.nelems:
                    raise walker.fail(
                        f"index {op.index} is out of bounds for {_describe(btf, ct)}", op
                    )
                elem = CType(btf.type(r.type))
                pending += op.index * _size(btf, elem, walker, op)
                ct = elem
                walker.shown += f"[{op.name}]"
                continue
            target = _pointee(btf, ct)
            if target is None:
                raise walker.fail(
                    f"{walker.shown!r} is {_describe(btf, ct)}: only arrays and pointers can be indexed",
                    op,
                )
            if in_memory:
                steps.append(PathStep(pending, True))
            pending = op.index * _size(btf, target, walker, op)
            in_memory = True
            ct = target
            walker.shown += f"[{op.name}]"
            continue
        ct = CType(btf.type(m.type))
        bitfield = m.bitfield_size
        bit_offset = m.bit_offset % 8 if bitfield else 0
        walker.shown += op.op + op.name
    size = 0
    final = None if ct.pointers else btf.resolve(ct.type)
    if in_memory:
        loads = not isinstance(final, (T.Array, T.Composite, T.Fwd, T.FuncProto))
        steps.append(PathStep(pending, loads))
    if ct.pointers or isinstance(final, T.Ptr):
        size = btf.pointer_size
    elif isinstance(final, (T.Int, T.Enum, T.Float, T.Composite, T.Array)):
        size = btf.size_of(final)
    signed = (
        isinstance(final, T.Int) and final.is_signed or isinstance(final, T.Enum) and final.signed
    )
    return ResolvedPath(tuple(steps), ct.type, ct.pointers, size, signed, bit_offset, bitfield)


def _size(btf: BTF, ct: CType, walker: _Walker, op: _Op) -> int:
    if ct.pointers:
        return btf.pointer_size
    try:
        return btf.size_of(ct.type)
    except BTFError:
        raise walker.fail(f"cannot index: {_describe(btf, ct)} has no size", op) from None
