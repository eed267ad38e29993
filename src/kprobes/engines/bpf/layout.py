"""Byte layouts of the BPF engine's maps and records, and their decoding into agg/ values.

Keys: every part of a key is packed in order, with no padding between parts:

* an integer (or pointer) part is 8 bytes, native byte order, read back as
  signed or unsigned per the checker's type;
* a string part is the string's buffer (``string[N]``: N bytes, NUL-padded);
* ``probe`` / ``func`` parts with several attach targets are the 8-byte index
  of the target (the BPF cookie, or a constant per program), turned back into
  the target's name in Python;
* a ``stack`` part (``kstack``/``ustack``) is 8 bytes: the ``bpf_get_stackid``
  result (negative: no stack) for kernel stacks; for user stacks the stack id
  in the low 32 bits and the process id above (user addresses need the
  process' mappings), symbolized in Python (:mod:`.stacks`);
* a ``usym`` part is 16 bytes: the address, then the process id;
* a map without keys uses one 8-byte zero key.

Values (aggregations live in ``PERCPU_HASH`` maps, one value per CPU, summed
in Python; plain values in a ``HASH``):

=========  ===========================================  ========================
kind       bytes (u64 each)                             reduced into
=========  ===========================================  ========================
count      count                                        ``Count``
sum        total                                        ``Sum``
avg/stats  count, total                                 ``Avg`` / ``Stats``
min/max    value, is_set                                ``Min`` / ``Max``
hist       65 buckets (log2, see agg.log2_bucket)       ``Log2Hist``
lhist      nbuckets + 2 buckets                         ``LinearHist``
int        value (``HASH``)                             ``IntValue``
str        the string buffer (``HASH``)                 ``StrValue``
=========  ===========================================  ========================
"""

from __future__ import annotations

import struct
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from ..._record import dataclass
from ...agg.aggregations import (
    Aggregation,
    Avg,
    Count,
    IntValue,
    LinearHist,
    Log2Hist,
    Max,
    Min,
    Stats,
    StrValue,
    Sum,
    TupleValue,
)

__all__ = ["KeyPart", "KeyLayout", "ValueLayout", "decode_str", "to_signed", "LOG2_SLOTS",
           "tuple_parts", "encode_tuple"]

LOG2_SLOTS = 65
_U64 = struct.Struct("=Q")
_ORDER = sys.byteorder


def to_signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def decode_str(raw: bytes) -> str:
    """A C string from its buffer (up to the first NUL)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class KeyPart:
    """One part of a packed key or record: ``kind`` is ``int``, ``str``, ``target``,
    ``ksym``, ``usym``, ``stack`` or ``fmt`` (``field``: ``KIND:STRFTIME-FORMAT``).

    ``size`` is its byte size; ``signed`` for ints; ``field`` for targets
    (``name`` for ``probe``, ``func`` for ``func``), for stacks ``k|u:MODE:LIMIT``.
    """

    kind: str
    size: int = 8
    signed: bool = False
    field: str = ""

    def decode(self, raw: bytes, names: Optional[Sequence[Tuple[str, str]]] = None,
               ksym: Optional[Callable[[int], str]] = None,
               sym: Optional[Callable[["KeyPart", bytes], str]] = None) -> object:
        if self.kind == "str":
            return decode_str(raw)
        if self.kind == "fmt":  # a value formatted in user space (engines.functions)
            from ..functions import format_fmt

            kind, _, fmt = self.field.partition(":")
            return format_fmt(kind, raw, fmt)
        if self.kind in ("stack", "usym"):
            if sym is not None:
                return sym(self, raw)
            return f"0x{int.from_bytes(raw[:8], _ORDER):x}"
        if self.kind == "tuple":
            return tuple(p.decode(raw[off:off + p.size]) for p, off in tuple_parts(self.field))
        v = int.from_bytes(raw[:8], _ORDER)
        if self.kind == "target":
            if names is not None and v < len(names):
                name, func = names[v]
                return name if self.field == "name" else func
            return f"?{v}"
        if self.kind == "ksym":
            return ksym(v) if ksym is not None else f"0x{v:x}"
        return to_signed(v) if self.signed else v


def tuple_parts(field: str) -> List[Tuple[KeyPart, int]]:
    """The elements of a ``tuple`` part and their offsets: ``field`` lists them as ``i1``
    (a signed integer), ``i0`` (unsigned) or ``sN`` (a string of N bytes, NUL included)."""
    out: List[Tuple[KeyPart, int]] = []
    off = 0
    for code in field.split(","):
        if code[0] == "s":
            n = int(code[1:])
            part = KeyPart("str", (n + 7) // 8 * 8, field=str(n))
        else:
            part = KeyPart("int", 8, signed=code == "i1")
        out.append((part, off))
        off += part.size
    return out


def encode_tuple(field: str, value: Sequence[object]) -> bytes:
    """``value`` packed as a ``tuple`` part (the inverse of :meth:`KeyPart.decode`)."""
    out = bytearray()
    for (part, _off), v in zip(tuple_parts(field), value):
        if part.kind == "str":
            raw = str(v).encode("utf-8", "surrogateescape")[: int(part.field) - 1]
            out += raw + bytes(part.size - len(raw))
        else:
            out += _U64.pack(int(v) & ((1 << 64) - 1))  # type: ignore[call-overload]
    return bytes(out)


@dataclass(frozen=True)
class KeyLayout:
    """The parts of a map key (empty for a map without keys: one zero u64)."""

    parts: Tuple[KeyPart, ...]

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts) if self.parts else 8

    def offsets(self) -> List[int]:
        out, off = [], 0
        for p in self.parts:
            out.append(off)
            off += p.size
        return out

    def decode(self, raw: bytes, names: Optional[Sequence[Tuple[str, str]]] = None,
               ksym: Optional[Callable[[int], str]] = None,
               sym: Optional[Callable[[KeyPart, bytes], str]] = None) -> Tuple[object, ...]:
        if not self.parts:
            return ()
        out = []
        for p, off in zip(self.parts, self.offsets()):
            out.append(p.decode(raw[off:off + p.size], names, ksym, sym))
        return tuple(out)


@dataclass(frozen=True)
class ValueLayout:
    """A map's value: ``kind`` (see the module docstring), ``signed``, lhist parameters,
    ``str_size`` for string values."""

    kind: str
    signed: bool = True
    lhist: Optional[Tuple[int, int, int]] = None
    str_size: int = 0
    #: ``tuple`` values: the elements (see :func:`tuple_parts`); ``str_size`` is their size
    tuple_field: str = ""

    @property
    def percpu(self) -> bool:
        return self.kind not in ("int", "str", "tuple")

    @property
    def slots(self) -> int:
        """Number of u64 slots (string values: 0)."""
        k = self.kind
        if k in ("count", "sum", "int"):
            return 1
        if k in ("avg", "stats", "min", "max"):
            return 2
        if k == "hist":
            return LOG2_SLOTS
        if k == "lhist":
            assert self.lhist is not None
            lo, hi, step = self.lhist
            return (hi - lo) // step + 2
        return 0

    @property
    def size(self) -> int:
        return self.str_size if self.kind in ("str", "tuple") else 8 * self.slots

    def template(self) -> Aggregation:
        k = self.kind
        if k == "count":
            return Count()
        if k == "sum":
            return Sum(signed=self.signed)
        if k == "avg":
            return Avg()
        if k == "stats":
            return Stats()
        if k == "min":
            return Min(signed=self.signed)
        if k == "max":
            return Max(signed=self.signed)
        if k == "hist":
            return Log2Hist()
        if k == "lhist":
            assert self.lhist is not None
            return LinearHist(*self.lhist)
        if k == "int":
            return IntValue(signed=self.signed)
        if k == "tuple":
            return TupleValue(KeyPart("tuple", self.str_size, field=self.tuple_field)
                              .decode(bytes(self.str_size)))  # type: ignore[arg-type]
        return StrValue()

    def _u64s(self, raw: bytes) -> List[int]:
        n = self.slots
        return list(struct.unpack_from(f"={n}Q", raw, 0))

    def reduce(self, per_cpu: Sequence[bytes]) -> Aggregation:
        """One agg/ value from the per-CPU values (a single one for HASH maps)."""
        agg = self.template()
        k = self.kind
        if k == "str":
            assert isinstance(agg, StrValue)
            agg.value = decode_str(per_cpu[0]) if per_cpu else ""
            return agg
        if k == "tuple":
            if per_cpu:
                part = KeyPart("tuple", self.str_size, field=self.tuple_field)
                return TupleValue(part.decode(per_cpu[0]))  # type: ignore[arg-type]
            return agg
        if k == "int":
            v = self._u64s(per_cpu[0])[0] if per_cpu else 0
            return IntValue(to_signed(v) if self.signed else v, signed=self.signed)
        cols = [self._u64s(raw) for raw in per_cpu]
        if k in ("count", "sum"):
            total = sum(c[0] for c in cols)
            if k == "count":
                return Count(total)
            return Sum(to_signed(total & ((1 << 64) - 1)) if self.signed else total, signed=self.signed)
        if k in ("avg", "stats"):
            cnt = sum(c[0] for c in cols)
            tot = sum(c[1] for c in cols)
            out = Stats() if k == "stats" else Avg()
            out.count = to_signed(cnt & ((1 << 64) - 1))
            out.total = to_signed(tot & ((1 << 64) - 1))
            return out
        if k in ("min", "max"):
            for c in cols:
                if c[1]:
                    agg.add(to_signed(c[0]) if self.signed else c[0])
            return agg
        assert isinstance(agg, (Log2Hist, LinearHist))
        for i in range(self.slots):
            n = sum(c[i] for c in cols)
            if n:
                agg.add_count(i, n)
        return agg

    def zero_bytes(self) -> bytes:
        return bytes(self.size)
