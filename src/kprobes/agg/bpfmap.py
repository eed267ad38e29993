"""``BpfMap``: one bpftrace map (``@name[key...]``) held in Python.

A map has a name (with its ``@``), one value kind fixed by a *template*
value (``Count()``, ``LinearHist(0, 100, 10)``, ...) and entries keyed by
tuples of ints and strs; a scalar map (``@x = count()``) uses the empty key
``()``.  Entries are created on first update, as in bpftrace.

``sorted_items()`` returns the entries in the order bpftrace prints them:

* count/sum/min/max and integer maps by value, ascending;
* hist/lhist maps by the sum of their buckets, ascending;
* avg/stats maps by the average, ascending;
* string-valued maps by key.

bpftrace breaks ties by BPF hash-table order, which is not reproducible;
here ties keep key order (ints as unsigned 64-bit numbers, strings by
bytes), which is also the order string-valued maps use.

A map declared without keys (``scalar=True``) of count() values behaves as
bpftrace 0.17's: it always holds its one entry, 0 until written, and
``clear()``/``delete()`` reset it to 0 instead of removing it, so it prints
``@x: 0`` rather than nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Union

from kprobes.agg.aggregations import Aggregation, Count, StrValue, TupleValue
from kprobes.errors import KprobesError

__all__ = ["BpfMap", "Key", "KeyPart", "normalize_key", "key_sort_key"]

KeyPart = Union[int, str]
Key = tuple[KeyPart, ...]
_U64_MASK = (1 << 64) - 1


def normalize_key(key: object) -> Key:
    """Turn ``None``, a single int/str or a tuple of them into a key tuple."""
    if key is None:
        return ()
    if isinstance(key, (int, str)) and not isinstance(key, bool):
        return (key,)
    if isinstance(key, tuple):
        for part in key:
            if isinstance(part, bool) or not isinstance(part, (int, str)):
                raise KprobesError(f"map key parts must be int or str, got {part!r}")
        return key
    raise KprobesError(f"map key must be an int, a str or a tuple of them, got {key!r}")


def key_sort_key(key: Key) -> tuple[tuple[int, int, bytes], ...]:
    """Order of keys as bpftrace sorts them: ints unsigned, strings by bytes."""
    out = []
    for part in key:
        if isinstance(part, int):
            out.append((0, part & _U64_MASK, b""))
        else:
            out.append((1, 0, part.encode("utf-8", "surrogateescape")))
    return tuple(out)


class BpfMap:
    """A bpftrace map: ``name`` (``"@x"``), value ``template`` and entries.

    ``update(key, value)`` is the per-event path (``@x[k] = count()`` is
    ``m.update(k)``; ``@x[k] = sum(v)`` is ``m.update(k, v)``).
    """

    __slots__ = ("name", "template", "scalar", "_entries")

    def __init__(self, name: str, template: Aggregation, *, scalar: bool = False) -> None:
        if not name.startswith("@"):
            name = "@" + name
        self.name = name
        self.template = template.empty()
        #: Declared without keys (``@x = ...``); see the module docstring.
        self.scalar = scalar
        self._entries: dict[Key, Aggregation] = {}
        self._prefill()

    def _prefill(self) -> None:
        if self.scalar and isinstance(self.template, Count) and () not in self._entries:
            self._entries[()] = self.template.empty()

    @property
    def kind(self) -> str:
        """The value kind: ``count``, ``sum``, ``avg``, ``hist``, ``lhist``, ``int``..."""
        return self.template.kind

    # ------------------------------------------------------------ updates
    def entry(self, key: object = None) -> Aggregation:
        """The value at ``key``, created empty when missing."""
        k = normalize_key(key)
        agg = self._entries.get(k)
        if agg is None:
            agg = self._entries[k] = self.template.empty()
        return agg

    def update(self, key: object = None, value: object = None) -> None:
        """Record one event at ``key`` (``value`` is ignored by count())."""
        k = key if type(key) is tuple else normalize_key(key)
        agg = self._entries.get(k)
        if agg is None:
            k = normalize_key(k)
            agg = self._entries[k] = self.template.empty()
        agg.add(value)

    def set(self, key: object, agg: Aggregation) -> None:
        """Store ``agg`` at ``key`` (it must be of this map's kind)."""
        if type(agg) is not type(self.template):
            raise KprobesError(
                f"{self.name} holds {self.kind}() values, not {agg.kind}()"
            )
        self._entries[normalize_key(key)] = agg

    def merge(self, other: BpfMap) -> None:
        """Fold ``other``'s entries into this map (same kind required)."""
        if type(other.template) is not type(self.template):
            raise KprobesError(
                f"cannot merge {other.name} ({other.kind}) into {self.name} ({self.kind})"
            )
        for k, agg in other._entries.items():
            mine = self._entries.get(k)
            if mine is None:
                self._entries[k] = agg.copy()
            else:
                mine.merge(agg)

    # ------------------------------------------------ clear / zero / delete
    def clear(self) -> None:
        """``clear(@m)``: remove every entry."""
        self._entries.clear()
        self._prefill()

    def zero(self) -> None:
        """``zero(@m)``: keep every key, reset every value."""
        for agg in self._entries.values():
            agg.zero()

    def delete(self, key: object = None) -> bool:
        """``delete(@m[key])``; returns whether the key was there."""
        found = self._entries.pop(normalize_key(key), None) is not None
        self._prefill()
        return found

    # ------------------------------------------------------------ reading
    def get(self, key: object = None) -> Aggregation | None:
        return self._entries.get(normalize_key(key))

    def __getitem__(self, key: object) -> Aggregation:
        agg = self._entries.get(normalize_key(key))
        if agg is None:
            raise KeyError(key)
        return agg

    def __contains__(self, key: object) -> bool:
        return normalize_key(key) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._entries)

    def items(self) -> list[tuple[Key, Aggregation]]:
        return list(self._entries.items())

    @property
    def is_scalar(self) -> bool:
        """True for a map used without keys (``@x = count()``)."""
        return self.scalar or (() in self._entries and len(self._entries) == 1)

    def sorted_items(self) -> list[tuple[Key, Aggregation]]:
        """Entries in bpftrace's print order (see the module docstring)."""
        by_key = sorted(self._entries.items(), key=lambda kv: key_sort_key(kv[0]))
        if isinstance(self.template, (StrValue, TupleValue)):
            return by_key
        # Python's sort is stable: ties keep key order.
        return sorted(by_key, key=lambda kv: kv[1].sort_value())

    def __repr__(self) -> str:
        return f"BpfMap({self.name!r}, {self.kind}, {len(self._entries)} entries)"
