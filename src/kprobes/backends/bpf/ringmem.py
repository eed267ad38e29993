"""Shared memory with the kernel for the BPF ring readers: mappings, position words, fences.

Both rings (:mod:`.perfring`, :mod:`.ringbuf`) are a single-producer/single-consumer
protocol over memory mapped from a file descriptor: the kernel writes records, then
publishes a *head* (``data_head`` / ``producer_pos``, or a per-record header word);
the reader loads the head, reads the records, then stores its *tail*
(``data_tail`` / ``consumer_pos``) to hand the space back.

Memory ordering (the kernel side: ``perf_output_put_handle`` /
``bpf_ringbuf_commit`` publish with ``smp_store_release``/``smp_wmb``; the reader
must pair with an acquire on the head and a release on the tail, see
``include/uapi/linux/perf_event.h`` on ``data_head``):

* The position words are read and written through ``ctypes.c_uint64`` cells over
  the mapping: one aligned 64-bit load or store each, never torn (``struct``'s
  little-endian formats assemble integers byte by byte, which could tear).
* x86 (TSO) keeps loads in order with earlier loads and stores in order with earlier
  loads, so "load head, then read records" is an acquire and "read records, then
  store tail" is a release with no instruction between them; CPython's calls into C
  are opaque to the compiler, so nothing is moved across them either.  (perf(1)
  does the same: ``READ_ONCE(data_head)``, ``smp_rmb()`` -- only a compiler barrier
  on x86 -- then ``memcpy`` of the records, then ``smp_mb()`` and the tail store.)
* arm64 and other weakly ordered CPUs reorder loads.  Python cannot emit ``dmb``,
  so :class:`Fence` borrows one from libc: ``pthread_mutex_unlock`` ends in a
  store-release and ``pthread_mutex_lock`` in a load-acquire (LDAXR/CASA); an
  unlock followed by a lock is ordered (release→acquire is RCsc on ARMv8), so
  ``lock; unlock; lock; unlock`` orders every access before it against every
  access after it: a full barrier.  It is called once per batch (after the head load
  and before the tail store), never per record.
* The readers copy the published region out of the ring in one slice (two at the
  wrap) *after* the fence and hand out only copies, so no callback ever holds a
  view of live ring memory (which the kernel may overwrite once the tail moves, and
  which is unmapped at close).
"""

from __future__ import annotations

import ctypes
import mmap as _mmap
import os
import struct
from typing import Callable, Dict, List, Optional, Tuple

from ...errors import BPFError

__all__ = [
    "Fence",
    "RingMapError",
    "RingMapping",
    "leading_run",
    "needs_fence",
    "page_size",
    "record_struct",
]

_TSO_MACHINES = frozenset({"x86_64", "amd64", "i386", "i486", "i586", "i686", "x86"})


class RingMapError(BPFError):
    """mmap of a perf or BPF ring buffer failed."""


def needs_fence(machine: Optional[str] = None) -> bool:
    """True unless the CPU is x86 (total store order: plain loads/stores suffice)."""
    m = (machine if machine is not None else os.uname().machine).lower()
    return m not in _TSO_MACHINES


def page_size() -> int:
    return _mmap.PAGESIZE


def leading_run(words: memoryview, start: int, step: int, count: int, expect: int) -> int:
    """How many of ``words[start]``, ``words[start + step]``, ... (``count`` of them), from
    the first on, equal ``expect``.

    The readers' fast path for runs of equal records: the header words of a run of
    same-size records sit at a fixed stride, so one strided slice and ``tolist``
    read them all in C, and ``count`` compares them in C.
    """
    got = words[start:start + count * step:step].tolist()
    if got.count(expect) == count:
        return count
    n = 0
    for w in got:
        if w != expect:
            break
        n += 1
    return n


_STRUCTS: Dict[Tuple[str, int, int], struct.Struct] = {}


def record_struct(record: struct.Struct, skip: int, stride: int) -> struct.Struct:
    """``record`` preceded by ``skip`` header bytes and padded to ``stride`` bytes (for
    ``iter_unpack`` over a run of equal records)."""
    key = (record.format, skip, stride)
    st = _STRUCTS.get(key)
    if st is None:
        fmt = record.format
        order = fmt[0] if fmt and fmt[0] in "@=<>!" else "@"
        body = fmt[1:] if fmt and fmt[0] in "@=<>!" else fmt
        pad = stride - skip - record.size
        if pad < 0:
            raise ValueError(f"a {record.size}-byte record format does not fit a "
                             f"{stride - skip}-byte record")
        st = struct.Struct(f"{order}{skip}x{body}{pad}x")
        if st.size != stride:  # native alignment padding moved things: not usable
            raise ValueError(f"record format {fmt!r} needs alignment padding; use '<' or '='")
        _STRUCTS[key] = st
    return st


_libc: Optional[ctypes.CDLL] = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mmap.restype = ctypes.c_void_p
        lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                             ctypes.c_int, ctypes.c_long]
        lib.munmap.restype = ctypes.c_int
        lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc = lib
    return _libc


class Fence:
    """A full memory barrier for the ring protocols (a no-op on x86; see the module docstring)."""

    __slots__ = ("_mutex", "_lock", "_unlock", "active")

    def __init__(self, active: Optional[bool] = None) -> None:
        self.active = needs_fence() if active is None else active
        # zero bytes are PTHREAD_MUTEX_INITIALIZER (glibc and musl); 64 covers every ABI's size
        self._mutex = ctypes.create_string_buffer(64)
        self._lock: Optional[Callable[[object], int]] = None
        self._unlock: Optional[Callable[[object], int]] = None
        if self.active:
            lib = _lib()
            self._lock = lib.pthread_mutex_lock
            self._unlock = lib.pthread_mutex_unlock

    def __call__(self) -> None:
        if self._lock is None or self._unlock is None:
            return
        m = self._mutex
        self._lock(m)
        self._unlock(m)  # store-release: everything before is ordered before it
        self._lock(m)  # load-acquire after a store-release: everything after waits for it
        self._unlock(m)


class RingMapping:
    """``mmap(fd, size, offset)`` of a ring (MAP_SHARED), with 64-bit position cells and a byte view.

    ``view`` is a memoryview of the live mapping: slice it and copy (``bytes()``)
    before handing anything out; it is released and the memory unmapped by
    :meth:`close`.
    """

    __slots__ = ("addr", "size", "view", "writable", "_cells")

    def __init__(self, fd: int, size: int, offset: int = 0, writable: bool = True) -> None:
        prot = _mmap.PROT_READ | (_mmap.PROT_WRITE if writable else 0)
        lib = _lib()
        addr = lib.mmap(None, size, prot, _mmap.MAP_SHARED, fd, offset)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            err = ctypes.get_errno()
            raise RingMapError(
                f"mmap of ring fd {fd} ({size} bytes at offset {offset}) failed: {os.strerror(err)}",
                hint="ring sizes must be a power-of-two number of pages; RLIMIT_MEMLOCK or "
                "perf_event_mlock_kb may be too small" if err in (1, 12, 22) else None,
                errno=err,
            )
        self.addr: int = addr
        self.size = size
        self.writable = writable
        self.view: memoryview = memoryview((ctypes.c_ubyte * size).from_address(addr)).cast("B")
        self._cells: List[ctypes.c_uint64] = []

    def u64(self, offset: int) -> ctypes.c_uint64:
        """A ``c_uint64`` over the 8 aligned bytes at ``offset`` (valid until :meth:`close`)."""
        if offset % 8 or not 0 <= offset <= self.size - 8:
            raise ValueError(f"bad u64 offset {offset}")
        cell = ctypes.c_uint64.from_address(self.addr + offset)
        self._cells.append(cell)
        return cell

    def close(self) -> None:
        if not self.addr:
            return
        self.view.release()
        self._cells.clear()
        _lib().munmap(self.addr, self.size)
        self.addr = 0

    def __enter__(self) -> RingMapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
