"""BPF maps: ``BPF_MAP_CREATE`` and the element commands, owned by :class:`Map`.

Keys and values are ``bytes`` exactly as the kernel stores them (native byte
order).  For per-CPU maps the kernel copies one value per *possible* CPU, each
rounded up to 8 bytes (``round_up(value_size, 8) * num_possible_cpus()``,
kernel/bpf/syscall.c ``bpf_map_value_size``): :meth:`Map.lookup_percpu`
splits that into one ``bytes`` per CPU.

Batch operations (``BPF_MAP_LOOKUP_BATCH``, ``BPF_MAP_LOOKUP_AND_DELETE_BATCH``,
v5.6, commit cb4d03ab499d "bpf: Add generic support for lookup batch op") are
used when the kernel and the map type have them; otherwise :meth:`Map.items`
walks with ``BPF_MAP_GET_NEXT_KEY``.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import struct
from typing import Dict, Iterator, List, Optional, Tuple

from ..._record import dataclass
from ...bpf.maps import MapSpec, MapType, enum_name, sanitize_name
from ...errors import BPFError
from .sys import Cmd, OwnedFd, addr, bpf, bpf_errno, pack, possible_cpus, translate

__all__ = ["Map", "MapInfo", "sanitize_name", "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST", "PERCPU_TYPES"]

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_NO_PREALLOC = 1

_ENOTSUPP = 524  # the kernel-internal "not supported" some batch paths return

#: Map types whose values are per CPU.
PERCPU_TYPES = frozenset({int(MapType.PERCPU_HASH), int(MapType.PERCPU_ARRAY),
                          int(MapType.LRU_PERCPU_HASH)})

#: Whether this kernel takes object names (v4.15, commit ad5b177bd73f
#: "bpf: Add map_name to bpf_map_info"); learnt on the first create.
_names_supported: Optional[bool] = None


@dataclass(frozen=True)
class MapInfo:
    """``struct bpf_map_info`` (``BPF_OBJ_GET_INFO_BY_FD`` on a map)."""

    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    name: str


_MAP_INFO = struct.Struct("=IIIIII16s")


def _cpu_count() -> int:
    return len(possible_cpus())


class Map(OwnedFd):
    """A BPF map fd and its geometry; close it (or leave the ``with``) to drop it.

    Build one with :meth:`create` (or the shorthands :meth:`hash`,
    :meth:`array`, :meth:`percpu_array`, :meth:`perf_event_array`,
    :meth:`ringbuf`...).  ``fd`` is what the assembler's map relocation needs.
    """

    def __init__(self, fd: int, map_type: int, key_size: int, value_size: int, max_entries: int,
                 name: str = "", flags: int = 0) -> None:
        self.fd = fd
        self.map_type = int(map_type)
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.name = name
        self.flags = flags
        self.percpu = self.map_type in PERCPU_TYPES
        self.ncpus = _cpu_count() if self.percpu else 1
        self._slot = (value_size + 7) // 8 * 8 if self.percpu else value_size
        self._batch: Optional[bool] = None

    # -- creation -----------------------------------------------------------------------
    @classmethod
    def create(cls, map_type: int, key_size: int, value_size: int, max_entries: int, *,
               name: str = "", flags: int = 0) -> "Map":
        """``BPF_MAP_CREATE``; ``name`` is sanitized to the kernel's rules and dropped on
        kernels that predate object names."""
        global _names_supported
        kname = sanitize_name(name) if name else ""
        fields = (int(map_type), key_size, value_size, max_entries, flags, 0, 0)
        what = f"BPF_MAP_CREATE({enum_name(MapType, int(map_type)) or map_type}"
        what += f" {kname!r})" if kname else ")"
        if kname and _names_supported is not False:
            attr = pack("IIIIIII16s", *fields, kname.encode())
            fd, err = bpf_errno(Cmd.MAP_CREATE, attr)
            if fd >= 0:
                _names_supported = True
                return cls(fd, map_type, key_size, value_size, max_entries, kname, flags)
            if err not in (_errno.EINVAL, _errno.E2BIG) or _names_supported:
                raise translate(err, what, detail=_create_detail(map_type, key_size, value_size,
                                                                 max_entries, err))
        attr = pack("IIIIIII", *fields)
        fd, err = bpf_errno(Cmd.MAP_CREATE, attr)
        if fd < 0:
            raise translate(err, what, detail=_create_detail(map_type, key_size, value_size,
                                                             max_entries, err))
        if kname:
            _names_supported = False
        return cls(fd, map_type, key_size, value_size, max_entries, "", flags)

    @classmethod
    def from_spec(cls, spec: MapSpec) -> "Map":
        """Create the map a :class:`kprobes.bpf.maps.MapSpec` describes."""
        return cls.create(spec.type, spec.key_size, spec.value_size, spec.max_entries,
                          name=spec.name, flags=spec.flags)

    @classmethod
    def hash(cls, key_size: int, value_size: int, max_entries: int, *, name: str = "",
             percpu: bool = False, lru: bool = False) -> "Map":
        if lru:
            t = MapType.LRU_PERCPU_HASH if percpu else MapType.LRU_HASH
        else:
            t = MapType.PERCPU_HASH if percpu else MapType.HASH
        return cls.create(t, key_size, value_size, max_entries, name=name)

    @classmethod
    def array(cls, value_size: int, max_entries: int, *, name: str = "", percpu: bool = False) -> "Map":
        t = MapType.PERCPU_ARRAY if percpu else MapType.ARRAY
        return cls.create(t, 4, value_size, max_entries, name=name)

    @classmethod
    def percpu_array(cls, value_size: int, max_entries: int, *, name: str = "") -> "Map":
        return cls.array(value_size, max_entries, name=name, percpu=True)

    @classmethod
    def perf_event_array(cls, *, name: str = "", max_entries: int = 0) -> "Map":
        """One slot per possible CPU (index = CPU) for ``bpf_perf_event_output``."""
        return cls.create(MapType.PERF_EVENT_ARRAY, 4, 4, max_entries or _cpu_count(), name=name)

    @classmethod
    def ringbuf(cls, size: int, *, name: str = "") -> "Map":
        """A BPF ring buffer of ``size`` bytes (a power of two, a multiple of the page size;
        v5.8, commit 457f44363a88 "bpf: Implement BPF ring buffer and verifier support")."""
        if size <= 0 or size & (size - 1) or size % 4096:
            raise BPFError(f"ring buffer size {size} is not a power of two multiple of 4096",
                           hint="use e.g. 1 << 20")
        return cls.create(MapType.RINGBUF, 0, 0, size, name=name)

    @classmethod
    def stack_trace(cls, max_entries: int, *, depth: int = 127, name: str = "") -> "Map":
        """Stack ids -> ``depth`` u64 instruction pointers (``bpf_get_stackid``)."""
        return cls.create(MapType.STACK_TRACE, 4, 8 * depth, max_entries, name=name)

    # -- ownership ----------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"Map({self.name or '?'}, type={self.map_type}, key={self.key_size}, "
                f"value={self.value_size}, max={self.max_entries}, fd={self.fd})")

    # -- elements -----------------------------------------------------------------------
    @property
    def value_bytes(self) -> int:
        """Bytes one lookup copies out (all CPUs for a per-CPU map)."""
        return self._slot * self.ncpus

    def _key(self, key: bytes) -> ctypes.Array:  # type: ignore[type-arg]
        if len(key) != self.key_size:
            raise BPFError(f"key of {len(key)} bytes for map {self.name or self.fd} with "
                           f"{self.key_size}-byte keys")
        return ctypes.create_string_buffer(key, max(1, len(key)))

    def _elem(self, cmd: int, key: Optional[ctypes.Array], value: Optional[ctypes.Array],  # type: ignore[type-arg]
              flags: int = 0) -> Tuple[int, int]:
        attr = pack("IIQQQ", self.fd, 0, addr(key), addr(value), flags)
        return bpf_errno(cmd, attr)

    def lookup(self, key: bytes) -> Optional[bytes]:
        """The value under ``key`` (all CPUs' slots for a per-CPU map), None if absent."""
        out = ctypes.create_string_buffer(self.value_bytes)
        ret, err = self._elem(Cmd.MAP_LOOKUP_ELEM, self._key(key), out)
        if ret < 0:
            if err == _errno.ENOENT:
                return None
            raise translate(err, f"BPF_MAP_LOOKUP_ELEM on {self.name or 'map'}")
        return out.raw

    def split_percpu(self, raw: bytes) -> List[bytes]:
        """One value per possible CPU out of a per-CPU lookup."""
        return [raw[i * self._slot:i * self._slot + self.value_size] for i in range(self.ncpus)]

    def lookup_percpu(self, key: bytes) -> Optional[List[bytes]]:
        raw = self.lookup(key)
        return None if raw is None else self.split_percpu(raw)

    def percpu_u64(self, key: bytes) -> List[int]:
        """Each CPU's u64 under ``key`` (zeros when absent): a per-CPU counter."""
        vals = self.lookup_percpu(key)
        if vals is None:
            return [0] * self.ncpus
        return [int.from_bytes(v[:8], "little" if _LE else "big") for v in vals]

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """``BPF_MAP_UPDATE_ELEM``; a per-CPU map wants all CPUs' slots, or one value for all."""
        if self.percpu and len(value) == self.value_size and self.ncpus > 1:
            pad = value + b"\0" * (self._slot - self.value_size)
            value = pad * self.ncpus
        want = self.value_bytes
        if len(value) != want:
            raise BPFError(f"value of {len(value)} bytes for map {self.name or self.fd} "
                           f"with {want}-byte values")
        vbuf = ctypes.create_string_buffer(value, max(1, want))
        ret, err = self._elem(Cmd.MAP_UPDATE_ELEM, self._key(key), vbuf, flags)
        if ret < 0:
            raise translate(err, f"BPF_MAP_UPDATE_ELEM on {self.name or 'map'}")

    def delete(self, key: bytes) -> bool:
        """``BPF_MAP_DELETE_ELEM``: True if it was there."""
        ret, err = self._elem(Cmd.MAP_DELETE_ELEM, self._key(key), None)
        if ret < 0:
            if err == _errno.ENOENT:
                return False
            raise translate(err, f"BPF_MAP_DELETE_ELEM on {self.name or 'map'}")
        return True

    def next_key(self, key: Optional[bytes]) -> Optional[bytes]:
        """``BPF_MAP_GET_NEXT_KEY`` (the first key for None); None at the end."""
        nxt = ctypes.create_string_buffer(max(1, self.key_size))
        kbuf = None if key is None else self._key(key)
        ret, err = self._elem(Cmd.MAP_GET_NEXT_KEY, kbuf, nxt)
        if ret < 0:
            if err == _errno.ENOENT:
                return None
            raise translate(err, f"BPF_MAP_GET_NEXT_KEY on {self.name or 'map'}")
        return nxt.raw[:self.key_size]

    def keys(self) -> Iterator[bytes]:
        k = self.next_key(None)
        while k is not None:
            yield k
            k = self.next_key(k)

    def _iterate(self, delete: bool) -> List[Tuple[bytes, bytes]]:
        out = []
        for k in list(self.keys()):
            v = self.lookup(k)
            if v is None:
                continue
            out.append((k, v))
        if delete:
            for k, _ in out:
                self.delete(k)
        return out

    def _run_batch(self, delete: bool, chunk: int) -> List[Tuple[bytes, bytes]]:
        cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
        tok = max(8, self.key_size)
        in_b = ctypes.create_string_buffer(tok)
        out_b = ctypes.create_string_buffer(tok)
        out: List[Tuple[bytes, bytes]] = []
        first = True
        while True:
            keys = ctypes.create_string_buffer(max(1, chunk * self.key_size))
            vals = ctypes.create_string_buffer(max(1, chunk * self.value_bytes))
            # struct { in_batch, out_batch, keys, values; count, map_fd; elem_flags, flags }
            attr = pack("QQQQIIQQ", 0 if first else addr(in_b), addr(out_b), addr(keys),
                        addr(vals), chunk, self.fd, 0, 0)
            ret, err = bpf_errno(cmd, attr)
            count = struct.unpack_from("=I", attr.raw, 32)[0]
            if ret < 0 and err == _errno.ENOSPC and count == 0:
                chunk *= 2  # a hash bucket larger than the chunk
                if chunk > (1 << 20):
                    raise translate(err, Cmd.name(cmd))
                continue
            if ret < 0 and err != _errno.ENOENT:
                raise translate(err, f"{Cmd.name(cmd)} on {self.name or 'map'}")
            kr, vr = keys.raw, vals.raw
            for i in range(count):
                out.append((kr[i * self.key_size:(i + 1) * self.key_size],
                            vr[i * self.value_bytes:(i + 1) * self.value_bytes]))
            if ret < 0:  # ENOENT: that was the last batch
                return out
            ctypes.memmove(in_b, out_b, tok)
            first = False

    def items(self, *, delete: bool = False, chunk: int = 256) -> List[Tuple[bytes, bytes]]:
        """Every (key, value) pair (per-CPU values: all CPUs' slots, see :meth:`split_percpu`).

        With ``delete`` the entries are removed as they are read (atomically per
        batch with ``BPF_MAP_LOOKUP_AND_DELETE_BATCH``; arrays cannot delete and
        refuse).  Batches when the kernel supports them for this map type,
        else a ``GET_NEXT_KEY`` walk.
        """
        if self._batch is not False:
            try:
                res = self._run_batch(delete, min(chunk, max(1, self.max_entries)))
                self._batch = True
                return res
            except BPFError as e:
                if self._batch or e.errno not in (_errno.EINVAL, _errno.ENOTSUP, _ENOTSUPP,
                                                  _errno.EOPNOTSUPP):
                    raise
                self._batch = False
        return self._iterate(delete)

    @property
    def batch_supported(self) -> Optional[bool]:
        """True/False once :meth:`items` learnt whether batches work (None before)."""
        return self._batch

    def info(self) -> MapInfo:
        """``BPF_OBJ_GET_INFO_BY_FD`` for this map."""
        buf = ctypes.create_string_buffer(80)
        attr = pack("IIQ", self.fd, 80, addr(buf))
        bpf(Cmd.OBJ_GET_INFO_BY_FD, attr, what="BPF_OBJ_GET_INFO_BY_FD(map)")
        t, i, ks, vs, me, fl, nm = _MAP_INFO.unpack_from(buf.raw, 0)
        return MapInfo(t, i, ks, vs, me, fl, nm.split(b"\0", 1)[0].decode(errors="replace"))

    def as_dict(self) -> Dict[bytes, bytes]:
        return dict(self.items())


_LE = struct.pack("=H", 1) == b"\x01\x00"


def _create_detail(map_type: int, key: int, value: int, entries: int, err: int) -> str:
    if err == _errno.EINVAL:
        return (f"the kernel refused type {int(map_type)} with key {key}, value {value}, "
                f"{entries} entries (an unknown map type or a bad geometry)")
    if err == _errno.ENOMEM:
        return "not enough locked memory (check RLIMIT_MEMLOCK on kernels before 5.11)"
    return ""
