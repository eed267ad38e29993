"""The one kallsyms symbolizer: kernel address -> symbol, for ``%pS`` fields, ``ksym()``
and kernel stacks (re-exported by :mod:`.kallsyms`; kept apart from the symbol-list
parsers so that symbolizing costs no import of them).
"""

from __future__ import annotations

import bisect
from typing import Dict, List, Optional, Tuple

__all__ = ["KernelSymbolizer", "shared_symbolizer"]


class KernelSymbolizer:
    """Kernel address → ``sym+0xoff/0xsize [module]`` as ``%pS`` prints it.

    Reads ``/proc/kallsyms`` once, on the first lookup, and does not parse it
    all: the vmlinux part is sorted by address (scripts/kallsyms sorts the
    table; /proc/kallsyms walks it in order), so a lookup is a binary search
    over its lines; module symbols (after vmlinux, ``\\t[mod]``) are parsed on
    the first module address.  Like the kernel, the name is the first of the
    symbols at the same address and the size runs to the next higher address.
    Results are cached per address.  ``text`` replaces the file (tests).
    """

    def __init__(self, path: str = "/proc/kallsyms", *, text: Optional[bytes] = None) -> None:
        self.path = path
        self._text = text
        self._lines: Optional[List[bytes]] = None
        self._nvm = 0
        self._modules: Optional[Tuple[List[int], List[Tuple[int, str, str]]]] = None
        self._cache: Dict[Tuple[int, bool], str] = {}
        self.available = True

    def _load(self) -> List[bytes]:
        if self._lines is None:
            data = self._text
            if data is None:
                try:
                    with open(self.path, "rb") as f:
                        data = f.read()
                except OSError:
                    data = b""
            lines = [ln for ln in data.split(b"\n") if ln]
            cut = data.find(b"\t[")
            self._nvm = len(lines) if cut < 0 else data.count(b"\n", 0, cut)
            self.available = any(ln[:16].strip(b"0") for ln in lines[:64])
            self._lines = lines
        return self._lines

    def _vmlinux(self, addr: int) -> Optional[Tuple[str, int, int, Optional[str]]]:
        lines = self._lines or []
        lo, hi = 0, self._nvm
        while lo < hi:  # last line with address <= addr
            mid = (lo + hi) // 2
            if int(lines[mid].split(b" ", 1)[0], 16) <= addr:
                lo = mid + 1
            else:
                hi = mid
        i = lo - 1
        if i < 0:
            return None
        start = int(lines[i].split(b" ", 1)[0], 16)
        if start == 0:
            return None
        while i > 0 and int(lines[i - 1].split(b" ", 1)[0], 16) == start:
            i -= 1
        name = lines[i].split()[2].decode("utf-8", "replace")
        j = lo
        while j < self._nvm and int(lines[j].split(b" ", 1)[0], 16) == start:
            j += 1
        if j >= self._nvm:
            return None  # past the last symbol: the kernel would not name it either
        end = int(lines[j].split(b" ", 1)[0], 16)
        return name, addr - start, end - start, None

    def _module(self, addr: int) -> Optional[Tuple[str, int, int, Optional[str]]]:
        if self._modules is None:
            syms: List[Tuple[int, str, str]] = []
            for ln in (self._lines or [])[self._nvm:]:
                parts = ln.split()
                if len(parts) >= 4:
                    try:
                        a = int(parts[0], 16)
                    except ValueError:
                        continue
                    syms.append((a, parts[2].decode("utf-8", "replace"), parts[3].decode().strip("[]")))
            syms.sort()
            self._modules = ([s[0] for s in syms], syms)
        keys, syms = self._modules
        i = bisect.bisect_right(keys, addr) - 1
        if i < 0:
            return None
        start, name, mod = syms[i]
        while i > 0 and keys[i - 1] == start:
            i -= 1
            name, mod = syms[i][1], syms[i][2]
        j = bisect.bisect_right(keys, start)
        if j >= len(keys) or syms[j][2] != mod:
            return None
        return name, addr - start, keys[j] - start, mod

    def lookup(self, addr: int) -> Optional[Tuple[str, int, int, Optional[str]]]:
        """(name, offset, size, module or None) of the symbol holding ``addr``."""
        lines = self._load()
        if not self.available or not lines or addr == 0:
            return None
        if self._nvm and addr >= int(lines[0].split(b" ", 1)[0], 16):
            found = self._vmlinux(addr)
            if found is not None and found[1] < found[2]:
                return found
        if self._nvm < len(lines):
            return self._module(addr)
        return None

    def __call__(self, addr: int) -> str:
        """bpftrace's ``ksym(addr)``: the symbol's name, or ``0x...`` when unknown."""
        found = self.lookup(addr)
        return found[0] if found is not None else f"0x{addr:x}"

    def render(self, addr: int, offset: bool = True) -> str:
        """``%pS`` (``offset``) or ``%ps`` text of ``addr``; ``0x...`` when unknown."""
        key = (addr, offset)
        hit = self._cache.get(key)
        if hit is None:
            found = self.lookup(addr)
            if found is None:
                hit = f"0x{addr:x}" if addr else "0"
            else:
                name, off, size, mod = found
                hit = f"{name}+0x{off:x}/0x{size:x}" if offset else name
                if mod:
                    hit += f" [{mod}]"
            self._cache[key] = hit
        return hit


_SHARED: List[KernelSymbolizer] = []


def shared_symbolizer() -> KernelSymbolizer:
    """One process-wide :class:`KernelSymbolizer` (kallsyms is read once, not per session).

    Module symbols can come and go; a session that needs them exact passes its own.
    """
    if not _SHARED:
        _SHARED.append(KernelSymbolizer())
    return _SHARED[0]
