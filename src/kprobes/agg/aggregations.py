"""bpftrace's map values: count(), sum(), avg(), min(), max(), stats(), hist(), lhist().

Each class is one per-key value of a bpftrace map.  They hold plain Python
ints but keep bpftrace's 64-bit arithmetic: sums wrap as ``int64`` (or
``uint64`` when built with ``signed=False``), counts as ``uint64``, and
averages truncate toward zero like C's ``/`` (``avg(-7), avg(0)`` is ``-3``).

Every value has the same small surface so that an engine can treat them
alike:

* ``add(value)`` records one event (``count()`` ignores the value);
* ``merge(other)`` folds in a value of the same kind (per-CPU or per-source
  partial results);
* ``zero()`` resets it the way bpftrace's ``zero(@m)`` does (the key stays);
* ``empty()`` returns a fresh value of the same kind and parameters;
* ``sort_value()`` is the integer bpftrace sorts map entries by.

``IntValue`` and ``StrValue`` are the values of plain assignments
(``@x[k] = 5``, ``@x[k] = "s"``): ``add`` replaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from kprobes.errors import KprobesError

__all__ = [
    "Aggregation",
    "Count",
    "Sum",
    "Avg",
    "Min",
    "Max",
    "Stats",
    "Log2Hist",
    "LinearHist",
    "IntValue",
    "StrValue",
    "TupleValue",
    "tuple_text",
    "to_s64",
    "to_u64",
    "c_div",
    "log2_bucket",
    "LHIST_MAX_BUCKETS",
]

_U64 = 1 << 64
_S64_MIN = -(1 << 63)
_S64_MAX = (1 << 63) - 1

#: bpftrace refuses an lhist() whose range needs more buckets than this.
LHIST_MAX_BUCKETS = 1000

#: Number of log2 buckets: index 0 is negative values, 1 is zero, 2 is one,
#: and index i >= 3 holds [2**(i-2), 2**(i-1)); a signed 64-bit value needs 65.
LOG2_BUCKETS = 65

_A = TypeVar("_A", bound="Aggregation")


def to_s64(value: int) -> int:
    """Wrap ``value`` to a signed 64-bit integer (two's complement)."""
    value &= _U64 - 1
    return value - _U64 if value > _S64_MAX else value


def to_u64(value: int) -> int:
    """Wrap ``value`` to an unsigned 64-bit integer."""
    return value & (_U64 - 1)


def c_div(num: int, den: int) -> int:
    """C integer division: truncates toward zero (``-7 / 2 == -3``)."""
    q = abs(num) // abs(den)
    return q if (num >= 0) == (den >= 0) else -q


def log2_bucket(value: int) -> int:
    """hist() bucket index of ``value`` taken as a signed 64-bit integer.

    0 holds negative values, 1 holds 0, 2 holds 1, and index ``i >= 3`` holds
    ``[2**(i-2), 2**(i-1))``.  (bpftrace 0.17's in-kernel log2 stops at 2**31,
    so it files every value >= 2**31 under ``[2G, 4G)``; this follows the
    documented 64-bit buckets instead.)
    """
    value = to_s64(value)
    if value < 0:
        return 0
    return value.bit_length() + 1


class Aggregation:
    """Base of every per-key map value; see the module docstring."""

    __slots__ = ()

    #: bpftrace's name for the map type ("count", "hist", ...).
    kind: str = ""

    def add(self, value: object = None) -> None:
        raise NotImplementedError

    def merge(self: _A, other: _A) -> None:
        raise NotImplementedError

    def zero(self) -> None:
        raise NotImplementedError

    def empty(self: _A) -> _A:
        raise NotImplementedError

    def sort_value(self) -> int:
        """The integer bpftrace sorts entries of this map type by."""
        return 0

    def copy(self: _A) -> _A:
        fresh = self.empty()
        fresh.merge(self)
        return fresh

    def _check_same(self, other: Aggregation) -> None:
        if type(other) is not type(self):
            raise KprobesError(
                f"cannot merge a {other.kind}() value into a {self.kind}() value"
            )


def _as_int(value: object, what: str) -> int:
    if isinstance(value, int):
        return int(value)
    raise KprobesError(f"{what}() needs an integer, got {type(value).__name__} {value!r}")


class Count(Aggregation):
    """``count()``: events seen, an unsigned 64-bit counter."""

    __slots__ = ("count",)
    kind = "count"

    def __init__(self, count: int = 0) -> None:
        self.count = to_u64(count)

    def add(self, value: object = None) -> None:
        self.count = (self.count + 1) & (_U64 - 1)

    def merge(self, other: Count) -> None:
        self._check_same(other)
        self.count = to_u64(self.count + other.count)

    def zero(self) -> None:
        self.count = 0

    def empty(self) -> Count:
        return Count()

    def sort_value(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"Count({self.count})"


class Sum(Aggregation):
    """``sum(v)``: a 64-bit total (signed unless ``signed=False``)."""

    __slots__ = ("total", "signed")
    kind = "sum"

    def __init__(self, total: int = 0, *, signed: bool = True) -> None:
        self.signed = signed
        self.total = to_s64(total) if signed else to_u64(total)

    def add(self, value: object = None) -> None:
        total = self.total + _as_int(value, "sum")
        self.total = to_s64(total) if self.signed else to_u64(total)

    def merge(self, other: Sum) -> None:
        self._check_same(other)
        total = self.total + other.total
        self.total = to_s64(total) if self.signed else to_u64(total)

    def zero(self) -> None:
        self.total = 0

    def empty(self) -> Sum:
        return Sum(signed=self.signed)

    def sort_value(self) -> int:
        return self.total

    def __repr__(self) -> str:
        return f"Sum({self.total})"


class _Extreme(Aggregation):
    """Shared body of Min and Max: the first value recorded sets it."""

    __slots__ = ("value", "is_set", "signed")

    def __init__(self, value: int | None = None, *, signed: bool = True) -> None:
        self.signed = signed
        self.is_set = value is not None
        self.value = self._wrap(value) if value is not None else 0

    def _wrap(self, value: int) -> int:
        return to_s64(value) if self.signed else to_u64(value)

    def _better(self, new: int, old: int) -> bool:
        raise NotImplementedError

    def add(self, value: object = None) -> None:
        v = self._wrap(_as_int(value, self.kind))
        if not self.is_set or self._better(v, self.value):
            self.value = v
            self.is_set = True

    def merge(self, other: _Extreme) -> None:
        self._check_same(other)
        if other.is_set:
            self.add(other.value)

    def zero(self) -> None:
        # Prints 0 afterwards; the next value recorded sets it again.
        self.value = 0
        self.is_set = False

    def sort_value(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value if self.is_set else None})"


class Min(_Extreme):
    """``min(v)``: the smallest value recorded (0 before any)."""

    __slots__ = ()
    kind = "min"

    def _better(self, new: int, old: int) -> bool:
        return new < old

    def empty(self) -> Min:
        return Min(signed=self.signed)


class Max(_Extreme):
    """``max(v)``: the largest value recorded (0 before any).

    bpftrace 0.17 compares against a missing entry as 0, so it never stores a
    max() of only negative values; this keeps the true maximum.
    """

    __slots__ = ()
    kind = "max"

    def _better(self, new: int, old: int) -> bool:
        return new > old

    def empty(self) -> Max:
        return Max(signed=self.signed)


class Avg(Aggregation):
    """``avg(v)``: ``total / count`` in int64, truncated toward zero."""

    __slots__ = ("count", "total")
    kind = "avg"

    def __init__(self, count: int = 0, total: int = 0) -> None:
        self.count = to_s64(count)
        self.total = to_s64(total)

    def add(self, value: object = None) -> None:
        self.count = to_s64(self.count + 1)
        self.total = to_s64(self.total + _as_int(value, self.kind))

    def merge(self, other: Avg) -> None:
        self._check_same(other)
        self.count = to_s64(self.count + other.count)
        self.total = to_s64(self.total + other.total)

    def zero(self) -> None:
        self.count = 0
        self.total = 0

    def empty(self) -> Avg:
        return type(self)()

    @property
    def average(self) -> int:
        """``total / count`` as C computes it; 0 when nothing was recorded."""
        return c_div(self.total, self.count) if self.count else 0

    def sort_value(self) -> int:
        return self.average

    def __repr__(self) -> str:
        return f"{type(self).__name__}(count={self.count}, total={self.total})"


class Stats(Avg):
    """``stats(v)``: count, average and total (printed as all three)."""

    __slots__ = ()
    kind = "stats"

    def empty(self) -> Stats:
        return Stats()


class Log2Hist(Aggregation):
    """``hist(v)``: power-of-two buckets, see :func:`log2_bucket`."""

    __slots__ = ("buckets",)
    kind = "hist"

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}

    def add(self, value: object = None) -> None:
        i = log2_bucket(_as_int(value, self.kind))
        self.buckets[i] = self.buckets.get(i, 0) + 1

    def add_count(self, index: int, count: int) -> None:
        """Add ``count`` to bucket ``index`` (used when loading kernel-side data)."""
        if not 0 <= index < LOG2_BUCKETS:
            raise KprobesError(f"hist() bucket index {index} is out of range 0..{LOG2_BUCKETS - 1}")
        self.buckets[index] = to_u64(self.buckets.get(index, 0) + count)

    def merge(self, other: Log2Hist) -> None:
        self._check_same(other)
        for i, c in other.buckets.items():
            self.add_count(i, c)

    def zero(self) -> None:
        for i in self.buckets:
            self.buckets[i] = 0

    def empty(self) -> Log2Hist:
        return Log2Hist()

    def counts(self) -> list[int]:
        """All 65 bucket counts, index 0 (negative) first."""
        out = [0] * LOG2_BUCKETS
        for i, c in self.buckets.items():
            out[i] = c
        return out

    def total(self) -> int:
        return sum(self.buckets.values())

    def sort_value(self) -> int:
        return self.total()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(sorted(self.buckets.items()))

    def __repr__(self) -> str:
        return f"Log2Hist({dict(sorted(self.buckets.items()))})"


class LinearHist(Aggregation):
    """``lhist(v, min, max, step)``: linear buckets of width ``step``.

    Index 0 counts values below ``min`` (printed ``(..., min)``), index
    ``1 + (v - min) // step`` the values in range, and the last index,
    ``buckets + 1``, values above ``max`` (printed ``[max, ...)``).  As in
    bpftrace, a value equal to ``max`` lands in the last bucket, and so do the
    values between the last full step and ``max`` when ``step`` does not
    divide the range.
    """

    __slots__ = ("min", "max", "step", "nbuckets", "buckets")
    kind = "lhist"

    def __init__(self, min: int, max: int, step: int) -> None:
        if step < 1:
            raise KprobesError(f"lhist() step must be >= 1 ({step} provided)")
        if min < 0:
            raise KprobesError(f"lhist() min must be non-negative (provided min {min})")
        if step > max - min:
            raise KprobesError(
                f"lhist() step is too large for the given range "
                f"(provided step {step} for range {max - min})"
            )
        nbuckets = (max - min) // step
        if nbuckets > LHIST_MAX_BUCKETS:
            raise KprobesError(
                f"lhist() too many buckets, must be <= {LHIST_MAX_BUCKETS} "
                f"(would need {nbuckets})"
            )
        self.min = min
        self.max = max
        self.step = step
        #: Buckets inside [min, max), excluding the two out-of-range ones.
        self.nbuckets = nbuckets
        self.buckets: dict[int, int] = {}

    def bucket(self, value: int) -> int:
        """The bucket index ``value`` (a signed 64-bit integer) falls in."""
        v = to_s64(value)
        if v < self.min:
            return 0
        if v > self.max:
            return self.nbuckets + 1
        return 1 + (v - self.min) // self.step

    def add(self, value: object = None) -> None:
        i = self.bucket(_as_int(value, self.kind))
        self.buckets[i] = self.buckets.get(i, 0) + 1

    def add_count(self, index: int, count: int) -> None:
        if not 0 <= index <= self.nbuckets + 1:
            raise KprobesError(
                f"lhist() bucket index {index} is out of range 0..{self.nbuckets + 1}"
            )
        self.buckets[index] = to_u64(self.buckets.get(index, 0) + count)

    def params(self) -> tuple[int, int, int]:
        return (self.min, self.max, self.step)

    def merge(self, other: LinearHist) -> None:
        self._check_same(other)
        if other.params() != self.params():
            raise KprobesError(
                f"cannot merge lhist() values with different ranges: "
                f"{other.params()} into {self.params()}"
            )
        for i, c in other.buckets.items():
            self.add_count(i, c)

    def zero(self) -> None:
        for i in self.buckets:
            self.buckets[i] = 0

    def empty(self) -> LinearHist:
        return LinearHist(self.min, self.max, self.step)

    def counts(self) -> list[int]:
        """All ``nbuckets + 2`` counts, the below-min bucket first."""
        out = [0] * (self.nbuckets + 2)
        for i, c in self.buckets.items():
            out[i] = c
        return out

    def total(self) -> int:
        return sum(self.buckets.values())

    def sort_value(self) -> int:
        return self.total()

    def __repr__(self) -> str:
        return f"LinearHist({self.min}, {self.max}, {self.step}, {dict(sorted(self.buckets.items()))})"


class IntValue(Aggregation):
    """The value of ``@m[k] = <integer>``: each ``add`` replaces it."""

    __slots__ = ("value", "signed")
    kind = "int"

    def __init__(self, value: int = 0, *, signed: bool = True) -> None:
        self.signed = signed
        self.value = to_s64(value) if signed else to_u64(value)

    def add(self, value: object = None) -> None:
        v = _as_int(value, "integer assignment")
        self.value = to_s64(v) if self.signed else to_u64(v)

    def merge(self, other: IntValue) -> None:
        self._check_same(other)
        self.value = other.value

    def zero(self) -> None:
        self.value = 0

    def empty(self) -> IntValue:
        return IntValue(signed=self.signed)

    def sort_value(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"IntValue({self.value})"


class StrValue(Aggregation):
    """The value of ``@m[k] = "text"``: each ``add`` replaces it.

    Maps of strings print in key order, not value order.
    """

    __slots__ = ("value",)
    kind = "str"

    def __init__(self, value: str = "") -> None:
        self.value = value

    def add(self, value: object = None) -> None:
        if not isinstance(value, str):
            raise KprobesError(f"string assignment needs a str, got {type(value).__name__}")
        self.value = value

    def merge(self, other: StrValue) -> None:
        self._check_same(other)
        self.value = other.value

    def zero(self) -> None:
        self.value = ""

    def empty(self) -> StrValue:
        return StrValue()

    def __repr__(self) -> str:
        return f"StrValue({self.value!r})"


def tuple_text(value: tuple[object, ...]) -> str:
    """A tuple as bpftrace prints it: ``(1, ab, -3)``."""
    return "(" + ", ".join(tuple_text(v) if isinstance(v, tuple) else str(v) for v in value) + ")"


class TupleValue(Aggregation):
    """The value of ``@m[k] = (a, b, ...)``: each ``add`` replaces it.

    Maps of tuples print in key order, as maps of strings.
    """

    __slots__ = ("value",)
    kind = "tuple"

    def __init__(self, value: tuple[object, ...] = ()) -> None:
        self.value = value

    def add(self, value: object = None) -> None:
        if not isinstance(value, tuple):
            raise KprobesError(f"tuple assignment needs a tuple, got {type(value).__name__}")
        self.value = value

    def merge(self, other: TupleValue) -> None:
        self._check_same(other)
        self.value = other.value

    def zero(self) -> None:
        self.value = tuple(0 if isinstance(v, int) else "" for v in self.value)

    def empty(self) -> TupleValue:
        return TupleValue()

    def __repr__(self) -> str:
        return f"TupleValue({self.value!r})"
