"""Who owns a tracefs event group or instance, and reaping the dead owners' leftovers.

Every session names its event group and its instance ``kp<PID>_<BOOT>_<START>``:
the owner's pid, the first 6 hex digits of the boot id, and the owner's start
time (clock ticks since boot, base 36) so that a recycled pid is not mistaken
for the owner.  A name of that shape whose process is gone (or whose boot id is
another boot's) belongs to a dead owner and may be reaped.  Anything else —
perf's ``probe`` group, bcc's ``*_bcc_*`` events, persistent probes made with
``kprobes probe --add`` — is never touched.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Callable, List, Optional, Tuple

from ..._record import dataclass

__all__ = [
    "Owner",
    "current_owner",
    "parse_owner",
    "owner_alive",
    "is_foreign_leftover",
]

_NAME = re.compile(r"^kp(\d+)_([0-9a-f]{6})_([0-9a-z]+)(?:_(\d+))?$")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _b36(n: int) -> str:
    if n == 0:
        return "0"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
    return out


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip().replace("-", "")[:6]
    except OSError:
        return "000000"


def start_time(pid: int) -> Optional[int]:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Owner:
    pid: int
    boot: str
    start: str
    seq: int = 0

    @property
    def name(self) -> str:
        """Group and instance name: ``kp<pid>_<boot>_<start>[_<seq>]`` (≤ 64 chars, [a-z0-9_]).

        ``seq`` tells apart several sessions of one process.
        """
        base = f"kp{self.pid}_{self.boot}_{self.start}"
        return f"{base}_{self.seq}" if self.seq else base


_SEQ = itertools.count()


def current_owner() -> Owner:
    """A fresh owner name for a new session of this process."""
    pid = os.getpid()
    st = start_time(pid) or 0
    return Owner(pid, boot_id(), _b36(st), next(_SEQ))


def parse_owner(name: str) -> Optional[Owner]:
    m = _NAME.match(name)
    if not m:
        return None
    return Owner(int(m.group(1)), m.group(2), m.group(3), int(m.group(4) or 0))


def owner_alive(
    owner: Owner,
    *,
    this_boot: Optional[str] = None,
    start_of: Callable[[int], Optional[int]] = start_time,
) -> bool:
    """True when the owning process still runs (same boot, same pid, same start time)."""
    if owner.boot != (this_boot if this_boot is not None else boot_id()):
        return False
    st = start_of(owner.pid)
    return st is not None and _b36(st) == owner.start


_FOREIGN = (
    (re.compile(r"^probe(_.+)?$"), "perf probe (or 'kprobes probe --add': persistent by design)"),
    (re.compile(r".*_bcc_.*"), "bcc"),
    (re.compile(r"^kprobes$"), "default kprobes group (hand-written kprobe_events)"),
    (re.compile(r"^uprobes$"), "default uprobes group (hand-written uprobe_events)"),
)


def is_foreign_leftover(group: str, event: str) -> Optional[str]:
    """Name the tool that probably made ``group/event`` (not ours), or None."""
    for rx, tool in _FOREIGN:
        if rx.match(group) or rx.match(event):
            return tool
    return None


def split_event_line(line: str) -> Optional[Tuple[str, str, str]]:
    """``p:grp/ev target ...`` → (type char, group, event)."""
    head = line.split(None, 1)[0] if line.split() else ""
    if ":" not in head or "/" not in head:
        return None
    typ, _, ge = head.partition(":")
    grp, _, ev = ge.partition("/")
    return typ[:1], grp, ev


def dead_groups(lines: List[str], *, alive: Callable[[Owner], bool] = owner_alive) -> List[str]:
    """Groups in dynamic-event listing ``lines`` whose owner is dead."""
    out: List[str] = []
    for line in lines:
        parts = split_event_line(line)
        if not parts:
            continue
        owner = parse_owner(parts[1])
        if owner and not alive(owner) and parts[1] not in out:
            out.append(parts[1])
    return out
