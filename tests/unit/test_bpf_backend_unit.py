"""Pure parts of the BPF backend: attr packing, cpu lists, errno translation, error text."""

from __future__ import annotations

import errno
import struct

import pytest

from kprobes.backends.bpf.maps import Map
from kprobes.backends.bpf.perf import PERF_ATTR_SIZE_VER5, perf_attr
from kprobes.backends.bpf.prog import insn_bytes
from kprobes.backends.bpf.sys import kernel_version_code, parse_cpu_list, translate
from kprobes.bpf import R0, R1, Assembler
from kprobes.bpf.maps import MapSpec, MapType
from kprobes.errors import BPFError, PermissionProblem, VerifierError


def test_perf_attr_layout() -> None:
    raw = perf_attr(7, 1, sample_period=1, wakeup_events=1, disabled=True, config1=0x1234, config2=8)
    assert len(raw) == PERF_ATTR_SIZE_VER5 == 112
    t, size, config, period, stype, rfmt, flags, wake, bp, c1, c2 = struct.unpack_from("=IIQQQQQIIQQ", raw)
    assert (t, size, config, period, flags & 1, wake, c1, c2) == (7, 112, 1, 1, 1, 1, 0x1234, 8)
    freq = perf_attr(1, 0, sample_freq=99)
    assert struct.unpack_from("=Q", freq, 16)[0] == 99 and struct.unpack_from("=Q", freq, 40)[0] & (1 << 10)
    wm = perf_attr(1, 10, wakeup_watermark=4096)
    assert struct.unpack_from("=I", wm, 48)[0] == 4096 and struct.unpack_from("=Q", wm, 40)[0] & (1 << 14)


def test_cpu_lists_and_version_code() -> None:
    assert parse_cpu_list("0-3,5,7-8\n") == (0, 1, 2, 3, 5, 7, 8)
    assert parse_cpu_list("0") == (0,)
    assert kernel_version_code("6.1.0-28-amd64") == (6 << 16) + (1 << 8)
    assert kernel_version_code("5.15.300") == (5 << 16) + (15 << 8) + 255


def test_errno_translation() -> None:
    e = translate(errno.EPERM, "BPF_PROG_LOAD")
    assert isinstance(e, PermissionProblem) and "CAP_BPF" in (e.hint or "")
    b = translate(errno.E2BIG, "BPF_MAP_CREATE", detail="x")
    assert isinstance(b, BPFError) and b.errno == errno.E2BIG and "E2BIG" in b.message
    assert "older" in (b.hint or "")


def test_eilseq_says_instruction_boundary() -> None:
    e = translate(errno.EILSEQ, "perf_event_open(kprobe:vfs_read+1)")
    text = e.format()  # type: ignore[attr-defined]
    assert "not an instruction boundary" in text and "multibyte" not in text
    assert "disassembl" in text


def test_verifier_error_quotes_the_last_lines() -> None:
    log = "\n".join(f"{i}: line {i}" for i in range(40)) + "\nR0 !read_ok\n"
    e = VerifierError("BPF_PROG_LOAD failed", log, errno=errno.EACCES, tail=5)
    assert e.last_lines[-1] == "R0 !read_ok" and len(e.last_lines) == 5
    assert str(e).splitlines()[1] == "verifier log (last lines):"
    assert "  R0 !read_ok" in str(e) and e.log == log


def test_insn_bytes_resolves_map_references() -> None:
    spec = MapSpec("counts", MapType.ARRAY, 4, 8, 1)
    a = Assembler()
    a.ld_map_fd(R1, spec).mov64(R0, 0).exit()
    prog = a.assemble()
    with pytest.raises(BPFError, match="no open map"):
        insn_bytes(prog)
    fake = Map(42, MapType.ARRAY, 4, 8, 1)
    raw = insn_bytes(prog, {spec: fake})
    assert len(raw) == 8 * 4 and struct.unpack_from("<i", raw, 4)[0] == 42
    assert insn_bytes(b"\x95" + b"\0" * 7) == b"\x95" + b"\0" * 7
    fake.fd = -1  # never closed for real: 42 is not ours
