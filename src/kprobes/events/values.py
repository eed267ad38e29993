"""Field values as trace_pipe prints them, turned into Python values.

Shared by the text parser and the raw page decoder so that both produce the
same value for the same field:

* numbers are ``int`` (``u*``/``s*`` print in decimal, ``x*`` in ``0x`` hex);
* strings (``string``, ``ustring``, ``symstr``, ``%pd``/``%pD``, char arrays,
  ``__data_loc char[]``) are ``str`` without the quotes.  The kernel prints
  string bytes as they are (no escaping), so nothing is unescaped;
* arrays (``u8[3]`` printed ``{1,2,3}``) are tuples;
* a fetch that faulted is the string :data:`FAULT` (``"(fault)"``), exactly as
  the kernel prints it.
"""

from __future__ import annotations

import re
from typing import Callable

from kprobes.events.model import FieldValue

__all__ = ["FAULT", "convert_untyped", "converter_for", "decode_c_string"]

#: What a probe prints for a fetch that faulted (and the decoder's value for it).
FAULT = "(fault)"

_DEC = re.compile(r"-?\d+\Z")
_HEX = re.compile(r"-?0[xX][0-9a-fA-F]+\Z")
_NUMBER_START = frozenset("0123456789-")
_ARRAY_TYPE = re.compile(r"(?P<elem>.+?)\[(?P<n>\d*)\]\Z")


def decode_c_string(raw: bytes) -> str:
    """Bytes of a C string buffer up to the first NUL, decoded as trace_pipe would show them."""
    end = raw.find(b"\0")
    if end >= 0:
        raw = raw[:end]
    return raw.decode("utf-8", "replace")


def _to_int(text: str) -> int | None:
    if _DEC.match(text):
        return int(text)
    if _HEX.match(text):
        return int(text, 16)
    return None


def convert_untyped(text: str) -> FieldValue:
    """Best guess for a value printed as ``text`` when the field's type is unknown.

    ``"..."`` → str (quotes removed), ``'c'`` → str, ``{a,b}`` → tuple,
    decimal / ``0x`` hex → int, anything else (symbols, flags) → the text itself.
    """
    if not text:
        return text
    first = text[0]
    if first in _NUMBER_START:
        if text.isdigit() and text.isascii():
            return int(text)
        value = _to_int(text)
        return text if value is None else value
    if first == '"' and len(text) >= 2 and text[-1] == '"':
        return text[1:-1]
    if first == "{" and text[-1] == "}":
        inner = text[1:-1]
        if not inner:
            return ()
        return tuple(convert_untyped(part.strip()) for part in inner.split(","))
    if first == "'" and len(text) == 3 and text[-1] == "'":
        return text[1]
    return text


def _convert_int(text: str) -> FieldValue:
    if text.isdigit() and text.isascii():
        return int(text)
    value = _to_int(text)
    return text if value is None else value


def _convert_string(text: str) -> FieldValue:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def _convert_char(text: str) -> FieldValue:
    if len(text) == 3 and text[0] == "'" and text[2] == "'":
        return ord(text[1])
    return _convert_int(text)


def _convert_text(text: str) -> FieldValue:
    return text


Converter = Callable[[str], FieldValue]

_SCALAR: dict[str, Converter] = {
    "string": _convert_string,
    "ustring": _convert_string,
    "symstr": _convert_string,
    "%pd": _convert_string,
    "%pD": _convert_string,
    "symbol": _convert_text,
    "char": _convert_char,
}


def _array_converter(elem: Converter) -> Converter:
    def convert(text: str) -> FieldValue:
        if len(text) >= 2 and text[0] == "{" and text[-1] == "}":
            inner = text[1:-1]
            if not inner:
                return ()
            return tuple(elem(part.strip()) for part in inner.split(","))
        return text

    return convert


def converter_for(type_name: str | None) -> Converter:
    """The function turning a printed value of fetcharg type ``type_name`` into a value.

    ``type_name`` is a tracefs fetcharg type (``u32``, ``s64``, ``x16``,
    ``string``, ``symbol``, ``char``, ``b4@2/32``, ``u8[4]``...).  ``None`` or an
    unknown type gives :func:`convert_untyped`.  ``(fault)`` always converts to
    :data:`FAULT`.
    """
    if type_name is None:
        return convert_untyped
    base: Converter
    arr = _ARRAY_TYPE.match(type_name)
    if arr is not None:
        return _array_converter(converter_for(arr.group("elem")))
    if type_name in _SCALAR:
        base = _SCALAR[type_name]
    elif type_name[:1] in ("u", "s", "x", "b") and type_name[1:2].isdigit():
        base = _convert_int
    else:
        base = convert_untyped
    return base
