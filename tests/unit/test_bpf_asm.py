"""kprobes.bpf.asm: labels, jump offsets, relocations, stack/register helpers, listings."""

from __future__ import annotations

import pytest

from kprobes.bpf import insn as I
from kprobes.bpf.asm import Assembler, RegPool, StackFrame
from kprobes.bpf.disasm import BPFSyntaxError, disassemble, parse, parse_program
from kprobes.bpf.helpers import Helper
from kprobes.bpf.insn import R0, R1, R2, R6, R7, R8, R9, R10, BPFError
from kprobes.bpf.maps import MapSpec, MapType


def counter_program(m: MapSpec) -> Assembler:
    a = Assembler()
    key = a.stack.alloc(8, what="key")
    a.source("@[pid] = count()")
    a.call(Helper.get_current_pid_tgid)
    a.stx("dw", R10, key, R0)
    a.ld_map_fd(R1, m)
    a.mov64(R2, R10).add64(R2, key)
    a.call(Helper.map_lookup_elem)
    a.jeq(R0, 0, "miss").note("first event for this pid")
    a.mov64(R1, 1)
    a.atomic("dw", "add", R0, 0, R1)
    a.ja("out")
    a.label("miss")
    a.source(None)
    a.mov64(R0, 0)
    a.label("out")
    a.exit()
    return a


def test_counter_program_bytes_and_listing() -> None:
    m = MapSpec("@counts", MapType.HASH, 8, 8, 1024)
    prog = counter_program(m).assemble()
    assert prog.map_refs == (m,)
    assert prog.slot_count == 13
    data = prog.encode({m: 7})
    assert data[16:32] == bytes.fromhex("18 11 00 00 07 00 00 00 00 00 00 00 00 00 00 00")
    text = prog.listing()
    assert text.splitlines()[0] == "; @[pid] = count()"
    assert "   2: (18) r1 = map[_counts]" in text
    assert "   7: (15) if r0 == 0x0 goto pc+3  ; first event for this pid" in text
    assert "  10: (05) goto pc+1" in text
    assert text.rstrip().endswith("  12: (95) exit")
    again = parse_program(text, {"_counts": m})
    assert again.insns == prog.insns
    assert again.encode({m: 7}) == data
    assert again.sources == prog.sources and again.notes == prog.notes


def test_missing_fd_and_missing_map_table() -> None:
    m = MapSpec("m", MapType.ARRAY, 4, 8, 1)
    a = Assembler()
    a.ld_map_value(R1, m, 16).exit()
    prog = a.assemble()
    assert prog.encode({m: 4})[:16] == bytes.fromhex("18 21 00 00 04 00 00 00 00 00 00 00 10 00 00 00")
    with pytest.raises(BPFError, match="no file descriptor for map 'm'"):
        prog.encode({})
    with pytest.raises(BPFError, match="no file descriptors were given"):
        prog.encode()


def test_backward_jump_and_ld_imm64_counts_two_slots() -> None:
    a = Assembler()
    a.label("top").ld_imm64(R1, 1 << 40).add64(R1, 1).jne(R1, 0, "top").exit()
    ins = a.assemble().insns
    assert ins[2].off == -4  # jne at slot 3 -> slot 0: 0 - (3 + 1)
    a = Assembler()
    a.jeq(R1, 0, "x").ld_imm64(R2, 5).label("x").exit()
    assert a.assemble().insns[0].off == 2


def test_jump_offsets_at_s16_limits() -> None:
    filler = I.mov64(R0, 0)
    a = Assembler()
    a.ja("far")
    for _ in range(32767):
        a.emit(filler)
    a.label("far").exit()
    assert a.assemble().insns[0].off == 32767

    a = Assembler()
    a.ja("far")
    for _ in range(32768):
        a.emit(filler)
    a.label("far").exit()
    with pytest.raises(BPFError, match="beyond the signed 16-bit offset") as e:
        a.assemble()
    assert "gotol" in (e.value.hint or "")

    a = Assembler()
    a.label("back")
    for _ in range(32767):
        a.emit(filler)
    a.ja("back").exit()
    assert a.assemble().insns[-2].off == -32768

    a = Assembler()
    a.label("back")
    for _ in range(32768):
        a.emit(filler)
    a.jeq(R1, 0, "back").exit()
    with pytest.raises(BPFError, match="16-bit"):
        a.assemble()

    a = Assembler()
    a.gotol("far")
    for _ in range(40000):
        a.emit(filler)
    a.label("far").exit()
    prog = a.assemble()
    assert prog.insns[0].imm == 40000 and prog.max_isa_version() == 4
    assert prog.min_kernel() == (6, 6)


def test_label_errors() -> None:
    a = Assembler()
    a.ja("nowhere").exit()
    with pytest.raises(BPFError, match="undefined label 'nowhere'"):
        a.assemble()
    a = Assembler()
    a.label("x")
    with pytest.raises(BPFError, match="defined twice"):
        a.label("x")
    a = Assembler()
    a.ja("end").exit().label("end")
    with pytest.raises(BPFError, match="end of the program"):
        a.assemble()
    with pytest.raises(BPFError, match="before any instruction"):
        Assembler().note("x")


def test_bpf_to_bpf_call_and_func_pointer() -> None:
    a = Assembler()
    a.ld_func(R2, "cb").call_local("cb").exit()
    a.label("cb").mov64(R0, 0).exit()
    ins = a.assemble().insns
    # ld_imm64 in slots 0-1, call in 2, "cb" at slot 4.  The kernel resolves both
    # as target = insn slot + imm + 1 (for ld_imm64 counted from its first slot).
    assert ins[0] == I.ld_func(R2, 3)
    assert ins[1] == I.call_local(1)
    text = disassemble(ins)
    assert "   0: (18) r2 = subprog[+3]" in text and "   2: (85) call pc+1" in text
    assert parse(text) == list(ins)


def test_fresh_labels_are_distinct() -> None:
    a = Assembler()
    names = set()
    for _ in range(5):
        n = a.fresh_label("else")
        a.label(n)
        names.add(n)
    assert len(names) == 5


def test_stack_frame_alignment_and_limit() -> None:
    f = StackFrame()
    assert f.alloc(4, 4) == -4
    assert f.alloc(8) == -16
    assert f.alloc(1, 1) == -17
    assert f.alloc(16) == -40
    m = f.mark()
    with f.scope():
        assert f.alloc(8) == -48
    assert f.mark() == m and f.high == 48
    f.release(0)
    assert f.alloc(512) == -512
    with pytest.raises(BPFError, match="stack exhausted.*for buf") as e:
        f.alloc(1, what="buf")
    assert "per-CPU array" in (e.value.hint or "")
    with pytest.raises(BPFError, match="alignment"):
        StackFrame().alloc(8, 3)


def test_reg_pool() -> None:
    p = RegPool()
    got = [p.take(f"v{i}") for i in range(4)]
    assert got == [R6, R7, R8, R9]
    with pytest.raises(BPFError, match="r6=v0") as e:
        p.take("v4")
    assert "spill" in (e.value.hint or "")
    p.release(R7)
    assert p.in_use == (R6, R8, R9)
    assert p.take() == R7
    with pytest.raises(BPFError, match="not taken"):
        RegPool().release(R6)


def test_program_stack_depth_recorded() -> None:
    a = Assembler()
    a.stack.alloc(24)
    a.mov64(R0, 0).exit()
    assert a.assemble().stack_depth == 24


def test_parse_accepts_llvm_spellings_and_labels() -> None:
    text = """
        r1 = 42 ll
        r2 = 0x10 ll
        loop:
        r1 += -1
        if r1 s> 0 goto loop
        call bpf_ktime_get_ns
        call get_current_comm
        goto +0
        exit
    """
    prog = parse_program(text)
    ins = prog.insns
    assert ins[0] == I.ld_imm64(R1, 42) and ins[1] == I.ld_imm64(R2, 16)
    assert ins[3] == I.jmp("jsgt", R1, 0, -2)
    assert ins[4] == I.call(Helper.ktime_get_ns) and ins[5] == I.call(Helper.get_current_comm)
    assert prog.labels == {"loop": 4}


@pytest.mark.parametrize(
    "line,fragment",
    [
        ("r1 = frobnicate", "not an instruction"),
        ("r11 = 1", "no register r11"),
        ("r1 = be16 r2", "in place"),
        ("if r1 == w2 goto pc+1", "mixed"),
        ("*(s8 *)(r1 +0) = 1", "unsigned"),
        ("w1 = (s32)w2", "8 or 16"),
        ("r1 = 99999999999", "32 bits"),
        ("goto nowhere", "undefined label"),
    ],
)
def test_parse_errors(line: str, fragment: str) -> None:
    with pytest.raises(BPFSyntaxError) as e:
        parse("exit\n" + line + "\nexit")
    assert fragment in str(e.value)
