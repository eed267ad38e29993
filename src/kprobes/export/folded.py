"""Stack-keyed maps as folded stacks: one ``root;caller;...;leaf COUNT`` line per stack.

This is the format of Brendan Gregg's ``stackcollapse-*`` scripts and of
bpftrace's folded output, read by ``flamegraph.pl``, inferno and
``kprobes flamegraph``.

How a map entry becomes a line (``@[kstack] = count()``, ``@[ustack, comm]``,
``profile:hz:99 { @[kstack, ustack, comm] = count(); }``):

* the key parts that are not stacks (``comm``, ``pid``, a string) come first,
  in key order, as root frames, so a flame graph groups by them;
* then every stack part, the last one of the key first, each from its
  outermost caller to the leaf (stacks print leaf first: they are reversed),
  so ``@[kstack, ustack, comm]`` folds as ``comm;user frames;kernel frames``;
* frames are bare function names by default (``vfs_read``): the same function
  at two offsets is one frame, as flame graph users expect; with
  ``offsets=True`` they keep bpftrace's ``func+off``.  Addresses nothing names
  stay ``0x...``; a stack that could not be read (``kstack`` of a uprobe) is the
  single frame ``[no stack]``;
* ``;`` inside a name (the separator) becomes ``:``;
* the count is the entry's ``count()``/``sum()``/integer value; entries that are
  0 or negative are left out (a flame graph has no negative widths), and
  entries that fold to the same frames (two offsets of one function) add up.

When the program has several stack-keyed maps, each line starts with the map
name (``@name``) so they stay apart.  Maps without a stack in their key, and
maps of other values (hist, avg...), are not part of the folded output.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence, Tuple

from ..agg.aggregations import Aggregation, Count, IntValue, Sum

if TYPE_CHECKING:
    from ..agg.bpfmap import BpfMap, Key
    from ..lang.checked import CheckedProgram

__all__ = [
    "NO_STACK",
    "frame_name",
    "stack_frames",
    "fold_map",
    "format_folded",
    "parse_folded",
    "stack_map_names",
    "check_folded",
    "is_foldable",
    "Folded",
]

#: A stack key part that could not be read back.
NO_STACK = "[no stack]"
_OFFSET = re.compile(r"\+(?:0x[0-9a-fA-F]+|\d+)(?=$| \()")
_PERF_LINE = re.compile(r"^[0-9a-fA-F]+ (.*)$")

#: (frames root first, count)
Folded = Tuple[Tuple[str, ...], int]


def frame_name(sym: str, offsets: bool = False) -> str:
    """One frame's name: ``vfs_read+5`` → ``vfs_read`` (kept with ``offsets``); ``;`` → ``:``."""
    sym = sym.strip()
    if not offsets:
        sym = _OFFSET.sub("", sym, count=1)
    return sym.replace(";", ":")


def stack_frames(text: str, offsets: bool = False) -> List[str]:
    """The frames of a printed stack, leaf first as printed (bpftrace, perf or raw mode)."""
    out: List[str] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        if line.startswith("\t"):  # perf mode: "\tADDR sym"
            m = _PERF_LINE.match(line.strip())
            if m:
                line = m.group(1)
        out.append(frame_name(line, offsets))
    return out


def _value(agg: Aggregation) -> Optional[int]:
    if isinstance(agg, Count):
        return agg.count
    if isinstance(agg, Sum):
        return agg.total
    if isinstance(agg, IntValue):
        return agg.value
    return None


def _stack_flags(m: "BpfMap", key: "Key") -> List[bool]:
    """Which key parts are stacks: the BPF engine's key layout says; else a stack's text shape."""
    parts = getattr(getattr(getattr(m, "plan", None), "key", None), "parts", None)
    if parts is not None and len(parts) == len(key):
        return [getattr(p, "kind", "") == "stack" for p in parts]
    return [isinstance(k, str) and (k == "" or k.startswith("\n")) for k in key]


def is_foldable(m: "BpfMap") -> bool:
    """A map of counts/sums/integers with at least one stack part in its key."""
    if _value(m.template) is None:
        return False
    parts = getattr(getattr(getattr(m, "plan", None), "key", None), "parts", None)
    if parts is not None:
        return any(getattr(p, "kind", "") == "stack" for p in parts)
    return any(any(_stack_flags(m, key)) for key, _ in m.items())


def fold_map(m: "BpfMap", offsets: bool = False, prefix: Sequence[str] = ()) -> List[Folded]:
    """The folded stacks of one map, merged and sorted by frames."""
    merged: Dict[Tuple[str, ...], int] = {}
    for key, agg in m.items():
        value = _value(agg)
        if value is None or value <= 0:
            continue
        flags = _stack_flags(m, key)
        frames: List[str] = list(prefix)
        frames += [frame_name(str(k), True) for k, is_stack in zip(key, flags) if not is_stack]
        for k, is_stack in reversed(list(zip(key, flags))):
            if is_stack:
                leaf_first = stack_frames(str(k), offsets)
                frames += reversed(leaf_first) if leaf_first else [NO_STACK]
        t = tuple(frames)
        merged[t] = merged.get(t, 0) + value
    return sorted(merged.items())


def format_folded(maps: Iterable["BpfMap"], offsets: bool = False) -> str:
    """Folded lines of every stack-keyed map (see the module docstring)."""
    foldable = sorted((m for m in maps if is_foldable(m)), key=lambda m: m.name)
    lines: List[str] = []
    for m in foldable:
        prefix = (m.name,) if len(foldable) > 1 else ()
        lines += [";".join(frames) + f" {n}" for frames, n in fold_map(m, offsets, prefix)]
    return "".join(ln + "\n" for ln in lines)


def parse_folded(text: str) -> Tuple[List[Folded], int]:
    """``(stacks, ignored)``: the stacks of folded text and how many lines were not folded stacks.

    A line is ``frame;frame;... COUNT`` (the count after the last space, an
    integer; a decimal count is rounded, as flamegraph.pl accepts fractions);
    blank lines are skipped, other lines (``Attaching 1 probe...``) counted as ignored.
    """
    stacks: List[Folded] = []
    ignored = 0
    for line in text.splitlines():
        line = line.rstrip("\r")
        if not line.strip():
            continue
        head, sep, count = line.rpartition(" ")
        try:
            n = int(count) if count.isdigit() else int(round(float(count)))
        except ValueError:
            n = -1
        if not sep or not head.strip() or n < 0:
            ignored += 1
            continue
        frames = tuple(f for f in head.strip().split(";") if f != "")
        if frames and n > 0:
            stacks.append((frames, n))
    return stacks, ignored


def stack_map_names(checked: "CheckedProgram") -> List[str]:
    """Names (``@x``) of the program's maps with a kstack/ustack in their key."""
    from ..lang.typesys import StackType

    return sorted("@" + info.name for info in checked.maps.values()
                  if any(isinstance(t, StackType) for t in info.key_types))


def check_folded(checked: "CheckedProgram", fmt: str, offsets: bool) -> str:
    """The output format for ``--folded`` (``folded`` or ``folded+offsets``), or why not."""
    from ..errors import KprobesError

    if fmt != "text":
        raise KprobesError("--folded and -f json do not go together",
                           hint="folded stacks are text lines: drop -f json")
    if not stack_map_names(checked):
        raise KprobesError("--folded needs a map keyed by a stack",
                           hint="e.g. kprobes --folded -e 'profile:hz:99 { @[kstack] = count(); }'")
    return "folded+offsets" if offsets else "folded"
