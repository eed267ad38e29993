"""State shared by a running program: maps, output, process facts, exit flag.

* :class:`Output` writes what bpftrace writes (text, or ``-f json`` lines)
  to one stream.
* :class:`ProcInfo` answers ``pid``/``uid``/``gid`` for a thread id from
  ``/proc/<tid>/status`` (``Tgid:``, ``Uid:``, ``Gid:``), cached per thread
  id.  Events read as text carry only the thread id (``common_pid``), so
  ``pid`` is looked up; a thread that exited before its event was read gives
  its own id as pid and 0 as uid/gid.  When the event carries the tgid (raw
  buffers with ``record-tgid``), it is used directly.
* :func:`make_maps` builds one :class:`~kprobes.agg.BpfMap` per map the
  checker found, its value kind fixed by the checker's type.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, TextIO, Tuple

from ..agg import (
    Avg,
    BpfMap,
    Count,
    IntValue,
    LinearHist,
    Log2Hist,
    Max,
    Min,
    Stats,
    StrValue,
    Sum,
    attached_probes_json,
    attached_probes_text,
    format_exit,
    format_exit_json,
    format_map,
    format_map_json,
    message_json,
    printf_json,
    time_json,
    value_json,
)
from ..agg.aggregations import Aggregation, TupleValue, tuple_text
from ..errors import KprobesError
from ..lang import ast
from ..lang.checked import CheckedProgram
from ..lang.typesys import AggType, IntType, PointerType, TupleType

__all__ = ["Output", "ProcInfo", "make_maps", "lhist_params"]


class Output:
    """bpftrace's output on one stream; ``fmt`` is ``text`` or ``json``, or ``folded``
    (``folded+offsets``): printf as text, stack-keyed maps at exit as folded stacks."""

    def __init__(self, stream: TextIO, fmt: str = "text") -> None:
        if fmt not in ("text", "json", "folded", "folded+offsets"):
            raise KprobesError(f"unknown output format {fmt!r}", hint="use -f text or -f json")
        self.stream = stream
        self.json = fmt == "json"
        self.folded = fmt.startswith("folded")
        self.offsets = fmt.endswith("+offsets")

    def write(self, text: str) -> None:
        self.stream.write(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def printf(self, text: str) -> None:
        self.stream.write(printf_json(text) if self.json else text)

    def time(self, text: str) -> None:
        self.stream.write(time_json(text) if self.json else text)

    def message(self, kind: str, text: str, newline: bool = False) -> None:
        """Output of ``cat`` (kind ``cat``), ``system`` (``syscall``) and ``join`` (``join``,
        ``newline``: the text line ends with one); with ``-f json`` bpftrace's record of that type."""
        if self.json:
            self.stream.write(message_json(kind, text))
        else:
            self.stream.write(text + "\n" if newline else text)

    def print_map(self, m: BpfMap, top: int = 0, div: int = 1) -> None:
        if self.json:
            self.stream.write(format_map_json(m, top, div))
        else:
            self.stream.write(format_map(m, top, div))

    def print_value(self, value: object) -> None:
        if self.json:
            self.stream.write(value_json(value))
        elif isinstance(value, tuple):
            self.stream.write(tuple_text(value) + "\n")
        else:
            self.stream.write(f"{value}\n")

    def attached(self, count: int) -> None:
        if self.folded:  # folded output is for flame graph tools: stacks only
            return
        self.stream.write(attached_probes_json(count) if self.json else attached_probes_text(count))

    def exit_maps(self, maps: List[BpfMap]) -> None:
        if self.folded:
            from ..export.folded import format_folded

            self.stream.write(format_folded(maps, self.offsets))
            return
        text = format_exit_json(maps) if self.json else format_exit(maps)
        sep = getattr(self.stream, "exit_stream", None)  # bpftrace -o FILE: the blank lines on stdout
        if sep is not None and text.startswith("\n\n"):
            sep.write("\n\n")
            text = text[2:]
        self.stream.write(text)


class ProcInfo:
    """Per-thread facts from /proc, cached (see the module docstring)."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._cache: Dict[int, Tuple[int, int, int]] = {}

    def _status(self, tid: int) -> Tuple[int, int, int]:
        got = self._cache.get(tid)
        if got is not None:
            return got
        tgid, uid, gid = tid, 0, 0
        try:
            with open(f"{self.proc}/{tid}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    key, _, rest = line.partition(":")
                    if key == "Tgid":
                        tgid = int(rest.split()[0])
                    elif key == "Uid":
                        uid = int(rest.split()[0])
                    elif key == "Gid":
                        gid = int(rest.split()[0])
                        break
        except (OSError, ValueError, IndexError):
            pass
        got = (tgid, uid, gid)
        if len(self._cache) > 65536:
            self._cache.clear()
        self._cache[tid] = got
        return got

    def tgid(self, tid: int) -> int:
        return self._status(tid)[0]

    def uid(self, tid: int) -> int:
        return self._status(tid)[1]

    def gid(self, tid: int) -> int:
        return self._status(tid)[2]


def lhist_params(program: ast.Program) -> Dict[str, Tuple[int, int, int]]:
    """``lhist(v, min, max, step)`` parameters per map name (literals, checked already)."""
    out: Dict[str, Tuple[int, int, int]] = {}

    def lit(e: ast.Expr) -> int:
        if isinstance(e, ast.IntLit):
            return e.value
        if isinstance(e, ast.Unary) and e.op == "-" and isinstance(e.operand, ast.IntLit):
            return -e.operand.value
        raise KprobesError("lhist() parameters must be integer literals")

    def visit(block: ast.Block) -> None:
        for st in block.stmts:
            if isinstance(st, ast.AssignMap) and isinstance(st.value, ast.Call):
                c = st.value
                if c.name == "lhist" and len(c.args) == 4:
                    params = (lit(c.args[1]), lit(c.args[2]), lit(c.args[3]))
                    old = out.setdefault(st.target.name, params)
                    if old != params:
                        raise KprobesError(
                            f"@{st.target.name} is used with two different lhist() ranges"
                        )
            elif isinstance(st, ast.If):
                visit_if(st)
            elif isinstance(st, ast.Block):
                visit(st)
            elif isinstance(st, (ast.While, ast.Unroll)):
                visit(st.body)

    def visit_if(st: ast.If) -> None:
        visit(st.then)
        if isinstance(st.orelse, ast.If):
            visit_if(st.orelse)
        elif st.orelse is not None:
            visit(st.orelse)

    for probe in program.probes:
        visit(probe.body)
    return out


def _template(kind: AggType, lhist: Optional[Tuple[int, int, int]]) -> Aggregation:
    k = kind.kind
    if k == "count":
        return Count()
    if k == "sum":
        return Sum(signed=kind.signed)
    if k == "min":
        return Min(signed=kind.signed)
    if k == "max":
        return Max(signed=kind.signed)
    if k == "avg":
        return Avg()
    if k == "stats":
        return Stats()
    if k == "hist":
        return Log2Hist()
    if k == "lhist" and lhist is not None:
        return LinearHist(*lhist)
    raise KprobesError(f"unsupported map value {kind}")


def make_maps(checked: CheckedProgram) -> Dict[str, BpfMap]:
    """One empty BpfMap per map of the program, keyed by name without ``@``."""
    lh = lhist_params(checked.program)
    maps: Dict[str, BpfMap] = {}
    for name, info in checked.maps.items():
        t = info.value_type
        template: Aggregation
        if isinstance(t, AggType):
            template = _template(t, lh.get(name))
        elif isinstance(t, IntType):
            template = IntValue(signed=t.signed)
        elif isinstance(t, PointerType):
            template = IntValue(signed=False)
        elif isinstance(t, TupleType):
            template = TupleValue()
        else:
            template = StrValue()
        maps[name] = BpfMap("@" + name, template, scalar=not info.key_types)
    return maps


def own_comm() -> str:
    """This process's comm (what bpftrace shows as comm in BEGIN/END)."""
    try:
        with open(f"/proc/{os.getpid()}/comm", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return "kprobes"
