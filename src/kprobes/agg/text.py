"""bpftrace's text output of maps, byte for byte (as bpftrace v0.17.0 prints).

``format_map(m, top, div)`` is what ``print(@m, top, div)`` writes, and what
bpftrace writes for each map at exit (with ``top=0, div=1``):

* one ``@name[k1, k2]: value`` line per entry (``@name: value`` without keys),
  string keys unquoted, entries in :meth:`BpfMap.sorted_items` order;
* count/sum/min/max/integer/string maps end with a single newline, so an
  empty map prints just ``"\\n"`` and no blank line follows;
* avg/stats maps end with an extra blank line (``"\\n"`` alone when empty);
* hist/lhist entries print ``@name[k]: `` (trailing space), then one line per
  bucket from the first to the last non-empty one, then a blank line;
  a bucket line is the label left-aligned in 16 columns, the count
  right-aligned in 8, then `` |`` + 52 columns of ``@`` + ``|``;
* ``top`` keeps the last ``top`` entries of the sorted order (the largest)
  for every kind but stats, ``div`` divides printed values of
  count/sum/min/max/int maps, hist bucket counts (bars are drawn from the
  undivided counts) and avg values; lhist and stats ignore both as bpftrace
  does (stats ignore top too).

:func:`format_exit` renders what bpftrace prints when a program ends:
two newlines, then every map in name order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from kprobes.agg.aggregations import (
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
    c_div,
    tuple_text,
)
from kprobes.agg.bpfmap import BpfMap, Key, KeyPart
from kprobes.errors import KprobesError

__all__ = [
    "format_map",
    "format_exit",
    "format_key",
    "key_part_text",
    "format_hist",
    "format_lhist",
    "hist_label",
    "lhist_label",
    "bar_width",
    "select_top",
    "attached_probes_text",
    "lost_events_text",
]

BAR_WIDTH = 52


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def bar_width(count: int, max_count: int) -> int:
    """Number of ``@`` for ``count``: bpftrace's float (32-bit) arithmetic."""
    if max_count <= 0:
        return 0
    ratio = _f32(_f32(float(count)) / _f32(float(max_count)))
    return int(_f32(ratio * float(BAR_WIDTH)))


def hist_label(power: int) -> str:
    """Label of ``2**power``: ``1``, ``512``, ``1K``, ``4M``, ``2G``, ``1T``."""
    for shift, suffix in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if power >= shift:
            return f"{1 << (power - shift)}{suffix}"
    return str(1 << power)


def lhist_label(number: int) -> str:
    """Label of an lhist bound: multiples of 1024**2 get ``M``, of 1024 ``K``."""
    if number == 0:
        return "0"
    if number % (1 << 20) == 0:
        return f"{c_div(number, 1 << 20)}M"
    if number % 1024 == 0:
        return f"{c_div(number, 1024)}K"
    return str(number)


def _bucket_line(header: str, shown: int, count: int, max_count: int) -> str:
    bar = "@" * bar_width(count, max_count)
    return f"{header:<16}{shown:>8} |{bar:<{BAR_WIDTH}}|\n"


def format_hist(hist: Log2Hist, div: int = 1) -> str:
    """The bucket lines of one hist() value ("" when every bucket is 0)."""
    counts = hist.counts()
    nonzero = [i for i, c in enumerate(counts) if c > 0]
    if not nonzero:
        return ""
    max_count = max(counts)
    out = []
    for i in range(nonzero[0], nonzero[-1] + 1):
        if i == 0:
            header = "(..., 0)"
        elif i == 1:
            header = "[0]"
        elif i == 2:
            header = "[1]"
        else:
            header = f"[{hist_label(i - 2)}, {hist_label(i - 1)})"
        out.append(_bucket_line(header, counts[i] // div, counts[i], max_count))
    return "".join(out)


def format_lhist(hist: LinearHist) -> str:
    """The bucket lines of one lhist() value ("" when every bucket is 0)."""
    counts = hist.counts()
    nonzero = [i for i, c in enumerate(counts) if c > 0]
    if not nonzero:
        return ""
    max_count = max(counts)
    last = hist.nbuckets + 1
    out = []
    for i in range(nonzero[0], nonzero[-1] + 1):
        if i == 0:
            header = f"(..., {lhist_label(hist.min)})"
        elif i == last:
            header = f"[{lhist_label(hist.max)}, ...)"
        else:
            low = (i - 1) * hist.step + hist.min
            header = f"[{lhist_label(low)}, {lhist_label(low + hist.step)})"
        out.append(_bucket_line(header, counts[i], counts[i], max_count))
    return "".join(out)


def key_part_text(part: KeyPart) -> str:
    """One key part as bpftrace 0.17 prints it: strings as they are, integers as signed
    64-bit numbers (a ``uint64`` key of -300 prints ``-300``; narrower types cannot reach
    2**63, so they print unsigned)."""
    if isinstance(part, int) and part >= 1 << 63:
        return str(part - (1 << 64))
    return str(part)


def format_key(name: str, key: Key) -> str:
    """``@name`` or ``@name[k1, k2]`` with string parts unquoted."""
    if not key:
        return name
    return name + "[" + ", ".join(key_part_text(part) for part in key) + "]"


def select_top(items: Sequence[tuple[Key, Aggregation]], top: int) -> Sequence[tuple[Key, Aggregation]]:
    """The last ``top`` entries when there are more (``top`` 0 keeps all)."""
    if top and len(items) > top:
        return items[len(items) - top:]
    return items


def _value_text(agg: Aggregation, div: int) -> str:
    if isinstance(agg, Count):
        return str(agg.count // div)
    if isinstance(agg, Sum):
        return str(c_div(agg.total, div))
    if isinstance(agg, (IntValue, Min, Max)):
        return str(c_div(agg.value, div))
    if isinstance(agg, StrValue):
        return agg.value
    if isinstance(agg, TupleValue):
        return tuple_text(agg.value)
    raise KprobesError(f"not a scalar map value: {agg!r}")  # pragma: no cover


def format_map(bpf_map: BpfMap, top: int = 0, div: int = 1) -> str:
    """Text bpftrace prints for ``print(@m, top, div)`` (and at exit)."""
    div = div or 1
    template = bpf_map.template
    items = bpf_map.sorted_items()
    name = bpf_map.name
    if isinstance(template, (Log2Hist, LinearHist)):
        elems = []
        for key, agg in select_top(items, top):
            if isinstance(agg, Log2Hist):
                body = format_hist(agg, div)
            elif isinstance(agg, LinearHist):
                body = format_lhist(agg)
            else:  # pragma: no cover - BpfMap.set() keeps kinds uniform
                raise KprobesError(f"{name} mixes value kinds")
            elems.append(f"{format_key(name, key)}: \n{body}")
        return "\n".join(elems) + "\n"
    if isinstance(template, Avg):  # avg and stats
        is_stats = isinstance(template, Stats)
        elems = []
        for key, agg in (items if is_stats else select_top(items, top)):
            if not isinstance(agg, Avg):  # pragma: no cover
                raise KprobesError(f"{name} mixes value kinds")
            if is_stats:
                value = f"count {agg.count}, average {agg.average}, total {agg.total}"
            else:
                value = str(c_div(agg.average, div))
            elems.append(f"{format_key(name, key)}: {value}")
        return "\n".join(elems) + "\n\n"
    lines = [
        f"{format_key(name, key)}: {_value_text(agg, div)}"
        for key, agg in select_top(items, top)
    ]
    return "\n".join(lines) + "\n"


def format_exit(maps: Iterable[BpfMap]) -> str:
    """What bpftrace prints when the program ends: ``"\\n\\n"`` then every map.

    Maps print in byte order of their names (``@`` < ``@B`` < ``@_x`` < ``@a``);
    pass every map the program declares, even those never written (they
    print as empty maps).
    """
    ordered: list[BpfMap] = sorted(maps, key=lambda m: m.name.encode("utf-8", "surrogateescape"))
    return "\n\n" + "".join(format_map(m) for m in ordered)


def attached_probes_text(count: int) -> str:
    """``Attaching 1 probe...`` / ``Attaching N probes...`` with its newline."""
    return f"Attaching {count} probe{'' if count == 1 else 's'}...\n"


def lost_events_text(count: int) -> str:
    return f"Lost {count} events\n"
