"""Number and name parsing exactly as the kernel's helpers do it.

kstrtoull()/kstrtol() (lib/kstrtox.c: base 0 detects ``0x`` and octal ``0``,
a leading ``+`` is accepted, nothing may follow), simple_strtoul()
(lib/vsprintf.c: stops at the first non-digit) and is_good_name()
(kernel/trace/trace.h).  Values are limited to 64-bit unsigned long.
"""

from __future__ import annotations

__all__ = ["is_good_name", "isalpha", "isdigit", "kstrtol", "kstrtoull", "simple_strtoul"]

_ULONG_MAX = (1 << 64) - 1
_LONG_MAX = (1 << 63) - 1


def fixup_radix(s: str, base: int) -> tuple[str, int]:
    if base == 0:
        if s[:1] == "0":
            base = 16 if s[1:2].lower() == "x" and isxdigit(s[2:3]) else 8
        else:
            base = 10
    if base == 16 and s[:1] == "0" and s[1:2].lower() == "x":
        s = s[2:]
    return s, base


def isxdigit(c: str) -> bool:
    return len(c) == 1 and c in "0123456789abcdefABCDEF"


def digit(c: str, base: int) -> int | None:
    if "0" <= c <= "9":
        v = ord(c) - 48
    elif "a" <= c.lower() <= "f":
        v = ord(c.lower()) - 87
    else:
        return None
    return v if v < base else None


def kstrtoull(s: str, base: int) -> int | None:
    if s[:1] == "+":
        s = s[1:]
    return kstrtoull_raw(s, base)


def kstrtoull_raw(s: str, base: int) -> int | None:
    s, base = fixup_radix(s, base)
    value, n = 0, 0
    for c in s:
        d = digit(c, base)
        if d is None:
            break
        value = value * base + d
        n += 1
    if n == 0 or n != len(s) or value > _ULONG_MAX:
        return None
    return value


def kstrtol(s: str, base: int) -> int | None:
    if s[:1] == "-":
        v = kstrtoull_raw(s[1:], base)
        return None if v is None or v > _LONG_MAX + 1 else -v
    v = kstrtoull(s, base)
    return None if v is None or v > _LONG_MAX else v


def simple_strtoul(s: str) -> tuple[int, int]:
    """Value and number of characters used (base 0, stops at the first non-digit)."""
    t, base = fixup_radix(s, 0)
    skipped = len(s) - len(t)
    value, n = 0, 0
    for c in t:
        d = digit(c, base)
        if d is None:
            break
        value = value * base + d
        n += 1
    return value & _ULONG_MAX, skipped + n


def isdigit(c: str) -> bool:
    return len(c) == 1 and "0" <= c <= "9"


def isalpha(c: str) -> bool:
    return len(c) == 1 and ("a" <= c <= "z" or "A" <= c <= "Z")


def is_good_name(name: str, hyphen: bool = False) -> bool:
    """The kernel's is_good_name() (and is_good_system_name() with ``hyphen``)."""
    if not name:
        return False
    first = name[0]
    if not (isalpha(first) or first == "_" or (hyphen and first == "-")):
        return False
    return all(isalpha(c) or isdigit(c) or c == "_" or (hyphen and c == "-") for c in name[1:])
