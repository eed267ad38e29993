"""The decoder against GNU objdump on real binaries of this machine.

* libc: every instruction objdump finds in ``.text`` (hand-written SSE/AVX2/
  AVX-512 string functions, x87, ``movabs``, ``enter``...) has the length
  objdump gives it;
* bash: every exported function, decoded from its first byte as the placement
  check does, has exactly objdump's instruction starts.

Needs binutils' objdump: skipped (with the reason) without it, a failure in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Dict, Tuple

import pytest

from kprobes.backends.symbols.elf import ELFFile, Section
from kprobes.probes.insnlen import decode, insn_length

_LINE = re.compile(r"^\s*([0-9a-f]+):\t([0-9a-f ]+?)\s*\t(.*)$")
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
BASH = "/bin/bash"


def _need(path: str) -> None:
    why = None
    if os.uname().machine != "x86_64":
        why = "the x86-64 decoder is compared on x86-64 binaries"
    elif shutil.which("objdump") is None:
        why = "objdump (binutils) is not installed"
    elif not os.path.exists(path):
        why = f"{path} is missing"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs this comparison: {why}", pytrace=False)
        pytest.skip(why)


def _objdump(path: str) -> Dict[int, Tuple[int, str]]:
    """address -> (length, mnemonic text) for every instruction objdump prints in .text."""
    out = subprocess.run(
        ["objdump", "-d", "--insn-width=16", "-j", ".text", path],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    insns: Dict[int, Tuple[int, str]] = {}
    for line in out.splitlines():
        m = _LINE.match(line)
        if m:
            insns[int(m.group(1), 16)] = (len(m.group(2).split()), m.group(3))
    return insns


def _text(path: str) -> Tuple[Section, bytes]:
    with ELFFile(path) as elf:
        sec = elf.section(".text")
    assert sec is not None
    with open(path, "rb") as f:
        f.seek(sec.offset)
        return sec, f.read(sec.size)


def test_every_libc_instruction_has_objdumps_length() -> None:
    _need(LIBC)
    insns = _objdump(LIBC)
    sec, code = _text(LIBC)
    assert len(insns) > 50_000
    wrong = []
    kinds = set()
    for addr, (n, text) in insns.items():
        if "(bad)" in text or ".byte" in text:
            continue  # objdump could not decode either
        kinds.add(code[addr - sec.addr])
        mine = insn_length(code, addr - sec.addr)
        if mine != n:
            wrong.append(f"0x{addr:x}: {code[addr - sec.addr:addr - sec.addr + n].hex()} "
                         f"{text!r}: objdump {n}, decoder {mine}")
    assert not wrong, f"{len(wrong)} of {len(insns)} differ:\n" + "\n".join(wrong[:20])
    # the comparison covered VEX and EVEX encodings, not only the common ones
    assert {0xC4, 0xC5, 0x62} <= kinds


def test_bash_functions_decode_to_objdumps_boundaries() -> None:
    _need(BASH)
    starts = sorted(_objdump(BASH))
    sec, code = _text(BASH)
    import bisect

    with ELFFile(BASH) as elf:
        funcs = {(s.value, s.size) for t in (".symtab", ".dynsym") for s in elf.symbols(t)
                 if s.is_function and s.size and sec.addr <= s.value < sec.addr + sec.size}
    assert len(funcs) > 100
    bad = []
    checked = 0
    for start, size in sorted(funcs):
        body = code[start - sec.addr:start - sec.addr + size]
        d = decode(body)
        assert d.unknown_at is None, f"function at 0x{start:x}: undecodable at +0x{d.unknown_at:x}"
        mine = [start + s for s in d.starts if s < size]
        theirs = starts[bisect.bisect_left(starts, start):bisect.bisect_left(starts, start + size)]
        checked += len(mine)
        if mine != theirs:
            first = next(a for a, b in zip(mine + [-1], theirs + [-1]) if a != b)
            bad.append(f"function at 0x{start:x}: first difference near 0x{first:x}")
    assert not bad, "\n".join(bad[:20])
    assert checked > 10_000
