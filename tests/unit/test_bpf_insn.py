"""kprobes.bpf.insn: encodings against known bytes, decoder/validator, ISA levels."""

from __future__ import annotations

import pytest

from kprobes.bpf import insn as I
from kprobes.bpf.insn import R0, R1, R2, R3, R10, BPFDecodeError, BPFError, Insn

# (instruction, bytes as printed by llvm-objdump / RFC 9669 opcode tables, kernel text)
KNOWN = [
    (I.mov64(R1, 42), "b7 01 00 00 2a 00 00 00", "r1 = 42"),
    (I.mov64(R2, R10), "bf a2 00 00 00 00 00 00", "r2 = r10"),
    (I.alu64("add", R2, -8), "07 02 00 00 f8 ff ff ff", "r2 += -8"),
    (I.alu64("sub", R1, R2), "1f 21 00 00 00 00 00 00", "r1 -= r2"),
    (I.alu64("lsh", R1, 32), "67 01 00 00 20 00 00 00", "r1 <<= 32"),
    (I.alu64("rsh", R1, 32), "77 01 00 00 20 00 00 00", "r1 >>= 32"),
    (I.alu64("arsh", R1, 3), "c7 01 00 00 03 00 00 00", "r1 s>>= 3"),
    (I.alu64("and", R1, 0xFF), "57 01 00 00 ff 00 00 00", "r1 &= 255"),
    (I.alu64("xor", R0, R0), "af 00 00 00 00 00 00 00", "r0 ^= r0"),
    (I.alu64("mod", R1, 10), "97 01 00 00 0a 00 00 00", "r1 %= 10"),
    (I.alu64("div", R1, R2), "3f 21 00 00 00 00 00 00", "r1 /= r2"),
    (I.alu64("mul", R1, 3), "27 01 00 00 03 00 00 00", "r1 *= 3"),
    (I.alu64("or", R1, R2), "4f 21 00 00 00 00 00 00", "r1 |= r2"),
    (I.mov32(R0, 0), "b4 00 00 00 00 00 00 00", "w0 = 0"),
    (I.mov32(R1, R2), "bc 21 00 00 00 00 00 00", "w1 = w2"),
    (I.alu32("add", R1, 1), "04 01 00 00 01 00 00 00", "w1 += 1"),
    (I.neg64(R1), "87 01 00 00 00 00 00 00", "r1 = -r1"),
    (I.neg32(R1), "84 01 00 00 00 00 00 00", "w1 = -w1"),
    (I.endian(R1, 16, "be"), "dc 01 00 00 10 00 00 00", "r1 = be16 r1"),
    (I.endian(R1, 64, "le"), "d4 01 00 00 40 00 00 00", "r1 = le64 r1"),
    (I.bswap(R1, 32), "d7 01 00 00 20 00 00 00", "r1 = bswap32 r1"),
    (I.sdiv64(R1, R2), "3f 21 01 00 00 00 00 00", "r1 s/= r2"),
    (I.smod32(R1, 7), "94 01 01 00 07 00 00 00", "w1 s%= 7"),
    (I.movsx64(R1, R2, 8), "bf 21 08 00 00 00 00 00", "r1 = (s8)r2"),
    (I.movsx32(R1, R2, 16), "bc 21 10 00 00 00 00 00", "w1 = (s16)w2"),
    (I.ldx("dw", R1, R10, -8), "79 a1 f8 ff 00 00 00 00", "r1 = *(u64 *)(r10 -8)"),
    (I.ldx("w", R1, R1, 0), "61 11 00 00 00 00 00 00", "r1 = *(u32 *)(r1 +0)"),
    (I.ldx("h", R0, R1, 2), "69 10 02 00 00 00 00 00", "r0 = *(u16 *)(r1 +2)"),
    (I.ldx("b", R0, R1, 1), "71 10 01 00 00 00 00 00", "r0 = *(u8 *)(r1 +1)"),
    (I.ldsx("b", R1, R2, 0), "91 21 00 00 00 00 00 00", "r1 = *(s8 *)(r2 +0)"),
    (I.ldsx("w", R1, R2, 4), "81 21 04 00 00 00 00 00", "r1 = *(s32 *)(r2 +4)"),
    (I.stx("dw", R10, -8, R1), "7b 1a f8 ff 00 00 00 00", "*(u64 *)(r10 -8) = r1"),
    (I.stx("w", R10, -4, R1), "63 1a fc ff 00 00 00 00", "*(u32 *)(r10 -4) = r1"),
    (I.stx("b", R10, -1, R1), "73 1a ff ff 00 00 00 00", "*(u8 *)(r10 -1) = r1"),
    (I.st("dw", R10, -16, 0), "7a 0a f0 ff 00 00 00 00", "*(u64 *)(r10 -16) = 0"),
    (I.st("h", R10, -2, 7), "6a 0a fe ff 07 00 00 00", "*(u16 *)(r10 -2) = 7"),
    (I.atomic("dw", "add", R1, 0, R2), "db 21 00 00 00 00 00 00", "lock *(u64 *)(r1 +0) += r2"),
    (I.atomic("w", "or", R1, 8, R2), "c3 21 08 00 40 00 00 00", "lock *(u32 *)(r1 +8) |= r2"),
    (I.atomic("dw", "add", R1, 0, R0, fetch=True), "db 01 00 00 01 00 00 00",
     "r0 = atomic64_fetch_add((u64 *)(r1 +0), r0)"),
    (I.atomic("w", "and", R1, 0, R2, fetch=True), "c3 21 00 00 51 00 00 00",
     "r2 = atomic_fetch_and((u32 *)(r1 +0), r2)"),
    (I.atomic("dw", "xchg", R1, 0, R2), "db 21 00 00 e1 00 00 00",
     "r2 = atomic64_xchg((u64 *)(r1 +0), r2)"),
    (I.atomic("dw", "cmpxchg", R1, 0, R2), "db 21 00 00 f1 00 00 00",
     "r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)"),
    (I.ja(3), "05 00 03 00 00 00 00 00", "goto pc+3"),
    (I.ja(-1), "05 00 ff ff 00 00 00 00", "goto pc-1"),
    (I.gotol(256), "06 00 00 00 00 01 00 00", "gotol pc+256"),
    (I.jmp("jeq", R0, 0, 2), "15 00 02 00 00 00 00 00", "if r0 == 0x0 goto pc+2"),
    (I.jmp("jsgt", R1, R2, 1), "6d 21 01 00 00 00 00 00", "if r1 s> r2 goto pc+1"),
    (I.jmp("jne", R1, -1, 1), "55 01 01 00 ff ff ff ff", "if r1 != 0xffffffff goto pc+1"),
    (I.jmp("jset", R1, 4, 5), "45 01 05 00 04 00 00 00", "if r1 & 0x4 goto pc+5"),
    (I.jmp("jlt", R1, R2, 1), "ad 21 01 00 00 00 00 00", "if r1 < r2 goto pc+1"),
    (I.jmp32("jeq", R1, R2, 1), "1e 21 01 00 00 00 00 00", "if w1 == w2 goto pc+1"),
    (I.jmp32("jsle", R1, 5, 1), "d6 01 01 00 05 00 00 00", "if w1 s<= 0x5 goto pc+1"),
    (I.call(1), "85 00 00 00 01 00 00 00", "call bpf_map_lookup_elem#1"),
    (I.call(14), "85 00 00 00 0e 00 00 00", "call bpf_get_current_pid_tgid#14"),
    (I.call_local(5), "85 10 00 00 05 00 00 00", "call pc+5"),
    (I.exit_(), "95 00 00 00 00 00 00 00", "exit"),
    (I.ld_map_fd(R1, 3), "18 11 00 00 03 00 00 00 00 00 00 00 00 00 00 00", "r1 = map[fd:3]"),
    (I.ld_map_value(R1, 3, 8), "18 21 00 00 03 00 00 00 00 00 00 00 08 00 00 00",
     "r1 = map[fd:3][0]+8"),
    (I.ld_imm64(R1, 0xCAFEBABEDEADBEEF), "18 01 00 00 ef be ad de 00 00 00 00 be ba fe ca",
     "r1 = 0xcafebabedeadbeef"),
    (I.ld_imm64(R3, -1), "18 03 00 00 ff ff ff ff 00 00 00 00 ff ff ff ff",
     "r3 = 0xffffffffffffffff"),
]


@pytest.mark.parametrize("insn,hexbytes,text", KNOWN, ids=[k[2] for k in KNOWN])
def test_known_encoding(insn: Insn, hexbytes: str, text: str) -> None:
    from kprobes.bpf.disasm import format_insn, parse

    data = bytes.fromhex(hexbytes)
    assert insn.encode() == data
    assert I.decode(data) == [insn]
    assert format_insn(insn) == text
    assert parse(text) == [insn]


def test_slots_and_count() -> None:
    prog = [I.mov64(R0, 0), I.ld_imm64(R1, 1), I.exit_()]
    assert [i.slots for i in prog] == [1, 2, 1]
    assert I.slot_count(prog) == 4
    assert len(I.encode(prog)) == 32


def test_register_vs_immediate_by_type() -> None:
    assert I.mov64(R1, R10).code == 0xBF
    assert I.mov64(R1, 10) == Insn(0xB7, 1, 0, 0, 10)
    assert repr(R10) == "r10"


@pytest.mark.parametrize(
    "make,fragment",
    [
        (lambda: I.mov64(11, 0), "r0..r10"),
        (lambda: I.mov64(R1, 1 << 32), "32 bits"),
        (lambda: I.ldx("dw", R1, R10, 40000), "signed 16-bit"),
        (lambda: I.ldx("q", R1, R10, 0), "access size"),
        (lambda: I.alu64("rol", R1, 1), "unknown alu operation"),
        (lambda: I.jmp("jxx", R1, 1, 0), "unknown jump operation"),
        (lambda: I.atomic("b", "add", R1, 0, R2), "32-bit"),
        (lambda: I.movsx32(R1, R2, 32), "8 or 16"),
        (lambda: I.ldsx("dw", R1, R2, 0), "64-bit"),
        (lambda: I.ld_map_fd(R1, -1), "unsigned 32-bit"),
        (lambda: I.ld_imm64(R1, 1 << 64), "64 bits"),
        (lambda: I.endian(R1, 8, "be"), "16, 32 or 64"),
    ],
)
def test_constructor_errors(make: object, fragment: str) -> None:
    with pytest.raises(BPFError) as e:
        make()  # type: ignore[operator]
    assert fragment in str(e.value)


def test_u32_immediate_spelling_stored_signed() -> None:
    assert I.mov32(R1, 0xFFFFFFFF).imm == -1


@pytest.mark.parametrize(
    "hexbytes,fragment,slot",
    [
        ("b7 01 00", "multiple of 8", 0),
        ("18 01 00 00 01 00 00 00", "second slot", 0),
        ("95 00 00 00 00 00 00 00 18 01 00 00 01 00 00 00 07 00 00 00 00 00 00 00",
         "second slot of ld_imm64", 2),
        ("b7 21 00 00 00 00 00 00", "nonzero src", 0),
        ("bf 21 00 00 01 00 00 00", "nonzero imm", 0),
        ("07 01 01 00 01 00 00 00", "nonzero off", 0),
        ("95 00 00 00 00 00 00 00 95 01 00 00 00 00 00 00", "exit with reserved", 1),
        ("e7 01 00 00 00 00 00 00", "unknown alu opcode", 0),
        ("20 00 00 00 00 00 00 00", "legacy", 0),
        ("db 21 00 00 02 00 00 00", "unknown atomic", 0),
        ("bf 0b 00 00 00 00 00 00", "register out of range", 0),
        ("dc 01 00 00 08 00 00 00", "endian width", 0),
        ("85 30 00 00 01 00 00 00", "unknown call source", 0),
        ("18 71 00 00 01 00 00 00 00 00 00 00 00 00 00 00", "pseudo source", 0),
    ],
)
def test_decode_rejects(hexbytes: str, fragment: str, slot: int) -> None:
    with pytest.raises(BPFDecodeError) as e:
        I.decode(bytes.fromhex(hexbytes))
    assert fragment in str(e.value)
    assert e.value.index == slot


def test_encode_out_of_range_field_is_clean_error() -> None:
    with pytest.raises(BPFError, match="cannot encode"):
        Insn(0xB7, 1, 0, 0, 1 << 40).encode()


def test_isa_levels_and_min_kernel() -> None:
    assert I.isa_version(I.mov64(R1, 1)) == 1
    assert I.isa_version(I.jmp("jlt", R1, 1, 0)) == 2
    assert I.isa_version(I.jmp32("jeq", R1, 1, 0)) == 3
    for v4 in (I.sdiv64(R1, 2), I.smod32(R1, R2), I.movsx64(R1, R2, 32), I.ldsx("h", R1, R2, 0),
               I.bswap(R1, 16), I.gotol(1)):
        assert I.isa_version(v4) == 4
        assert I.min_kernel(v4) == (6, 6)
    assert I.min_kernel(I.endian(R1, 16, "be")) == (3, 19)
    assert I.min_kernel(I.atomic("dw", "add", R1, 0, R2)) == (3, 19)
    assert I.min_kernel(I.atomic("dw", "add", R1, 0, R2, fetch=True)) == (5, 12)
    assert I.min_kernel(I.ld_map_value(R1, 3, 0)) == (5, 2)
    assert I.min_kernel(I.jmp32("jeq", R1, 1, 0)) == (5, 1)
    assert I.min_kernel(I.call_local(1)) == (4, 16)
