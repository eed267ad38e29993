"""USDT probes of an ELF file: where to put the uprobe, its semaphore, its arguments.

:func:`usdt_probes` reads ``.note.stapsdt`` through :class:`~.elf.ELFFile`,
decodes the notes and argument specs (:mod:`kprobes.probes.usdt`) and turns
link-time addresses into what the kernel wants:

* ``offset``: the file offset of the probe's ``nop`` (a uprobe place, like a
  function's: ``vaddr - p_vaddr + p_offset`` of its ``PT_LOAD`` segment);
* ``semaphore_offset``: the file offset of the ``unsigned short`` semaphore
  (the uprobe *reference counter*: the kernel increments it in every process
  that maps the file while the probe is armed, Linux 4.20 commit 1cc33161a83d
  "uprobes: Support SDT markers having reference count (semaphore)");
* arguments relative to ``%rip`` that name a global (``-4@g_vol(%rip)``) are
  resolved through the symbol table to an offset from the probed address.

:func:`find_usdt` matches ``PROVIDER``/``NAME`` globs; library names
(``libc``) are resolved like uprobe targets.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from typing import Dict, List, Optional, Tuple

from ..._record import dataclass
from ...errors import ELFError, FeatureMissing, KprobesError
from ...probes.usdt import UsdtArg, UsdtError, parse_args, parse_notes

__all__ = ["UsdtProbe", "usdt_probes", "find_usdt", "resolve_binary", "usdt_listing",
           "kernel_ref_ctr", "SemaphoreCounter", "manual_semaphores", "usdt_definition_words"]

_MACHINES = {62: "x86_64", 183: "arm64"}  # EM_X86_64, EM_AARCH64


@dataclass(frozen=True)
class UsdtProbe:
    """One USDT probe site of ``path`` (a name inlined twice is two sites)."""

    path: str
    provider: str
    name: str
    pc: int
    offset: int
    semaphore: int
    semaphore_offset: int
    args: Tuple[UsdtArg, ...]
    args_text: str

    @property
    def full_name(self) -> str:
        return f"{self.provider}:{self.name}"

    def place(self, ref_ctr: bool = True) -> str:
        """``PATH:0xOFFSET`` for ``uprobe_events`` (``(0xREF)`` appended for a semaphore)."""
        ref = f"(0x{self.semaphore_offset:x})" if ref_ctr and self.semaphore_offset else ""
        return f"{self.path}:0x{self.offset:x}{ref}"


_cache: Dict[Tuple[str, int, int], List[UsdtProbe]] = {}


def resolve_binary(target: str) -> str:
    """A path, or a library name (``libc``) found through ld.so.cache."""
    if "/" in target:
        return os.path.abspath(target)
    from .ldcache import resolve_library

    return resolve_library(target)


def usdt_probes(path: str) -> List[UsdtProbe]:
    """Every USDT probe site of ``path`` in note order (cached per file identity)."""
    from .elf import ELFFile

    try:
        st = os.stat(path)
    except OSError as e:
        raise ELFError(f"{path}: {e.strerror}", hint="give the path of a binary or library") from None
    key = (path, st.st_ino, int(st.st_mtime_ns))
    got = _cache.get(key)
    if got is not None:
        return got
    with ELFFile(path) as elf:
        out = _read(elf, path)
    _cache[key] = out
    return out


def _read(elf: object, path: str) -> List[UsdtProbe]:
    from .elf import SHT_NOBITS, ELFFile

    assert isinstance(elf, ELFFile)
    sec = elf.section(".note.stapsdt")
    if sec is None or sec.type == SHT_NOBITS:
        return []
    raw = bytes(elf._data[sec.offset:sec.offset + sec.size])
    base_sec = elf.section(".stapsdt.base")
    arch = _MACHINES.get(elf.machine, "")
    symbols: Optional[Dict[str, int]] = None
    out: List[UsdtProbe] = []
    for note in parse_notes(raw, is64=elf.is64, little=elf.little_endian):
        note = note.adjusted(base_sec.addr if base_sec is not None else None)
        try:
            args = parse_args(note.args_text, arch or "x86_64") if arch or not note.args_text else ()
        except UsdtError as e:
            raise UsdtError(f"{path}: probe {note.provider}:{note.name}: {e.message}",
                            hint=e.hint) from None
        if any(a.symbol for a in args):
            if symbols is None:
                symbols = _data_symbols(elf)
            args = tuple(_resolve_symbol(a, symbols, note.pc, path) for a in args)
        offset = elf.vaddr_to_offset(note.pc)
        sem_off = elf.vaddr_to_offset(note.semaphore) if note.semaphore else 0
        out.append(UsdtProbe(path, note.provider, note.name, note.pc, offset, note.semaphore,
                             sem_off, args, note.args_text))
    return out


def _data_symbols(elf: object) -> Dict[str, int]:
    from .elf import ELFFile

    assert isinstance(elf, ELFFile)
    out: Dict[str, int] = {}
    for table in (".dynsym", ".symtab"):  # .symtab wins (it also has the static ones)
        for s in elf.symbols(table):
            if s.is_defined and s.name:
                out[s.name] = s.value
    return out


def _resolve_symbol(a: UsdtArg, symbols: Dict[str, int], pc: int, path: str) -> UsdtArg:
    if not a.symbol:
        return a
    addr = symbols.get(a.symbol)
    if addr is None:
        raise UsdtError(f"{path}: USDT argument {a.text!r} names {a.symbol!r}, which is not in "
                        "the symbol table", hint="the binary may be stripped")
    return a.with_symbol(addr, pc)


def find_usdt(target: str, provider: str, name: str) -> List[UsdtProbe]:
    """Sites of ``target`` (path or library) whose provider and name match the globs
    (an empty ``provider``: any)."""
    path = resolve_binary(target)
    return [p for p in usdt_probes(path)
            if fnmatch.fnmatchcase(p.provider, provider or "*") and fnmatch.fnmatchcase(p.name, name)]


def usdt_listing(target: str, pattern: str = "*") -> List[str]:
    """``-l 'usdt:BINARY[:PATTERN]'``: ``usdt:BINARY:PROVIDER:NAME`` lines, sorted, each once.

    ``PATTERN`` matches ``PROVIDER:NAME`` (or ``NAME`` alone when it has no colon).
    """
    if not target:
        raise KprobesError("USDT listing needs a binary", hint="kprobes -l 'usdt:/usr/bin/python3:*'")
    path = resolve_binary(target)
    seen = set()
    for p in usdt_probes(path):
        full = f"{p.provider}:{p.name}"
        ok = fnmatch.fnmatchcase(full, pattern) if ":" in pattern else (
            fnmatch.fnmatchcase(p.name, pattern) or fnmatch.fnmatchcase(full, pattern))
        if ok:
            seen.add(f"usdt:{target}:{full}")
    return sorted(seen)


# -- semaphores without the kernel's reference counter --------------------------------

def kernel_ref_ctr(tracefs_root: Optional[str] = None) -> bool:
    """Whether uprobes take a reference counter (the semaphore) on this kernel: the uprobe
    PMU's ``format/ref_ctr_offset`` or tracefs' README ``[(ref_ctr_offset)]`` (Linux 4.20+)."""
    if os.path.exists("/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset"):
        return True
    for root in ([tracefs_root] if tracefs_root else ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]):
        try:
            with open(os.path.join(root, "README")) as f:
                return "ref_ctr_offset" in f.read()
        except OSError:
            continue
    return False


class SemaphoreCounter:
    """A USDT semaphore of process ``pid`` counted up by hand through ``/proc/PID/mem``
    (kernels without uprobe reference counters): :meth:`open` adds one, :meth:`close`
    takes it back.  The address is where the process mapped the semaphore's file offset."""

    def __init__(self, pid: int, site: UsdtProbe) -> None:
        self.pid = pid
        self.site = site
        self.address = 0

    def _address(self) -> int:
        real = os.path.realpath(self.site.path)
        st = os.stat(real)
        off = self.site.semaphore_offset
        try:
            with open(f"/proc/{self.pid}/maps") as f:
                maps = f.read().splitlines()
        except OSError as e:
            raise KprobesError(f"cannot read /proc/{self.pid}/maps: {e.strerror}",
                               hint="is the process running? (-p PID)") from None
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) < 6 or "w" not in fields[1]:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            fofs, inode = int(fields[2], 16), int(fields[4])
            if (inode == st.st_ino or fields[5] == real) and fofs <= off < fofs + (end - start):
                return start + off - fofs
        raise KprobesError(f"process {self.pid} does not map {self.site.path} (writable), where "
                           f"the semaphore of {self.site.full_name} lives",
                           hint="trace the process that runs or loads that file")

    def _add(self, delta: int) -> None:
        try:
            with open(f"/proc/{self.pid}/mem", "r+b", buffering=0) as mem:
                mem.seek(self.address)
                value = int.from_bytes(mem.read(2), "little")
                mem.seek(self.address)
                mem.write(max(0, min(0xFFFF, value + delta)).to_bytes(2, "little"))
        except OSError as e:
            raise KprobesError(f"cannot update the semaphore of {self.site.full_name} in process "
                               f"{self.pid}: {e.strerror}", hint="run as root") from None

    def open(self) -> "SemaphoreCounter":
        self.address = self._address()
        self._add(1)
        return self

    def close(self) -> None:
        if not self.address:
            return
        try:
            self._add(-1)
        except KprobesError:
            pass  # the process is gone: nothing to give back
        finally:
            self.address = 0


def manual_semaphores(sites: List[UsdtProbe], pid: int) -> contextlib.ExitStack:
    """Count up by hand the semaphores of ``sites`` the kernel does not count
    (see :func:`kernel_ref_ctr`); the returned stack counts them down when closed.

    Without ``-p`` there is no process to write to: refused with the reason.
    """
    stack = contextlib.ExitStack()
    gated = [s for s in sites if s.semaphore_offset]
    if not gated or kernel_ref_ctr():
        return stack
    if not pid:
        raise FeatureMissing(
            f"{gated[0].full_name} is gated by a semaphore, and this kernel's uprobes cannot "
            "count semaphores (no reference counters: Linux 4.20+)",
            hint="trace one process with -p PID: kprobes sets its semaphore through /proc/PID/mem")
    try:
        for s in gated:
            stack.callback(SemaphoreCounter(pid, s).open().close)
    except BaseException:
        stack.close()
        raise
    return stack


# -- the dynamic-event form: kprobes trace 'usdt:BINARY:[PROVIDER:]NAME' ----------------

_USDT_HEADS = ("usdt:", "U:")


def usdt_definition_words(words: List[str]) -> Optional[List[str]]:
    """A uprobe definition for a USDT site, or None when ``words`` names none.

    ``usdt:BINARY:[PROVIDER:]NAME [ARG...]`` becomes ``p:PROVIDER_NAME PATH:0xOFF(0xREF)
    arg0=LOC:TYPE ...`` (every argument a fetcharg can read, see
    :meth:`~kprobes.probes.usdt.UsdtArg.fetcharg`); ``p[:[GROUP/]EVENT] usdt:...`` keeps its
    head.  The spec must name exactly one site.
    """
    if not words:
        return None
    if words[0].startswith(_USDT_HEADS):
        head, spec, extra = "", words[0], words[1:]
    elif len(words) >= 2 and words[1].startswith(_USDT_HEADS) and words[0][:1] == "p":
        head, spec, extra = words[0], words[1], words[2:]
    else:
        return None
    parts = spec.split(":")[1:]
    if len(parts) not in (2, 3) or not all(parts):
        raise KprobesError(f"bad USDT place {spec!r}", hint="usdt:BINARY:[PROVIDER:]NAME")
    target, provider, name = parts[0], parts[1] if len(parts) == 3 else "", parts[-1]
    sites = find_usdt(target, provider, name)
    if len(sites) != 1:
        listed = usdt_listing(target)
        raise KprobesError(
            f"{spec!r} matches {len(sites)} USDT probe sites; a definition takes exactly one",
            hint=("probes there: " + ", ".join(x.split(":", 2)[2] for x in listed[:10]))
            if listed else f"{target} has no USDT notes")
    site = sites[0]
    args: List[str] = []
    for i, a in enumerate(site.args):
        try:
            args.append(f"arg{i}={a.fetcharg()}:{a.fetch_type}")
        except UsdtError:
            continue  # base + index, high bytes: not readable by a fetcharg, left out
    event = "".join(c if c.isalnum() or c == "_" else "_" for c in f"{site.provider}_{site.name}")
    return [head or f"p:{event}", site.place(kernel_ref_ctr()), *args, *extra]
