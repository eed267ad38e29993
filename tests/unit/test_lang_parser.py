"""Parser: AST shapes, precedence, casts, statements, attach points, refusals."""

from __future__ import annotations

import pytest

from kprobes.lang import LangError, ast, parse_program


def show(e: ast.Expr) -> str:
    """A fully parenthesised rendering, to assert on tree shape."""
    if isinstance(e, ast.Binary):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, ast.Unary):
        return f"({e.op}{show(e.operand)})"
    if isinstance(e, ast.IntLit):
        return str(e.value)
    if isinstance(e, ast.StrLit):
        return repr(e.value)
    if isinstance(e, ast.Ternary):
        return f"({show(e.cond)} ? {show(e.then)} : {show(e.orelse)})"
    if isinstance(e, ast.Cast):
        return f"(({e.type.c_name}){show(e.expr)})"
    if isinstance(e, ast.FieldAccess):
        return f"{show(e.expr)}{'->' if e.arrow else '.'}{e.field}"
    if isinstance(e, ast.Index):
        return f"{show(e.expr)}[{show(e.index)}]"
    if isinstance(e, (ast.Builtin, ast.Ident)):
        return e.name
    if isinstance(e, ast.Var):
        return "$" + e.name
    if isinstance(e, ast.Map):
        return f"@{e.name}" + (f"[{', '.join(map(show, e.keys))}]" if e.indexed else "")
    if isinstance(e, ast.IncDec):
        return f"({e.op}{show(e.target)})" if e.prefix else f"({show(e.target)}{e.op})"
    if isinstance(e, ast.Call):
        return f"{e.name}({', '.join(map(show, e.args))})"
    raise AssertionError(e)


def expr_of(src: str) -> ast.Expr:
    stmt = parse_program("BEGIN { " + src + " }").probes[0].body.stmts[0]
    assert isinstance(stmt, ast.ExprStmt)
    return stmt.expr


@pytest.mark.parametrize(
    "src, tree",
    [
        ("1 + 2 * 3 - 4", "((1 + (2 * 3)) - 4)"),
        ("1 - 2 - 3", "((1 - 2) - 3)"),
        ("a || b && c | d ^ e & f == g < h << i + j * k",
         "(a || (b && (c | (d ^ (e & (f == (g < (h << (i + (j * k))))))))))"),
        ("-pid * !tid", "((-pid) * (!tid))"),
        ("~arg0 >> 2", "((~arg0) >> 2)"),
        ("$a ? 1 : $b ? 2 : 3", "($a ? 1 : ($b ? 2 : 3))"),
        ("(uint8)arg0 + 1", "(((uint8)arg0) + 1)"),
        ("((struct task_struct *)arg0)->pid", "((struct task_struct *)arg0)->pid"),
        ("(struct task_struct *)arg0->pid", "((struct task_struct *)arg0->pid)"),
        ("*(uint32 *)arg0", "(*((uint32 *)arg0))"),
        ("$s->a.b[2]", "$s->a.b[2]"),
        ("@x[1, comm]++", "(@x[1, comm]++)"),
        ("--$x", "(--$x)"),
        ("(1 + 2) * 3", "((1 + 2) * 3)"),
        ('str(arg1, 16) == "bash"', "(str(arg1, 16) == 'bash')"),
        ("exit()", "exit()"),
    ],
)  # fmt: skip
def test_expression_shapes(src: str, tree: str) -> None:
    assert show(expr_of(src)) == tree


def test_int_cast_records_size_and_sign() -> None:
    e = expr_of("(int16)arg0")
    assert isinstance(e, ast.Cast)
    assert (e.type.kind, e.type.bits, e.type.signed, e.type.pointer) == ("int", 16, True, 0)


def test_statements_and_compound_assignment() -> None:
    prog = parse_program(
        "kprobe:f { $x = 1; $x += 2; @m[tid] <<= 1; @ = count(); "
        "if ($x > 1) { return; } else if ($x) { @a++ } else { exit(); } }"
    )
    stmts = prog.probes[0].body.stmts
    assert [type(s).__name__ for s in stmts] == [
        "AssignVar", "AssignVar", "AssignMap", "AssignMap", "If",
    ]  # fmt: skip
    assert [getattr(s, "op", None) for s in stmts[:4]] == ["=", "+=", "<<=", "="]
    anon = stmts[3]
    assert isinstance(anon, ast.AssignMap) and anon.target.name == ""
    branch = stmts[4]
    assert isinstance(branch, ast.If) and isinstance(branch.orelse, ast.If)
    assert isinstance(branch.then.stmts[0], ast.Return)
    assert isinstance(branch.orelse.orelse, ast.Block)


def test_semicolon_optional_before_closing_brace_and_after_blocks() -> None:
    prog = parse_program("BEGIN { if (1) { @x = 1 } @y = 2 }")
    assert len(prog.probes[0].body.stmts) == 2


def test_probe_with_several_attach_points_and_predicate() -> None:
    prog = parse_program("kprobe:a, kretprobe:b /pid == 42/ { @n = count(); }")
    probe = prog.probes[0]
    assert [ap.name for ap in probe.attach_points] == ["kprobe:a", "kretprobe:b"]
    assert probe.predicate is not None and show(probe.predicate) == "(pid == 42)"


@pytest.mark.parametrize(
    "text, provider, fields",
    [
        ("k:vfs_read", "kprobe", {"func": "vfs_read"}),
        ("kprobe:vfs_read+0x10", "kprobe", {"func": "vfs_read", "offset": 16}),
        ("kprobe:ext4:ext4_sync_fs", "kprobe", {"module": "ext4", "func": "ext4_sync_fs"}),
        ("kr:vfs_*", "kretprobe", {"func": "vfs_*"}),
        ("u:/bin/bash:readline", "uprobe", {"target": "/bin/bash", "func": "readline"}),
        ("uprobe:libc:malloc", "uprobe", {"target": "libc", "func": "malloc"}),
        ("uprobe:/lib/x.so:0x1234", "uprobe", {"target": "/lib/x.so", "address": 0x1234}),
        ("ur:/bin/sh:main", "uretprobe", {"target": "/bin/sh", "func": "main"}),
        (
            "t:syscalls:sys_enter_open*",
            "tracepoint",
            {"target": "syscalls", "func": "sys_enter_open*"},
        ),
        ("i:s:5", "interval", {"unit": "s", "period": 5}),
        ("interval:ms:100", "interval", {"unit": "ms", "period": 100}),
        ("interval:us:250", "interval", {"unit": "us", "period": 250}),
        ("interval:hz:99", "interval", {"unit": "hz", "period": 99}),
        ("p:ms:10", "profile", {"unit": "ms", "period": 10}),
        ("profile:us:500", "profile", {"unit": "us", "period": 500}),
        ("profile:s:1", "profile", {"unit": "s", "period": 1}),
        ("kfunc:vfs_read", "kfunc", {"func": "vfs_read", "name": "kfunc:vmlinux:vfs_read"}),
        ("f:vfs_*", "kfunc", {"func": "vfs_*"}),
        ("fentry:vfs_read", "kfunc", {"func": "vfs_read"}),
        ("kretfunc:ext4:ext4_sync_fs", "kretfunc", {"module": "ext4", "func": "ext4_sync_fs"}),
        ("fr:vfs_read", "kretfunc", {"func": "vfs_read", "name": "kretfunc:vmlinux:vfs_read"}),
        ("fexit:vfs_read", "kretfunc", {"func": "vfs_read"}),
        ("rawtracepoint:sched_switch", "rawtracepoint",
         {"func": "sched_switch", "name": "rawtracepoint:sched_switch"}),
        ("rt:sys_enter", "rawtracepoint", {"func": "sys_enter"}),
        ("software:faults:10", "software", {"target": "page-faults", "period": 10}),
        ("s:cs", "software", {"target": "context-switches", "period": 1000}),
        ("software:cpu-clock:0", "software", {"target": "cpu-clock", "period": 1000000}),
        ("software:task-clock", "software", {"target": "task-clock", "period": 1,
                                             "name": "software:task-clock:1"}),
        ("hardware:cycles:100000", "hardware", {"target": "cpu-cycles", "period": 100000}),
        ("h:branches", "hardware", {"target": "branch-instructions", "period": 100000}),
        ("hardware:ref-cycles", "hardware", {"target": "ref-cycles", "period": 1000000}),
        ("begin", "BEGIN", {}),
        ("END", "END", {}),
    ],
)
def test_attach_points(text: str, provider: str, fields: dict) -> None:  # type: ignore[type-arg]
    ap = parse_program(text + " { }").probes[0].attach_points[0]
    assert ap.provider == provider
    for key, value in fields.items():
        assert getattr(ap, key) == value
    assert ap.raw == text


def test_wildcards_are_patterns() -> None:
    prog = parse_program("kprobe:vfs_* , kprobe:tcp_?endmsg, kprobe:[Ss]ys_read, kprobe:f {}")
    assert [ap.is_pattern for ap in prog.probes[0].attach_points] == [True, True, True, False]


def test_probe_name_is_canonical() -> None:
    prog = parse_program("k:f+4, ur:/bin/sh:main, i:s:1, t:sched:sched_switch {}")
    names = [ap.name for ap in prog.probes[0].attach_points]
    assert names == [
        "kprobe:f+4",
        "uretprobe:/bin/sh:main",
        "interval:s:1",
        "tracepoint:sched:sched_switch",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("foo:bar { }", "Invalid provider: 'foo'"),
        ("kprobe { }", "kprobes should be attached to a function"),
        ("kretprobe:f+4 { }", "kretprobes can not be attached to a function offset"),
        ("uprobe:malloc { }", "uprobe should have a target"),
        ("tracepoint:sched { }", "tracepoint probe must have a target"),
        ("interval:m:1 { }", "m is not an accepted unit of time"),
        ("interval:s:0 { }", "interval frequency should be a positive integer"),
        ("interval:s { }", "interval probe must have unit of time"),
        ("BEGIN:x { }", "BEGIN/END probes should not have a target"),
        ("profile:hz:0 { }", "profile frequency should be a positive integer"),
        ("self:signal:SIGUSR1 { }", "'self' probes are not supported yet"),
        ("iter:task { }", "'iter' probes are not supported: BPF iterators are not attach "
         "points of a tracing session"),
        ("interval:ns:100 { }", "ns is not an accepted unit of time"),
        ("watchpoint:0x1000:8:w { }", "'watchpoint' probes are not supported: a hardware "
         "breakpoint on a kernel or user address needs a debug-register slot per CPU and a "
         "target process; use a kprobe/uprobe on the code that writes the variable"),
        ("profile:ns:100 { }", "ns is not an accepted unit of time"),
        ("kfunc:vfs_read+4 { }", "kfunc probes can not be attached to a function offset"),
        ("kretfunc { }", "kretfunc should be attached to a function: kretfunc:[MODULE:]NAME"),
        ("rawtracepoint:a:b:c { }",
         "rawtracepoint should be attached to a tracepoint: rawtracepoint:[MODULE:]NAME"),
        ("software:migrations:1 { }", "migrations is not a software probe"),
        ("hardware:cpu-clock { }", "cpu-clock is not a hardware probe"),
        ("software { }", "software probe must have an event: software:EVENT[:COUNT]"),
        ("software:cs:x { }", "invalid software count: 'x'"),
        ("kprobe:vfs_*+4 { }", "Offset not allowed with wildcards"),
    ],
)
def test_invalid_attach_points(text: str, message: str) -> None:
    with pytest.raises(LangError) as exc:
        parse_program(text)
    assert exc.value.errors[0].message == message


def test_provider_typo_gets_a_hint() -> None:
    with pytest.raises(LangError) as exc:
        parse_program("kprob:f { }")
    assert exc.value.errors[0].hints == ("Did you mean 'kprobe'?",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("config = { max_map_keys = 1 } BEGIN { }", "config blocks are not supported yet"),
        ("BEGIN { @x = (1, 2, ); }", "syntax error, unexpected )"),
        ("BEGIN { @x = offsetof(struct task_struct, pid); }", "offsetof() is not supported yet"),
        ("BEGIN { break; }", "break used outside of a loop"),
        ("BEGIN { $x = 1 @y = 2 }", "syntax error, unexpected map, expecting ; or }"),
        ("BEGIN { 1 = 2; }", "syntax error, unexpected ="),
        ("BEGIN { @x = ; }", "syntax error, unexpected ;"),
        ("BEGIN { @x = 1;", "syntax error, unexpected end of file, expecting }"),
        ("kprobe:f /pid { }", "syntax error, unexpected {, expecting /"),
        ("kprobe:f $x", "syntax error, unexpected variable, expecting , or {"),
        ("BEGIN { if pid { } }", "syntax error, unexpected builtin, expecting ("),
        ("BEGIN { (int)arg0 }", 'Cannot cast to "int"'),
        ("", "No probes defined"),
    ],
)
def test_refusals_and_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(LangError) as exc:
        parse_program(text)
    assert exc.value.errors[0].message == message
    assert exc.value.exit_code == 1


def test_loops_parse_and_stray_jumps_are_reported_together() -> None:
    body = parse_program("BEGIN { unroll (2) { } while (1) { break; continue } }").probes[0].body
    assert [type(s).__name__ for s in body.stmts] == ["Unroll", "While"]
    loop = body.stmts[1]
    assert isinstance(loop, ast.While)
    assert [s.kind for s in loop.body.stmts] == ["break", "continue"]  # type: ignore[union-attr]
    with pytest.raises(LangError) as exc:
        parse_program("BEGIN { break; if (1) { continue; } }")
    assert len(exc.value.errors) == 2


def test_include_is_ignored_with_a_warning() -> None:
    prog = parse_program("#include <linux/sched.h>\n#include <net/sock.h>\nBEGIN { }")
    assert prog.includes == ("<linux/sched.h>", "<net/sock.h>")
    assert [w.severity for w in prog.warnings] == ["WARNING", "WARNING"]
    assert "#include is ignored" in prog.warnings[0].message


def test_deep_nesting_is_refused_cleanly() -> None:
    with pytest.raises(LangError, match="nested too deeply"):
        parse_program("BEGIN { @x = " + "(" * 500 + "1" + ")" * 500 + "; }")
    with pytest.raises(LangError, match="nested too deeply"):
        parse_program("BEGIN { @x = 1" + " + 1" * 2000 + "; }")
    with pytest.raises(LangError, match="nested too deeply"):
        parse_program("BEGIN { " + "if (1) { " * 100 + "}" * 100 + " }")


def test_spans_cover_the_source_text() -> None:
    text = "kprobe:f { @x = arg0 + 12; }"
    stmt = parse_program(text).probes[0].body.stmts[0]
    assert isinstance(stmt, ast.AssignMap)
    assert text[stmt.span.start : stmt.span.end] == "@x = arg0 + 12"
    assert text[stmt.value.span.start : stmt.value.span.end] == "arg0 + 12"
    assert (stmt.value.span.col, stmt.value.span.end_col) == (17, 26)


def test_filename_is_used_in_messages() -> None:
    with pytest.raises(LangError) as exc:
        parse_program("BEGIN { @x = ; }", filename="prog.bt")
    assert exc.value.message.startswith("prog.bt:1:14-15: ERROR: syntax error, unexpected ;")
