"""``BpfSession``: one owner for every map, program, perf event and link of a tool.

Everything is an fd; the session's :class:`contextlib.ExitStack` closes them in
reverse order (links before programs before maps) when the ``with`` block ends,
normally or by exception.  Nothing is ever written to tracefs or pinned in
bpffs, so if the process dies any other way — SIGKILL included — the kernel
closes the fds and drops every probe, link, program and map with them.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Hashable, List, Mapping, Optional, Sequence, TypeVar, Union

from ...errors import BPFError
from .attach import (
    KprobeAttachment,
    Link,
    attach_kprobe,
    attach_kprobes,
    attach_tracepoint,
    attach_uprobe,
    kernel_functions,
    probe_symbols,
)
from .maps import Map
from .prog import Program

__all__ = ["BpfSession"]

_T = TypeVar("_T")


class BpfSession:
    """Owns BPF objects; use as ``with BpfSession() as s:``.

    ``s.map(...)``/``s.load(...)``/``s.attach(...)`` create and own in one
    step; :meth:`own` adopts anything with a ``close()``.
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self.maps: List[Map] = []
        self.programs: List[Program] = []
        self.links: List[Union[Link, KprobeAttachment]] = []
        #: Kernel symbol lists for wildcards, read on first use (seconds on a slow machine).
        self.symbols: Optional[object] = None

    def own(self, obj: _T) -> _T:
        """Close ``obj`` when the session ends."""
        self._stack.callback(obj.close)  # type: ignore[attr-defined]
        return obj

    # -- maps and programs ----------------------------------------------------------
    def map(self, map_type: int, key_size: int, value_size: int, max_entries: int, *,
            name: str = "", flags: int = 0) -> Map:
        m = self.own(Map.create(map_type, key_size, value_size, max_entries, name=name, flags=flags))
        self.maps.append(m)
        return m

    def adopt_map(self, m: Map) -> Map:
        self.maps.append(self.own(m))
        return m

    def load(self, prog_type: int, insns: object, *, name: str = "",
             maps: Optional[Mapping[Hashable, object]] = None,
             expected_attach_type: Optional[int] = None, log_level: int = 0) -> Program:
        p = self.own(Program.load(prog_type, insns, name=name, maps=maps,
                                  expected_attach_type=expected_attach_type, log_level=log_level))
        self.programs.append(p)
        return p

    # -- attachments ----------------------------------------------------------------
    def _link(self, link: Link) -> Link:
        self.links.append(self.own(link))
        return link

    def attach(self, prog: Program, point: str, *, cookie: int = 0, pid: int = -1) -> Link:
        """Attach ``prog`` to one bpftrace-style point:

        ``kprobe:FUNC[+OFFS]``, ``kretprobe:FUNC``, ``uprobe:PATH:SYMBOL``,
        ``uretprobe:PATH:SYMBOL`` (``PATH`` may be a library name such as ``libc``),
        ``tracepoint:GROUP:EVENT``.
        """
        kind, _, rest = point.partition(":")
        if kind in ("kprobe", "k", "kretprobe", "kr"):
            func, _, off = rest.partition("+")
            return self._link(attach_kprobe(prog, func, retprobe=kind in ("kretprobe", "kr"),
                                            offset=int(off, 0) if off else 0, cookie=cookie))
        if kind in ("uprobe", "u", "uretprobe", "ur"):
            path, _, sym = rest.rpartition(":")
            if not path or not sym:
                raise BPFError(f"bad attach point {point!r}", hint="uprobe:PATH:SYMBOL")
            target: object = int(sym, 0) if sym[:2] in ("0x", "0X") else sym
            return self._link(attach_uprobe(prog, path, target, retprobe=kind in ("uretprobe", "ur"),
                                            pid=pid, cookie=cookie))
        if kind in ("tracepoint", "t"):
            group, _, event = rest.partition(":")
            if not group or not event:
                raise BPFError(f"bad attach point {point!r}", hint="tracepoint:GROUP:EVENT")
            return self._link(attach_tracepoint(prog, group, event, cookie=cookie))
        raise BPFError(f"unknown attach point {point!r}",
                       hint="kprobe:F, kretprobe:F, uprobe:PATH:SYM, uretprobe:PATH:SYM, tracepoint:G:E")

    def attach_kprobes(self, load: Callable[[Optional[int]], Program],
                       funcs: Union[str, Sequence[str]], *, retprobe: bool = False,
                       cookies: bool = True, method: str = "auto",
                       max_seconds: Optional[float] = None) -> KprobeAttachment:
        """One program on many kernel functions (a glob like ``vfs_*`` or a list):
        kprobe_multi when the kernel has it, else one perf event per function."""
        if isinstance(funcs, str):
            if self.symbols is None:
                self.symbols = probe_symbols()
            names = kernel_functions(funcs, symbols=self.symbols)
        else:
            names = list(funcs)
        if not names:
            raise BPFError(f"no probeable kernel function matches {funcs!r}")
        att = attach_kprobes(load, names, retprobe=retprobe, cookies=cookies, method=method,
                             max_seconds=max_seconds)
        self.links.append(self.own(att))
        return att

    # -- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        self._stack.close()
        self.maps.clear()
        self.programs.clear()
        self.links.clear()

    def __enter__(self) -> "BpfSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
