"""Shared helpers for host and kernel tests."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from typing import List, Optional, Sequence, Tuple

from kprobes.cli.main import Streams, main

OWNER_RX = re.compile(r"^kp\d+_[0-9a-f]{6}_[0-9a-z]+(_\d+)?$")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def tracefs() -> str:
    for p in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.exists(os.path.join(p, "README")):
            return p
    raise RuntimeError("no tracefs")


def session_leftovers(owner: Optional[str] = None) -> List[str]:
    """Session groups/instances present now: one owner's, or (default) this process's.

    Other processes' sessions (tests running in parallel, other users) are not ours.
    """
    root = tracefs()
    mine = f"kp{os.getpid()}_"
    out = []
    for rel in ("dynamic_events", "kprobe_events", "uprobe_events"):
        p = os.path.join(root, rel)
        if not os.path.exists(p):
            continue
        with open(p) as f:
            for line in f:
                head = line.split(None, 1)[0] if line.strip() else ""
                grp = head.partition(":")[2].partition("/")[0]
                if OWNER_RX.match(grp) and (grp == owner if owner else grp.startswith(mine)):
                    out.append(f"event {grp}/{head.partition('/')[2]}")
    for inst in os.listdir(os.path.join(root, "instances")):
        if OWNER_RX.match(inst) and (inst == owner if owner else inst.startswith(mine)):
            out.append(f"instance {inst}")
    return sorted(set(out))


def run_cli(args: Sequence[str]) -> Tuple[int, str, str]:
    """Run the CLI in-process with captured streams."""
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(args), Streams(out, err))
    return rc, out.getvalue(), err.getvalue()


def run_cli_subprocess(args: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "kprobes.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def wait_for(pred, timeout: float = 30.0, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False
