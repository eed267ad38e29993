"""Disk cache of the type-record index of a large BTF blob.

The only expensive step of opening vmlinux BTF is finding where each of its
~100k records starts.  That index depends on nothing but the type section, so
it is stored once per distinct type section in
``$KPROBES_CACHE_DIR`` / ``$XDG_CACHE_HOME/kprobes`` / ``~/.cache/kprobes``
(``/var/cache/kprobes`` when there is no home), keyed by the section's length
and CRC-32 — a new kernel build or a different module gets a different file,
while rebooting the same kernel reuses it.

Every failure (no directory, read-only directory, stale or corrupt file) is
silent: the caller simply rescans.  Set ``KPROBES_CACHE_DIR=""`` to disable.
"""

from __future__ import annotations

import os
import struct
import zlib
from array import array
from collections.abc import Sequence

__all__ = ["cache_dir", "cache_key", "load_offsets", "store_offsets"]

_MAGIC = b"KPBTFIX1"
_HEAD = struct.Struct("=8sIIII")  # magic, crc32, type_len, byte-order mark, count
_ORDER_MARK = 0x01020304


def cache_dir() -> str | None:
    """The directory to use, or None when caching is disabled."""
    env = os.environ.get("KPROBES_CACHE_DIR")
    if env is not None:
        return env or None
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return os.path.join(xdg, "kprobes")
    home = os.path.expanduser("~")
    if home and home != "~" and os.path.isdir(home):
        return os.path.join(home, ".cache", "kprobes")
    return "/var/cache/kprobes"


def cache_key(type_section: bytes | memoryview, label: str) -> str:
    """File name for the index of ``type_section`` (a slice of the BTF blob)."""
    crc = zlib.crc32(type_section)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:64]
    return f"btf-{safe}-{len(type_section)}-{crc:08x}.idx"


def _crc_of_key(key: str) -> int:
    return int(key.rsplit("-", 1)[1].split(".")[0], 16)


def load_offsets(key: str, directory: str | None = None) -> array[int] | None:
    """The cached index for ``key``, or None (missing, corrupt, foreign byte order)."""
    d = directory if directory is not None else cache_dir()
    if not d:
        return None
    try:
        with open(os.path.join(d, key), "rb") as f:
            blob = f.read()
        magic, crc, type_len, mark, count = _HEAD.unpack_from(blob, 0)
        if magic != _MAGIC or mark != _ORDER_MARK or crc != _crc_of_key(key):
            return None
        body = memoryview(blob)[_HEAD.size :]
        if len(body) != count * 4:
            return None
        offs = array("I")
        offs.frombytes(body)
        if count and (offs[0] != 0 or offs[-1] * 4 >= type_len):
            return None
        return offs
    except (OSError, ValueError, struct.error):
        return None


def store_offsets(
    key: str, offsets: Sequence[int], type_len: int, directory: str | None = None
) -> bool:
    """Write the index atomically; False (never an exception) when it cannot."""
    d = directory if directory is not None else cache_dir()
    if not d:
        return False
    import tempfile

    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        arr = offsets if isinstance(offsets, array) else array("I", offsets)
        head = _HEAD.pack(_MAGIC, _crc_of_key(key), type_len, _ORDER_MARK, len(arr))
        fd, tmp = tempfile.mkstemp(prefix=".btf-", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(head)
                f.write(arr.tobytes())
            os.replace(tmp, os.path.join(d, key))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return True
    except (OSError, ValueError):
        return False
