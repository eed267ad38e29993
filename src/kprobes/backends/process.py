"""Starting a traced command so that none of its events happen before the probes are armed."""

from __future__ import annotations

import os
import stat
import subprocess
from typing import List, Tuple

from ..errors import KprobesError

__all__ = ["spawn_gated", "resolve_command"]


def resolve_command(name: str) -> str:
    """The executable ``name`` runs, found as a shell finds it (PATH unless it has a ``/``).

    Raises :class:`KprobesError` when there is none: bpftrace's check before
    it forks ``-c``'s child ("does not exist or is not executable").
    """
    if not name:
        raise KprobesError("empty command name", hint="e.g. -c 'cat /etc/hostname'")
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as e:
            raise KprobesError(f"cannot run {name!r}: {e.strerror}",
                               hint="give the path of an existing executable") from None  # fmt: skip
        if stat.S_ISDIR(st.st_mode):
            raise KprobesError(f"cannot run {name!r}: is a directory",
                               hint="give the path of an executable file")  # fmt: skip
        if not os.access(name, os.X_OK):
            raise KprobesError(f"cannot run {name!r}: not executable",
                               hint=f"make it executable (chmod +x {name}) or run it via its interpreter")  # fmt: skip
        return name
    import shutil

    found = shutil.which(name)
    if found is None:
        raise KprobesError(f"command not found: {name!r}",
                           hint="it is not in PATH; give its full path or check the spelling")  # fmt: skip
    return found


def spawn_gated(argv: List[str]) -> "Tuple[subprocess.Popen[bytes], int]":
    """Start ``argv`` held before exec until the caller writes a line to the returned fd.

    A shell waits on a pipe (``read`` from ``/dev/fd/N``), then ``exec``s the
    command: its pid is known before it runs (for pid filters) and its first
    event comes after the probes are armed.  Close the fd without writing to
    let the command run anyway (EOF also ends the wait).  A command that does
    not exist raises :class:`KprobesError` before anything is started.
    """
    if not argv:
        raise KprobesError("no command to run", hint="e.g. -- ls /tmp")
    resolve_command(argv[0])
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
