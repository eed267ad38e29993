"""Where the checker gets C types from: the :class:`TypeProvider` protocol.

The checker asks two questions, both answered with a mapping of member name to
:class:`MemberInfo` (or ``None`` when the provider does not know the name):

* :meth:`TypeProvider.struct_members` for casts like ``(struct sock *)arg0``
  and field access ``->``/``.`` (a BTF-backed provider answers from ``vmlinux``
  BTF; anonymous struct/union members should be flattened into their parent,
  as C lets you name them directly);
* :meth:`TypeProvider.tracepoint_fields` for ``args.FIELD`` in tracepoints
  (from ``events/CATEGORY/EVENT/format`` or BTF ``trace_event_raw_*``).

Member types are :mod:`kprobes.lang.typesys` objects.  Character arrays may be
given either as ``ArrayType(IntType(8, True), N)`` or ``StringType(N)``; the
checker reads both as ``string[N]``.  ``__data_loc char[]`` tracepoint
fields should be given as ``StringType`` of the maximum string size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .._record import dataclass
from .typesys import Type

__all__ = ["MemberInfo", "TypeProvider", "DictTypeProvider"]


@dataclass(frozen=True)
class MemberInfo:
    """One struct member or tracepoint field.

    ``offset`` is in bytes from the start of the struct (or of the tracepoint
    record).  For bitfields ``bit_size`` is non-zero and ``bit_offset`` counts
    bits from ``offset``.
    """

    name: str
    type: Type
    offset: int
    bit_offset: int = 0
    bit_size: int = 0


class TypeProvider(Protocol):
    """What the checker needs to know about kernel (or user) types."""

    def struct_members(self, name: str) -> Mapping[str, MemberInfo] | None:
        """Members of ``name`` (``"struct task_struct"``, ``"union bpf_attr"``), or None."""
        ...

    def tracepoint_fields(self, category: str, event: str) -> Mapping[str, MemberInfo] | None:
        """Fields of tracepoint ``category:event`` (common_* fields excluded), or None."""
        ...


class DictTypeProvider:
    """A :class:`TypeProvider` over plain dictionaries (tests, fixtures, offline checks).

    ``structs`` maps ``"struct NAME"`` to members; ``tracepoints`` maps
    ``(category, event)`` to fields.
    """

    def __init__(
        self,
        structs: Mapping[str, Mapping[str, MemberInfo]] | None = None,
        tracepoints: Mapping[tuple[str, str], Mapping[str, MemberInfo]] | None = None,
    ) -> None:
        self._structs: dict[str, Mapping[str, MemberInfo]] = dict(structs or {})
        self._tracepoints: dict[tuple[str, str], Mapping[str, MemberInfo]] = dict(tracepoints or {})

    def struct_members(self, name: str) -> Mapping[str, MemberInfo] | None:
        return self._structs.get(name)

    def tracepoint_fields(self, category: str, event: str) -> Mapping[str, MemberInfo] | None:
        return self._tracepoints.get((category, event))
