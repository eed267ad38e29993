"""Checks of command-line values that must fail before anything is armed.

Each function raises a :class:`~kprobes.errors.KprobesError` (usually
:class:`~kprobes.cli.main.UsageError`) with a message and a hint; none of them
touches tracefs.  The commands call them right after parsing, so that a
typo never leaves probes armed while the error is reported.
"""

from __future__ import annotations

import math
import os
import shlex
from typing import List, Optional, Sequence

from ..backends.process import resolve_command
from ..errors import KprobesError

__all__ = [
    "check_arguments", "check_buffer_size", "check_duration", "check_pid",
    "check_shell_command", "check_output_path", "decode_program",
]  # fmt: skip

#: Shell words after which the first word of ``sh -c TEXT`` is not a program name.
_SHELL_WORDS = frozenset(
    "! { } ( ) [ [[ . : alias bg break case cd command continue echo eval exec exit export false "
    "fg for function getopts hash if jobs kill let local printf pwd read readonly return set "
    "shift source test times trap true type ulimit umask unalias unset until wait while".split()
)
_SHELL_META = set("$`;&|<>()*?[]{}~\\\"'")


def _usage(message: str, hint: Optional[str] = None) -> KprobesError:
    from .main import UsageError

    return UsageError(message, hint=hint)


def _first_bad_byte(text: str) -> "tuple[int, int]":
    """(byte offset, byte value) of the first undecodable byte in a surrogateescape'd string."""
    offset = 0
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            return offset, code - 0xDC00
        if 0xD800 <= code <= 0xDFFF:
            return offset, code
        offset += len(ch.encode("utf-8"))
    return -1, 0


def check_arguments(args: Sequence[str]) -> None:
    """Every argument must be UTF-8: definitions, filters and paths go to the kernel as text.

    Arguments that were not valid UTF-8 reach Python as lone surrogates
    (``os.fsdecode``); name the argument and the byte offset of the bad byte.
    """
    for i, arg in enumerate(args, 1):
        if "\x00" in arg:
            raise _usage(f"argument {i} contains a NUL byte at offset {arg.index(chr(0))}",
                         hint="arguments are C strings; remove the NUL")  # fmt: skip
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            offset, byte = _first_bad_byte(arg)
            shown = arg.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            raise _usage(
                f"argument {i} ('{shown}') is not valid UTF-8: byte 0x{byte:02x} at offset {offset}",
                hint="kprobes passes definitions, filters, programs and paths to the kernel as "
                "UTF-8 text; use a UTF-8 spelling (rename the file, or a symlink with a UTF-8 name)",
            ) from None


def decode_program(data: bytes, filename: str) -> str:
    """A program file's text; bytes that are not UTF-8 are an error at FILE:LINE:COL."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = e.start
        line = data.count(b"\n", 0, start) + 1
        col = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise KprobesError(
            f"{filename}:{line}:{col}: not valid UTF-8: byte 0x{data[start]:02x} at offset {start}",
            hint="a bpftrace program is UTF-8 text; re-save the file as UTF-8 "
            "(write other bytes in strings as escapes such as \\xff)",
        ) from None


def _max_buffer_kb() -> Optional[int]:
    """What the kernel can give every CPU's buffer: MemAvailable / CPUs (None: unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail_kb = int(line.split()[1])
                    break
            else:
                return None
    except (OSError, ValueError, IndexError):
        return None
    cpus = os.cpu_count() or 1
    return max(1, avail_kb // cpus)


def check_buffer_size(kb: int) -> None:
    """``--buffer-size KB``: at least 1, at most what the kernel can allocate on every CPU.

    The kernel (ring_buffer_resize) refuses 0 with EINVAL and a size larger
    than the available memory with ENOMEM; the buffer is per CPU.
    """
    if kb < 1:
        raise _usage(f"--buffer-size {kb}: must be at least 1 (KiB per CPU)",
                     hint="the default is 4096")  # fmt: skip
    limit = _max_buffer_kb()
    if limit is not None and kb > limit:
        raise _usage(
            f"--buffer-size {kb}: larger than the kernel can allocate; the maximum here is "
            f"{limit} KiB per CPU (available memory / {os.cpu_count() or 1} CPUs)",
            hint="the buffer is allocated once per CPU; the default is 4096 KiB",
        )


def check_duration(secs: Optional[float]) -> None:
    """``--duration SECS``: a finite number of seconds greater than 0."""
    if secs is None:
        return
    if not (secs > 0) or math.isinf(secs):
        raise _usage(f"--duration {secs:g}: must be a number of seconds greater than 0",
                     hint="e.g. --duration 5 or --duration 0.5; without it, run until Ctrl-C")  # fmt: skip


def check_pid(pid: Optional[int]) -> None:
    """``-p PID``: a process that exists now (bpftrace: "No such process")."""
    if pid is None:
        return
    if pid <= 0 or not os.path.isdir(f"/proc/{pid}"):
        raise KprobesError(f"No such process: {pid}",
                           hint="-p takes the id of a running process (see: ps -e)")  # fmt: skip


def check_shell_command(command: Optional[str]) -> None:
    """``-c 'CMD ARGS'``: split like bpftrace (shlex); the program must exist and be executable.

    The command runs under ``sh -c``; when its first word is shell syntax (a
    builtin, a keyword, an assignment's successor that uses expansions...),
    only the shell can tell, and it is not checked here.
    """
    if command is None:
        return
    try:
        words: List[str] = shlex.split(command)
    except ValueError as e:
        raise _usage(f"-c {command!r}: {e}", hint="quote the whole command once: -c 'cat \"my file\"'") from None
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        words = words[1:]  # VAR=value cmd
    if not words:
        if not command.strip():
            raise _usage("-c: empty command", hint="e.g. -c 'cat /etc/hostname'")
        return
    first = words[0]
    if first in _SHELL_WORDS or any(c in _SHELL_META for c in first):
        return
    resolve_command(first)


def check_output_path(path: Optional[str], option: str = "-o") -> None:
    """``-o FILE``: its directory exists and is writable; FILE is not a directory."""
    if not path:
        return
    if os.path.isdir(path):
        raise _usage(f"{option} {path}: is a directory", hint=f"give a file name: {option} {path.rstrip('/')}/out.txt")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise KprobesError(f"{option} {path}: directory {parent} does not exist",
                           hint="create it first, or write somewhere else")  # fmt: skip
    if os.path.exists(path):
        writable = os.access(path, os.W_OK)
    else:
        writable = os.access(parent, os.W_OK | os.X_OK)
    if not writable:
        raise KprobesError(f"{option} {path}: permission denied",
                           hint="write to a directory you own, e.g. /tmp")  # fmt: skip
