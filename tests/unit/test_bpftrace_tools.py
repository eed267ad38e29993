"""What bpftrace 0.17's own tools (Debian: /usr/sbin/*.bt) need from the front end, and
docs/bpftrace-tools.md: one row per tool of /usr/sbin/*.bt, every "works" row in the VM test.

The tools run in the VM: tests/kernel/test_bpftrace_tools_kernel.py.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Dict, Tuple

import pytest

from kprobes.events.format import FieldFormat
from kprobes.lang import ast, check, parse_program
from kprobes.lang.constants import resolve_constants
from kprobes.lang.diagnostics import LangError
from kprobes.lang.provider import DictTypeProvider
from kprobes.lang.typesys import PointerType, RecordType

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bpftrace-tools.md"


class _FakeBTF:
    def __init__(self, values: Dict[str, int]) -> None:
        self.values = values

    def enum_value(self, name: str) -> Tuple[object, int]:
        if name not in self.values:
            raise KeyError(name)
        return object(), self.values[name]


class _Provider(DictTypeProvider):
    def __init__(self, values: Dict[str, int]) -> None:
        super().__init__()
        self.btf = _FakeBTF(values)


def _ints(program: ast.Program) -> list[int]:
    found: list[int] = []

    def walk(node: object) -> None:
        if isinstance(node, ast.IntLit):
            found.append(node.value)
        if type(node).__module__ == ast.__name__:
            for name in type(node).__dataclass_fields__:  # type: ignore[attr-defined]
                value = getattr(node, name)
                for v in value if isinstance(value, tuple) else (value,):
                    walk(v)

    walk(program)
    return found


def test_btf_enumerators_and_header_macros_become_literals() -> None:
    text = ("#include <sys/socket.h>\n#include <linux/sched.h>\n"
            "kprobe:f { @a = AF_INET6; @b = TCP_CLOSE + TASK_RUNNING; @c = NEG; }")
    prog = resolve_constants(parse_program(text), _Provider({"TCP_CLOSE": 7, "NEG": -3}))
    assert sorted(_ints(prog)) == [0, 3, 7, 10]
    checked = check(parse_program(text), _Provider({"TCP_CLOSE": 7, "NEG": -3}))
    assert checked is not None


def test_macro_needs_its_header_and_unknown_names_stay_errors() -> None:
    # bpftrace knows AF_INET only through an #include that defines it
    with pytest.raises(LangError, match="Unknown identifier: 'AF_INET'"):
        check(parse_program("kprobe:f { @a = AF_INET; }"), _Provider({}))
    with pytest.raises(LangError, match="Unknown identifier: 'NOPE'"):
        check(parse_program("kprobe:f { @a = NOPE; }"), _Provider({"TCP_CLOSE": 7}))
    # no BTF at all: identifiers are left for the checker
    with pytest.raises(LangError, match="Unknown identifier: 'TCP_CLOSE'"):
        check(parse_program("kprobe:f { @a = TCP_CLOSE; }"), DictTypeProvider())


def test_struct_pointer_tracepoint_field_is_typed() -> None:
    # naptime.bt: args->rqtp->tv_sec on sys_enter_nanosleep (struct __kernel_timespec * rqtp)
    from kprobes.engines.provider import field_lang_type

    f = FieldFormat("rqtp", "struct __kernel_timespec *", 16, 8, False)
    assert field_lang_type(f) == PointerType(RecordType("struct __kernel_timespec"))
    g = FieldFormat("buf", "void *", 16, 8, False)
    assert not isinstance(getattr(field_lang_type(g), "pointee", None), RecordType)


# -- docs/bpftrace-tools.md ------------------------------------------------------------------
_ROW = re.compile(r"^\| `(\w+)` \|(.*)$")


def _doc_rows() -> Dict[str, str]:
    rows: Dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        m = _ROW.match(line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} has two rows"
            rows[m.group(1)] = m.group(2)
    return rows


def test_doc_lists_exactly_the_installed_tools() -> None:
    installed = sorted(os.path.basename(f)[:-3] for f in glob.glob("/usr/sbin/*.bt"))
    if not installed:
        pytest.skip("no /usr/sbin/*.bt here (Debian's bpftrace package installs its tools there)")
    assert sorted(_doc_rows()) == installed


def test_every_works_row_is_run_by_the_vm_test() -> None:
    from tests.kernel.test_bpftrace_tools_kernel import RUNS

    rows = _doc_rows()
    assert len(rows) >= 30
    ran = {(tool, engine) for tool, engine in RUNS}
    for tool, cells in rows.items():
        bpf, tracefs = [c.strip() for c in cells.split("|")[:2]]
        for engine, cell in (("bpf", bpf), ("tracefs", tracefs)):
            if cell.startswith("works"):
                assert (tool, engine) in ran, f"{tool} on {engine} is 'works' but not in RUNS"
            else:
                assert (tool, engine) not in ran, f"{tool} on {engine} is run but not 'works'"


# -- a wildcard matching nothing next to other attach points (dcsnoop) -----------------------
def test_unmatched_wildcard_beside_other_attach_points_is_skipped_tracefs() -> None:
    from kprobes.errors import NotTraceableError
    from tests.unit.test_engine_plan import defs, make_plan

    plan = make_plan("kprobe:vfs_read, kprobe:vfs_read.constprop.* { @ = count(); }")
    assert defs(plan) == ["p:kp0_0 vfs_read"]
    with pytest.raises(NotTraceableError, match="matches no probeable"):
        make_plan("kprobe:nothing_*, kprobe:nothing_else_* { @ = count(); }")


def test_unmatched_wildcard_beside_other_attach_points_is_skipped_bpf() -> None:
    from kprobes.backends.symbols import (
        KernelSymbols,
        parse_filter_functions,
        parse_kallsyms,
        parse_kprobe_blacklist,
    )
    from kprobes.engines.bpf.plan import BpfOptions, plan_checked
    from kprobes.engines.bpf.unit import Caps
    from kprobes.engines.targets import SymbolSource
    from kprobes.errors import NotTraceableError

    def syms() -> KernelSymbols:
        return KernelSymbols(parse_kallsyms("ffffffff81000010 T vfs_read\n"),
                             parse_filter_functions("vfs_read\n"), parse_kprobe_blacklist(""))

    def plan(text: str):  # type: ignore[no-untyped-def]
        c = check(parse_program(text), DictTypeProvider())
        return plan_checked(c, arch="x86_64", types=None, symbols=SymbolSource(syms),
                            caps=Caps(), opts=BpfOptions())

    p = plan("kprobe:vfs_read, kprobe:vfs_read.constprop.* { @ = count(); }")
    assert [t.name for prog in p.programs for t in prog.targets] == ["kprobe:vfs_read"]
    with pytest.raises(NotTraceableError, match="matches no probeable"):
        plan("kprobe:nothing_* { @ = count(); }")
