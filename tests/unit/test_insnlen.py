"""The x86-64 instruction-length decoder against known encodings, and its Decoded helpers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.probes.insnlen import MAX_INSN, decode, insn_length

# (hex bytes of ONE instruction, what it is) -- lengths are the byte counts.
KNOWN = [
    ("f30f1efa", "endbr64"),
    ("55", "push %rbp"),
    ("4889e5", "mov %rsp,%rbp"),
    ("897dfc", "mov %edi,-0x4(%rbp)"),
    ("c3", "ret"),
    ("c20800", "ret $8"),
    ("e8a0ffffff", "call rel32"),
    ("e9a0ffffff", "jmp rel32"),
    ("eb05", "jmp rel8"),
    ("7405", "je rel8"),
    ("0f8412345678", "je rel32"),
    ("4883ec08", "sub $8,%rsp"),
    ("4881ec00100000", "sub $0x1000,%rsp"),
    ("6681c33412", "add $0x1234,%bx (66: imm16)"),
    ("48b88877665544332211", "movabs $imm64,%rax"),
    ("b878563412", "mov $imm32,%eax"),
    ("66b83412", "mov $imm16,%ax"),
    ("41b878563412", "mov $imm32,%r8d (REX.B, no W)"),
    ("6648b88877665544332211", "66 then REX.W: imm64"),
    ("48a18877665544332211", "movabs 0x1122334455667788,%rax (moffs64)"),
    ("a08877665544332211", "movabs moffs8,%al"),
    ("67a178563412", "mov moffs32 with addr32"),
    ("c8100001", "enter $0x10,$1"),
    ("f60501000000ff", "testb $0xff,rip+1 (F6 /0 ib)"),
    ("f6d8", "neg %al (F6 /3, no imm)"),
    ("f7c078563412", "test $imm32,%eax"),
    ("66f7c03412", "test $imm16,%ax"),
    ("f7d8", "neg %eax"),
    ("488b0425 78563412".replace(" ", ""), "mov 0x12345678,%rax (SIB no base)"),
    ("488b442408", "mov 0x8(%rsp),%rax (SIB disp8)"),
    ("488b842400010000", "mov 0x100(%rsp),%rax (SIB disp32)"),
    ("488b0578563412", "mov rip+disp32,%rax"),
    ("8b4500", "mov 0x0(%rbp),%eax"),
    ("8b8578563412", "mov disp32(%rbp),%eax"),
    ("c7442408 78563412".replace(" ", ""), "movl $imm32,8(%rsp)"),
    ("66c74424083412", "movw $imm16,8(%rsp)"),
    ("c6450001", "movb $1,0(%rbp)"),
    ("c7f878563412", "xbegin rel32"),
    ("c6f801", "xabort $1"),
    ("f3a4", "rep movsb"),
    ("f0480fb10a", "lock cmpxchg %rcx,(%rdx)"),
    ("660f1f440000", "nopw 0(%rax,%rax)"),
    ("662e0f1f840000000000", "cs nopw 0(%rax,%rax)"),
    ("66662e0f1f840000000000", "data16 cs nopw"),
    ("0f1f00", "nopl (%rax)"),
    ("0f05", "syscall"),
    ("0f0b", "ud2"),
    ("0fa2", "cpuid"),
    ("0fafc1", "imul %ecx,%eax"),
    ("0fb6c0", "movzbl %al,%eax"),
    ("0fbae005", "bt $5,%eax"),
    ("0fa4c203", "shld $3,%eax,%edx"),
    ("0fc8", "bswap %eax"),
    ("0f01d0", "xgetbv"),
    ("0f01f9", "rdtscp"),
    ("660f3a0fc108", "palignr $8,%xmm1,%xmm0"),
    ("660f3817c1", "ptest %xmm1,%xmm0"),
    ("f20f38f1c1", "crc32 %ecx,%eax"),
    ("660f70c11b", "pshufd $0x1b,%xmm1,%xmm0"),
    ("660f73d804", "psrldq $4,%xmm0"),
    ("660fc2c100", "cmpeqpd %xmm1,%xmm0"),
    ("0f0f c1 b4".replace(" ", ""), "3DNow pfmul"),
    ("660f78c00408", "extrq $4,$8,%xmm0 (SSE4a)"),
    ("f20f79c1", "insertq %xmm1,%xmm0"),
    ("c5f877", "vzeroupper"),
    ("c5fd6f00", "vmovdqa (%rax),%ymm0"),
    ("c4e27d1801", "vbroadcastss (%rcx),%ymm0"),
    ("c4e37d39c101", "vextracti128 $1,%ymm0,%xmm1"),
    ("c5f970c11b", "vpshufd $0x1b,%xmm1,%xmm0"),
    ("c4e1f96ec0", "vmovq %rax,%xmm0"),
    ("62f1fe486f06", "vmovdqu64 (%rsi),%zmm0"),
    ("62f17d48744640", "vpcmpeqb disp8*N(%rsi),%zmm0,%k0"),
    ("62f37d483fc100", "vpcmpb $0,%zmm1,%zmm0,%k0 (EVEX map 3 imm)"),
    ("62f1fd48727e0203", "evex map1 0x72 with imm (vprolq)"),
    ("d9c9", "fxch"),
    ("dd442408", "fldl 8(%rsp)"),
    ("9bdfe0", "fstsw %ax (fwait + fnstsw)"),
    ("9bd97c2402", "fstcw 2(%rsp)"),
    ("9b", "fwait alone"),
    ("cc", "int3"),
    ("cd80", "int $0x80"),
    ("e305", "jrcxz"),
    ("e460", "in $0x60,%al"),
    ("6a01", "push $1"),
    ("6878563412", "push $imm32"),
    ("6bc003", "imul $3,%eax,%eax"),
    ("69c078563412", "imul $imm32,%eax,%eax"),
    ("4863c7", "movslq %edi,%rax"),
    ("8f00", "pop (%rax)"),
    ("f30fa7d8", "rep xcryptcbc (VIA PadLock)"),
    ("8fe878c2ec0e", "vprotd $0xe,%xmm4,%xmm2 (XOP map 8, imm8)"),
    ("8fe97890c1", "vprotb (XOP map 9)"),
    ("8fea7810c078563412", "bextr $imm32 (XOP map A, imm32)"),
    ("8f4878c3c838", "XOP map 8 with REX-like bits"),
    ("c1e003", "shl $3,%eax"),
    ("d1e0", "shl %eax"),
    ("a978563412", "test $imm32,%eax"),
    ("3c05", "cmp $5,%al"),
    ("4c8d0d78563412", "lea rip+disp32,%r9"),
    ("f348a5", "rep movsq"),
    ("64488b042528000000", "mov %fs:0x28,%rax"),
]


@pytest.mark.parametrize("hexbytes,what", KNOWN, ids=[w for _h, w in KNOWN])
def test_known_lengths(hexbytes: str, what: str) -> None:
    code = bytes.fromhex(hexbytes)
    assert insn_length(code) == len(code), what
    # followed by more code, the length does not change
    assert insn_length(code + b"\x90\xc3\x55" * 6) == len(code), what
    # cut short by one byte, it is not decodable
    assert insn_length(code[:-1]) is None, what


@pytest.mark.parametrize(
    "hexbytes,why",
    [
        ("06", "push %es: invalid in 64-bit mode"),
        ("60", "pusha: invalid in 64-bit mode"),
        ("d4", "aam: invalid in 64-bit mode"),
        ("ea0000000000", "far jmp: invalid in 64-bit mode"),
        ("0f04", "reserved 0F 04"),
        ("0f3990", "reserved 0F 39"),
        ("8fe8", "AMD XOP cut short"),
        ("8fe47800", "XOP map 4 (reserved)"),
        ("8f08", "pop with ModRM.reg != 0"),
        ("62f0fe486f06", "EVEX map 0 (reserved)"),
        ("62f4fe486f06", "EVEX map 4 (APX, not decoded)"),
        ("c4e4fd1801", "VEX map 4 (reserved)"),
        ("66" * 15 + "90", "16 bytes: over the 15-byte limit"),
        ("66" * 13 + "0f1f00", "16 bytes with its opcode and ModRM"),
        ("66" * 16, "only prefixes"),
        ("48", "REX and nothing"),
        ("", "no bytes"),
    ],
)
def test_unknown(hexbytes: str, why: str) -> None:
    assert insn_length(bytes.fromhex(hexbytes)) is None, why


def test_end_bounds_the_instruction() -> None:
    code = bytes.fromhex("e8a0ffffff90")
    assert insn_length(code, 0, 5) == 5
    assert insn_length(code, 0, 4) is None
    assert insn_length(code, 5) == 1
    assert insn_length(code, 6) is None
    assert insn_length(code, -1) is None


def test_fifteen_bytes_is_the_limit() -> None:
    assert insn_length(bytes.fromhex("66" * 14 + "90")) == 15


def test_rex_before_legacy_prefix_is_ignored() -> None:
    # 48 66 b8: the REX is not last, so its W does not apply: mov $imm16,%ax
    assert insn_length(bytes.fromhex("4866b83412")) == 5


FUNC = bytes.fromhex(
    "f30f1efa"  # 0 endbr64
    "55"  # 4 push %rbp
    "4889e5"  # 5 mov %rsp,%rbp
    "897dfc"  # 8 mov %edi,-0x4(%rbp)
    "8b45fc"  # 11 mov -0x4(%rbp),%eax
    "5d"  # 14 pop %rbp
    "c3"  # 15 ret
)


def test_decode_function() -> None:
    d = decode(FUNC)
    assert d.starts == (0, 4, 5, 8, 11, 14, 15)
    assert d.unknown_at is None
    assert [o for o in range(len(FUNC)) if d.is_boundary(o)] == list(d.starts)
    assert d.containing(6) == (5, 3)
    assert d.containing(15) == (15, 1)
    assert d.nearest(6) == (5, 8)
    assert d.nearest(1) == (0, 4)
    assert d.nearest(15) == (14, None)


def test_decode_stops_early() -> None:
    d = decode(FUNC, stop=6)
    assert d.starts == (0, 4, 5, 8)  # decoded through the instruction holding 6, plus the next start
    assert d.is_boundary(5) and not d.is_boundary(6)
    assert d.nearest(6) == (5, 8)


def test_decode_unknown_makes_later_offsets_unknown() -> None:
    code = FUNC[:5] + b"\x06" + FUNC[5:]  # push %es: invalid in 64-bit mode
    d = decode(code)
    assert d.unknown_at == 5
    assert d.starts == (0, 4, 5)
    assert d.is_boundary(4) is True and d.is_boundary(2) is False
    assert d.is_boundary(5) is True  # the previous instruction ends there
    assert d.is_boundary(6) is None and d.is_boundary(9) is None
    assert d.containing(7) is None


def test_decode_arm64() -> None:
    d = decode(bytes(16), "arm64")
    assert d.starts == (0, 4, 8, 12) and d.unknown_at is None
    assert d.is_boundary(8) and not d.is_boundary(6)
    assert d.containing(6) == (4, 4)
    assert d.nearest(6) == (4, 8)
    odd = decode(bytes(10), "arm64")
    assert odd.unknown_at == 8 and odd.is_boundary(9) is None


def test_decode_other_machine() -> None:
    with pytest.raises(ValueError):
        decode(b"\x90", "riscv")


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=64), st.integers(min_value=0, max_value=70))
def test_insn_length_never_raises(code: bytes, start: int) -> None:
    n = insn_length(code, start)
    if n is not None:
        assert 1 <= n <= MAX_INSN
        assert start + n <= len(code)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_decode_is_consistent(code: bytes) -> None:
    d = decode(code)
    assert list(d.starts) == sorted(set(d.starts))
    assert all(0 <= s < max(len(code), 1) for s in d.starts)
    if d.unknown_at is None and code:
        # every start decodes to exactly the distance to the next one
        for a, b in zip(d.starts, d.starts[1:] + (len(code),)):
            assert insn_length(code, a) == b - a
