"""Uprobe placement on synthetic ELF files: the verdicts, the errors, and where they surface.

The files are built byte by byte (``test_symbols_elf_synthetic.build_elf``)
with known machine code in ``.text``; no kernel is involved.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import List

import pytest

from kprobes.backends.prepare import prepare_definition
from kprobes.backends.symbols.placement import check_offset
from kprobes.backends.tracefs.fs import TraceFS
from kprobes.engines.provider import KernelTypeProvider
from kprobes.engines.targets import SymbolSource
from kprobes.engines.tracefs_engine import EngineOptions, prepare
from kprobes.errors import KernelRefused, KprobesError, ProbeSyntaxError
from kprobes.lang import LangError
from tests.unit.test_symbols_elf_synthetic import TEXT_OFF, Spec, Sym, build_elf

BASE = 0x401000
FUNC = bytes.fromhex(
    "f30f1efa"  # +0 endbr64
    "55"  # +4 push %rbp
    "4889e5"  # +5 mov %rsp,%rbp
    "897dfc"  # +8 mov %edi,-0x4(%rbp)
    "8b45fc"  # +11 mov -0x4(%rbp),%eax
    "5d"  # +14 pop %rbp
    "c3"  # +15 ret
)
BROKEN = FUNC[:5] + b"\x06" + FUNC[5:]  # +5: push %es, invalid in 64-bit mode


def _elf(tmp_path: Path, syms: List[Sym], code: List[tuple], machine: int = 62, name: str = "prog") -> str:
    data = bytearray(build_elf(Spec(machine=machine, symtab=syms, text_vaddr=BASE)))
    for vaddr, blob in code:
        off = TEXT_OFF + vaddr - BASE
        data[off:off + len(blob)] = blob
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return str(p)


@pytest.fixture()
def prog(tmp_path: Path) -> str:
    return _elf(tmp_path, [
        Sym("work", BASE, len(FUNC)),
        Sym("broken", BASE + 0x40, len(BROKEN)),
        Sym("nosize", BASE + 0x80, 0),
    ], [(BASE, FUNC), (BASE + 0x40, BROKEN), (BASE + 0x80, FUNC)])  # fmt: skip


def test_boundaries_accepted_and_others_refused(prog: str) -> None:
    ok = [a for a in range(len(FUNC)) if check_offset(prog, TEXT_OFF + a).ok]
    assert ok == [0, 4, 5, 8, 11, 14, 15]


def test_refusal_names_the_instruction_and_the_neighbours(prog: str) -> None:
    v = check_offset(prog, TEXT_OFF + 6)
    assert not v.ok and v.symbol == "work" and v.addend == 6
    assert v.insn == (5, 3) and v.insn_bytes == bytes.fromhex("4889e5")
    assert (v.before, v.after) == (5, 8)
    assert v.nearest == [f"work+0x5 (0x{TEXT_OFF + 5:x})", f"work+0x8 (0x{TEXT_OFF + 8:x})"]
    assert "work+0x6 is not on an instruction boundary" in v.message
    assert "`48 89 e5` at work+0x5..+0x7" in v.message
    assert "--unsafe" in v.hint
    first = check_offset(prog, TEXT_OFF + 2)
    assert first.nearest[0] == f"work (0x{TEXT_OFF:x})" and first.after == 4


def test_undecodable_bytes_make_later_offsets_unprovable(prog: str) -> None:
    start = TEXT_OFF + 0x40
    assert check_offset(prog, start + 4).ok
    assert check_offset(prog, start + 5).ok  # where the undecodable one starts
    v = check_offset(prog, start + 9)
    assert not v.ok and "cannot be proven" in v.message and "broken+0x5 (06" in v.message
    assert v.after is None


def test_outside_functions(prog: str) -> None:
    assert check_offset(prog, TEXT_OFF + 0x80).ok  # a function's start, even without a size
    v = check_offset(prog, TEXT_OFF + 0x84)
    assert not v.ok and v.symbol is None and "in no function symbol" in v.message
    assert "debug symbols" in v.hint and "--unsafe" in v.hint
    v = check_offset(prog, 0x10)  # the ELF header: in no loadable segment
    assert not v.ok and "not in any loadable segment" in v.message and "objdump" in v.hint


def test_arm64(tmp_path: Path) -> None:
    path = _elf(tmp_path, [Sym("f", BASE + 0x10, 0x20)], [], machine=183)
    assert check_offset(path, TEXT_OFF + 0x18).ok
    v = check_offset(path, TEXT_OFF + 0x1A)
    assert not v.ok and v.insn == (8, 4) and (v.before, v.after) == (8, 12)
    # no symbol: every multiple of 4 is an instruction start
    assert check_offset(path, TEXT_OFF + 0x104).ok
    assert "multiple of 4" in check_offset(path, TEXT_OFF + 0x106).message


def test_other_machines_are_not_guessed(tmp_path: Path) -> None:
    path = _elf(tmp_path, [Sym("f", BASE, 0x20)], [(BASE, FUNC)], machine=3)
    assert check_offset(path, TEXT_OFF).ok
    v = check_offset(path, TEXT_OFF + 4)
    assert not v.ok and "i386" in v.message and "not checked" in v.message


def test_index_follows_file_changes(tmp_path: Path) -> None:
    path = _elf(tmp_path, [Sym("f", BASE, len(FUNC))], [(BASE, FUNC)])
    assert not check_offset(path, TEXT_OFF + 1).ok
    _elf(tmp_path, [Sym("f", BASE, 16)], [(BASE, bytes(range(0x50, 0x60)))])  # 16 one-byte pushes
    assert check_offset(path, TEXT_OFF + 1).ok


# -- prepare_definition: the caret under the offset, --unsafe -------------------------------

@pytest.mark.parametrize("where,caret", [("work+6", "work+"), ("work+0x2", "work+"), ("0x%x", "")])
def test_prepare_refuses_with_caret(prog: str, where: str, caret: str) -> None:
    if "%" in where:
        where = where % (TEXT_OFF + 6)
    text = f"p:x {prog}:{where} %ax"
    with pytest.raises(ProbeSyntaxError) as ei:
        prepare_definition(text, arch="x86_64")
    e = ei.value
    assert e.position == len(f"p:x {prog}:{caret}")
    assert "not on an instruction boundary" in e.kernel_message and "--unsafe" in (e.hint or "")
    spec = prepare_definition(text, arch="x86_64", unsafe=True).spec
    assert spec.render().startswith(f"p:x {prog}:0x")


@pytest.mark.parametrize("where", ["work", "work+0", "work+4", "work+0x8", "0x%x"])
def test_prepare_accepts_boundaries(prog: str, where: str) -> None:
    if "%" in where:
        where = where % (TEXT_OFF + 5)
    for head in ("p:x", "r:x"):
        assert prepare_definition(f"{head} {prog}:{where}", arch="x86_64").spec.kind == "uprobe"


def test_prepare_return_probe_and_refctr_suffixes(prog: str) -> None:
    with pytest.raises(ProbeSyntaxError):
        prepare_definition(f"p:x {prog}:0x{TEXT_OFF + 6:x}(0x10)", arch="x86_64")
    with pytest.raises(ProbeSyntaxError):
        prepare_definition(f"r:x {prog}:work+6", arch="x86_64")


# -- the bpftrace-language engine --------------------------------------------------------

def _plan(text: str, unsafe: bool = False) -> object:
    opts = EngineOptions(unsafe=unsafe, eprobes=False, arch="x86_64")
    return prepare(text, "stdin", opts, provider=KernelTypeProvider(None, None),
                   symbols=SymbolSource(lambda: None, None))


def test_engine_refuses_at_planning(prog: str) -> None:
    for ap in (f"uprobe:{prog}:work+6", f"uprobe:{prog}:0x{TEXT_OFF + 6:x}", f"uprobe:{prog}:work+2"):
        with pytest.raises(LangError) as ei:
            _plan(ap + " { @ = count(); }")
        text = ei.value.format()
        assert "not on an instruction boundary" in text and "nearest valid" in text
        assert "stdin:1:1-" in text and "HINT:" in text and "--unsafe" in text
    plan = _plan(f"uprobe:{prog}:work+6 {{ @ = count(); }}", unsafe=True)
    assert plan.unsafe  # type: ignore[attr-defined]
    plan = _plan(f"uprobe:{prog}:work+4 {{ @ = count(); }}")
    assert not plan.unsafe  # type: ignore[attr-defined]


# -- kprobes: the kernel refuses (EILSEQ) and we say why ---------------------------------

def _refusing_fs(tmp_path: Path, log: str) -> TraceFS:
    fs = TraceFS(str(tmp_path))
    (tmp_path / "error_log").write_text("")
    (tmp_path / "kprobe_events").write_text("")

    def write(rel: str, text: str, *, append: bool = False) -> None:
        (tmp_path / "error_log").write_text(log)
        raise OSError(errno.EILSEQ, "Invalid or incomplete multibyte or wide character")

    fs.write = write  # type: ignore[method-assign]
    return fs


def test_kernel_eilseq_with_error_log(tmp_path: Path) -> None:
    fs = _refusing_fs(tmp_path, "[ 1.0] trace_kprobe: error: Probe point is not an instruction boundary\n"
                                "  Command: p:x vfs_read+1\n"
                                "                ^\n")  # fmt: skip
    with pytest.raises(KernelRefused) as ei:
        fs.write_definition("kprobe_events", "p:x vfs_read+1")
    assert ei.value.kernel_message == "Probe point is not an instruction boundary"
    assert "disassembly" in (ei.value.hint or "")


def test_kernel_eilseq_without_error_log(tmp_path: Path) -> None:
    fs = _refusing_fs(tmp_path, "")
    with pytest.raises(KprobesError) as ei:
        fs.write_definition("kprobe_events", "p:x vfs_read+1")
    text = ei.value.format()
    assert "not an instruction boundary" in text and "multibyte" not in text
