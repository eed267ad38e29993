"""Builds ring-buffer sub-buffer pages (trace_pipe_raw images) for decoder tests.

Written from the layout in kernel/trace/ring_buffer.c, independently of the
decoder: a page is ``u64 time_stamp, u64 commit, data[]``; every event starts
with a u32 ``type_len:5 | time_delta:27`` header.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Union

from kprobes.events.format import EventFormat

PADDING, TIME_EXTEND, TIME_STAMP = 29, 30, 31
MISSED_EVENTS, MISSED_STORED = 1 << 31, 1 << 30
DELTA_MASK = (1 << 27) - 1


def header_word(type_len: int, delta: int) -> bytes:
    assert 0 <= type_len < 32 and 0 <= delta <= DELTA_MASK
    return struct.pack("<I", type_len | (delta << 5))


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


class PageBuilder:
    """Append events, then :meth:`build` one page."""

    def __init__(self, timestamp: int = 0, page_size: int = 4096, data_offset: int = 16) -> None:
        self.timestamp = timestamp
        self.page_size = page_size
        self.data_offset = data_offset
        self.chunks: list[bytes] = []

    def data(self, payload: bytes, delta: int = 0, *, long_form: bool = False) -> PageBuilder:
        """A data event; payloads over 112 bytes (or ``long_form``) use type_len 0 + length word."""
        body = _pad4(payload) if payload else b"\0\0\0\0"
        if len(body) > 112 or long_form:
            self.chunks.append(header_word(0, delta) + struct.pack("<I", len(body) + 4) + body)
        else:
            self.chunks.append(header_word(len(body) // 4, delta) + body)
        return self

    def time_extend(self, delta: int) -> PageBuilder:
        self.chunks.append(header_word(TIME_EXTEND, delta & DELTA_MASK) + struct.pack("<I", delta >> 27))
        return self

    def time_stamp(self, absolute: int) -> PageBuilder:
        """An absolute stamp: only the low 59 bits are stored (as the kernel does)."""
        absolute &= (1 << 59) - 1
        self.chunks.append(header_word(TIME_STAMP, absolute & DELTA_MASK) + struct.pack("<I", absolute >> 27))
        return self

    def discarded(self, payload_len: int, delta: int = 1) -> PageBuilder:
        """A discarded event (PADDING with non-zero delta, ``array[0]`` = length after the header)."""
        body = b"\xee" * (payload_len + (-payload_len % 4))
        self.chunks.append(header_word(PADDING, delta) + struct.pack("<I", len(body) + 4) + body)
        return self

    def end(self) -> PageBuilder:
        """PADDING with delta 0: the rest of the page is empty."""
        self.chunks.append(header_word(PADDING, 0) + b"\0\0\0\0")
        return self

    def build(self, *, missed: int | None = None, missed_stored: bool = True,
              commit_extra: int = 0) -> bytes:
        data = b"".join(self.chunks)
        commit = len(data) + commit_extra
        tail = b""
        if missed is not None:
            commit |= MISSED_EVENTS
            if missed_stored:
                commit |= MISSED_STORED
                tail = struct.pack("<Q", missed)
        page = struct.pack("<QQ", self.timestamp, commit) + data + tail
        assert len(page) <= self.page_size, "page overflow"
        return page + b"\0" * (self.page_size - len(page))


Value = Union[int, str, bytes, "tuple[int, ...]"]


def encode_event(fmt: EventFormat, pid: int, values: Mapping[str, Value], *,
                 flags: int = 0, preempt: int = 0) -> bytes:
    """The payload of one record of ``fmt`` (trace_entry + fields; dynamic data appended)."""
    fixed_end = max(f.offset + f.size for f in fmt.fields)
    buf = bytearray(fixed_end)
    dynamic = bytearray()
    common = {"common_type": fmt.id, "common_flags": flags, "common_preempt_count": preempt, "common_pid": pid}
    for f in fmt.fields:
        value = common[f.name] if f.is_common else values.get(f.name, 0)
        if f.is_data_loc or f.is_rel_loc:
            if isinstance(value, str):
                raw = value.encode() + b"\0"
            elif isinstance(value, tuple):
                raw = b"".join(int(v).to_bytes(f.elem_size, "little", signed=f.signed) for v in value)
            else:
                raw = bytes(value)
            where = fixed_end + len(dynamic)
            if f.is_rel_loc:
                where -= f.offset + 4
            loc = where | (len(raw) << 16) if raw else where
            struct.pack_into("<I", buf, f.offset, loc)
            dynamic += raw
        elif f.array_len is not None:
            if isinstance(value, str):
                raw = value.encode()[: f.size].ljust(f.size, b"\0")
            elif value == 0:
                raw = bytes(f.size)
            else:
                assert isinstance(value, tuple)
                raw = b"".join(int(v).to_bytes(f.elem_size, "little", signed=f.signed) for v in value)
            buf[f.offset:f.offset + f.size] = raw
        else:
            assert isinstance(value, int)
            buf[f.offset:f.offset + f.size] = value.to_bytes(f.size, "little", signed=f.signed)
    return bytes(buf + dynamic)


def fault_loc(fmt: EventFormat, name: str, payload: bytes) -> bytes:
    """``payload`` with the data_loc of ``name`` set to length 0 (how probes record a fault)."""
    f = fmt.field(name)
    out = bytearray(payload)
    (loc,) = struct.unpack_from("<I", out, f.offset)
    struct.pack_into("<I", out, f.offset, loc & 0xFFFF)
    return bytes(out)
