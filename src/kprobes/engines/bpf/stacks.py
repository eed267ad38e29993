"""Stacks and user symbols of the BPF engine, printed as bpftrace 0.17 prints them.

A ``kstack``/``ustack`` value is a stack id in a STACK_TRACE map (user stacks
carry the process id too, see :mod:`.layout`); :class:`Symbolizer` reads the
instruction pointers back and names them:

* kernel addresses through the process-wide kallsyms symbolizer
  (``name+offset``, offset in decimal);
* user addresses through the process' mappings (``/proc/PID/maps``) and the
  ELF symbols of the mapped file (``.symtab``, else ``.dynsym``, else its
  separate debug file); an address nothing names prints as ``0x...``, as
  bpftrace prints it when the process is gone.

Text of one stack (``indent``: 4 spaces as a map key, 8 in printf/print)::

    bpftrace mode   "\\n" + for each frame: indent + "func+off" + "\\n"
    perf mode       "\\n" + for each frame: "\\t" + hex address + " " + "func+off" + "\\n"
                    (user frames: "func+off (/path/of/object)" or "0x... ([unknown])")
    raw mode        "\\n" + for each frame: hex address + "\\n"

A stack id that cannot be read back (no stack: ``kstack`` of a uprobe, a full
map) prints as the empty string, as bpftrace prints it.
"""

from __future__ import annotations

import bisect
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .layout import KeyPart

__all__ = ["Symbolizer", "UserSymbols", "parse_proc_maps", "format_stack"]

_ORDER = sys.byteorder
_NOT_FOUND = ("", 0)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def parse_proc_maps(text: str) -> List[Tuple[int, int, int, str]]:
    """``(start, end, file offset, path)`` of every file-backed executable mapping."""
    out: List[Tuple[int, int, int, str]] = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
            continue
        lo, _, hi = parts[0].partition("-")
        try:
            out.append((int(lo, 16), int(hi, 16), int(parts[2], 16), parts[5].strip()))
        except ValueError:
            continue
    out.sort()
    return out


class _ObjectSymbols:
    """Function symbols of one ELF file, sorted by address, and its PT_LOAD segments."""

    def __init__(self, path: str, open_path: str) -> None:
        self.path = path
        self.starts: List[int] = []
        self.syms: List[Tuple[int, int, str]] = []
        self.segments: List[Tuple[int, int, int]] = []  # (file offset, filesz, vaddr)
        try:
            self._read(open_path)
        except Exception:  # noqa: BLE001 - an unreadable object only loses its names
            self.starts, self.syms = [], []

    def _read(self, open_path: str) -> None:
        from ...backends.symbols.elf import ELFFile

        with ELFFile(open_path) as elf:
            self.segments = [(s.offset, s.filesz, s.vaddr) for s in elf.segments() if s.type == 1]
            found: Dict[int, Tuple[Tuple[int, int, int], Tuple[int, int, str]]] = {}
            sources = [elf]
            if not elf.symbols(".symtab"):
                dbg = elf.debug_file()
                if dbg is not None:
                    sources.insert(0, dbg)
            for src in sources:
                for table in (".symtab", ".dynsym"):
                    for s in src.symbols(table):
                        if s.is_function and s.is_defined and s.value and s.name:
                            # several names for one address (getppid, __getppid,
                            # __GI_getppid): the exported one with the fewest leading
                            # underscores, as bpftrace shows it
                            rank = (s.bind == 0, len(s.name) - len(s.name.lstrip("_")), len(s.name))
                            old = found.get(s.value)
                            if old is None or rank < old[0]:
                                found[s.value] = (rank, (s.value, s.size, s.name))
        self.syms = sorted(v for _, v in found.values())
        self.starts = [s[0] for s in self.syms]

    def vaddr(self, offset: int) -> Optional[int]:
        """The link-time address of file ``offset`` (None: not in a loaded segment)."""
        for off, size, va in self.segments:
            if off <= offset < off + max(size, 1):
                return offset - off + va
        return None

    def lookup(self, vaddr: int) -> Tuple[str, int]:
        """(function, offset) holding ``vaddr``, or ("", 0)."""
        i = bisect.bisect_right(self.starts, vaddr) - 1
        while i >= 0:
            start, size, name = self.syms[i]
            if vaddr < start + size or (size == 0 and i == len(self.syms) - 1):
                return name, vaddr - start
            if size == 0 and i + 1 < len(self.syms) and vaddr < self.syms[i + 1][0]:
                return name, vaddr - start
            # nested or zero-sized symbols: the previous one may still cover it
            if i > 0 and self.syms[i - 1][0] + self.syms[i - 1][1] > vaddr:
                i -= 1
                continue
            break
        return _NOT_FOUND


class UserSymbols:
    """User addresses -> ``(function, offset, object path)`` per process (cached).

    ``maps_reader(pid)`` returns the text of ``/proc/PID/maps`` (None: gone).
    """

    def __init__(self, maps_reader: Optional[Callable[[int], Optional[str]]] = None,
                 proc: str = "/proc") -> None:
        self.proc = proc
        self._read_maps = maps_reader or self._proc_maps
        self._maps: Dict[int, List[Tuple[int, int, int, str]]] = {}
        self._objects: Dict[Tuple[str, int, int], _ObjectSymbols] = {}

    def _proc_maps(self, pid: int) -> Optional[str]:
        try:
            with open(f"{self.proc}/{pid}/maps", encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return None

    def mappings(self, pid: int) -> List[Tuple[int, int, int, str]]:
        maps = self._maps.get(pid)
        if maps is None:
            text = self._read_maps(pid)
            maps = parse_proc_maps(text) if text else []
            if text:
                self._maps[pid] = maps
        return maps

    def _object(self, pid: int, start: int, end: int, path: str) -> _ObjectSymbols:
        import os

        try:
            st = os.stat(path)
            key = (path, st.st_ino, st.st_dev)
        except OSError:
            key = (path, pid, start)
        obj = self._objects.get(key)
        if obj is None:
            # the mapped file itself (even if deleted or in another mount namespace)
            mf = f"{self.proc}/{pid}/map_files/{start:x}-{end:x}"
            obj = _ObjectSymbols(path, mf if os.path.exists(mf) else path)
            self._objects[key] = obj
        return obj

    def _mapping(self, addr: int, pid: int) -> Optional[Tuple[int, int, int, str]]:
        maps = self.mappings(pid)
        i = bisect.bisect_right(maps, (addr, 1 << 64)) - 1
        if i < 0 or addr >= maps[i][1]:
            return None
        return maps[i]

    def lookup(self, addr: int, pid: int) -> Tuple[str, int, str]:
        """(function or "", offset, object path or "") of ``addr`` in process ``pid``."""
        found = self._mapping(addr, pid)
        if found is None and pid in self._maps:  # mapped since we looked (dlopen, exec)
            del self._maps[pid]
            found = self._mapping(addr, pid)
        if found is None:
            return "", 0, ""
        start, end, pgoff, path = found
        obj = self._object(pid, start, end, path)
        va = obj.vaddr(addr - start + pgoff)
        if va is None:
            return "", 0, path
        name, off = obj.lookup(va)
        return name, off, path


def format_stack(frames: List[str], addrs: List[int], mode: str, indent: int) -> str:
    """A stack's text (see the module docstring); ``frames`` are the symbol texts."""
    out = ["\n"]
    pad = " " * indent
    for sym, addr in zip(frames, addrs):
        if mode == "perf":
            out.append(f"\t{addr:x} {sym}\n")
        elif mode == "raw":
            out.append(f"{addr:x}\n")
        else:
            out.append(f"{pad}{sym}\n")
    return "".join(out)


class Symbolizer:
    """Names ``stack`` and ``usym`` key parts (the ``sym`` argument of
    :meth:`.layout.KeyPart.decode`); ``indent`` is the stack frames' indentation.

    ``stack_maps`` maps a depth to the kernel STACK_TRACE map (``lookup(key)``);
    ``kernel`` is a kallsyms symbolizer with ``lookup(addr) -> (name, off, size, mod)``.
    """

    def __init__(self, stack_maps: Mapping[int, Any], kernel: Any = None,
                 user: Optional[UserSymbols] = None, indent: int = 4) -> None:
        self.stack_maps = stack_maps
        self._kernel = kernel
        self.user = user if user is not None else UserSymbols()
        self.indent = indent
        self._frames: Dict[Tuple[int, int], Tuple[int, ...]] = {}

    def with_indent(self, indent: int) -> "Symbolizer":
        other = Symbolizer(self.stack_maps, self._kernel, self.user, indent)
        other._frames = self._frames
        return other

    @property
    def kernel(self) -> Any:
        if self._kernel is None:
            self._kernel = kernel_symbolizer()
        return self._kernel

    def ksym(self, addr: int, offset: bool = True) -> str:
        found = self.kernel.lookup(addr)
        if not found:
            return f"0x{addr:x}"
        name, off = found[0], found[1]
        return f"{name}+{off}" if offset else name

    def usym(self, addr: int, pid: int, offset: bool = True, perf: bool = False) -> str:
        name, off, path = self.user.lookup(addr, pid)
        if not name:
            return f"0x{addr:x} ([unknown])" if perf else f"0x{addr:x}"
        text = f"{name}+{off}" if offset else name
        return f"{text} ({path})" if perf else text

    def frames(self, depth: int, stack_id: int) -> Tuple[int, ...]:
        """The instruction pointers of one stack (empty when it cannot be read)."""
        key = (depth, stack_id)
        hit = self._frames.get(key)
        if hit is None:
            kmap = self.stack_maps.get(depth)
            raw = None
            if kmap is not None and stack_id >= 0:
                try:
                    raw = kmap.lookup(stack_id.to_bytes(4, _ORDER))
                except Exception:  # noqa: BLE001 - a stack that cannot be read prints empty
                    raw = None
            ips: List[int] = []
            if raw:
                for i in range(0, len(raw) - 7, 8):
                    ip = int.from_bytes(raw[i:i + 8], _ORDER)
                    if ip == 0:
                        break
                    ips.append(ip)
            hit = tuple(ips)
            self._frames[key] = hit
        return hit

    def stack_text(self, field: str, value: int) -> str:
        from .unit import stack_depth

        kind, mode, limit_text = (field.split(":") + ["", "", "127"])[:3]
        limit = int(limit_text or 127)
        user = kind == "u"
        stack_id = _s32(value)
        frames = self.frames(stack_depth(limit), stack_id)[:limit]
        if not frames:
            return ""
        pid = value >> 32
        if user:
            syms = [self.usym(a, pid, perf=mode == "perf") for a in frames]
        else:
            syms = [self.ksym(a) for a in frames]
        return format_stack(syms, list(frames), mode, self.indent)

    def __call__(self, part: KeyPart, raw: bytes) -> str:
        if part.kind == "usym":
            addr = int.from_bytes(raw[:8], _ORDER)
            pid = int.from_bytes(raw[8:16], _ORDER)
            return self.usym(addr, pid, offset=False)
        value = int.from_bytes(raw[:8], _ORDER)
        return self.stack_text(part.field, value)

    def clear(self) -> None:
        """Forget stacks read so far (after ``clear()`` of maps the ids are reused)."""
        self._frames.clear()


def kernel_symbolizer() -> Any:
    """The process-wide kallsyms symbolizer (``lookup(addr)``)."""
    from ...backends.symbols.ksym import shared_symbolizer

    return shared_symbolizer()
