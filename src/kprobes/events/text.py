"""Parser for the text lines of an instance's ``trace_pipe`` / ``trace`` file.

A line is the context columns then the event's own text::

    <comm>-<pid> [(<tgid>)] [<cpu>] [<irq flags>] <timestamp>: <event>: <body>

* ``comm`` may hold spaces and dashes (``Web Content-4567``,
  ``kworker/u8:2-events_unbound-123``) or be ``<...>`` when the comm was not
  saved; ``(  123)`` appears with the ``record-tgid`` option (``(-------)``
  when unknown);
* the irq-info flags are 4 characters on old kernels (``d.h1``) and 5 since
  the migrate-disable column (``dNh2.``); absent with ``noirq-info``;
* the timestamp is ``secs.usecs`` (6 decimals), ``secs.nsecs`` (9) or a bare
  counter for the ``counter``/``x86-tsc`` clocks (kept as the raw count);
* kprobe/uprobe bodies start with the probed place ``(do_sys_openat2+0x0/0x1b0)``
  / ``(0x55d4c0a0b0c0)``; return probes print ``(<return address> <- <function>)``;
* fields are ``name=value``: decimal or ``0x`` numbers, ``"strings"`` (printed
  raw by the kernel, never escaped), ``(fault)``, arrays ``{1,2,3}``, ``'c'``
  chars, symbols;
* syscall tracepoints print ``sys_openat(dfd: 0xffffff9c, ...)`` and
  ``sys_openat -> 0x3``: they become ``syscalls/sys_enter_openat`` /
  ``sys_exit_openat`` events with int fields;
* any other tracepoint text not in ``key=value`` form is kept whole as field
  ``_text``.

Lines that do not look like an event become :class:`UnparsedLine`; header
comments (``# ...``) and blank lines are skipped.  ``CPU:N [LOST M EVENTS]``
becomes an :class:`UnparsedLine` whose reason starts with ``"lost events"``
and is counted in :attr:`TextParser.lost_events`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from re import Pattern
from typing import Callable, Union

from kprobes.events.model import FieldValue, TraceEvent, UnparsedLine
from kprobes.events.values import FAULT, convert_untyped, converter_for

__all__ = ["FAULT", "ParsedLine", "TextParser", "parse_line", "parse_text"]

ParsedLine = Union[TraceEvent, UnparsedLine]
TypesByEvent = Mapping[str, Mapping[str, str]]
Converter = Callable[[str], FieldValue]

_LINE = re.compile(
    r"\s*(.*?)-(\d+)\s+(?:\(\s*(\d+|-+)\)\s+)?\[(\d+)\]\s+(?:([A-Za-z.0-9]{4,5})\s+)?"
    r"(\d+)(?:\.(\d+))?: (.*)\Z",
    re.S,
)
_SYS_ENTER = re.compile(r"(sys_\w+)\((.*)\)\Z", re.S)
_SYS_EXIT = re.compile(r"(sys_\w+) -> (\S+)\Z")
_PLACE = r"0x[0-9a-fA-F]+|[\w.$]+(?:\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+)?(?: \[[\w-]+\])?"
# "name: [(location)] body" in one match (the common case after the context columns).
_NAME_LOC = re.compile(rf"([^\s:()]+): ?(?:\(({_PLACE})(?: <- ({_PLACE}))?\)(?: |\Z))?(.*)\Z", re.S)
_LOST = re.compile(r"CPU:(\d+) \[LOST (\d+) EVENTS\]\s*\Z")
_KV_SPLIT = re.compile(r"(\s+)(?=[A-Za-z_]\w*=)")
_KEY = re.compile(r"[A-Za-z_]\w*=")
_SIMPLE_KV = re.compile(r"(?:[A-Za-z_]\w*=(?:\"[^\"\s]*\"|[^\s\"]*) )*[A-Za-z_]\w*=(?:\"[^\"\s]*\"|[^\s\"]*)\Z")
_KV_PAIR = re.compile(r"([A-Za-z_]\w*)=(\S*)")
_HEXADDR = re.compile(r"0x[0-9a-fA-F]+\Z")
_POW10: tuple[int, ...] = tuple(10**k for k in range(10))


def _timestamp_ns(secs: str, frac: str | None) -> int:
    if frac is None:
        return int(secs)  # counter clocks: the raw count
    digits = len(frac)
    if digits <= 9:
        return int(secs) * 1_000_000_000 + int(frac) * _POW10[9 - digits]
    return int(secs) * 1_000_000_000 + int(frac[:9])


def _strip_separators(value: str) -> str:
    # "prev_state=R+ ==> next_comm=..." : drop trailing tokens with no letter or digit.
    tokens = value.split()
    while len(tokens) > 1 and not any(c.isalnum() for c in tokens[-1]):
        tokens.pop()
    return " ".join(tokens)


def _continues(chunk: str) -> bool:
    """``x=2"`` after a quoted value: the string held ``" x=2"`` (a value ending in a quote
    that does not start with one)."""
    value = chunk.partition("=")[2]
    return len(value) >= 1 and value[-1] == '"' and value[0] != '"'


def _parse_kv(
    body: str, splitter: Pattern[str], convert: Callable[[str], Converter]
) -> dict[str, FieldValue] | None:
    """``a=1 b="x y" c={1,2}`` → dict, or None when ``body`` is not in that form."""
    if _KEY.match(body) is None:
        return None
    if _SIMPLE_KV.match(body) is not None:
        # Fast path: "k=v k=v" with single-space separators and no spaces inside values.
        return {k: convert(k)(v) for k, v in _KV_PAIR.findall(body)}
    parts = splitter.split(body)
    out: dict[str, FieldValue] = {}
    i, n = 0, len(parts)
    while i < n:
        chunk = parts[i]
        i += 1
        key, _, value = chunk.partition("=")
        if value[:1] == '"':
            # A string holding " k=" was split: glue the pieces back until the closing quote.
            while i + 1 < n and (len(value) < 2 or value[-1] != '"' or _continues(parts[i + 1])):
                value += parts[i] + parts[i + 1]
                i += 2
        elif value[:1] != "{" and (" " in value or "\t" in value):
            value = _strip_separators(value)
        i += 1  # the separator
        out[key] = convert(key)(value.rstrip() if value[:1] != '"' else value)
    return out


def _untyped(_key: str) -> Converter:
    return convert_untyped


def _to_s64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _syscall_enter(args: str) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    if not args.strip():
        return fields
    for part in args.split(", "):
        key, sep, value = part.partition(": ")
        if not sep:
            return {"_text": args}
        value = value.strip()
        try:
            fields[key.strip()] = int(value, 16)
        except ValueError:
            fields[key.strip()] = value
    return fields


class _EventTypes:
    """Compiled per-event field converters and key splitter (built once per event name)."""

    __slots__ = ("splitter", "converters")

    def __init__(self, types: Mapping[str, str] | None) -> None:
        self.converters: dict[str, Converter] = {}
        if types:
            names = sorted(types, key=len, reverse=True)
            alt = "|".join(re.escape(n) for n in names)
            self.splitter: Pattern[str] = re.compile(rf"(\s+)(?=(?:{alt})=)")
            for name, type_name in types.items():
                self.converters[name] = converter_for(type_name)
        else:
            self.splitter = _KV_SPLIT

    def converter(self, key: str) -> Converter:
        return self.converters.get(key, convert_untyped)


class TextParser:
    """Parses trace_pipe text, one line or one read() chunk at a time.

    ``types_by_event`` maps an event name (as printed, without group) to its
    fields' fetcharg types (``{"open_probe": {"path": "string", "flags": "x32"}}``);
    those events' values are converted by type and their fields split only at
    the declared names (so a string holding ``" x="`` stays whole).
    """

    def __init__(self, types_by_event: TypesByEvent | None = None) -> None:
        self._types_by_event: TypesByEvent = types_by_event or {}
        self._compiled: dict[str, _EventTypes] = {}
        self._untyped = _EventTypes(None)
        self._pending = b""
        #: Events the kernel reported lost, per CPU (from ``CPU:N [LOST M EVENTS]``).
        self.lost_events: dict[int, int] = {}

    def _types_for(self, event: str) -> _EventTypes:
        compiled = self._compiled.get(event)
        if compiled is None:
            types = self._types_by_event.get(event)
            compiled = _EventTypes(types) if types else self._untyped
            self._compiled[event] = compiled
        return compiled

    def parse_line(self, line: str) -> ParsedLine | None:
        """One line (without its newline) → event, UnparsedLine, or None for comments/blank lines."""
        m = _LINE.match(line)
        if m is None:
            stripped = line.strip()
            if not stripped or stripped[0] == "#":
                return None
            lost = _LOST.match(stripped)
            if lost is not None:
                lost_cpu, count = int(lost.group(1)), int(lost.group(2))
                self.lost_events[lost_cpu] = self.lost_events.get(lost_cpu, 0) + count
                return UnparsedLine(line, f"lost events: {count} on cpu {lost_cpu}")
            return UnparsedLine(line, "not a trace event line")
        comm, pid, _tgid, cpu, flags, secs, frac, rest = m.groups()
        ts = _timestamp_ns(secs, frac)
        full = _NAME_LOC.match(rest)
        if full is not None:
            name, first, second, body = full.groups()
            return self._event(comm, int(pid), int(cpu), flags, ts, name, first, second, body)
        enter = _SYS_ENTER.match(rest)
        if enter is not None:
            name = "sys_enter_" + enter.group(1)[4:]
            fields: dict[str, FieldValue] = _syscall_enter(enter.group(2))
        else:
            leave = _SYS_EXIT.match(rest)
            if leave is None:
                return UnparsedLine(line, "no event name")
            name = "sys_exit_" + leave.group(1)[4:]
            try:
                fields = {"ret": _to_s64(int(leave.group(2), 16))}
            except ValueError:
                fields = {"ret": leave.group(2)}
        return TraceEvent(
            comm=comm, pid=int(pid), cpu=int(cpu), timestamp_ns=ts, event=name,
            fields=fields, group="syscalls", flags=flags,
        )

    def _event(self, comm: str, pid: int, cpu: int, flags: str | None, ts: int, name: str,
               first: str | None, second: str | None, body: str) -> TraceEvent:
        location: str | None = None
        caller: str | None = None
        probe_ip: int | None = None
        ret_ip: int | None = None
        if first is not None:
            if second is None:
                location = first
            else:
                # Return probes print "(<returned to> <- <probed function>)".
                location, caller = second, first
                if _HEXADDR.match(first):
                    ret_ip = int(first, 16)
            if _HEXADDR.match(location):
                probe_ip = int(location, 16)
        body = body.rstrip("\n")
        fields: dict[str, FieldValue]
        if body:
            compiled = self._types_for(name)
            parsed = _parse_kv(body, compiled.splitter, compiled.converter)
            fields = {"_text": body} if parsed is None else parsed
        else:
            fields = {}
        return TraceEvent(
            comm=comm, pid=pid, cpu=cpu, timestamp_ns=ts, event=name, fields=fields,
            group=None, flags=flags, location=location, caller=caller,
            probe_ip=probe_ip, ret_ip=ret_ip,
        )

    def feed(self, chunk: bytes) -> list[ParsedLine]:
        """Parse every complete line in ``chunk`` (plus what was left from the last call)."""
        data = self._pending + chunk if self._pending else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending = data
            return []
        self._pending = data[cut + 1:]
        out: list[ParsedLine] = []
        parse = self.parse_line
        for raw in data[:cut].decode("utf-8", "replace").split("\n"):
            item = parse(raw)
            if item is not None:
                out.append(item)
        return out

    def flush(self) -> list[ParsedLine]:
        """Parse a final line that had no newline (end of a file)."""
        if not self._pending:
            return []
        raw, self._pending = self._pending, b""
        item = self.parse_line(raw.decode("utf-8", "replace"))
        return [] if item is None else [item]


def parse_line(line: str, types_by_event: TypesByEvent | None = None) -> ParsedLine | None:
    """Parse one trace_pipe line (see :class:`TextParser`); None for comments/blank lines."""
    return TextParser(types_by_event).parse_line(line)


def parse_text(text: str, types_by_event: TypesByEvent | None = None) -> tuple[ParsedLine, ...]:
    """Parse a whole ``trace``/``trace_pipe`` text (header comments skipped)."""
    parser = TextParser(types_by_event)
    out = parser.feed(text.encode("utf-8", "surrogateescape"))
    out.extend(parser.flush())
    return tuple(out)
