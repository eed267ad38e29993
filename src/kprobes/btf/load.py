"""Open kernel BTF from sysfs (or any file): vmlinux and split module BTF.

The file is mapped read-only when the kernel allows it (``/sys/kernel/btf/*``
can be mmap'ed MAP_PRIVATE since Linux 6.16, patch series "btf: allow mmap of
vmlinux btf" by Lorenz Bauer), otherwise read into memory; mapping means a
lookup only touches the pages it needs.
"""

from __future__ import annotations

import errno
import mmap
import os
from typing import Union

from ..errors import BTFError
from . import cache as _cache
from .btf import BTF
from .header import parse_header

__all__ = ["load_vmlinux", "load_module", "load_file", "read_blob", "SYSFS_BTF"]

SYSFS_BTF = "/sys/kernel/btf"
Blob = Union[bytes, mmap.mmap]


def read_blob(path: str) -> Blob:
    """The bytes of ``path``: an ``mmap`` when possible, else a ``bytes`` copy."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        if size > 0:
            try:
                return mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
            except (OSError, ValueError):
                pass
        chunks = []
        while True:
            chunk = os.read(fd, max(size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _open_error(path: str, exc: OSError, module: str | None) -> BTFError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BTFError(
            f"cannot read {path}: permission denied",
            hint="run as root or make the BTF file readable",
        )
    if exc.errno != errno.ENOENT:
        return BTFError(f"cannot read {path}: {exc.strerror}")
    if module is not None:
        return BTFError(
            f"no BTF for module {module!r} ({path} does not exist)",
            hint="load the module first; module BTF also needs CONFIG_DEBUG_INFO_BTF_MODULES=y",
        )
    if path.startswith(SYSFS_BTF):
        return BTFError(
            f"no kernel BTF: {path} does not exist, so this kernel was built without "
            "CONFIG_DEBUG_INFO_BTF",
            hint="use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels "
            "have it), or write raw fetchargs such as '+16(%di):u32' instead of names",
        )
    return BTFError(f"no BTF file at {path}")


def load_file(
    path: str,
    *,
    base: BTF | None = None,
    name: str | None = None,
    use_cache: bool = True,
    cache_dir: str | None = None,
) -> BTF:
    """Open the BTF in ``path`` (split on top of ``base`` when given).

    With ``use_cache`` the record index is loaded from / saved to the disk cache
    (:mod:`kprobes.btf.cache`); ``cache_dir`` overrides its location.
    """
    label = name or os.path.basename(path) or "btf"
    try:
        data = read_blob(path)
    except OSError as exc:
        raise _open_error(path, exc, label if base is not None else None) from None
    if not use_cache:
        return BTF(data, base=base, name=label)
    h = parse_header(data, label)
    section = memoryview(data)[h.type_start : h.type_start + h.type_len]
    key = _cache.cache_key(section, label)
    section.release()
    offs = _cache.load_offsets(key, cache_dir)
    btf = BTF(data, base=base, name=label, offsets=offs)
    if offs is None:
        _cache.store_offsets(key, btf.offsets, h.type_len, cache_dir)
    return btf


def load_vmlinux(
    path: str = SYSFS_BTF + "/vmlinux", *, use_cache: bool = True, cache_dir: str | None = None
) -> BTF:
    """The kernel's own BTF (``/sys/kernel/btf/vmlinux`` by default)."""
    return load_file(path, name="vmlinux", use_cache=use_cache, cache_dir=cache_dir)


def load_module(name: str, base: BTF, *, root: str = SYSFS_BTF, use_cache: bool = False) -> BTF:
    """Split BTF of a loaded module (``/sys/kernel/btf/<name>``) on top of ``base``.

    Module type ids continue after vmlinux's; ``name`` may also be a file path.
    """
    path = name if os.sep in name else os.path.join(root, name)
    label = os.path.basename(path)
    return load_file(path, base=base, name=label, use_cache=use_cache)
