"""The bpftrace 0.17 coverage table: every probe type, builtin, function, map function,
statement and operator of bpftrace 0.17's reference (its ``bpftrace(8)`` manual), with its
status on each engine and the tests that prove it.

    python -m kprobes.engines.coverage > docs/bpftrace-coverage.md

Nothing here is typed by hand twice: a status comes from the tables the front end and the
engines use (``lang.attach.PROVIDERS``/``UNSUPPORTED_PROVIDERS``, ``lang.builtins.BUILTINS``,
``FUNCTIONS``, ``UNSUPPORTED_FUNCTIONS``, ``BPF_ONLY_*``...) or, for the language's
statements and operators, from compiling a sample program offline on both engines (the
checker, the tracefs engine's evaluator and the BPF engine's code generator).  A name the
tables do not know raises :class:`CoverageError`, so no row can say "unknown".  The tests
column names, per row, the tests whose source uses the feature (bpftrace differential tests
first); tests/unit/test_coverage.py regenerates the document and checks every test exists.
"""

from __future__ import annotations

import io
import re
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from .._record import dataclass

if TYPE_CHECKING:
    from ..backends.symbols import KernelSymbols

__all__ = ["Row", "ROWS", "CoverageError", "status", "render", "find_tests", "main"]

WORKS = "works"
NA = "n.a."


class CoverageError(Exception):
    """A row the tables cannot decide (a new bpftrace name nobody classified)."""


@dataclass(frozen=True)
class Row:
    """One entry of the reference: ``kind`` says where its status comes from.

    ``provider``/``builtin``/``function`` rows look ``key`` up in the front end's tables;
    ``lang`` rows compile ``sample`` (a probe body or, naming ``kprobe:f``, a whole program;
    ``params`` its positional parameters); ``fixed`` rows state ``fixed`` for both engines
    (only for what bpftrace 0.17 itself lacks); ``proven`` rows (what needs the kernel's
    BTF to compile) state ``fixed`` as their named ``tests`` prove it.  ``search`` is what the tests column looks for in test sources (default: derived
    from the key); ``tests`` are named tests listed first.
    """

    section: str
    item: str
    kind: str
    key: str = ""
    sample: str = ""
    params: Tuple[str, ...] = ()
    search: str = ""
    tests: Tuple[str, ...] = ()
    fixed: str = ""
    note: str = ""


def _p(item: str, key: str, note: str = "") -> Row:
    return Row("Probe types", item, "provider", key, search=f"{key}:", note=note)


def _b(item: str, key: str, note: str = "", search: str = "") -> Row:
    return Row("Builtins", item, "builtin", key, search=search or key, note=note)


def _f(key: str, note: str = "", section: str = "Functions") -> Row:
    return Row(section, f"{key}()", "function", key, search=f"{key}(", note=note)


def _lang(section: str, item: str, sample: str, search: str, *, tests: Sequence[str] = (),
          params: Sequence[str] = (), note: str = "") -> Row:
    return Row(section, item, "lang", sample=sample, search=search, tests=tuple(tests),
               params=tuple(params), note=note)


_ST = "tests/unit/test_lang_statements.py"
_STH = "tests/host/test_statements_host.py::test_statements_and_parameters_agree_on_both_engines"
_STD = "tests/kernel/test_statements_diff.py::test_statements_and_positional_parameters_same_as_bpftrace"
_DIFF = "tests/kernel/test_bpftrace_diff.py::test_same_output_as_bpftrace"
_CG = "tests/unit/test_bpf_codegen.py::test_integer_semantics_match_the_evaluator"

#: bpftrace 0.17's reference, in the order of its manual (PROBES, BUILTINS, MAP FUNCTIONS,
#: FUNCTIONS, OUTPUT FORMATTING, then the language chapter).
ROWS: Tuple[Row, ...] = (
    _p("BEGIN / END", "BEGIN"),
    _p("kprobe:FUNC[+OFFSET]", "kprobe"),
    _p("kretprobe:FUNC", "kretprobe"),
    _p("uprobe:BINARY:FUNC[+OFFSET]", "uprobe"),
    _p("uretprobe:BINARY:FUNC", "uretprobe"),
    _p("tracepoint:CATEGORY:NAME", "tracepoint"),
    _p("usdt:BINARY:[PROVIDER:]NAME", "usdt"),
    _p("profile:UNIT:N", "profile"),
    _p("interval:UNIT:N", "interval"),
    _p("software:EVENT[:COUNT]", "software"),
    _p("hardware:EVENT[:COUNT]", "hardware"),
    _p("kfunc:FUNC (fentry)", "kfunc"),
    _p("kretfunc:FUNC (fexit)", "kretfunc"),
    _p("rawtracepoint:NAME", "rawtracepoint"),
    _p("iter:TASK[_FILE|_VMA]", "iter"),
    _p("watchpoint:ADDR:LEN:MODE", "watchpoint"),
    _p("asyncwatchpoint:ADDR:LEN:MODE", "asyncwatchpoint"),
    _lang("Builtins", "$1, $2, ... $n (positional parameters)", "@a = $1 + 1; @s = str($2);",
          "$1", params=("41", "x"), tests=(f"{_ST}::test_positional_parameters_on_both_engines",
                                          _STD)),
    _lang("Builtins", "$# (number of positional parameters)", "@n = $#;", "$#", params=("a", "b"),
          tests=(f"{_ST}::test_positional_parameters_on_both_engines", _STD)),
    _b("arg0, arg1, ... argN", "arg0", search="arg0"),
    _b("sarg0, sarg1, ... sargN", "sarg0", search="sarg"),
    _b("args (tracepoint, kfunc)", "args", search="args->"),
    _b("cgroup", "cgroup"),
    _b("comm", "comm"),
    Row("Builtins", "cpid", "builtin", "cpid", search="cpid",
        tests=(f"{_ST}::test_cpid_is_the_commands_pid_on_both_engines",
               "tests/host/test_statements_host.py::test_cpid_is_the_pid_of_the_command", _STD)),
    _b("cpu", "cpu"),
    _b("curtask", "curtask"),
    _b("elapsed", "elapsed"),
    _b("func", "func"),
    _b("gid", "gid"),
    _b("kstack", "kstack"),
    _b("nsecs", "nsecs"),
    _b("numaid", "numaid"),
    _b("pid", "pid"),
    _b("probe", "probe"),
    _b("rand", "rand"),
    _b("retval", "retval"),
    _b("tid", "tid"),
    _b("uid", "uid"),
    _b("username", "username"),
    _b("ustack", "ustack"),
    _f("avg", section="Map functions"),
    _f("clear", section="Map functions"),
    _f("count", section="Map functions"),
    _f("delete", section="Map functions"),
    _f("hist", section="Map functions"),
    _f("lhist", section="Map functions"),
    _f("max", section="Map functions"),
    _f("min", section="Map functions"),
    _f("stats", section="Map functions"),
    _f("sum", section="Map functions"),
    _f("zero", section="Map functions"),
    _f("bswap"),
    _f("buf"),
    _f("cat"),
    _f("cgroup_path"),
    _f("cgroupid"),
    _f("exit"),
    _f("join"),
    _f("kaddr"),
    _f("kptr"),
    _f("ksym"),
    _f("kstack", note="kstack([MODE][, LIMIT]); modes bpftrace, perf, raw"),
    _f("macaddr"),
    _f("ntop"),
    _f("pton"),
    _f("override", note="with --unsafe"),
    _f("path"),
    _f("reg"),
    _f("signal", note="with --unsafe"),
    _lang("Functions", "sizeof(TYPE | expr)", "@x = 1; @a = sizeof(uint32) + sizeof(@x) + sizeof(\"ab\");",
          "sizeof(", tests=(f"{_ST}::test_sizeof_types_and_expressions_as_bpftrace", _STD)),
    _f("skboutput"),
    _f("str"),
    _f("strcontains"),
    _f("strerror"),
    _f("strftime"),
    _f("strncmp"),
    _f("system", note="with --unsafe"),
    _f("time"),
    _f("uaddr"),
    _f("unwatch"),
    _f("uptr"),
    _f("usym"),
    _f("ustack", note="ustack([MODE][, LIMIT])"),
    _f("print", section="Output formatting"),
    _f("printf", section="Output formatting"),
    _lang("Language", "// and /* */ comments", "@x = 1; // c\n /* d */", "/*",
          tests=("tests/unit/test_lang_lexer.py::test_comments_are_skipped",)),
    _lang("Language", "#include lines (ignored with a warning: types come from BTF)",
          "#include <linux/sched.h>\nkprobe:f { @x = 1; }",
          "#include", tests=("tests/unit/test_lang_parser.py::test_include_is_ignored_with_a_warning",)),
    _lang("Language", "integer literals: decimal, 0octal, 0xhex, 1_000, suffixes (123UL)",
          "@x = 010 + 0x10 + 1_000 + 123UL;", "0x", tests=(_CG,)),
    _lang("Language", "scientific integer literals (2e3)", "@x = 2e3;", "2e3",
          tests=(f"{_ST}::test_scientific_and_suffixed_literals_as_bpftrace",)),
    Row("Language", "character literals ('c')", "fixed", fixed=NA, search="",
        note="in the manual, but bpftrace 0.17 itself refuses them (invalid character)"),
    _lang("Language", "string literals and escapes (\\n \\t \\0nn \\xnn)",
          '@s = "a\\t\\x41\\101\\n";', "\\x", tests=("tests/unit/test_lang_lexer.py",)),
    _lang("Language", "integer casts (uint8 ... int64)", "@x = (uint8)300 + (int8)200;", "(int8)",
          tests=(_CG, _DIFF)),
    _lang("Language", "+ - * / % (integer arithmetic, bpftrace 0.17 semantics)",
          "$a = 7; @x = $a + 1 - 2 * 3 / 2 % 5;", " % ", tests=(_CG,)),
    _lang("Language", "&& || ! (logical)", "$a = 1; @x = ($a && 0) || !$a;", "&&", tests=(_CG,)),
    _lang("Language", "& | ^ << >> ~ (bitwise)", "$a = 6; @x = ($a & 3) | ($a ^ 1) << 2 >> 1;",
          "<<", tests=(_CG,)),
    _lang("Language", "< <= > >= == != (relational)", "$a = 3; @x = ($a < 4) + ($a >= 3) + ($a != 2);",
          ">=", tests=(_CG,)),
    _lang("Language", "== != on strings", '@x = "abc" == "abc"; @y = "a" != "b";', '== "',
          tests=("tests/unit/test_bpf_codegen.py::test_strings_keys_comparisons_and_user_pointers",)),
    _lang("Language", "unary - and +", "$a = 3; @x = -$a + +$a;", "-$", tests=(_CG,)),
    _lang("Language", "? : (ternary)", "$a = 3; @x = $a > 2 ? 10 : 20;", " ? ", tests=(_CG,)),
    _lang("Language", "= (assignment to $variables and @maps)", "$a = 1; @x = $a; @m[1, \"k\"] = $a;",
          "@m[", tests=(_DIFF,)),
    _lang("Language", "+= -= *= /= %= on $variables and @maps",
          "$a = 5; $a += 1; $a -= 2; $a *= 3; $a /= 2; $a %= 4; @m += 3; @m -= 1; @m *= 5; @m /= 2; "
          "@m %= 7;", "*=", tests=(_STH, _STD)),
    _lang("Language", "&= |= ^= <<= >>= on $variables and @maps",
          "$a = 5; $a &= 7; $a |= 8; $a ^= 1; $a <<= 2; $a >>= 1; @m |= 3; @m &= 1; @m ^= 4; "
          "@m <<= 2; @m >>= 1;", "<<=", tests=(_STH, _STD)),
    _lang("Language", "++ and -- (prefix and postfix, $variables and @maps)",
          "$a = 1; $a++; --$a; @x = ++$a; @m++; @y = @m--;", "++",
          tests=(_STH, _STD, "tests/unit/test_bpf_codegen.py::test_map_reads_incdec_delete_and_missing_keys")),
    _lang("Language", "associative arrays (multiple keys)", "@m[1, \"a\", 2] = 3;", "@[",
          tests=(_DIFF,)),
    _lang("Language", "tuples: (a, b, ...) as values of $variables and maps, t.N, print()",
          "$t = (1, \"a\"); @t[2] = $t; @x = $t.0 + @t[2].0; print($t);", "(1, ",
          tests=(f"{_ST}::test_tuples_as_values_on_both_engines",
                 f"{_ST}::test_tuples_print_as_bpftrace", _STD)),
    Row("Language", "tuples as map keys", "fixed", fixed=NA, search="tuple cannot be used as a map key",
        tests=(f"{_ST}::test_tuple_errors_are_bpftraces",),
        note="refused by bpftrace 0.17 itself (use several keys); kprobes gives its error"),
    _lang("Language", "pointers: * (dereference of a cast pointer)", "@x = *(uint32 *)arg0;", "*(",
          tests=("tests/unit/test_engine_plan.py::test_int_pointer_deref_without_btf",)),
    Row("Language", "& (address of)", "fixed", fixed=NA, search="address-of",
        note="not in bpftrace 0.17: a syntax error there; kprobes refuses it too"),
    Row("Language", "-> and . (struct navigation and char arrays, kernel BTF types)", "proven",
        fixed=WORKS, search="->d_name", tests=(_DIFF,),
        note="needs the kernel's BTF to compile: status as the named tests prove it"),
    _lang("Language", "arrays and pointer indexing: x[N]", "@x = ((int16 *)arg1)[3];", ")[",
          tests=("tests/unit/test_engine_plan.py::test_int_pointer_deref_without_btf",)),
    _lang("Language", "struct declarations (struct X { ... })",
          "struct x { int a; }\nkprobe:f { @x = 1; }", "struct declarations"),
    _lang("Language", "if () { } else if () { } else { }",
          "$a = 2; if ($a > 3) { @x = 1; } else if ($a > 1) { @x = 2; } else { @x = 3; }",
          "else if", tests=(_DIFF,)),
    _lang("Language", "unroll (N)", "unroll(3) { @x++; }", "unroll(",
          tests=(f"{_ST}::test_while_break_continue_and_unroll_match_bpftrace", _STD)),
    _lang("Language", "while (cond) { }", "$i = 0; while ($i < 5) { $i++; } @x = $i;", "while (",
          tests=(f"{_ST}::test_while_break_continue_and_unroll_match_bpftrace", _STH, _STD)),
    _lang("Language", "break, continue", "$i = 0; while ($i < 9) { $i++; if ($i == 2) { continue; }"
          " if ($i == 5) { break; } @x++; }", "continue",
          tests=(f"{_ST}::test_nested_loops_and_break_out_of_an_unroll_in_a_while", _STD)),
    _lang("Language", "return", "@x = 1; return; @x = 2;", "return", tests=()),
    _lang("Language", "/predicate/ filters", "@x = 1;", "/comm ==", tests=(_DIFF,)),
)


def _first_line(e: BaseException) -> str:
    from ..lang.diagnostics import LangError

    if isinstance(e, LangError) and e.diagnostics:
        return e.diagnostics[0].message
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _one_function() -> "KernelSymbols":
    """The kernel symbols of the offline compiles: one traceable function ``f``."""
    from ..backends.symbols import (
        KernelSymbols,
        parse_filter_functions,
        parse_kallsyms,
        parse_kprobe_blacklist,
    )

    return KernelSymbols(parse_kallsyms("ffffffff81000010 T f\n"), parse_filter_functions("f\n"),
                         parse_kprobe_blacklist(""))


def _lang_status(row: Row) -> Tuple[str, str]:
    """Compile ``row.sample`` as the body of ``kprobe:f`` on both engines, offline: the BPF
    engine's code generator; the tracefs engine's planner (fetchargs) and evaluator."""
    from ..engines.bpf.codegen import ProbeCodegen
    from ..engines.bpf.unit import Caps, Unit
    from ..engines.evaluator import Runtime, compile_variants
    from ..engines.provider import KernelTypeProvider
    from ..engines.runtime import Output, make_maps
    from ..engines.targets import SymbolSource
    from ..engines.tracefs_engine import EngineOptions, prepare
    from ..errors import KprobesError
    from ..lang import check, parse_program
    from ..lang.diagnostics import LangError

    text = row.sample if "kprobe:f" in row.sample else f"kprobe:f {{ {row.sample} }}"
    out: List[str] = []
    for engine in ("bpf", "tracefs"):
        try:
            if engine == "bpf":
                checked = check(parse_program(text), None, params=row.params, child=True)
                ProbeCodegen(Unit(checked, Caps()), 0, "kprobe", [("kprobe:f", "f")]).compile()
            else:
                plan = prepare(text, "stdin", EngineOptions(arch="x86_64", eprobes=False),
                               provider=KernelTypeProvider(None, None),
                               symbols=SymbolSource(_one_function, None), params=row.params)
                rt = Runtime(make_maps(plan.checked), Output(io.StringIO()), 0, ksym=lambda a: "")
                compile_variants(plan.checked, plan.variants, rt)
            out.append(WORKS)
        except (LangError, KprobesError) as e:
            out.append(f"refused: {_first_line(e)}")
    return out[0], out[1]


def _bpf_only(what: str, reason: str, verb: str = "needs") -> str:
    return f"refused: {what} {verb} --engine bpf ({reason})"


@cache
def status(row: Row) -> Tuple[str, str]:
    """``(bpf, tracefs)`` status of ``row``: "works", "refused: REASON" or "n.a."."""
    from ..lang import attach, builtins

    if row.kind in ("fixed", "proven"):
        if row.kind == "proven" and not row.tests:
            raise CoverageError(f"{row.item!r}: a proven status needs its tests")
        return row.fixed, row.fixed
    if row.kind == "lang":
        return _lang_status(row)
    if row.kind == "provider":
        name = row.key
        known = set(attach.PROVIDERS.values())
        if name in set(attach.UNSUPPORTED_PROVIDERS.values()):
            reason = attach.UNSUPPORTED_REASONS.get(name, f"'{name}' probes are not supported yet")
            return f"refused: {reason}", f"refused: {reason}"
        if name not in known:
            raise CoverageError(f"probe type {name!r} is in no provider table")
        if name in builtins.BPF_ONLY_PROVIDERS:
            why = builtins.BPF_ONLY_PROVIDER_REASONS.get(name, "it runs code in the kernel")
            return WORKS, _bpf_only(f"'{name}' probes", why, "need")
        return WORKS, WORKS
    if row.kind == "builtin":
        name = row.key
        if name in builtins.UNSUPPORTED_BUILTINS:
            reason = f"refused: the {name} builtin is not supported yet"
            return reason, reason
        if name not in builtins.BUILTINS and not builtins.is_builtin_name(name):
            raise CoverageError(f"builtin {name!r} is in no builtin table")
        if name in builtins.BPF_ONLY_BUILTINS:
            return WORKS, _bpf_only(f"the {name} builtin", "it is read in the kernel")
        return WORKS, WORKS
    if row.kind == "function":
        name = row.key
        if name in builtins.UNSUPPORTED_FUNCTIONS:
            reason = "refused: " + builtins.REFUSED_REASONS.get(name, f"{name}() is not supported yet")
            return reason, reason
        if name not in builtins.FUNCTIONS:
            raise CoverageError(f"function {name!r} is in no function table")
        if name in builtins.BPF_ONLY_FUNCTIONS:
            return WORKS, _bpf_only(f"{name}()", "it runs in the kernel")
        return WORKS, WORKS
    raise CoverageError(f"row {row.item!r} has no kind")


# -- the tests column ------------------------------------------------------------------------
_DEF = re.compile(r"^(\s*)def (test_\w+)\(", re.M)
#: Where tests are looked for first: the differential tests against bpftrace.
_ORDER = ("kernel/test_bpftrace_diff.py", "kernel/test_statements_diff.py", "kernel/", "host/",
          "unit/")


def _test_files(root: Path) -> List[Path]:
    files = sorted(root.glob("*/test_*.py"))

    def rank(p: Path) -> Tuple[int, str]:
        rel = p.relative_to(root).as_posix()
        for i, prefix in enumerate(_ORDER):
            if rel.startswith(prefix):
                return i, rel
        return len(_ORDER), rel

    return sorted(files, key=rank)


def _enclosing_test(text: str, pos: int) -> Optional[str]:
    """The test function around ``pos``, or (module-level constant) the next one after it."""
    before = [m for m in _DEF.finditer(text) if m.start() <= pos]
    line_start = text.rfind("\n", 0, pos) + 1
    indented = text[line_start:pos][:1] in (" ", "\t")
    if before and indented:
        return before[-1].group(2)
    after = _DEF.search(text, pos)
    return after.group(2) if after else None


def find_tests(needle: str, root: Path, limit: int = 2) -> List[str]:
    """Up to ``limit`` tests (``path::name``) whose source contains ``needle`` (bpftrace
    differential tests first, then kernel, host and unit tests; one per file)."""
    found: List[str] = []
    for path in _test_files(root):
        text = path.read_text()
        pos = text.find(needle)
        while pos >= 0:
            name = _enclosing_test(text, pos)
            if name is not None:
                found.append(f"tests/{path.relative_to(root).as_posix()}::{name}")
                break
            pos = text.find(needle, pos + 1)
        if len(found) >= limit:
            break
    return found


def _tests_of(row: Row, root: Optional[Path]) -> List[str]:
    tests = list(row.tests)
    for ref in tests:
        if root is None:
            break
        path, _, name = ref.partition("::")
        file = root.parent / path
        if not file.exists() or (name and not re.search(rf"^\s*def {name}\(", file.read_text(), re.M)):
            raise CoverageError(f"{row.item!r} names a test that does not exist: {ref}")
    if root is not None and row.search:
        for t in find_tests(row.search, root):
            if t not in tests and not any(t.startswith(x.split("::")[0] + "::") for x in tests):
                tests.append(t)
    return tests[:3]


# -- the document -----------------------------------------------------------------------------
_HEADER = """\
# bpftrace 0.17 coverage

Every probe type, builtin, function, map function, statement and operator of bpftrace
0.17's reference (its `bpftrace(8)` manual), with its status on each kprobes engine:
**works**, **refused** (with the one-line reason kprobes gives) or **n.a.**, and the
tests that exercise it (bpftrace differential tests first).

Generated by `python -m kprobes.engines.coverage > docs/bpftrace-coverage.md` from the
tables the front end and both engines use (statements and operators: by compiling a
sample on each engine); `tests/unit/test_coverage.py` fails when this file is stale.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(root: Optional[Path] = None) -> str:
    """The markdown document (``root``: the repository's tests directory, for the tests column)."""
    lines = [_HEADER]
    section = ""
    counts: Dict[str, int] = {}
    for row in ROWS:
        if row.section != section:
            section = row.section
            lines += ["", f"## {section}", "", "| item | bpf | tracefs | tests |", "|---|---|---|---|"]
        bpf, tracefs = status(row)
        for s in (bpf, tracefs):
            key = s.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        item = _cell(row.item) + (f" ({_cell(row.note)})" if row.note else "")
        tests = "<br>".join(f"`{t}`" for t in _tests_of(row, root))
        lines.append(f"| {item} | {_cell(bpf)} | {_cell(tracefs)} | {tests} |")
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    lines += ["", f"{len(ROWS)} rows; statuses over both engines: {summary}.", ""]
    return "\n".join(lines)


def repo_tests() -> Optional[Path]:
    """The checkout's tests directory (None in an installed package)."""
    root = Path(__file__).resolve().parents[3] / "tests"
    return root if root.is_dir() else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    sys.stdout.write(render(repo_tests()))
    return 0


if __name__ == "__main__":  # pragma: no cover - the generator's entry point
    raise SystemExit(main())
