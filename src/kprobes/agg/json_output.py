"""bpftrace's ``-f json`` output: one JSON object per line.

The lines are built as text, exactly as bpftrace (v0.17.0) spells them,
``{"type": "map", "data": {"@x": {"a": 1, "b": 2}}}`` with ``": "`` and
``", "`` separators, so they can be diffed against bpftrace's own output:

* ``map``: count/sum/min/max/int/string maps, ``{"@x": {"k": v, ...}}`` or
  ``{"@x": v}`` without keys; multi-part keys are joined with ``,``
  (``"1,z"``); string values are quoted;
* ``hist``: hist and lhist maps, each value a list of
  ``{"min": a, "max": b, "count": n}`` from the first to the last non-empty
  bucket (the below-range bucket has only ``max``, the above-range one only
  ``min``; an all-zero histogram is ``[]``);
* ``stats``: avg maps (value = the average) and stats maps
  (``{"count": c, "average": a, "total": t}``).

An empty map prints nothing at all.  Strings are escaped like bpftrace's
``json_escape``: ``"`` ``\\`` ``\\n`` ``\\r`` ``\\t`` and ``\\u00XX`` for other
control characters.  (bpftrace 0.17 also mangles bytes >= 0x80 into
``\\uffffffXX``; here non-ASCII text is written as UTF-8.)
"""

from __future__ import annotations

from collections.abc import Iterable

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
)
from kprobes.agg.bpfmap import BpfMap, Key
from kprobes.agg.text import select_top
from kprobes.errors import KprobesError

__all__ = [
    "json_escape",
    "format_map_json",
    "format_exit_json",
    "hist_json",
    "lhist_json",
    "message_json",
    "printf_json",
    "time_json",
    "attached_probes_json",
    "lost_events_json",
    "value_json",
    "join_json",
]

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def json_escape(text: str) -> str:
    """Escape ``text`` for a JSON string the way bpftrace does."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    out = []
    for c in text:
        esc = _ESCAPES.get(c)
        if esc is not None:
            out.append(esc)
        elif c <= "\x1f":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def _quote(text: str) -> str:
    return '"' + json_escape(text) + '"'


def hist_json(hist: Log2Hist, div: int = 1) -> str:
    """A hist() value as bpftrace's JSON list of buckets."""
    counts = hist.counts()
    nonzero = [i for i, c in enumerate(counts) if c > 0]
    if not nonzero:
        return "[]"
    parts = []
    for i in range(nonzero[0], nonzero[-1] + 1):
        if i == 0:
            bounds = '"max": -1, '
        elif i == 1:
            bounds = '"min": 0, "max": 0, '
        elif i == 2:
            bounds = '"min": 1, "max": 1, '
        else:
            bounds = f'"min": {1 << (i - 2)}, "max": {(1 << (i - 1)) - 1}, '
        parts.append("{" + bounds + f'"count": {counts[i] // div}' + "}")
    return "[" + ", ".join(parts) + "]"


def lhist_json(hist: LinearHist) -> str:
    """An lhist() value as bpftrace's JSON list of buckets."""
    counts = hist.counts()
    nonzero = [i for i, c in enumerate(counts) if c > 0]
    if not nonzero:
        return "[]"
    last = hist.nbuckets + 1
    parts = []
    for i in range(nonzero[0], nonzero[-1] + 1):
        if i == 0:
            bounds = f'"max": {hist.min - 1}, '
        elif i == last:
            bounds = f'"min": {hist.max}, '
        else:
            low = (i - 1) * hist.step + hist.min
            bounds = f'"min": {low}, "max": {low + hist.step - 1}, '
        parts.append("{" + bounds + f'"count": {counts[i]}' + "}")
    return "[" + ", ".join(parts) + "]"


def _value_json(agg: Aggregation, div: int) -> str:
    if isinstance(agg, Count):
        return str(agg.count // div)
    if isinstance(agg, Sum):
        return str(c_div(agg.total, div))
    if isinstance(agg, (IntValue, Min, Max)):
        return str(c_div(agg.value, div))
    if isinstance(agg, StrValue):
        return _quote(agg.value)
    if isinstance(agg, TupleValue):
        return _plain_json(agg.value)
    if isinstance(agg, Log2Hist):
        return hist_json(agg, div)
    if isinstance(agg, LinearHist):
        return lhist_json(agg)
    if isinstance(agg, Stats):
        return f'{{"count": {agg.count}, "average": {agg.average}, "total": {agg.total}}}'
    if isinstance(agg, Avg):
        return str(c_div(agg.average, div))
    raise KprobesError(f"no JSON form for {agg!r}")  # pragma: no cover


def _json_key(key: Key) -> str:
    from .text import key_part_text

    return _quote(",".join(key_part_text(part) for part in key))


def format_map_json(bpf_map: BpfMap, top: int = 0, div: int = 1) -> str:
    """The ``-f json`` line for ``print(@m, top, div)``; "" for an empty map."""
    if not len(bpf_map):
        return ""
    div = div or 1
    template = bpf_map.template
    items = bpf_map.sorted_items()
    if isinstance(template, (Log2Hist, LinearHist)):
        kind = "hist"
    elif isinstance(template, Avg):
        kind = "stats"
        if isinstance(template, Stats):
            top, div = 0, 1  # bpftrace ignores both for stats()
    else:
        kind = "map"
    selected = select_top(items, top)
    if bpf_map.is_scalar:
        body = _value_json(selected[0][1], div) if selected else ""
    else:
        body = "{" + ", ".join(f"{_json_key(k)}: {_value_json(v, div)}" for k, v in selected) + "}"
    return f'{{"type": "{kind}", "data": {{{_quote(bpf_map.name)}: {body}}}}}\n'


def format_exit_json(maps: Iterable[BpfMap]) -> str:
    """What ``bpftrace -f json`` prints at exit: two newlines, then the maps."""
    ordered: list[BpfMap] = sorted(maps, key=lambda m: m.name.encode("utf-8", "surrogateescape"))
    return "\n\n" + "".join(format_map_json(m) for m in ordered)


def message_json(kind: str, text: str) -> str:
    """``{"type": kind, "data": "text"}`` and a newline (printf, time, cat...)."""
    return f'{{"type": "{kind}", "data": {_quote(text)}}}\n'


def printf_json(text: str) -> str:
    return message_json("printf", text)


def time_json(text: str) -> str:
    return message_json("time", text)


def attached_probes_json(count: int) -> str:
    return f'{{"type": "attached_probes", "data": {{"probes": {count}}}}}\n'


def lost_events_json(count: int) -> str:
    return f'{{"type": "lost_events", "data": {{"events": {count}}}}}\n'


def _plain_json(value: object) -> str:
    """An int, a string or a tuple of them as bpftrace writes it (tuples: ``[1,"a"]``, no blanks)."""
    if isinstance(value, bool):
        raise KprobesError("print() of a bool has no JSON form here")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_plain_json(v) for v in value) + "]"
    raise KprobesError(f"print() of {type(value).__name__} has no JSON form here")


def value_json(value: object) -> str:
    """``print(value)`` of a non-map value: ``{"type": "value", "data": ...}``."""
    return f'{{"type": "value", "data": {_plain_json(value)}}}\n'


def join_json(text: str) -> str:
    """``join()``'s record: ``{"type": "join", "data": "a b c"}``."""
    return message_json("join", text)
