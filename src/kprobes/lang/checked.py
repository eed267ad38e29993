"""The checker's output: a program with inferred types and per-probe summaries."""

from __future__ import annotations

from collections.abc import Mapping

from .._record import dataclass, field
from . import ast
from .diagnostics import Diagnostic
from .typesys import NONE, Type

__all__ = ["MapInfo", "ProbeSummary", "CheckedProgram"]


@dataclass(frozen=True)
class MapInfo:
    """A global map: ``name`` without ``@`` ("" for ``@``), key types, value type.

    ``key_types`` is empty for a scalar map (``@x = 1``); ``value_type`` is an
    :class:`~kprobes.lang.typesys.AggType` for aggregations.
    """

    name: str
    key_types: tuple[Type, ...]
    value_type: Type


@dataclass(frozen=True)
class ProbeSummary:
    """What one probe needs from the kernel and touches in the program.

    ``builtins`` names the builtin variables read (``pid``, ``comm``,
    ``retval``, ``func``, ``args``...), ``args`` the ``argN`` indices,
    ``tracepoint_fields`` the ``args.FIELD`` names, ``struct_fields`` the
    ``(struct name, member)`` pairs dereferenced.
    """

    index: int
    probe: ast.Probe
    builtins: frozenset[str]
    args: frozenset[int]
    tracepoint_fields: frozenset[str]
    struct_fields: frozenset[tuple[str, str]]
    maps_read: frozenset[str]
    maps_written: frozenset[str]
    calls: frozenset[str]
    variables: Mapping[str, Type]


@dataclass(frozen=True)
class CheckedProgram:
    """A type-checked :class:`~kprobes.lang.ast.Program`.

    :meth:`type_of` gives the inferred type of any expression node of the
    program; ``probes[i]`` summarises ``program.probes[i]``.
    """

    program: ast.Program
    probes: tuple[ProbeSummary, ...]
    maps: Mapping[str, MapInfo]
    warnings: tuple[Diagnostic, ...]
    _types: dict[int, Type] = field(repr=False, compare=False, default_factory=dict)

    def type_of(self, expr: ast.Expr) -> Type:
        """The type inferred for ``expr`` (a node of this program)."""
        return self._types.get(id(expr), NONE)
