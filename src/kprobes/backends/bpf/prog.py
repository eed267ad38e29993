"""Loading BPF programs (``BPF_PROG_LOAD``), owned by :class:`Program`.

A load first runs without a verifier log (the fast path: the kernel does not
format thousands of lines nobody reads).  When it fails, it is retried with
``log_level=1`` and a buffer that doubles on ENOSPC up to 16 MiB, and the
failure becomes :class:`~kprobes.errors.VerifierError` carrying the log and
quoting its last lines (where the verifier stopped and why).

:func:`prog_ids` / :func:`prog_info_by_id` walk every loaded program
(``BPF_PROG_GET_NEXT_ID`` / ``BPF_PROG_GET_FD_BY_ID``): tests use them to prove
that nothing of ours outlives its owner.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import struct
from typing import Dict, Hashable, Iterator, List, Mapping, Optional, Union

from ..._record import dataclass
from ...bpf.maps import ProgType, enum_name, sanitize_name
from ...errors import BPFError, VerifierError
from .sys import (
    Cmd,
    OwnedFd,
    addr,
    bpf,
    bpf_errno,
    close_fd,
    cstr,
    kernel_version_code,
    pack,
    translate,
)

__all__ = ["Program", "ProgInfo", "prog_ids", "prog_info_by_id", "LOG_MAX", "insn_bytes"]

#: Largest verifier log buffer tried (the kernel caps log_size at UINT_MAX >> 2).
LOG_MAX = 16 << 20
_LOG_START = 256 << 10

_PROG_INFO_SIZE = 216


@dataclass(frozen=True)
class ProgInfo:
    """The fields of ``struct bpf_prog_info`` kprobes reads."""

    type: int
    id: int
    tag: str
    name: str
    xlated_len: int
    jited_len: int
    run_time_ns: int = 0
    run_cnt: int = 0
    recursion_misses: int = 0

    @property
    def insn_count(self) -> int:
        return self.xlated_len // 8


def _info_of_fd(fd: int) -> ProgInfo:
    buf = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    attr = pack("IIQ", fd, _PROG_INFO_SIZE, addr(buf))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr, what="BPF_OBJ_GET_INFO_BY_FD(prog)")
    got = struct.unpack_from("=I", attr.raw, 4)[0]
    raw = buf.raw
    t, i = struct.unpack_from("=II", raw, 0)
    tag = raw[8:16].hex()
    jl, xl = struct.unpack_from("=II", raw, 16)
    name = raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
    rt = rc = rm = 0
    if got >= 216:
        rt, rc, rm = struct.unpack_from("=QQQ", raw, 192)
    return ProgInfo(t, i, tag, name, xl, jl, rt, rc, rm)


def insn_bytes(insns: object, maps: Optional[Mapping[Hashable, object]] = None) -> bytes:
    """The raw instructions of ``insns``: bytes, an assembled program
    (:class:`kprobes.bpf.asm.Program`, whose map references are resolved to fds
    here), or a sequence of :class:`kprobes.bpf.insn.Insn`.

    A map reference that is itself a :class:`~.maps.Map` (anything with an
    ``fd``) resolves to its fd without being named in ``maps``; ``maps`` maps
    other references (names, ``MapSpec``) to a ``Map`` or an fd.
    """
    if isinstance(insns, (bytes, bytearray, memoryview)):
        return bytes(insns)
    refs = getattr(insns, "map_refs", None)
    enc = getattr(insns, "encode", None)
    if refs is not None and callable(enc):
        fds: Dict[Hashable, int] = {}
        for ref in refs:
            target = (maps or {}).get(ref, ref)
            fd = target if isinstance(target, int) else getattr(target, "fd", None)
            if not isinstance(fd, int) or fd < 0:
                raise BPFError(f"the program uses map {ref!r} but no open map was given for it",
                               hint="pass maps={ref: Map} to Program.load, or use the Map itself "
                               "as the assembler's reference")
            fds[ref] = fd
        out = enc(fds)
        if isinstance(out, (bytes, bytearray)):
            return bytes(out)
    if callable(enc):
        out = enc()
        if isinstance(out, (bytes, bytearray)):
            return bytes(out)
    if hasattr(insns, "__iter__"):
        return b"".join(insn_bytes(ins) for ins in insns)
    raise BPFError(f"cannot turn {type(insns).__name__} into BPF instructions")


class Program(OwnedFd):
    """A loaded BPF program fd; close it (or leave the ``with``) to unload it once no
    link or perf event holds it."""

    def __init__(self, fd: int, prog_type: int, name: str = "", insn_count: int = 0,
                 log: str = "") -> None:
        self.fd = fd
        self.prog_type = int(prog_type)
        self.name = name
        self.insn_count = insn_count
        #: The verifier log when one was asked for (``log_level``), else "".
        self.log = log

    @classmethod
    def load(
        cls,
        prog_type: int,
        insns: Union[bytes, object],
        *,
        name: str = "",
        license: str = "GPL",
        expected_attach_type: Optional[int] = None,
        kern_version: Optional[int] = None,
        log_level: int = 0,
        prog_flags: int = 0,
        maps: Optional[Mapping[Hashable, object]] = None,
        attach_btf_id: int = 0,
        attach_btf_obj_fd: int = 0,
    ) -> "Program":
        """``BPF_PROG_LOAD``.  ``insns`` is the assembled program (see :func:`insn_bytes`;
        ``maps`` resolves its map references).

        ``expected_attach_type`` is required for kprobe_multi programs
        (``AttachType.TRACE_KPROBE_MULTI``).  ``kern_version`` defaults to the
        running kernel's ``LINUX_VERSION_CODE`` (kernels before 5.0 check it
        for kprobe programs).  ``log_level`` > 0 keeps the verifier log of a
        successful load in :attr:`log`.  ``attach_btf_id`` (TRACING programs: fentry/fexit)
        is the BTF id of the function, in vmlinux or in the module BTF object
        ``attach_btf_obj_fd``.
        """
        code = insn_bytes(insns, maps)
        if not code or len(code) % 8:
            raise BPFError(f"a BPF program is a whole number of 8-byte instructions, got {len(code)} bytes")
        kname = sanitize_name(name) if name else ""
        kv = kernel_version_code() if kern_version is None else kern_version
        code_buf = ctypes.create_string_buffer(code, len(code))
        lic = cstr(license)
        n = len(code) // 8
        ptype_name = enum_name(ProgType, int(prog_type)) or str(prog_type)
        what = f"BPF_PROG_LOAD({ptype_name}{' ' + repr(kname) if kname else ''}, {n} insns)"

        def attempt(level: int, size: int, with_name: bool) -> tuple[int, int, str]:
            log = ctypes.create_string_buffer(size) if level else None
            fields = [int(prog_type), n, addr(code_buf), addr(lic), level, size if level else 0,
                      addr(log), kv, prog_flags]
            if attach_btf_id:
                # ... prog_ifindex, expected_attach_type, prog_btf_fd, func_info_rec_size,
                # func_info, func_info_cnt, line_info_rec_size, line_info, line_info_cnt,
                # attach_btf_id, attach_btf_obj_fd (uapi union bpf_attr, BPF_PROG_LOAD)
                attr = pack("IIQQIIQII16sIIIIQIIQIII", *fields,
                            kname.encode() if with_name else b"", 0,
                            int(expected_attach_type or 0), 0, 0, 0, 0, 0, 0, 0,
                            int(attach_btf_id), int(attach_btf_obj_fd))
            elif expected_attach_type is not None:
                attr = pack("IIQQIIQII16sII", *fields, kname.encode() if with_name else b"",
                            0, int(expected_attach_type))
            elif with_name and kname:
                attr = pack("IIQQIIQII16s", *fields, kname.encode())
            else:
                attr = pack("IIQQIIQII", *fields)
            fd, err = bpf_errno(Cmd.PROG_LOAD, attr)
            text = log.value.decode(errors="replace") if log is not None else ""
            return fd, err, text

        with_name = bool(kname)
        fd, err, text = attempt(log_level, _LOG_START if log_level else 0, with_name)
        if fd < 0 and with_name and err in (_errno.EINVAL, _errno.E2BIG):
            # Kernels before v4.15 know no prog_name: try once without it.
            fd2, err2, text2 = attempt(log_level, _LOG_START if log_level else 0, False)
            if fd2 >= 0 or err2 != err:
                fd, err, text, with_name = fd2, err2, text2, False
        if fd >= 0:
            return cls(fd, prog_type, kname if with_name else "", n, text)
        if err == _errno.EPERM:
            raise translate(err, what)
        size = _LOG_START
        level = max(1, log_level)
        while not (log_level and text.strip() and err != _errno.ENOSPC):
            fd, err2, text = attempt(level, size, with_name)
            if fd >= 0:  # loaded the second time (a transient failure)
                return cls(fd, prog_type, kname if with_name else "", n, text)
            if err2 == _errno.ENOSPC and size < LOG_MAX:
                size = min(LOG_MAX, size * 4)
                continue
            err = err2
            break
        if not text.strip():
            raise translate(err, what)
        raise VerifierError(
            f"{what} failed: the verifier rejected the program "
            f"({_errno.errorcode.get(err, err)})",
            text,
            errno=err,
            hint="the log's last lines say which instruction failed and why",
        )

    def info(self) -> ProgInfo:
        """``BPF_OBJ_GET_INFO_BY_FD``: id, tag, name, size, run statistics."""
        return _info_of_fd(self.fd)

    def __repr__(self) -> str:
        return f"Program({self.name or '?'}, type={self.prog_type}, insns={self.insn_count}, fd={self.fd})"


def prog_ids() -> Iterator[int]:
    """Ids of every loaded BPF program (``BPF_PROG_GET_NEXT_ID``; needs CAP_SYS_ADMIN)."""
    cur = 0
    while True:
        attr = pack("III", cur, 0, 0)
        ret, err = bpf_errno(Cmd.PROG_GET_NEXT_ID, attr)
        if ret < 0:
            if err == _errno.ENOENT:
                return
            raise translate(err, "BPF_PROG_GET_NEXT_ID")
        cur = struct.unpack_from("=I", attr.raw, 4)[0]
        yield cur


def prog_info_by_id(prog_id: int) -> Optional[ProgInfo]:
    """:class:`ProgInfo` of program ``prog_id``, None if it went away meanwhile."""
    attr = pack("III", prog_id, 0, 0)
    fd, err = bpf_errno(Cmd.PROG_GET_FD_BY_ID, attr)
    if fd < 0:
        if err == _errno.ENOENT:
            return None
        raise translate(err, "BPF_PROG_GET_FD_BY_ID")
    try:
        return _info_of_fd(fd)
    finally:
        close_fd(fd)


def programs_named(prefix: str) -> List[ProgInfo]:
    """Loaded programs whose kernel name starts with ``prefix``."""
    out = []
    for i in prog_ids():
        info = prog_info_by_id(i)
        if info is not None and info.name.startswith(prefix):
            out.append(info)
    return out
