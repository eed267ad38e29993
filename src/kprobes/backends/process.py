"""Starting a traced command so that none of its events happen before the probes are armed."""

from __future__ import annotations

import os
import subprocess
from typing import List, Tuple

from ..errors import KprobesError

__all__ = ["spawn_gated"]


def spawn_gated(argv: List[str]) -> "Tuple[subprocess.Popen[bytes], int]":
    """Start ``argv`` held before exec until the caller writes a line to the returned fd.

    A shell waits on a pipe (``read`` from ``/dev/fd/N``), then ``exec``s the
    command: its pid is known before it runs (for pid filters) and its first
    event comes after the probes are armed.  Close the fd without writing to
    let the command run anyway (EOF also ends the wait).
    """
    r, w = os.pipe()
    script = f'read _ </dev/fd/{r}; exec "$@"'
    try:
        proc = subprocess.Popen(["sh", "-c", script, "kprobes-gate", *argv], pass_fds=(r,))
    except OSError as e:
        os.close(w)
        raise KprobesError(f"cannot run {argv[0]!r}: {e.strerror}") from None
    finally:
        os.close(r)
    return proc, w
