"""Friendly fetcharg spellings, expanded to tracefs syntax before parsing.

=====================  ============================================  ===========
friendly               kprobe (x86_64)                               uprobe
=====================  ============================================  ===========
``arg2``               ``arg2=%si``                                  same
``arg8``               ``arg8=$arg8`` (past the argument registers)  ``arg8=$stack2``
``retval``             ``retval=$retval``                            same
``comm``               ``comm=$comm``                                same
``str(arg1)``          ``arg1=+0(%di):string``                       ``:ustring``
``NAME=arg2:string``   ``NAME=+0(%si):string``                       ``:ustring``
``+8(arg1):u32``       ``+8(%di):u32``                               same
=====================  ============================================  ===========

Registers come from :mod:`.arch` (x86_64: ``%di %si %dx %cx %r8 %r9``;
arm64: ``%x0``..``%x7``).  Words already in tracefs syntax pass through
untouched, and so do the first two words (header and place).  Note that on
kernels with BTF arguments a bare ``arg1`` could also be a real parameter
name: expanding is the caller's choice.
"""

from __future__ import annotations

import re

from ..errors import ProbeSyntaxError
from .arch import Arch, get_arch
from .spec import KIND_UPROBE

__all__ = ["expand_friendly", "expand_friendly_arg"]

# Stack slot of the first stack-passed argument at function entry:
# x86_64 has the return address in $stack0, arm64 keeps it in lr.
_FIRST_STACK_SLOT = {"x86_64": 1, "arm64": 0}

_ARGN = re.compile(r"arg([1-9][0-9]*)")
_DEREF = re.compile(r"([+-]u?[0-9A-Fa-fx]+)\((.*)\)")


def _plain(word: str, kind: str, arch: Arch) -> str | None:
    """The tracefs form of a friendly atom (``arg2``, ``retval``, ``comm``), or None."""
    if word == "retval":
        return "$retval"
    if word == "comm":
        return "$comm"
    m = _ARGN.fullmatch(word)
    if m:
        n = int(m.group(1))
        reg = arch.arg_register(n)
        if reg is not None:
            return f"%{reg}"
        if kind == KIND_UPROBE:
            return f"$stack{n - len(arch.arg_regs) - 1 + _FIRST_STACK_SLOT.get(arch.name, 0)}"
        return f"$arg{n}"
    return None


def _expand_expr(expr: str, kind: str, arch: Arch) -> tuple[str, bool]:
    """Expand one expression; the flag says whether anything friendly was found."""
    plain = _plain(expr, kind, arch)
    if plain is not None:
        return plain, True
    m = _DEREF.fullmatch(expr)
    if m:
        inner, changed = _expand_expr(m.group(2), kind, arch)
        return f"{m.group(1)}({inner})", changed
    return expr, False


def _string_type(kind: str) -> str:
    return "ustring" if kind == KIND_UPROBE else "string"


def expand_friendly_arg(word: str, kind: str, arch: Arch, used: set[str]) -> str:
    """Expand one fetcharg word; ``used`` collects the names given so far."""
    name: str | None = None
    body = word
    eq = word.find("=")
    if eq > 0:
        name, body = word[:eq], word[eq + 1 :]
    auto: str | None
    if body.startswith("str("):
        close = body.rfind(")")
        rest = body[close + 1 :] if close > 3 else ""
        if close <= 3 or (rest and not rest.startswith(":")):
            raise ProbeSyntaxError(
                "Friendly str() is not closed",
                word,
                len(word),
                hint="write str(argN) or str(+8(argN))",
            )
        inner_text = body[4:close]
        typ: str | None = rest[1:] if rest else _string_type(kind)
        inner, _ = _expand_expr(inner_text, kind, arch)
        out_expr = f"+0({inner})"
        auto = inner_text if _plain(inner_text, kind, arch) is not None else None
    else:
        expr, typ = body.split(":", 1) if ":" in body else (body, None)
        out_expr, changed = _expand_expr(expr, kind, arch)
        if not changed:
            if name is not None:
                used.add(name)
            return word
        auto = expr if _plain(expr, kind, arch) is not None else None
        if auto is not None and typ in ("string", "ustring"):
            # ``arg2:string`` means the string that arg2 points to.
            out_expr = f"+0({out_expr})"
            typ = _string_type(kind)
    if name is None and auto is not None:
        name = _unique(auto, used)
    if name is not None:
        used.add(name)
    out = out_expr + (f":{typ}" if typ else "")
    return f"{name}={out}" if name is not None else out


def _unique(base: str, used: set[str]) -> str:
    if base not in used:
        return base
    n = 2
    while f"{base}_{n}" in used:
        n += 1
    return f"{base}_{n}"


def expand_friendly(text: str, kind: str = "kprobe", arch: str | Arch = "x86_64") -> str:
    """Rewrite the friendly fetchargs of one definition into tracefs syntax.

    The header and place words are kept; whitespace between words becomes
    a single space.  Raises :class:`~kprobes.errors.ProbeSyntaxError` for a
    malformed ``str(...)``.
    """
    arch_obj = get_arch(arch) if isinstance(arch, str) else arch
    words = text.split()
    if len(words) <= 2 or words[0].startswith("-"):
        return " ".join(words)
    used: set[str] = set()
    args = [expand_friendly_arg(w, kind, arch_obj, used) for w in words[2:]]
    # The kernel names an unnamed fetcharg argN after its position: give it
    # a name of its own when a friendly name already took that one.
    for i, a in enumerate(args):
        if "=" not in a and f"arg{i + 1}" in used:
            fresh = _unique(f"arg{i + 1}", used)
            used.add(fresh)
            args[i] = f"{fresh}={a}"
    return " ".join(words[:2] + args)
