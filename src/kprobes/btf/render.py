"""C rendering of BTF types: declarations, function signatures, pahole-like layouts.

``type_name(btf, t, "x")`` builds a C declarator the way C reads it inside out
(``char *const *argv``, ``int (*fn)(int)``, ``char comm[16]``); type tags such
as ``__user`` are transparent, as in a preprocessed source.
"""

from __future__ import annotations

from ..errors import BTFError
from . import types as T
from .btf import BTF, FuncSignature

__all__ = ["type_name", "format_func", "format_struct", "lookup_composite"]

_QUAL_WORD = {T.KIND_CONST: "const", T.KIND_VOLATILE: "volatile", T.KIND_RESTRICT: "restrict"}
_CACHELINE = 64


def _join(base: str, inner: str) -> str:
    if not inner:
        return base
    if inner[0] in "[(":
        return base + inner if inner[0] == "[" else base + " " + inner
    return base + " " + inner


def _tag_name(t: T.Type) -> str:
    if isinstance(t, T.Struct):
        word = "struct"
    elif isinstance(t, T.Union):
        word = "union"
    elif isinstance(t, T.Fwd):
        word = "union" if t.is_union else "struct"
    else:
        word = "enum"
    return f"{word} {t.name}" if t.name else f"{word} {{...}}"


def _decl(btf: BTF, t: T.Type, inner: str, depth: int = 0) -> str:
    if depth > 64:
        raise BTFError(f"{btf.name}: type chain too deep at type id {t.id}")
    if isinstance(t, T.Ptr):
        target = btf.type(t.type)
        s = "*" + inner
        if isinstance(btf.strip_qualifiers(target), (T.Array, T.FuncProto)):
            s = "(" + s + ")"
        return _decl(btf, target, s, depth + 1)
    if isinstance(t, T.TypeTag):
        return _decl(btf, btf.type(t.type), inner, depth + 1)
    if isinstance(t, (T.Const, T.Volatile, T.Restrict)):
        word = _QUAL_WORD[t.kind]
        target = btf.type(t.type)
        if isinstance(btf.strip_qualifiers(target), T.Ptr):
            return _decl(btf, target, f"{word} {inner}" if inner else word, depth + 1)
        return word + " " + _decl(btf, target, inner, depth + 1)
    if isinstance(t, T.Array):
        return _decl(btf, btf.type(t.type), f"{inner}[{t.nelems}]", depth + 1)
    if isinstance(t, T.FuncProto):
        params = [_decl(btf, btf.type(p.type), p.name, depth + 1) for p in t.params]
        if t.variadic:
            params.append("...")
        plist = ", ".join(params) if params else "void"
        return _decl(btf, btf.type(t.return_type), f"{inner}({plist})", depth + 1)
    if isinstance(t, (T.Composite, T.Fwd, T.Enum)):
        return _join(_tag_name(t), inner)
    if isinstance(t, T.Func):
        return _decl(btf, btf.type(t.type), inner or t.name, depth + 1)
    if isinstance(t, T.Var):
        return _decl(btf, btf.type(t.type), inner or t.name, depth + 1)
    return _join(t.name or "void", inner)


def type_name(btf: BTF, t: int | T.Type, declarator: str = "") -> str:
    """C spelling of type ``t``, optionally declaring ``declarator`` (a name)."""
    return _decl(btf, btf.type(t) if isinstance(t, int) else t, declarator)


def format_func(btf: BTF, func: str | T.Func | FuncSignature) -> str:
    """``long do_sys_openat2(int dfd, const char *filename, struct open_how *how)``."""
    if isinstance(func, FuncSignature):
        f = func.func
    elif isinstance(func, str):
        f = btf.func(func)
    else:
        f = func
    return _decl(btf, btf.type(f.type), f.name)


def lookup_composite(btf: BTF, spec: str | int | T.Type) -> T.Composite:
    """A struct/union from ``"struct sock"``, ``"sock"``, an id or a (typedef'd) type."""
    if isinstance(spec, str):
        words = spec.split()
        kind: int | None = None
        if len(words) == 2 and words[0] in ("struct", "union"):
            kind = T.KIND_STRUCT if words[0] == "struct" else T.KIND_UNION
            name = words[1]
        elif len(words) == 1:
            name = words[0]
        else:
            raise BTFError(f"not a struct or union name: {spec!r}")
        if kind is None:
            found = [t for t in btf.find_all(name) if isinstance(btf.resolve(t), T.Composite)]
            if not found:
                raise BTFError(
                    f"no struct or union {name} in {btf.name} BTF",
                    hint=btf.suggestion_hint(name, T.KIND_STRUCT),
                )
            t: T.Type = found[0]
        else:
            t = btf.find(name, kind)
    else:
        t = btf.type(spec) if isinstance(spec, int) else spec
    r = btf.resolve(t)
    if isinstance(r, T.Fwd):
        raise BTFError(f"{_tag_name(r)} is only forward-declared in {btf.name} BTF")
    if not isinstance(r, T.Composite):
        raise BTFError(f"{type_name(btf, t)} is not a struct or union")
    return r


def _member_lines(
    btf: BTF, comp: T.Composite, base_bits: int, indent: int, out: list[str]
) -> tuple[int, int]:
    """Append member lines; return (number of members, bytes of holes)."""
    tabs = "\t" * indent
    prev_end: int | None = None
    holes = 0
    is_struct = isinstance(comp, T.Struct)
    for m in comp.members:
        bits = base_bits + m.bit_offset
        byte = bits // 8
        mt = btf.type(m.type)
        try:
            size = btf.size_of(mt)
        except BTFError:
            size = 0
        start = byte
        if m.bitfield_size and size:
            start = bits // (size * 8) * size  # the storage unit holding the bits
        if is_struct and prev_end is not None and start > prev_end:
            gap = start - prev_end
            holes += gap
            out.append(f"{tabs}/* XXX {gap} byte{'s' if gap > 1 else ''} hole, try to pack */")
        sub = btf.resolve(mt)
        if not m.name and isinstance(sub, T.Composite):
            word = "struct" if isinstance(sub, T.Struct) else "union"
            out.append(f"{tabs}{word} {{")
            _member_lines(btf, sub, bits, indent + 1, out)
            decl = "};"
        else:
            decl = _decl(btf, mt, m.name)
            if m.bitfield_size:
                decl += f":{m.bitfield_size}"
            decl += ";"
        if m.bitfield_size:
            where = f"/* {byte:5d}:{bits % 8:2d} {size:4d} */"
        else:
            where = f"/* {byte:5d} {size:5d} */"
        pad = max(1, 48 - len(tabs) * 8 - len(decl))
        out.append(f"{tabs}{decl}{' ' * pad}{where}")
        end = start + size if size else (bits + m.bitfield_size + 7) // 8
        prev_end = end if prev_end is None else max(prev_end, end)
    return len(comp.members), holes


def format_struct(btf: BTF, spec: str | int | T.Type) -> str:
    """A struct/union with each member's offset and size, like ``pahole``.

    Anonymous struct/union members are expanded in place with offsets counted
    from the start of the outer type; holes in structs are marked.
    """
    comp = lookup_composite(btf, spec)
    lines = [f"{_tag_name(comp)} {{"]
    count, holes = _member_lines(btf, comp, 0, 1, lines)
    cachelines = (comp.size + _CACHELINE - 1) // _CACHELINE
    summary = f"size: {comp.size}, cachelines: {cachelines}, members: {count}"
    lines.append("")
    lines.append(f"\t/* {summary} */")
    if holes:
        lines.append(f"\t/* sum members holes: {holes} */")
    lines.append("};")
    return "\n".join(lines)
