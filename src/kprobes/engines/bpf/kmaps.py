"""Kernel maps seen as :class:`~kprobes.agg.BpfMap`: read back, reduced, printed by agg/.

A :class:`KernelMap` refreshes its entries from the kernel map before every
read (printing, ``@x`` in a Python probe), so the agg/ formatters print it
exactly as they print the tracefs engine's maps.  Writes from Python probes
(``clear``, ``zero``, ``delete``, ``@x = 1`` in BEGIN/END/interval) go to the
kernel map.
"""

from __future__ import annotations

import struct
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ...agg.aggregations import Aggregation, Count, IntValue, StrValue, Sum, TupleValue
from ...agg.bpfmap import BpfMap, Key, normalize_key
from ...errors import KprobesError
from .layout import KeyLayout, KeyPart, encode_tuple
from .unit import MapPlan, round8, str_size

__all__ = ["KernelMap"]

_U64 = (1 << 64) - 1


class KernelMap(BpfMap):
    """A bpftrace map whose entries live in a kernel BPF map (see the module docstring)."""

    __slots__ = ("kmap", "plan", "names", "ksym", "sym")

    def __init__(self, plan: MapPlan, kmap: object, names: Sequence[Tuple[str, str]],
                 ksym: Optional[Callable[[int], str]] = None,
                 sym: Optional[Callable[[KeyPart, bytes], str]] = None) -> None:
        super().__init__(plan.display, plan.value.template(), scalar=not plan.key.parts)
        self.kmap = kmap
        self.plan = plan
        self.names = list(names)
        self.ksym = ksym
        #: names stack and usym key parts (:class:`.stacks.Symbolizer`)
        self.sym = sym

    # -- reading ---------------------------------------------------------------
    def refresh(self) -> None:
        km = self.kmap
        layout = self.plan.key
        value = self.plan.value
        entries: Dict[Key, Aggregation] = {}
        for kraw, vraw in km.items():  # type: ignore[attr-defined]
            per_cpu = km.split_percpu(vraw) if value.percpu else [vraw]  # type: ignore[attr-defined]
            key = layout.decode(kraw, self.names, self.ksym, self.sym)
            agg = value.reduce(per_cpu)
            old = entries.get(key)  # type: ignore[arg-type]
            if old is not None:  # two target indices with one name
                old.merge(agg)
            else:
                entries[key] = agg  # type: ignore[index]
        self._entries = entries
        self._prefill()

    def get(self, key: object = None) -> Optional[Aggregation]:
        self.refresh()
        return super().get(key)

    def items(self) -> List[Tuple[Key, Aggregation]]:
        self.refresh()
        return super().items()

    def sorted_items(self) -> List[Tuple[Key, Aggregation]]:
        self.refresh()
        return super().sorted_items()

    def __len__(self) -> int:
        self.refresh()
        return super().__len__()

    # -- writing -----------------------------------------------------------------
    def encode_key(self, key: object) -> bytes:
        parts = normalize_key(key)
        layout: KeyLayout = self.plan.key
        if not layout.parts:
            return bytes(8)
        out = bytearray()
        for part, v in zip(layout.parts, parts):
            if part.kind == "str":
                raw = str(v).encode("utf-8", "surrogateescape")[: str_size(part) - 1]
                out += raw + bytes(part.size - len(raw))
            elif part.kind == "target":
                idx = next((i for i, (n, f) in enumerate(self.names)
                            if (n if part.field == "name" else f) == v), None)
                if idx is None:
                    raise KprobesError(f"{self.name}: no probe named {v!r}")
                out += struct.pack("=Q", idx)
            else:
                out += struct.pack("=Q", int(v) & _U64)
        return bytes(out)

    def encode_value(self, agg: Aggregation) -> bytes:
        kind = self.plan.value.kind
        if isinstance(agg, StrValue):
            raw = agg.value.encode("utf-8", "surrogateescape")[: self.plan.value.str_size - 1]
            return raw + bytes(round8(self.plan.value.str_size) - len(raw))
        if isinstance(agg, TupleValue):
            return encode_tuple(self.plan.value.tuple_field, agg.value)
        if isinstance(agg, IntValue):
            return struct.pack("=Q", agg.value & _U64)
        if isinstance(agg, Count):
            return struct.pack("=Q", agg.count & _U64)
        if isinstance(agg, Sum):
            return struct.pack("=Q", agg.total & _U64)
        raise KprobesError(f"the BPF engine cannot set a {kind}() value from a BEGIN/END/interval probe")

    def update(self, key: object = None, value: object = None) -> None:
        """An update from a Python probe: read, apply, write back (CPU 0's slot for aggregations)."""
        self.refresh()
        k = normalize_key(key)
        agg = self._entries.get(k)
        fresh = self.template.empty() if agg is None else agg
        before = fresh.copy()
        fresh.add(value)
        km = self.kmap
        raw = self.encode_value(fresh)
        if self.plan.value.percpu:
            delta = self.template.empty()
            if isinstance(fresh, Count) and isinstance(before, Count):
                delta = Count(fresh.count - before.count)
            elif isinstance(fresh, Sum) and isinstance(before, Sum):
                delta = Sum(fresh.total - before.total, signed=fresh.signed)
            kraw = self.encode_key(k)
            cur = km.lookup(kraw)  # type: ignore[attr-defined]
            slots = km.split_percpu(cur) if cur is not None else [bytes(km.value_size)] * km.ncpus  # type: ignore[attr-defined]
            first = struct.unpack_from("=Q", slots[0])[0]
            add = struct.unpack_from("=Q", self.encode_value(delta))[0]
            slots[0] = struct.pack("=Q", (first + add) & _U64) + slots[0][8:]
            pad = round8(km.value_size) - km.value_size  # type: ignore[attr-defined]
            km.update(kraw, b"".join(s + bytes(pad) for s in slots))  # type: ignore[attr-defined]
        else:
            km.update(self.encode_key(k), raw)  # type: ignore[attr-defined]
        self._entries[k] = fresh

    def clear(self) -> None:
        km = self.kmap
        try:
            km.items(delete=True)  # type: ignore[attr-defined]
        except KprobesError:
            for k in list(km.keys()):  # type: ignore[attr-defined]
                km.delete(k)  # type: ignore[attr-defined]
        self._entries.clear()
        self._prefill()

    def zero(self) -> None:
        km = self.kmap
        zero = self.plan.value.zero_bytes()
        for k in list(km.keys()):  # type: ignore[attr-defined]
            try:
                km.update(k, zero)  # type: ignore[attr-defined]
            except KprobesError:
                pass
        self.refresh()

    def delete(self, key: object = None) -> bool:
        found = bool(self.kmap.delete(self.encode_key(key)))  # type: ignore[attr-defined]
        self.refresh()
        return found
