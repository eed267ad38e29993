"""``kprobes doctor``: what works on this kernel and how to fix what doesn't."""

from __future__ import annotations

import json
from typing import List

from .main import ArgParser, Streams, parse


def run(args: List[str], streams: Streams) -> int:
    p = ArgParser(prog="kprobes doctor",
                  description="Check kernel config, tracefs/debugfs, permissions, BTF and say how to fix gaps.")
    p.add_argument("--json", action="store_true")
    ns = parse(p, args, streams)
    if ns is None:
        return 0
    from ..backends.doctor import run_checks

    checks = run_checks()
    if ns.json:
        streams.out.write(json.dumps([c.__dict__ for c in checks]) + "\n")
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("warn" if c.optional else "FAIL")
            streams.out.write(f"[{mark}] {c.name:<26} {c.detail}\n")
            if not c.ok and c.fix:
                streams.out.write(f"       fix: {c.fix}\n")
            if not c.ok and c.required_for:
                streams.out.write(f"       needed for: {c.required_for}\n")
    return 0 if all(c.ok or c.optional for c in checks) else 1
