"""The BTF header and the one fast pass over the type section.

Layout (include/uapi/linux/btf.h, Documentation/bpf/btf.rst)::

    struct btf_header {
        __u16 magic;      /* 0xeB9F, byte order tells the file's endianness */
        __u8  version;    /* 1 */
        __u8  flags;
        __u32 hdr_len;    /* newer kernels may append fields: honour it */
        __u32 type_off;   /* offsets are relative to the end of the header */
        __u32 type_len;
        __u32 str_off;
        __u32 str_len;
    };

Every type record is ``struct btf_type`` (three u32: name_off, info, size/type)
followed by kind-specific data whose length depends only on the kind and on
``vlen`` (info bits 0-15).  :func:`scan_offsets` walks the records once and
returns where each one starts, without decoding anything.
"""

from __future__ import annotations

import mmap
import struct
import sys
from array import array
from collections.abc import Sequence
from typing import Union

from .._record import dataclass
from ..errors import BTFError
from .types import Record

__all__ = [
    "Blob",
    "Buffer",
    "BTFHeader",
    "parse_header",
    "scan_offsets",
    "record_words",
    "BTF_MAGIC",
]

BTF_MAGIC = 0xEB9F
HEADER_SIZE = 24  # the fields this module knows about

Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]
Blob = Union[bytes, bytearray, mmap.mmap]  # a Buffer that has .find()

# (fixed words incl. the 3-word btf_type, words per vlen item) per kind number.
_LAYOUT = {
    1: (4, 0),  # INT: u32 encoding
    2: (3, 0),  # PTR
    3: (6, 0),  # ARRAY: struct btf_array
    4: (3, 3),  # STRUCT: struct btf_member[vlen]
    5: (3, 3),  # UNION
    6: (3, 2),  # ENUM: struct btf_enum[vlen]
    7: (3, 0),  # FWD
    8: (3, 0),  # TYPEDEF
    9: (3, 0),  # VOLATILE
    10: (3, 0),  # CONST
    11: (3, 0),  # RESTRICT
    12: (3, 0),  # FUNC (vlen is the linkage)
    13: (3, 2),  # FUNC_PROTO: struct btf_param[vlen]
    14: (4, 0),  # VAR: struct btf_var
    15: (3, 3),  # DATASEC: struct btf_var_secinfo[vlen]
    16: (3, 0),  # FLOAT
    17: (4, 0),  # DECL_TAG: struct btf_decl_tag
    18: (3, 0),  # TYPE_TAG
    19: (3, 3),  # ENUM64: struct btf_enum64[vlen]
}

# Indexed by the top byte of ``info`` (kind | kind_flag << 7).  Unknown kinds get
# a size so large that the scan runs off the end, where it is diagnosed.
_HUGE = 1 << 40
_FIXED = [_HUGE] * 256
_PER = [0] * 256
for _k, (_f, _p) in _LAYOUT.items():
    for _b in (_k, _k | 0x80):
        _FIXED[_b] = _f
        _PER[_b] = _p


@dataclass(frozen=True, eq=False, repr=False)
class BTFHeader(Record):
    """The decoded ``struct btf_header``; ``byteorder`` is ``"<"`` or ``">"``."""

    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int
    byteorder: str

    @property
    def type_start(self) -> int:
        """Absolute file offset of the type section."""
        return self.hdr_len + self.type_off

    @property
    def str_start(self) -> int:
        """Absolute file offset of the string section."""
        return self.hdr_len + self.str_off

    @property
    def native(self) -> bool:
        """True when the file's byte order is this machine's."""
        return (self.byteorder == "<") == (sys.byteorder == "little")


def parse_header(data: Buffer, what: str = "BTF") -> BTFHeader:
    """Decode and check the header; raise :class:`BTFError` when malformed."""
    if len(data) < HEADER_SIZE:
        raise BTFError(f"{what}: {len(data)} bytes is too short for a BTF header")
    magic = bytes(data[0:2])
    if magic == b"\x9f\xeb":
        order = "<"
    elif magic == b"\xeb\x9f":
        order = ">"
    else:
        raise BTFError(f"{what}: bad BTF magic {magic.hex()} (expected 0xeb9f)")
    _, version, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        order + "HBBIIIII", data, 0
    )
    hdr = BTFHeader(version, flags, hdr_len, type_off, type_len, str_off, str_len, order)
    if version != 1:
        raise BTFError(f"{what}: unsupported BTF version {version}")
    if hdr_len < HEADER_SIZE or hdr_len > len(data):
        raise BTFError(f"{what}: bad BTF header length {hdr_len}")
    if hdr.type_start + type_len > len(data) or hdr.str_start + str_len > len(data):
        raise BTFError(f"{what}: BTF sections run past the end of the data ({len(data)} bytes)")
    if type_off % 4 or type_len % 4:
        raise BTFError(f"{what}: BTF type section is not 4-byte aligned")
    return hdr


def record_words(kind_byte: int, vlen: int) -> int:
    """Length in u32 words of a record whose info top byte is ``kind_byte``."""
    return _FIXED[kind_byte] + _PER[kind_byte] * vlen


def scan_offsets(words: Sequence[int], what: str = "BTF") -> array[int]:
    """Word index of every type record in ``words`` (the type section as u32s).

    This is the only full pass over the file: a tight loop that reads one word
    per record.  Unknown kinds and truncated records raise :class:`BTFError`.
    """
    offs: array[int] = array("I")
    app = offs.append
    fixed = _FIXED
    per = _PER
    w = words
    pos = 0
    try:
        while True:
            app(pos)
            info = w[pos + 1]
            pos += fixed[info >> 24] + per[info >> 24] * (info & 0xFFFF)
    except IndexError:  # read past the end: the last offset appended is not a record
        offs.pop()
    except OverflowError:  # an unknown kind made ``pos`` huge; it was never appended
        pass
    n = len(w)
    if pos == n:
        return offs
    if not offs:
        raise BTFError(f"{what}: truncated BTF type section")
    last = offs[-1]
    kind = (w[last + 1] >> 24) & 0x1F
    tid = len(offs)  # 1-based id of the culprit relative to this section
    if kind not in _LAYOUT:
        raise BTFError(
            f"{what}: unknown BTF kind {kind} in type #{tid} (byte {last * 4} of the type section)",
            hint="this BTF is newer than kprobes understands; please report it",
        )
    raise BTFError(f"{what}: type #{tid} runs past the end of the BTF type section")
