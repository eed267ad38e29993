"""The bpftrace language front end: lexer, parser, AST, type checker.

    prog = parse_program('kprobe:vfs_read { @[comm] = count(); }')
    checked = check(prog, provider)   # provider: a TypeProvider (BTF-backed)
    checked.probes[0].builtins        # {'comm'}: what the probe must fetch

:func:`parse_program` and :func:`check` raise :class:`LangError`, whose
message is formatted exactly like bpftrace's diagnostics.
"""

from __future__ import annotations

from . import ast
from .checked import CheckedProgram, MapInfo, ProbeSummary
from .checker import check
from .diagnostics import Diagnostic, LangError
from .parser import parse_program
from .provider import DictTypeProvider, MemberInfo, TypeProvider
from .source import Span

__all__ = [
    "ast",
    "parse_program",
    "check",
    "LangError",
    "Diagnostic",
    "CheckedProgram",
    "ProbeSummary",
    "MapInfo",
    "TypeProvider",
    "MemberInfo",
    "DictTypeProvider",
    "Span",
]
