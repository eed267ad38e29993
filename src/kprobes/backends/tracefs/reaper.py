"""Removing what dead sessions left in tracefs, and listing what other tools left.

Only names of the session shape (see :mod:`.owner`) whose owner is dead are
removed.  Other tools' events (perf's ``probe`` group, bcc's ``*_bcc_*``) and
``kprobes probe --add`` persistent probes are listed, never touched.
"""

from __future__ import annotations

import errno
import os
from typing import Callable, List, Optional, Tuple

from ..._record import dataclass, field
from .fs import TraceFS
from .owner import Owner, is_foreign_leftover, owner_alive, parse_owner, split_event_line

__all__ = ["GcReport", "list_dynamic_events", "reap", "remove_group_events"]

_EVENT_FILES = ("dynamic_events", "kprobe_events", "uprobe_events")


@dataclass
class GcReport:
    """What a reap did: removed events and instances, and foreign leftovers it left alone."""

    removed_events: List[str] = field(default_factory=list)
    removed_instances: List[str] = field(default_factory=list)
    foreign: List[Tuple[str, str]] = field(default_factory=list)  # (group/event, tool)
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (what, why)


def list_dynamic_events(fs: TraceFS) -> List[Tuple[str, str, str, str]]:
    """All dynamic events as (file, type char, group, event), without duplicates.

    ``dynamic_events`` lists kprobes and uprobes together; older kernels only
    have the per-kind files.
    """
    seen = set()
    out = []
    for rel in _EVENT_FILES:
        if not fs.exists(rel):
            continue
        for line in fs.iter_lines(rel):
            parts = split_event_line(line)
            if not parts:
                continue
            key = (parts[1], parts[2])
            if key in seen:
                continue
            seen.add(key)
            out.append((rel, parts[0], parts[1], parts[2]))
    return out


def _removal_file(fs: TraceFS, src: str, typ: str) -> str:
    if fs.exists("dynamic_events"):
        return "dynamic_events"
    return src


def remove_group_events(fs: TraceFS, group: str, report: Optional[GcReport] = None) -> None:
    """Disable (everywhere) and delete every dynamic event of ``group``, in a few writes.

    The group's ``enable`` file is cleared at the top level and in every
    instance that has the group (one write each), then ``-:GROUP/`` (an empty
    event name matches every event of the group: kprobetrace.rst,
    uprobetracer.rst) removes all definitions in one write.  Events the
    kernel kept (an old kernel without group removal, an event busy
    elsewhere) are then removed one by one.
    """
    events = [(src, typ, ev) for src, typ, grp, ev in list_dynamic_events(fs) if grp == group]
    if not events:
        return
    _disable_group_everywhere(fs, group)
    files = sorted({_removal_file(fs, src, typ) for src, typ, _ev in events})
    for rel in files:
        try:
            fs.write(rel, f"-:{group}/\n", append=True)
        except OSError:
            pass  # EINVAL (no group removal) or EBUSY: fall back to one by one
    left = {(grp, ev) for _s, _t, grp, ev in list_dynamic_events(fs) if grp == group}
    for src, typ, ev in events:
        if (group, ev) not in left:
            if report is not None:
                report.removed_events.append(f"{group}/{ev}")
            continue
        _disable_everywhere(fs, group, ev)
        try:
            fs.write(_removal_file(fs, src, typ), f"-:{group}/{ev}\n", append=True)
            if report is not None:
                report.removed_events.append(f"{group}/{ev}")
        except OSError as e:
            if report is not None:
                report.failed.append((f"{group}/{ev}", os.strerror(e.errno or 0)))


def _disable_group_everywhere(fs: TraceFS, grp: str) -> None:
    rels = [f"events/{grp}"] + [f"instances/{i}/events/{grp}" for i in fs.listdir("instances")]
    for rel in rels:
        try:
            if fs.exists(f"{rel}/enable"):
                fs.write(f"{rel}/enable", "0")
        except OSError:
            pass


def _disable_everywhere(fs: TraceFS, grp: str, ev: str) -> None:
    rels = [f"events/{grp}/{ev}"] + [
        f"instances/{i}/events/{grp}/{ev}" for i in fs.listdir("instances")
    ]
    for rel in rels:
        try:
            if fs.exists(f"{rel}/enable") and fs.read(f"{rel}/enable").strip() not in ("0", ""):
                fs.write(f"{rel}/enable", "0")
        except OSError:
            pass


def remove_instance(fs: TraceFS, name: str) -> None:
    """rmdir an instance (the kernel disables its events, triggers and filters)."""
    try:
        os.rmdir(fs.path(f"instances/{name}"))
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def reap(
    fs: TraceFS,
    *,
    alive: Callable[[Owner], bool] = owner_alive,
    keep: Optional[str] = None,
) -> GcReport:
    """Remove instances and event groups of dead owners; list foreign leftovers.

    ``keep`` names a group/instance never to touch (the caller's own session).
    """
    report = GcReport()
    for inst in fs.listdir("instances"):
        owner = parse_owner(inst)
        if owner is None or inst == keep or alive(owner):
            continue
        try:
            remove_instance(fs, inst)
            report.removed_instances.append(inst)
        except OSError as e:
            report.failed.append((f"instance {inst}", os.strerror(e.errno or 0)))
    dead: List[str] = []
    for _src, _typ, grp, ev in list_dynamic_events(fs):
        owner = parse_owner(grp)
        if owner is None:
            tool = is_foreign_leftover(grp, ev)
            if tool:
                report.foreign.append((f"{grp}/{ev}", tool))
            continue
        if grp != keep and not alive(owner) and grp not in dead:
            dead.append(grp)
    for grp in dead:
        remove_group_events(fs, grp, report)
    return report
