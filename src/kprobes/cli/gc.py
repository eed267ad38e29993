"""``kprobes gc``: remove what dead kprobes sessions left; list other tools' leftovers."""

from __future__ import annotations

import json
from typing import List

from .main import ArgParser, Streams, parse


def build_parser() -> ArgParser:
    p = ArgParser(
        prog="kprobes gc",
        description="Remove event groups and instances of kprobes sessions whose process is gone "
        "(after SIGKILL or a crash). Other tools' events (perf's probe/ group, bcc's *_bcc_*) and "
        "persistent probes ('kprobes probe --add') are listed, never removed.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def run(args: List[str], streams: Streams) -> int:
    ns = parse(build_parser(), args, streams)
    if ns is None:
        return 0
    from ..backends.tracefs.fs import TraceFS
    from ..backends.tracefs.reaper import reap

    fs = TraceFS.discover()
    rep = reap(fs)
    if ns.json:
        streams.out.write(json.dumps({
            "removed_events": rep.removed_events,
            "removed_instances": rep.removed_instances,
            "foreign": [{"event": e, "tool": t} for e, t in rep.foreign],
            "failed": [{"what": w, "why": y} for w, y in rep.failed],
        }) + "\n")  # fmt: skip
    else:
        out = streams.out
        if not (rep.removed_events or rep.removed_instances):
            out.write("gc: nothing of dead kprobes sessions was left\n")
        for e in rep.removed_events:
            out.write(f"gc: removed event {e}\n")
        for i in rep.removed_instances:
            out.write(f"gc: removed instance {i}\n")
        for e, tool in rep.foreign:
            out.write(f"gc: left alone {e} (made by {tool})\n")
        for w, why in rep.failed:
            out.write(f"gc: could not remove {w}: {why}\n")
    return 1 if rep.failed else 0
