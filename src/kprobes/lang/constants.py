"""Named integer constants in expressions: BTF enumerators and a few header macros.

bpftrace 0.17 hands its program to clang, so a bare identifier can be an enumerator of a
kernel enum (``TCP_CLOSE``, ``SKB_DROP_REASON_NOT_SPECIFIED``: from BTF when the kernel has
it) or a macro of an ``#include``d header (``AF_INET`` from ``<sys/socket.h>``,
``TASK_RUNNING`` from ``<linux/sched.h>``).  kprobes has no C preprocessor: it knows BTF's
enumerators and, for the headers bpftrace's own tools include, the handful of macros they
use (values that have not changed in the kernel's history).  :func:`resolve_constants`
replaces such identifiers with integer literals before checking; any other identifier is
left for the checker's "Unknown identifier" error.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from . import ast

__all__ = ["HEADER_MACROS", "resolve_constants"]

_SOCKET = {"AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10,
           "AF_NETLINK": 16, "AF_PACKET": 17}

#: ``#include`` argument -> the integer macros it defines that kprobes knows.
HEADER_MACROS: Mapping[str, Mapping[str, int]] = {
    "<sys/socket.h>": _SOCKET,
    "<linux/socket.h>": _SOCKET,
    "<net/sock.h>": _SOCKET,
    "<linux/sched.h>": {"TASK_RUNNING": 0, "TASK_INTERRUPTIBLE": 1, "TASK_UNINTERRUPTIBLE": 2},
}


def _enumerator(provider: Any, name: str) -> Optional[int]:
    """``name``'s value as an enumerator of the provider's BTF (None: no BTF or no such name)."""
    btf = getattr(provider, "btf", None)
    if btf is None or not hasattr(btf, "enum_value"):
        return None
    try:
        _, value = btf.enum_value(name)
    except Exception:  # BTFError (no such enumerator) or unreadable BTF: left to the checker
        return None
    return int(value)


def resolve_constants(program: ast.Program, provider: Any = None) -> ast.Program:
    """``program`` with identifiers that name a known constant replaced by literals."""
    from .params import rewrite

    macros: Dict[str, int] = {}
    for inc in program.includes:
        macros.update(HEADER_MACROS.get(inc.strip(), {}))
    found: Dict[str, Optional[int]] = {}

    def fn(node: Any) -> Any:
        if not isinstance(node, ast.Ident):
            return None
        if node.name not in found:
            value = macros.get(node.name)
            found[node.name] = value if value is not None else _enumerator(provider, node.name)
        value = found[node.name]
        if value is None:
            return None
        if value < 0:
            return ast.Unary("-", ast.IntLit(-value, node.span), node.span)
        return ast.IntLit(value, node.span)

    result: ast.Program = rewrite(program, fn)
    return result
