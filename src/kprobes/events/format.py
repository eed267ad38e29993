"""Event layouts from tracefs: ``events/<sys>/<event>/format``, ``header_page``, ``header_event``.

A ``format`` file describes one event's binary record in the ring buffer::

    name: sched_switch
    ID: 372
    format:
        field:unsigned short common_type;    offset:0;    size:2;    signed:0;
        ...
        field:char prev_comm[16];    offset:8;    size:16;    signed:0;
        field:__data_loc char[] name;    offset:16;    size:4;    signed:1;

    print fmt: "prev_comm=%s ...", REC->prev_comm, ...

``header_page`` describes the sub-buffer page header (``struct buffer_data_page``)
and ``header_event`` the 32-bit compressed event header (type_len:5,
time_delta:27).  Parsing is pure: text in, frozen dataclasses out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from kprobes.errors import KprobesError

from .._record import dataclass

__all__ = [
    "EventFormatError",
    "FieldFormat",
    "EventFormat",
    "PageHeaderFormat",
    "EventHeaderFormat",
    "parse_event_format",
    "parse_header_page",
    "parse_header_event",
    "DEFAULT_PAGE_HEADER",
]


class EventFormatError(KprobesError):
    """A tracefs ``format``/``header_*`` file that cannot be understood."""


_FIELD_LINE = re.compile(
    r"\s*field:\s*(?P<decl>[^;]*);\s*offset:\s*(?P<offset>\d+);\s*size:\s*(?P<size>\d+);"
    r"(?:\s*signed:\s*(?P<signed>-?\d+);)?"
)
_DECL = re.compile(r"(?P<type>.*?)\s*\b(?P<name>[A-Za-z_]\w*)\s*(?:\[(?P<arr>[^\]]*)\])?\s*\Z")

# Sizes of the scalar C / kernel types that appear in format files.
_TYPE_SIZES: dict[str, int] = {
    "char": 1, "signed char": 1, "unsigned char": 1, "u8": 1, "s8": 1, "__u8": 1, "__s8": 1,
    "bool": 1, "_Bool": 1,
    "short": 2, "unsigned short": 2, "u16": 2, "s16": 2, "__u16": 2, "__s16": 2,
    "int": 4, "unsigned int": 4, "unsigned": 4, "u32": 4, "s32": 4, "__u32": 4, "__s32": 4,
    "pid_t": 4, "gfp_t": 4, "umode_t": 2, "dev_t": 4, "uid_t": 4, "gid_t": 4,
    "long": 8, "unsigned long": 8, "long long": 8, "unsigned long long": 8,
    "u64": 8, "s64": 8, "__u64": 8, "__s64": 8, "size_t": 8, "ssize_t": 8, "loff_t": 8,
}
_CHAR_TYPES = frozenset({"char", "signed char", "unsigned char", "const char"})


@dataclass(frozen=True)
class FieldFormat:
    """One ``field:`` line.

    ``type`` is the declared C type without the name and array suffix
    (``"unsigned short"``, ``"char"``, ``"__data_loc char[]"``, ``"const char *"``).
    ``array_len`` is the element count of a fixed array (``char comm[16]`` → 16,
    probe ``u8 arr[]`` with size 3 → 3), ``None`` for scalars and dynamic
    fields.  ``elem_size`` is the size of one element (the whole size for
    scalars, 4 for ``__data_loc``/``__rel_loc`` words describe elements of
    ``elem_size`` bytes).  ``is_string`` marks char arrays and
    ``__data_loc char[]``/``__rel_loc char[]`` strings.
    """

    name: str
    type: str
    offset: int
    size: int
    signed: bool
    is_data_loc: bool = False
    is_rel_loc: bool = False
    array_len: int | None = None
    is_string: bool = False
    elem_size: int = 0

    @property
    def is_common(self) -> bool:
        """``common_*`` fields belong to ``struct trace_entry`` (type, flags, preempt count, pid)."""
        return self.name.startswith("common_")

    @property
    def is_dynamic(self) -> bool:
        """Stored out of line behind a ``__data_loc``/``__rel_loc`` u32 (offset | length << 16)."""
        return self.is_data_loc or self.is_rel_loc


@dataclass(frozen=True)
class EventFormat:
    """An event's ``format`` file: name, numeric id (``common_type``), fields, print format."""

    name: str
    id: int
    fields: tuple[FieldFormat, ...]
    print_fmt: str = ""
    system: str | None = None

    @property
    def common_fields(self) -> tuple[FieldFormat, ...]:
        return tuple(f for f in self.fields if f.is_common)

    @property
    def own_fields(self) -> tuple[FieldFormat, ...]:
        """The event's fields after the common header, in offset order."""
        return tuple(f for f in self.fields if not f.is_common)

    def field(self, name: str) -> FieldFormat:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def _elem_size(base: str, size: int, count_text: str | None) -> int:
    base = base.replace("const ", "").strip()
    if "*" in base:
        return 8 if size % 8 == 0 else 4
    if base in _TYPE_SIZES:
        return _TYPE_SIZES[base]
    if count_text and count_text.isdigit() and int(count_text) > 0:
        return max(1, size // int(count_text))
    return size


def parse_field_line(line: str) -> FieldFormat | None:
    """Parse one ``field:...;offset:..;size:..;signed:..;`` line; ``None`` if it is not one."""
    m = _FIELD_LINE.match(line)
    if m is None:
        return None
    decl = m.group("decl").strip()
    offset, size = int(m.group("offset")), int(m.group("size"))
    signed = m.group("signed") not in (None, "0")
    d = _DECL.match(decl)
    if d is None:
        raise EventFormatError(f"cannot read field declaration {decl!r}")
    ctype, name, arr = d.group("type").strip(), d.group("name"), d.group("arr")
    is_data_loc = ctype.startswith("__data_loc")
    is_rel_loc = ctype.startswith("__rel_loc")
    if is_data_loc or is_rel_loc:
        # "__data_loc char[] name": the element type sits between the keyword and "[]".
        elem_type = ctype.split(None, 1)[1] if " " in ctype else "char[]"
        elem_type = elem_type.replace("[]", "").strip()
        return FieldFormat(
            name=name,
            type=ctype,
            offset=offset,
            size=size,
            signed=signed,
            is_data_loc=is_data_loc,
            is_rel_loc=is_rel_loc,
            is_string=elem_type.replace("const ", "").strip() in _CHAR_TYPES,
            elem_size=_TYPE_SIZES.get(elem_type.replace("const ", "").strip(), 1),
        )
    if arr is not None:
        elem = _elem_size(ctype, size, arr)
        count = int(arr) if arr.isdigit() else size // max(1, elem)
        return FieldFormat(
            name=name,
            type=ctype,
            offset=offset,
            size=size,
            signed=signed,
            array_len=count,
            is_string=ctype.replace("const ", "").strip() in _CHAR_TYPES,
            elem_size=elem,
        )
    return FieldFormat(name=name, type=ctype, offset=offset, size=size, signed=signed, elem_size=size)


def _iter_fields(text: str) -> Iterator[FieldFormat]:
    for line in text.splitlines():
        f = parse_field_line(line)
        if f is not None:
            yield f


def parse_event_format(text: str, *, system: str | None = None) -> EventFormat:
    """Parse the contents of an ``events/<system>/<event>/format`` file.

    Raises :class:`EventFormatError` when ``name:``/``ID:`` are missing.
    """
    name: str | None = None
    event_id: int | None = None
    print_fmt = ""
    for line in text.splitlines():
        if line.startswith("name:"):
            name = line[5:].strip()
        elif line.startswith("ID:"):
            try:
                event_id = int(line[3:].strip())
            except ValueError:
                raise EventFormatError(f"bad event id line {line!r}") from None
        elif line.startswith("print fmt:"):
            print_fmt = line[len("print fmt:"):].strip()
    if name is None or event_id is None:
        raise EventFormatError(
            "not an event format file (no 'name:' or 'ID:' line)",
            hint="pass the contents of events/<system>/<event>/format",
        )
    fields = tuple(_iter_fields(text))
    if not any(f.name == "common_type" for f in fields):
        raise EventFormatError(f"event format {name!r} has no common_type field")
    return EventFormat(name=name, id=event_id, fields=fields, print_fmt=print_fmt, system=system)


@dataclass(frozen=True)
class PageHeaderFormat:
    """``events/header_page``: layout of ``struct buffer_data_page``.

    The commit word holds the length of the data (low bits) and the
    RB_MISSED_EVENTS (bit 31) / RB_MISSED_STORED (bit 30) flags; when the
    count is stored it sits right after the data, ``commit_size`` bytes long.
    ``page_size`` is ``data_offset + data_size`` (the kernel prints the
    system page size here; a sub-buffer set through buffer_subbuf_size_kb
    can be bigger — decoders use the length of the buffer they are given).
    """

    timestamp_offset: int = 0
    timestamp_size: int = 8
    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16
    data_size: int = 4080

    @property
    def page_size(self) -> int:
        return self.data_offset + self.data_size


#: The x86-64 / arm64 layout with 4 KiB pages.
DEFAULT_PAGE_HEADER = PageHeaderFormat()


def parse_header_page(text: str) -> PageHeaderFormat:
    """Parse ``events/header_page``."""
    found: dict[str, tuple[int, int]] = {}
    for f in _iter_fields(text):
        found.setdefault(f.name, (f.offset, f.size))
    for need in ("timestamp", "commit", "data"):
        if need not in found:
            raise EventFormatError(f"header_page has no {need!r} field")
    return PageHeaderFormat(
        timestamp_offset=found["timestamp"][0],
        timestamp_size=found["timestamp"][1],
        commit_offset=found["commit"][0],
        commit_size=found["commit"][1],
        data_offset=found["data"][0],
        data_size=found["data"][1],
    )


@dataclass(frozen=True)
class EventHeaderFormat:
    """``events/header_event``: the compressed 32-bit event header."""

    type_len_bits: int = 5
    time_delta_bits: int = 27
    array_bits: int = 32
    padding_type: int = 29
    time_extend_type: int = 30
    time_stamp_type: int = 31
    data_max_type_len: int = 28


_BITS = re.compile(r"\s*(\w+)\s*:\s*(\d+)\s*bits")
_TYPE_EQ = re.compile(r"\s*(.+?)\s*:\s*type(?:_len)?\s*==\s*(\d+)")


def parse_header_event(text: str) -> EventHeaderFormat:
    """Parse ``events/header_event``."""
    bits: dict[str, int] = {}
    types: dict[str, int] = {}
    for line in text.splitlines():
        m = _BITS.match(line)
        if m is not None:
            bits[m.group(1)] = int(m.group(2))
            continue
        t = _TYPE_EQ.match(line)
        if t is not None:
            types[t.group(1)] = int(t.group(2))
    if "type_len" not in bits or "time_delta" not in bits:
        raise EventFormatError("header_event has no type_len/time_delta bit widths")
    d = EventHeaderFormat()
    return EventHeaderFormat(
        type_len_bits=bits["type_len"],
        time_delta_bits=bits["time_delta"],
        array_bits=bits.get("array", d.array_bits),
        padding_type=types.get("padding", d.padding_type),
        time_extend_type=types.get("time_extend", d.time_extend_type),
        time_stamp_type=types.get("time_stamp", d.time_stamp_type),
        data_max_type_len=types.get("data max", d.data_max_type_len),
    )
