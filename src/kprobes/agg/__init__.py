"""Runtime values of bpftrace maps and their exact text and JSON output.

Pure code: values in, strings out.  The output matches bpftrace v0.17.0
byte for byte (golden files in ``tests/unit/golden/agg``); where 0.17 has a
bug (hist() capped at 2**31, max() of negatives lost, ``%%`` after the last
conversion left doubled, non-ASCII JSON escapes) the documented behaviour is
kept instead, as the module docstrings say.
"""

from __future__ import annotations

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
    log2_bucket,
)
from kprobes.agg.bpfmap import BpfMap, Key, normalize_key
from kprobes.agg.json_output import (
    attached_probes_json,
    format_exit_json,
    format_map_json,
    json_escape,
    lost_events_json,
    message_json,
    printf_json,
    time_json,
    value_json,
)
from kprobes.agg.printf import (
    DEFAULT_TIME_FORMAT,
    CompiledPrintf,
    PrintfFormat,
    PrintfFormatError,
    PrintfSpec,
    compile_printf,
    format_time,
    parse_printf,
)
from kprobes.agg.text import (
    attached_probes_text,
    format_exit,
    format_map,
    lost_events_text,
)

__all__ = [
    "Aggregation",
    "Avg",
    "BpfMap",
    "CompiledPrintf",
    "Count",
    "DEFAULT_TIME_FORMAT",
    "IntValue",
    "Key",
    "LinearHist",
    "Log2Hist",
    "Max",
    "Min",
    "PrintfFormat",
    "PrintfFormatError",
    "PrintfSpec",
    "Stats",
    "StrValue",
    "Sum",
    "attached_probes_json",
    "attached_probes_text",
    "compile_printf",
    "format_exit",
    "format_exit_json",
    "format_map",
    "format_map_json",
    "format_time",
    "json_escape",
    "log2_bucket",
    "lost_events_json",
    "lost_events_text",
    "message_json",
    "normalize_key",
    "parse_printf",
    "printf_json",
    "time_json",
    "value_json",
]
