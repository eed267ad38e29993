"""C type names typed by a user (``struct task_struct *``, ``unsigned long``, ``u32``).

A :class:`CType` is a BTF type plus extra pointer levels, so that a cast to
``struct foo **`` works even when BTF holds no such pointer type.
"""

from __future__ import annotations

import re

from .._record import dataclass
from ..errors import BTFError
from . import types as T
from .btf import BTF

__all__ = ["CType", "parse_ctype", "as_ctype"]

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\*)|(\S))")
_QUALIFIERS = {"const", "volatile", "restrict", "__restrict", "__user", "__rcu", "__iomem",
               "__percpu", "__force", "__kernel"}  # fmt: skip
_INT_WORDS = {"unsigned", "signed", "long", "short", "int", "char", "_Bool"}


@dataclass(frozen=True)
class CType:
    """``type`` with ``pointers`` extra ``*`` on top (0 for a plain BTF type)."""

    type: T.Type
    pointers: int = 0

    def deref(self) -> CType | None:
        """The pointed-to CType when this is a pointer (through typedefs), else None."""
        if self.pointers:
            return CType(self.type, self.pointers - 1)
        return None


def as_ctype(btf: BTF, t: str | int | T.Type | CType) -> CType:
    """Accept a C type name, a type id, a BTF type or a CType."""
    if isinstance(t, CType):
        return t
    if isinstance(t, str):
        return parse_ctype(btf, t)
    if isinstance(t, int):
        return CType(btf.type(t))
    return CType(t)


def _int_name(words: list[str]) -> str | None:
    """The name gcc/pahole give a multi-word integer type (``long unsigned int``)."""
    if any(w not in _INT_WORDS for w in words):
        return None
    if "_Bool" in words:
        return "_Bool"
    unsigned = "unsigned" in words
    if "char" in words:
        if unsigned:
            return "unsigned char"
        return "signed char" if "signed" in words else "char"
    longs = words.count("long")
    prefix = "long " * longs if longs else ("short " if "short" in words else "")
    return prefix + ("unsigned int" if unsigned else "int")


def parse_ctype(btf: BTF, text: str, position: int = 0, *, full_text: str | None = None) -> CType:
    """Parse a C type name against ``btf``.

    ``text`` sits at ``position`` of ``full_text`` (default: ``text`` itself);
    errors put their caret there.
    """
    shown = full_text if full_text is not None else text
    words: list[str] = []
    stars = 0
    tag: str | None = None
    for m in _TOKEN.finditer(text):
        word, star, other = m.groups()
        if other is not None:
            raise BTFError(
                f"unexpected {other!r} in type name",
                text=shown,
                position=position + m.start(3),
            )
        if star:
            stars += 1
        elif stars:
            if word not in _QUALIFIERS:
                raise BTFError(
                    f"unexpected {word!r} after '*' in type name",
                    text=shown,
                    position=position + m.start(1),
                    width=len(word),
                )
        elif word in ("struct", "union", "enum") and tag is None and not words:
            tag = word
        elif word not in _QUALIFIERS:
            words.append(word)
    if not words:
        raise BTFError("missing type name", text=shown, position=position + len(text))
    if tag is not None:
        if len(words) != 1:
            raise BTFError(f"bad {tag} name {' '.join(words)!r}", text=shown, position=position)
        found = _find_tagged(btf, tag, words[0], text, position, shown)
        return CType(found, stars)
    if words == ["void"]:
        return CType(btf.type(0), stars)
    name = _int_name(words) if len(words) > 1 or words[0] in _INT_WORDS else words[0]
    if name is None:
        raise BTFError(f"unknown type {' '.join(words)!r}", text=shown, position=position)
    for kind in (T.KIND_TYPEDEF, T.KIND_INT, T.KIND_FLOAT):
        ids = btf.ids_by_name(name, kind)
        if ids:
            return CType(btf.type(ids[0]), stars)
    start = text.find(words[0])
    raise BTFError(
        f"unknown type {name!r} in {btf.name} BTF",
        text=shown,
        position=position + max(start, 0),
        width=len(words[0]),
        hint=btf.suggestion_hint(name, T.KIND_TYPEDEF),
    )


def _find_tagged(btf: BTF, tag: str, name: str, text: str, position: int, shown: str) -> T.Type:
    kinds = {
        "struct": (T.KIND_STRUCT,),
        "union": (T.KIND_UNION,),
        "enum": (T.KIND_ENUM, T.KIND_ENUM64),
    }
    fwd: T.Type | None = None
    for kind in kinds[tag]:
        for tid in btf.ids_by_name(name, kind):
            return btf.type(tid)
    for tid in btf.ids_by_name(name, T.KIND_FWD):
        fwd = btf.type(tid)
    if fwd is not None:
        return fwd
    start = text.find(name)
    raise BTFError(
        f"no {tag} {name} in {btf.name} BTF",
        text=shown,
        position=position + max(start, 0),
        width=len(name),
        hint=btf.suggestion_hint(name, kinds[tag][0]),
    )
