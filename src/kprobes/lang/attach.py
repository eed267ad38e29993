"""Attach-point syntax: ``kprobe:FN+OFFS``, ``uprobe:PATH:SYM``, ``interval:s:1``...

:func:`parse_attach_point` turns the raw text of one attach point (one
``ATTACH`` token) into an :class:`~kprobes.lang.ast.AttachPoint`, resolving
bpftrace's short aliases (``k:``, ``kr:``, ``u:``, ``ur:``, ``t:``, ``i:``)
and lowercase ``begin``/``end``.  Wildcards (``*``, ``?``, ``[...]``) stay in
the names as patterns; expanding them is the engine's job.
"""

from __future__ import annotations

from .ast import AttachPoint
from .diagnostics import close_matches as _close_matches
from .source import Span

__all__ = ["AttachError", "parse_attach_point", "PROVIDERS", "INTERVAL_UNITS", "SOFTWARE_EVENTS",
           "HARDWARE_EVENTS", "EVENT_ALIASES", "UNSUPPORTED_REASONS"]

#: Supported providers by every name bpftrace accepts for them.
PROVIDERS = {
    "kprobe": "kprobe", "k": "kprobe",
    "kretprobe": "kretprobe", "kr": "kretprobe",
    "uprobe": "uprobe", "u": "uprobe",
    "uretprobe": "uretprobe", "ur": "uretprobe",
    "usdt": "usdt", "U": "usdt",
    "tracepoint": "tracepoint", "t": "tracepoint",
    "interval": "interval", "i": "interval",
    "profile": "profile", "p": "profile",
    "kfunc": "kfunc", "f": "kfunc", "fentry": "kfunc",
    "kretfunc": "kretfunc", "fr": "kretfunc", "fexit": "kretfunc",
    "rawtracepoint": "rawtracepoint", "rt": "rawtracepoint",
    "software": "software", "s": "software", "hardware": "hardware", "h": "hardware",
    "BEGIN": "BEGIN", "begin": "BEGIN",
    "END": "END", "end": "END",
}  # fmt: skip
#: bpftrace providers this front end knows but does not support (yet).
UNSUPPORTED_PROVIDERS = {
    "watchpoint": "watchpoint", "w": "watchpoint", "asyncwatchpoint": "asyncwatchpoint",
    "aw": "asyncwatchpoint", "iter": "iter", "it": "iter", "self": "self",
}  # fmt: skip
#: Why a known provider is refused (the error message; default: "not supported yet").
UNSUPPORTED_REASONS = {
    "watchpoint": "'watchpoint' probes are not supported: a hardware breakpoint on a kernel "
                  "or user address needs a debug-register slot per CPU and a target process; "
                  "use a kprobe/uprobe on the code that writes the variable",
    "asyncwatchpoint": "'asyncwatchpoint' probes are not supported (see watchpoint)",
    "iter": "'iter' probes are not supported: BPF iterators are not attach points of a "
            "tracing session",
}  # fmt: skip
#: ``software:EVENT[:COUNT]``: canonical name -> (perf config, default count); bpftrace 0.17's table.
SOFTWARE_EVENTS = {
    "alignment-faults": (7, 1), "bpf-output": (10, 1), "context-switches": (3, 1000),
    "cpu-clock": (0, 1000000), "cpu-migrations": (4, 1), "dummy": (9, 1),
    "emulation-faults": (8, 1), "major-faults": (6, 1), "minor-faults": (5, 100),
    "page-faults": (2, 100), "task-clock": (1, 1),
}  # fmt: skip
#: ``hardware:EVENT[:COUNT]``: canonical name -> (perf config, default count).
HARDWARE_EVENTS = {
    "backend-stalls": (8, 1000000), "branch-instructions": (4, 100000),
    "branch-misses": (5, 100000), "bus-cycles": (6, 100000), "cache-misses": (3, 1000000),
    "cache-references": (2, 1000000), "cpu-cycles": (0, 1000000),
    "frontend-stalls": (7, 1000000), "instructions": (1, 1000000), "ref-cycles": (9, 1000000),
}  # fmt: skip
#: Event aliases bpftrace accepts.
EVENT_ALIASES = {"cs": "context-switches", "cpu": "cpu-clock", "faults": "page-faults",
                 "branches": "branch-instructions", "cycles": "cpu-cycles"}
#: ``interval:UNIT:N`` units.
INTERVAL_UNITS = ("s", "ms", "us", "hz")

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.*?[]-")


class AttachError(Exception):
    """Internal: an attach point that bpftrace would refuse (turned into a diagnostic)."""

    def __init__(self, message: str, hints: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hints = hints


def _split(raw: str) -> list[str]:
    """Split on ``:`` outside double quotes and drop the quotes."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in raw:
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _parse_int(text: str, what: str) -> int:
    body = text.replace("_", "")
    value = -1
    if len(body) <= 20:
        try:
            if body.lower().startswith("0x"):
                value = int(body[2:], 16)
            elif body.isdigit() and body.isascii():
                value = int(body, 10)
        except ValueError:
            pass
    if not 0 <= value < 1 << 64:
        raise AttachError(f"invalid {what}: '{text}'")
    return value


def _split_offset(func: str) -> tuple[str, int]:
    if "+" not in func:
        return func, 0
    name, _, off = func.partition("+")
    return name, _parse_int(off, "offset")


def _check_name(name: str, what: str) -> None:
    for ch in name:
        if ch not in _NAME_CHARS:
            raise AttachError(f"invalid character '{ch}' in {what} '{name}'")


def parse_attach_point(raw: str, span: Span) -> AttachPoint:
    """Parse one attach point; raises :class:`AttachError` on invalid text."""
    parts = _split(raw)
    head, rest = parts[0], parts[1:]
    if head in UNSUPPORTED_PROVIDERS:
        canon = UNSUPPORTED_PROVIDERS[head]
        raise AttachError(UNSUPPORTED_REASONS.get(canon, f"'{canon}' probes are not supported yet"))
    provider = PROVIDERS.get(head)
    if provider is None:
        close = _close_matches(head, sorted(PROVIDERS))
        hints = (f"Did you mean '{close[0]}'?",) if close else ()
        raise AttachError(f"Invalid provider: '{head}'", hints)
    if provider in ("BEGIN", "END"):
        if rest:
            raise AttachError("BEGIN/END probes should not have a target")
        return AttachPoint(provider, raw, span)
    if provider in ("kprobe", "kretprobe"):
        return _kprobe(provider, raw, span, rest)
    if provider in ("uprobe", "uretprobe"):
        return _uprobe(provider, raw, span, rest)
    if provider == "usdt":
        return _usdt(raw, span, rest)
    if provider == "tracepoint":
        if len(rest) != 2 or not rest[0] or not rest[1]:
            raise AttachError("tracepoint probe must have a target")
        _check_name(rest[0], "tracepoint category")
        _check_name(rest[1], "tracepoint name")
        return AttachPoint(provider, raw, span, target=rest[0], func=rest[1])
    if provider in ("kfunc", "kretfunc", "rawtracepoint"):
        return _kfunc(provider, raw, span, rest)
    if provider in ("software", "hardware"):
        return _perf_event(provider, raw, span, rest)
    return _interval(raw, span, rest, provider)


def _kfunc(provider: str, raw: str, span: Span, rest: list[str]) -> AttachPoint:
    """``kfunc:[MODULE:]FUNC`` / ``kretfunc:...`` / ``rawtracepoint:[MODULE:]NAME``."""
    what = "a tracepoint" if provider == "rawtracepoint" else "a function"
    if not rest or not rest[-1] or len(rest) > 2:
        raise AttachError(f"{provider} should be attached to {what}: {provider}:[MODULE:]NAME")
    module = rest[0] if len(rest) == 2 else ""
    func = rest[-1]
    if "+" in func:
        raise AttachError(f"{provider} probes can not be attached to a function offset")
    _check_name(func, "function name" if provider != "rawtracepoint" else "tracepoint name")
    if module:
        _check_name(module, "module name")
    return AttachPoint(provider, raw, span, func=func, module=module)


def _perf_event(provider: str, raw: str, span: Span, rest: list[str]) -> AttachPoint:
    """``software:EVENT[:COUNT]`` / ``hardware:EVENT[:COUNT]`` (COUNT: events per sample)."""
    if not rest or not rest[0] or len(rest) > 2:
        raise AttachError(f"{provider} probe must have an event: {provider}:EVENT[:COUNT]")
    table = SOFTWARE_EVENTS if provider == "software" else HARDWARE_EVENTS
    event = EVENT_ALIASES.get(rest[0], rest[0])
    if event not in table:
        close = _close_matches(rest[0], sorted(table))
        raise AttachError(f"{rest[0]} is not a {provider} probe",
                          (f"Did you mean '{close[0]}'?",) if close else ())
    count = table[event][1]
    if len(rest) == 2:
        count = _parse_int(rest[1], f"{provider} count") or count
    return AttachPoint(provider, raw, span, target=event, period=count)


def _kprobe(provider: str, raw: str, span: Span, rest: list[str]) -> AttachPoint:
    if not rest or not rest[-1]:
        raise AttachError("kprobes should be attached to a function")
    if len(rest) > 2:
        raise AttachError(f"invalid {provider} attach point '{raw}'")
    module = rest[0] if len(rest) == 2 else ""
    func, offset = _split_offset(rest[-1])
    if not func:
        raise AttachError("kprobes should be attached to a function")
    _check_name(func, "function name")
    if module:
        _check_name(module, "module name")
    ap = AttachPoint(provider, raw, span, func=func, module=module, offset=offset)
    if offset and provider == "kretprobe":
        raise AttachError("kretprobes can not be attached to a function offset")
    if offset and ap.is_pattern:
        raise AttachError("Offset not allowed with wildcards")
    return ap


def _uprobe(provider: str, raw: str, span: Span, rest: list[str]) -> AttachPoint:
    if len(rest) < 2 or not rest[0]:
        raise AttachError(f"{provider} should have a target")
    if len(rest) > 2:
        raise AttachError("language-specific uprobes (PATH:LANG:FUNC) are not supported yet")
    target, where = rest
    if not where:
        raise AttachError(f"{provider} should be attached to a function and/or address")
    address = None
    func, offset = _split_offset(where)
    if func.lower().startswith("0x") or func.isdigit():
        address, func = _parse_int(func, "address"), ""
    else:
        _check_name(func, "symbol")
    if offset and provider == "uretprobe":
        raise AttachError("uretprobes can not be attached to a function offset")
    ap = AttachPoint(provider, raw, span, target=target, func=func, address=address, offset=offset)
    if offset and ap.is_pattern:
        raise AttachError("Offset not allowed with wildcards")
    return ap


def _usdt(raw: str, span: Span, rest: list[str]) -> AttachPoint:
    """``usdt:BINARY:[PROVIDER:]NAME`` (the provider, kept in ``module``, may be omitted)."""
    if len(rest) < 2 or not rest[0]:
        raise AttachError("usdt probe must have a target: usdt:BINARY:[PROVIDER:]NAME")
    if len(rest) > 3:
        raise AttachError(f"invalid usdt attach point '{raw}'")
    if not rest[-1] or (len(rest) == 3 and not rest[1]):
        raise AttachError("usdt probe must have a probe name: usdt:BINARY:[PROVIDER:]NAME")
    module = rest[1] if len(rest) == 3 else ""
    _check_name(rest[-1], "usdt probe name")
    if module:
        _check_name(module, "usdt provider")
    return AttachPoint("usdt", raw, span, target=rest[0], func=rest[-1], module=module)


def _interval(raw: str, span: Span, rest: list[str], provider: str = "interval") -> AttachPoint:
    """``interval:UNIT:N`` and ``profile:UNIT:N`` (the same syntax)."""
    if len(rest) != 2 or not rest[0]:
        raise AttachError(f"{provider} probe must have unit of time")
    unit, count = rest
    if unit not in INTERVAL_UNITS:
        raise AttachError(f"{unit} is not an accepted unit of time")
    body = count.replace("_", "")
    if not (body.isdigit() and body.isascii()) or count.endswith("_"):
        raise AttachError(f"{provider} frequency should be a positive integer")
    if len(body) > 19 or int(body) >= 1 << 63:
        raise AttachError(f"{provider} frequency {count} is out of range")
    if int(body) <= 0:
        raise AttachError(f"{provider} frequency should be a positive integer")
    return AttachPoint(provider, raw, span, unit=unit, period=int(body))
