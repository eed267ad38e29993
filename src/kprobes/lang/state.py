"""Mutable bookkeeping shared by the checker passes (internal)."""

from __future__ import annotations

from .._record import dataclass, field
from .typesys import Type

__all__ = ["MapState", "Usage"]


@dataclass
class MapState:
    """What is known so far about one map: value type and key types."""

    value: Type | None = None
    keys: tuple[Type, ...] | None = None


@dataclass
class Usage:
    """What the probe being checked reads and writes."""

    builtins: set[str] = field(default_factory=set)
    args: set[int] = field(default_factory=set)
    tp_fields: set[str] = field(default_factory=set)
    struct_fields: set[tuple[str, str]] = field(default_factory=set)
    maps_read: set[str] = field(default_factory=set)
    maps_written: set[str] = field(default_factory=set)
    calls: set[str] = field(default_factory=set)
