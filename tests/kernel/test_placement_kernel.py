"""A kprobe inside an instruction: the kernel refuses it (EILSEQ), and we say why.

``vfs_read+1`` is inside vfs_read's first instruction (endbr64 with IBT, the
5-byte ftrace call site otherwise); register_kprobe() answers -EILSEQ and
trace_kprobe logs "Probe point is not an instruction boundary".  The error
must say that (with a hint about where offsets come from), never a bare
"Invalid argument", and leave nothing behind.
"""

from __future__ import annotations

from tests.helpers import run_cli, session_leftovers


def test_kprobe_offset_inside_an_instruction() -> None:
    rc, out, err = run_cli(["trace", "p:x vfs_read+1", "--duration", "0.1"])
    assert rc != 0, out
    assert "instruction boundary" in err, err
    assert "Invalid argument" not in err and "multibyte" not in err, err
    assert "disassembl" in err, err  # the hint: take offsets from the disassembly
    rc, out, err = run_cli(["-e", "kprobe:vfs_read+1 { @ = count(); }", "-c", "true"])
    assert rc != 0 and "instruction boundary" in err, err
    assert session_leftovers() == []
