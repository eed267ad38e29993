"""``kprobes report [-i FILE]``: a summary of a recording (implemented in :mod:`.script`)."""

from __future__ import annotations

from typing import List

from .main import Streams
from .script import run_report


def run(args: List[str], streams: Streams) -> int:
    return run_report(args, streams)
