"""Small BPF programs shared by the host and kernel BPF tests (written with the assembler)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Optional

from kprobes.backends.bpf import Map
from kprobes.bpf import R0, R1, R2, R6, R7, R10, Assembler, Helper, Reg


def tgid_guard(a: Assembler, tgid: int, out: str = "out") -> None:
    """Jump to ``out`` unless the current process is ``tgid``."""
    a.call(Helper.get_current_pid_tgid).rsh64(R0, 32).jne(R0, tgid, out)


def bump(a: Assembler, counts: Map, key_reg_or_imm: object, out: str = "out", atomic: bool = True) -> None:
    """``counts[key] += 1`` for a u32 key: an immediate, a register, or None (already at r10-4)."""
    if isinstance(key_reg_or_imm, Reg):
        a.stx("w", R10, -4, key_reg_or_imm)
    elif isinstance(key_reg_or_imm, int):
        a.st("w", R10, -4, key_reg_or_imm)
    a.ld_map_fd(R1, counts).mov64(R2, R10).add64(R2, -4).call(Helper.map_lookup_elem)
    a.jeq(R0, 0, out)
    if atomic:
        a.mov64(R1, 1).atomic("dw", "add", R0, 0, R1)
    else:
        a.ldx("dw", R1, R0, 0).add64(R1, 1).stx("dw", R0, 0, R1)


def counter(counts: Map, tgid: int, *, key: int = 0, percpu: bool = False) -> Assembler:
    """Count calls by ``tgid`` into ``counts[key]``."""
    a = Assembler()
    tgid_guard(a, tgid)
    bump(a, counts, key, atomic=not percpu)
    a.label("out").mov64(R0, 0).exit()
    return a


def cookie_counter(counts: Map, tgid: int) -> Assembler:
    """``counts[bpf_get_attach_cookie()] += 1`` for ``tgid`` (kprobe programs)."""
    a = Assembler()
    a.mov64(R6, R1)
    tgid_guard(a, tgid)
    a.mov64(R1, R6).call(Helper.get_attach_cookie).stx("w", R10, -4, R0)
    bump(a, counts, None)  # key already at r10-4
    a.label("out").mov64(R0, 0).exit()
    return a


def log2_of(a: Assembler, src: object, dst: object) -> None:
    """``dst = floor(log2(src))`` for src >= 1 (0 for 0): bpftrace's hist() bucket without loops."""
    a.mov64(dst, 0)  # type: ignore[arg-type]
    for shift in (32, 16, 8, 4, 2, 1):
        skip = a.fresh_label("l2")
        a.mov64(R1, src)  # type: ignore[arg-type]
        a.rsh64(R1, shift)
        a.jeq(R1, 0, skip)
        a.rsh64(src, shift).add64(dst, shift)  # type: ignore[arg-type]
        a.label(skip)


def retval_hist(hist: Map, tgid: int, *, regs_rax_off: int = 80) -> Assembler:
    """kretprobe: ``hist[log2(retval)] += 1`` for positive return values of ``tgid``.

    ``regs_rax_off`` is ``offsetof(struct pt_regs, ax)`` on x86_64 (80).
    """
    a = Assembler()
    a.ldx("dw", R6, R1, regs_rax_off)  # r6 = PT_REGS_RC
    tgid_guard(a, tgid)
    a.jsle(R6, 0, "out")
    log2_of(a, R6, R7)
    a.stx("w", R10, -4, R7)
    bump(a, hist, None)
    a.label("out").mov64(R0, 0).exit()
    return a


def u64(b: Optional[bytes]) -> int:
    return 0 if b is None else int.from_bytes(b[:8], sys.byteorder)


def key(i: int) -> bytes:
    return i.to_bytes(4, sys.byteorder)


class Child:
    """A Python child that waits for 'go' lines and runs ``body`` (Python source using ``n``)."""

    def __init__(self, body: str) -> None:
        src = (
            "import sys, ctypes, os\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
            "for line in sys.stdin:\n"
            "    n = int(line)\n"
            f"{''.join('    ' + ln + chr(10) for ln in body.splitlines())}"
            "    sys.stdout.write('done\\n'); sys.stdout.flush()\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", src], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "ready\n"
        self.pid = self.proc.pid

    def run(self, n: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "done\n"

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            try:
                self.close()
            except subprocess.TimeoutExpired:
                os.kill(self.pid, 9)
                self.proc.wait()
