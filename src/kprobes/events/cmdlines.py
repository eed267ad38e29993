"""The pid → comm and pid → tgid tables tracefs keeps (``saved_cmdlines``, ``saved_tgids``).

Binary records only carry ``common_pid``; the text output takes the comm
from these tables (``<...>`` when the pid is not in them, ``<idle>`` for pid 0).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["UNKNOWN_COMM", "IDLE_COMM", "parse_saved_cmdlines", "parse_saved_tgids", "comm_for"]

#: What trace_pipe prints for a pid whose comm was not saved.
UNKNOWN_COMM = "<...>"
#: What trace_pipe prints for pid 0.
IDLE_COMM = "<idle>"


def parse_saved_cmdlines(text: str) -> dict[int, str]:
    """``saved_cmdlines`` lines ``"<pid> <comm>"`` → {pid: comm}; comm may hold spaces."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        pid_text, sep, comm = line.strip().partition(" ")
        if sep and pid_text.isdigit():
            out[int(pid_text)] = comm
    return out


def parse_saved_tgids(text: str) -> dict[int, int]:
    """``saved_tgids`` lines ``"<pid> <tgid>"`` → {pid: tgid}."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            out[int(parts[0])] = int(parts[1])
    return out


def comm_for(pid: int, comms: Mapping[int, str] | None) -> str:
    """The comm trace_pipe would print for ``pid``."""
    if pid == 0:
        return IDLE_COMM
    if comms is None:
        return UNKNOWN_COMM
    return comms.get(pid, UNKNOWN_COMM)
