"""Turn C-like argument expressions into tracefs fetchargs using BTF.

Output follows Documentation/trace/kprobetrace.rst: ``+OFFS(FETCHARG)`` loads
from memory, ``:u16``/``:s32``/``:x64`` size the result, ``b<W>@<O>/<C>``
extracts a bitfield, ``:string`` fetches a NUL-terminated string.  For strings
the kernel treats the *last* ``+OFFS(...)`` as the string's address
(kernel/trace/trace_probe.c, "The last deref is a pointer to string"), so a
``char *`` value gets an extra ``+0(...)`` and a char array is fetched at its
own address.

Accepted by :func:`compile_btf_arg` (``NAME=`` and ``:TYPE`` are optional)::

    filename                      parameter by name -> its ABI register
    sk->__sk_common.skc_dport     member path from a pointer parameter
    arg3  $arg3  retval  $retval  by position / the return value
    ((struct task_struct *)arg3)->pid    cast, base = parameter/argN/%reg/fetcharg
    comm=task->comm:string        explicit name and type
"""

from __future__ import annotations

import re

from ..errors import BTFError
from . import types as T
from .btf import BTF, FuncSignature, close_matches
from .ctype import CType, parse_ctype
from .path import ResolvedPath, resolve_path
from .render import type_name

__all__ = ["fetch_type", "fetcharg_for_path", "compile_btf_arg", "MAX_ARRAY_LEN"]

MAX_ARRAY_LEN = 64  # kernel/trace/trace_probe.h MAX_ARRAY_LEN
_TYPE_RE = re.compile(r"^(?:[a-z]+[0-9]*(?:\[\d+\])?|b\d+@\d+/\d+)$")
_NAME_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)")
_ROOT_RE = re.compile(r"\s*(\$?[A-Za-z_][A-Za-z0-9_]*|%[a-z0-9_]+)")
_ARGN = re.compile(r"^\$?arg([1-9][0-9]*)$")
_STRING_TYPES = ("string", "ustring")
# Fetchargs that need no BTF: memory/immediate forms, a bare register, special vars.
_RAW = re.compile(r"^(?:[-+@\\0-9]|%[a-z0-9_]+$|\$(?:stack\d*|comm|current)\b)")
_RAW_NAME = re.compile(r"[^A-Za-z0-9_]+")


def _is_charlike(btf: BTF, t: T.Type) -> bool:
    r = btf.resolve(t)
    return isinstance(r, T.Int) and r.size == 1 and not r.is_bool


def fetch_type(btf: BTF, rp: ResolvedPath, what: str = "value") -> str:
    """The tracefs type for what ``rp`` leads to (``u16``, ``s32``, ``x64``, ``string``...)."""
    if rp.bitfield_size:
        container = 8
        while container < rp.bit_offset + rp.bitfield_size:
            container *= 2
        return f"b{rp.bitfield_size}@{rp.bit_offset}/{container}"
    if rp.pointers:
        return (
            "string"
            if rp.pointers == 1 and _is_charlike(btf, rp.type)
            else f"x{8 * btf.pointer_size}"
        )
    r = btf.resolve(rp.type)
    if isinstance(r, T.Ptr):
        return "string" if _is_charlike(btf, btf.type(r.type)) else f"x{8 * btf.pointer_size}"
    if isinstance(r, T.Int):
        if r.is_bool:
            return f"u{8 * r.size}"
        if r.size not in (1, 2, 4, 8):
            raise BTFError(f"{what}: {r.size}-byte integer {r.name} is too large to fetch")
        return f"{'s' if r.is_signed else 'u'}{8 * r.size}"
    if isinstance(r, T.Enum):
        return f"{'s' if r.signed else 'u'}{8 * r.size}"
    if isinstance(r, T.Float):
        return f"x{8 * r.size}"
    if isinstance(r, T.Array):
        elem = btf.resolve(r.type)
        if isinstance(elem, T.Int) and elem.size == 1 and not elem.is_bool:
            return "string"
        if r.nelems and r.nelems <= MAX_ARRAY_LEN:
            sub = fetch_type(btf, ResolvedPath((), btf.type(r.type), 0, 0, False), what)
            if "[" not in sub and sub not in _STRING_TYPES and not sub.startswith("b"):
                return f"{sub}[{r.nelems}]"
        raise BTFError(
            f"{what}: cannot fetch {type_name(btf, rp.type)} as a whole",
            hint=f"index one element, e.g. {what}[0]",
        )
    if isinstance(r, T.Composite):
        raise BTFError(
            f"{what}: {type_name(btf, rp.type)} is a {r.size}-byte struct/union by value, "
            "too large to fetch",
            hint="name one of its members with '.' (or '->' through a pointer)",
        )
    raise BTFError(f"{what}: cannot fetch a value of type {type_name(btf, rp.type)}")


def _render(base: str, rp: ResolvedPath) -> str:
    expr = base
    for step in rp.steps:
        sign = "-" if step.offset < 0 else "+"
        expr = f"{sign}{abs(step.offset)}({expr})"
    return expr


def fetcharg_for_path(
    btf: BTF,
    base_fetcharg: str,
    base_type: str | int | T.Type | CType,
    path: str = "",
    *,
    type_override: str | None = None,
    text: str | None = None,
    offset: int = 0,
    what: str | None = None,
    root_name: str | None = None,
) -> str:
    """``FETCHARG:TYPE`` for ``path`` walked from ``base_fetcharg`` of type ``base_type``.

    ``fetcharg_for_path(btf, "%dx", "struct task_struct *", "->pid")`` gives
    ``"+<offset of pid>(%dx):s32"``.  ``type_override`` replaces the computed
    tracefs type (``string`` on a pointer fetches the string it points to).
    """
    label = what or (base_fetcharg + path)
    rp = resolve_path(
        btf, base_type, path, text=text, offset=offset, root_name=root_name or base_fetcharg
    )
    try:
        return _fetcharg(btf, base_fetcharg, rp, type_override, label)
    except BTFError as exc:
        if exc.text is not None or text is None:
            raise
        # Point the caret at the whole expression.
        start = text.find(label) if label in text else offset
        raise BTFError(
            exc.message, text=text, position=max(start, 0), width=max(1, len(label)), hint=exc.hint
        ) from None


def _fetcharg(btf: BTF, base: str, rp: ResolvedPath, type_override: str | None, what: str) -> str:
    ftype = type_override or fetch_type(btf, rp, what)
    expr = _render(base, rp)
    if ftype in _STRING_TYPES:
        final = None if rp.pointers else btf.resolve(rp.type)
        if rp.pointers or isinstance(final, T.Ptr):
            expr = f"+0({expr})"  # the value is the string's address
        elif isinstance(final, T.Array):
            pass  # the last +OFFS(...) already is the array's address
        else:
            raise BTFError(
                f"{what}: cannot fetch a string from {type_name(btf, rp.type)}",
                hint="':string' needs a char pointer or a char array",
            )
    elif rp.steps and not rp.steps[-1].deref and "[" not in ftype and type_override is None:
        raise BTFError(f"{what}: cannot fetch {type_name(btf, rp.type)} by value")
    return f"{expr}:{ftype}"


def _split_type(text: str) -> tuple[str, str | None, int]:
    """Split off a trailing ``:TYPE`` (outside parentheses); return (expr, type, type position)."""
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        c = text[i]
        if c == ")":
            depth += 1
        elif c == "(":
            depth -= 1
        elif c == ":" and depth == 0:
            t = text[i + 1 :].strip()
            if not _TYPE_RE.match(t):
                raise BTFError(
                    f"bad fetch type {t!r}", text=text, position=i + 1, width=max(1, len(t))
                )
            return text[:i], t, i + 1
    return text, None, -1


def _sanitize(name: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "arg"
    return "_" + out if out[0].isdigit() else out


class _Context:
    def __init__(self, btf: BTF, func_name: str, text: str, arch: object) -> None:
        from ..probes.arch import Arch, get_arch

        self.btf = btf
        self.func_name = func_name
        self.text = text
        self.arch: Arch = get_arch(arch) if isinstance(arch, str) else arch  # type: ignore[assignment]
        self._sig: FuncSignature | None = None

    def sig(self) -> FuncSignature:
        if self._sig is None:
            self._sig = self.btf.func_proto(self.func_name)
        return self._sig

    def register_of(self, index: int, pos: int, width: int) -> str:
        sig = self.sig()
        for p in sig.params[: index - 1]:
            r = self.btf.resolve(p.type)
            if isinstance(r, T.Composite) and r.size > self.btf.pointer_size:
                raise BTFError(
                    f"cannot locate argument {index} of {self.func_name}: parameter "
                    f"{p.name or p.index} is a {r.size}-byte struct passed by value",
                    text=self.text,
                    position=pos,
                    width=width,
                )
        reg = self.arch.arg_register(index)
        if reg is None:
            raise BTFError(
                f"argument {index} of {self.func_name} is passed on the stack on {self.arch.name}",
                text=self.text,
                position=pos,
                width=width,
                hint="only register arguments are supported",
            )
        return "%" + reg

    def root(self, name: str, pos: int) -> tuple[str, CType]:
        """(fetcharg, type) of a root identifier: parameter, argN, retval, %reg."""
        width = len(name)
        if name.startswith("%"):
            reg = name[1:]
            if reg not in self.arch.registers:
                raise BTFError(
                    f"unknown register {name!r} on {self.arch.name}",
                    text=self.text,
                    position=pos,
                    width=width,
                )
            return name, CType(self.btf.type(0))
        sig = self.sig()
        if name in ("retval", "$retval") and sig.param(name) is None:
            return "$retval", CType(sig.return_type)
        m = _ARGN.match(name)
        if m and sig.param(name) is None:
            n = int(m.group(1))
            if n > len(sig.params):
                raise BTFError(
                    f"{self.func_name} has {len(sig.params)} parameter(s); there is no {name}",
                    text=self.text,
                    position=pos,
                    width=width,
                )
            return self.register_of(n, pos, width), CType(sig.params[n - 1].type)
        p = sig.param(name)
        if p is None:
            names = [q.name for q in sig.params if q.name]
            sugg = close_matches(name, names)
            raise BTFError(
                f"{self.func_name} has no parameter {name!r}",
                text=self.text,
                position=pos,
                width=width,
                hint=("did you mean: " + ", ".join(sugg) + "? " if sugg else "")
                + "parameters: "
                + (", ".join(names) or "(none)"),
            )
        return self.register_of(p.index, pos, width), CType(p.type)


def _match_paren(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise BTFError("unbalanced parentheses", text=text, position=start)


def compile_btf_arg(btf: BTF, func_name: str, text: str, arch: object = "x86_64") -> str:
    """``NAME=FETCHARG:TYPE`` for one argument expression of a probe on ``func_name``.

    ``arch`` is an :class:`~kprobes.probes.arch.Arch` or its name.  Errors are
    :class:`BTFError` with a caret under the offending part of ``text``.
    """
    ctx = _Context(btf, func_name, text, arch)
    m = _NAME_RE.match(text)
    name: str | None = m.group(1) if m else None
    start = m.end() if m else 0
    expr, ftype, _ = _split_type(text)
    body = expr[start:]
    lead = len(body) - len(body.lstrip())
    pos = start + lead
    body = body.strip()
    if not body:
        raise BTFError("missing argument expression", text=text, position=pos)
    if _RAW.match(body):
        # Already a tracefs fetcharg (+8(%di), %ax, $stack1, @sym, $comm...): pass it on.
        if body.startswith("%"):
            ctx.root(body, pos)  # validates the register name
        raw = name if name is not None else _sanitize(_RAW_NAME.sub("", body))
        return f"{raw}={body}" + (f":{ftype}" if ftype else "")
    if body.startswith("(("):
        close_cast = _match_paren(text, pos + 1)
        close_all = _match_paren(text, pos)
        ctype = parse_ctype(btf, text[pos + 2 : close_cast], pos + 2, full_text=text)
        base_text = text[close_cast + 1 : close_all].strip()
        base_pos = text.index(base_text, close_cast + 1) if base_text else close_cast + 1
        base = _cast_base(ctx, base_text, base_pos)
        path_start = close_all + 1
        default_name = base_text
        root_name = text[pos : close_all + 1]
    else:
        rm = _ROOT_RE.match(body)
        if rm is None:
            raise BTFError("expected a parameter name", text=text, position=pos)
        root = rm.group(1)
        base, ctype = ctx.root(root, pos + rm.start(1))
        path_start = pos + rm.end()
        default_name = root.lstrip("$%")
        root_name = root
    path = expr[path_start:]
    idents = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", path)
    if name is None:
        name = _sanitize(idents[-1] if idents else default_name)
    what = expr[start:].strip()
    fetch = fetcharg_for_path(
        btf,
        base,
        ctype,
        path,
        type_override=ftype,
        text=text,
        offset=path_start,
        what=what,
        root_name=root_name,
    )
    return f"{name}={fetch}"


def _cast_base(ctx: _Context, base_text: str, pos: int) -> str:
    """The fetcharg a cast applies to: a parameter, argN, retval, %reg or a raw fetcharg."""
    if not base_text:
        raise BTFError("missing value to cast", text=ctx.text, position=pos)
    if re.fullmatch(r"\$?[A-Za-z_][A-Za-z0-9_]*|%[a-z0-9_]+", base_text):
        if base_text.startswith("$") and not _ARGN.match(base_text) and base_text != "$retval":
            return base_text  # $stackN, $comm ... passed through verbatim
        return ctx.root(base_text, pos)[0]
    return base_text  # a raw fetcharg such as +8(%sp)
