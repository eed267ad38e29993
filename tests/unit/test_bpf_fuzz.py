"""Hypothesis: every valid instruction survives encode/decode and disassemble/parse;
arbitrary bytes and arbitrary field values never crash anything but cleanly."""

from __future__ import annotations

from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.bpf import insn as I
from kprobes.bpf.disasm import disassemble, format_insn, parse
from kprobes.bpf.insn import BPFDecodeError, BPFError, Insn

regs = st.sampled_from(I.REGS)
s16 = st.integers(I.S16_MIN, I.S16_MAX)
s32 = st.integers(I.S32_MIN, I.S32_MAX)
operand = st.one_of(regs, s32)
sizes = st.sampled_from(["b", "h", "w", "dw"])

valid_insn = st.one_of(
    st.builds(I.alu64, st.sampled_from(sorted(I.ALU_OPS)), regs, operand),
    st.builds(I.alu32, st.sampled_from(sorted(I.ALU_OPS)), regs, operand),
    st.builds(I.neg64, regs), st.builds(I.neg32, regs),
    st.builds(I.sdiv64, regs, operand), st.builds(I.smod32, regs, operand),
    st.builds(I.movsx64, regs, regs, st.sampled_from([8, 16, 32])),
    st.builds(I.movsx32, regs, regs, st.sampled_from([8, 16])),
    st.builds(I.endian, regs, st.sampled_from([16, 32, 64]), st.sampled_from(["le", "be"])),
    st.builds(I.bswap, regs, st.sampled_from([16, 32, 64])),
    st.builds(I.ja, s16), st.builds(I.gotol, s32),
    st.builds(I.jmp, st.sampled_from(sorted(I.JMP_OPS)), regs, operand, s16),
    st.builds(I.jmp32, st.sampled_from(sorted(I.JMP_OPS)), regs, operand, s16),
    st.builds(I.call, st.integers(0, 300)), st.builds(I.call_local, s32),
    st.builds(I.call_kfunc, s32), st.just(I.exit_()),
    st.builds(I.ldx, sizes, regs, regs, s16),
    st.builds(I.ldsx, st.sampled_from(["b", "h", "w"]), regs, regs, s16),
    st.builds(I.stx, sizes, regs, s16, regs),
    st.builds(I.st, sizes, regs, s16, s32),
    st.builds(lambda size, op, d, off, s, f: I.atomic(size, op, d, off, s, fetch=f),
              st.sampled_from(["w", "dw"]),
              st.sampled_from(["add", "or", "and", "xor", "xchg", "cmpxchg"]),
              regs, s16, regs, st.booleans()),
    st.builds(I.ld_imm64, regs, st.integers(-(1 << 63), (1 << 64) - 1)),
    st.builds(I.ld_map_fd, regs, st.integers(0, 0xFFFFFFFF)),
    st.builds(I.ld_map_value, regs, st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF)),
    st.builds(I.ld_map_idx, regs, st.integers(0, 0xFFFFFFFF)),
    st.builds(I.ld_btf_id, regs, st.integers(0, 0xFFFFFFFF)),
    st.builds(I.ld_func, regs, s32),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(valid_insn, min_size=1, max_size=8))
def test_valid_programs_round_trip(prog: List[Insn]) -> None:
    for i in prog:
        I.validate(i)
    data = I.encode(prog)
    assert len(data) == 8 * I.slot_count(prog)
    assert I.decode(data) == prog
    text = disassemble(prog)
    assert parse(text) == prog
    assert disassemble(parse(text)) == text
    assert [format_insn(i) for i in parse(disassemble(data, opcodes=False))] == [
        format_insn(i) for i in prog
    ]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_cleanly(data: bytes) -> None:
    try:
        prog = I.decode(data)
    except BPFDecodeError as e:
        assert 0 <= e.index <= len(data) // 8
        return
    assert I.encode(prog) == data
    assert parse(disassemble(prog)) == prog


fieldish = st.builds(
    Insn,
    st.integers(0, 255),
    st.integers(0, 15),
    st.integers(0, 15),
    st.sampled_from([0, 1, 8, 16, 32, -1, 7]),
    st.sampled_from([0, 1, 16, 32, 64, 0x41, 0x51, 0xA1, 0xE1, 0xF1, 2, -1, 99]),
)


@settings(max_examples=500, deadline=None)
@given(fieldish)
def test_validator_agrees_with_text_and_bytes(i: Insn) -> None:
    try:
        I.validate(i)
    except BPFError:
        return
    assert I.decode(i.encode()) == [i]
    assert parse(format_insn(i)) == [i]
