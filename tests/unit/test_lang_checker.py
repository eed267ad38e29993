"""Checker: the article's seed programs, inferred types, per-probe summaries, errors."""

from __future__ import annotations

import os

import pytest

from kprobes.lang import (
    CheckedProgram,
    DictTypeProvider,
    LangError,
    MemberInfo,
    ast,
    check,
    parse_program,
)
from kprobes.lang.typesys import (
    INT64,
    UINT32,
    UINT64,
    AggType,
    ArrayType,
    IntType,
    PointerType,
    RecordType,
    StringType,
    SymType,
)

SEED_FILE = "/work/shared/seed/kprobes-article.txt"

# The six bpftrace programs of the article, copied verbatim (the text between the quotes
# of `bpftrace -e '...'`).
SEED_OPENAT = r"""kprobe:do_sys_openat2 { printf("%s: %s\n", comm, str(arg1)); }"""
SEED_VFS_READ = r"""
kprobe:vfs_read { @start[tid] = nsecs; }
kretprobe:vfs_read /@start[tid]/ {
@us = hist((nsecs - @start[tid]) / 1000);
delete(@start[tid]);
}"""
SEED_TOP = r"""kprobe:* { @[probe] = count(); } interval:s:5 { print(@, 10); clear(@); }"""
SEED_KILL = r"""kprobe:do_send_sig_info {
printf("%s (pid=%d) -> signal %d to pid %d\n",
comm, pid, arg0, ((struct task_struct *)arg2)->pid);
}"""
SEED_ALLOC = r"""kprobe:__alloc_pages /arg1 > 8/ {
printf("%s: alloc order %d (%d KB)\n", comm, arg1, (1 << arg1) * 4);
}"""
SEED_DNS = r"""kprobe:udp_sendmsg {
$sk = (struct sock *)arg0;
$dport = ($sk->__sk_common.skc_dport >> 8) | (($sk->__sk_common.skc_dport & 0xff) << 8);
if ($dport == 53) {
printf("%s -> DNS query\n", comm);
}
}"""
SEEDS = [SEED_OPENAT, SEED_VFS_READ, SEED_TOP, SEED_KILL, SEED_ALLOC, SEED_DNS]


def fake_provider() -> DictTypeProvider:
    return DictTypeProvider(
        structs={
            "struct task_struct": {
                "pid": MemberInfo("pid", IntType(32, True), 2456),
                "comm": MemberInfo("comm", ArrayType(IntType(8, True), 16), 3000),
                "real_parent": MemberInfo(
                    "real_parent", PointerType(RecordType("struct task_struct")), 2464
                ),
                "stack": MemberInfo("stack", PointerType(IntType(64, False)), 32),
            },
            "struct sock": {
                "__sk_common": MemberInfo("__sk_common", RecordType("struct sock_common"), 0),
            },
            "struct sock_common": {
                "skc_dport": MemberInfo("skc_dport", IntType(16, False), 12),
                "skc_num": MemberInfo("skc_num", IntType(16, False), 14),
            },
        },
        tracepoints={
            ("sched", "sched_switch"): {
                "prev_comm": MemberInfo("prev_comm", ArrayType(IntType(8, True), 16), 8),
                "prev_pid": MemberInfo("prev_pid", IntType(32, True), 24),
                "next_pid": MemberInfo("next_pid", IntType(32, True), 56),
            },
            ("syscalls", "sys_enter_openat"): {
                "dfd": MemberInfo("dfd", IntType(64, True), 16),
                "filename": MemberInfo("filename", PointerType(IntType(8, True)), 24),
            },
        },
    )


def run(text: str) -> CheckedProgram:
    return check(parse_program(text), fake_provider())


def errors(text: str) -> list[str]:
    with pytest.raises(LangError) as exc:
        run(text)
    return [d.message for d in exc.value.errors]


# -- seed programs ------------------------------------------------------------------
@pytest.mark.skipif(not os.path.exists(SEED_FILE), reason="seed article not available")
@pytest.mark.parametrize("seed", SEEDS)
def test_seeds_are_verbatim_copies(seed: str) -> None:
    with open(SEED_FILE, encoding="utf-8") as f:
        assert seed in f.read()


@pytest.mark.parametrize("seed", SEEDS)
def test_seed_programs_check(seed: str) -> None:
    checked = run(seed)
    assert len(checked.probes) == len(checked.program.probes) >= 1


def test_seed_openat_summary() -> None:
    (p,) = run(SEED_OPENAT).probes
    assert p.builtins == {"comm"}
    assert p.args == {1}
    assert p.calls == {"printf", "str"}


def test_seed_vfs_read_maps_and_types() -> None:
    checked = run(SEED_VFS_READ)
    assert checked.maps["start"].key_types == (UINT64,)
    assert checked.maps["start"].value_type == UINT64
    assert checked.maps["us"].key_types == ()
    assert checked.maps["us"].value_type == AggType("hist", True)
    entry, ret = checked.probes
    assert entry.maps_written == {"start"} and entry.builtins == {"tid", "nsecs"}
    assert ret.maps_read == {"start"} and ret.maps_written == {"start", "us"}
    pred = checked.program.probes[1].predicate
    assert pred is not None and checked.type_of(pred) == UINT64


def test_seed_top_functions() -> None:
    checked = run(SEED_TOP)
    assert checked.program.probes[0].attach_points[0].is_pattern
    assert checked.maps[""].value_type == AggType("count", False)
    assert isinstance(checked.maps[""].key_types[0], StringType)
    assert checked.probes[0].builtins == {"probe"}
    assert checked.probes[1].calls == {"print", "clear"}


def test_seed_kill_struct_field() -> None:
    (p,) = run(SEED_KILL).probes
    assert p.args == {0, 2}
    assert p.builtins == {"comm", "pid"}
    assert p.struct_fields == {("struct task_struct", "pid")}


def test_seed_alloc_predicate_uses_arg1() -> None:
    checked = run(SEED_ALLOC)
    (p,) = checked.probes
    assert p.args == {1}
    stmt = checked.program.probes[0].body.stmts[0]
    assert isinstance(stmt, ast.ExprStmt) and isinstance(stmt.expr, ast.Call)
    shifted = stmt.expr.args[3]
    assert checked.type_of(shifted) == IntType(64, True)


def test_seed_dns_variable_types() -> None:
    (p,) = run(SEED_DNS).probes
    assert p.variables["sk"] == PointerType(RecordType("struct sock"))
    assert isinstance(p.variables["dport"], IntType)
    assert p.struct_fields == {("struct sock", "__sk_common"), ("struct sock_common", "skc_dport")}


# -- types --------------------------------------------------------------------------
def value_type(src: str, probe: str = "kprobe:f") -> object:
    checked = run(f"{probe} {{ @v = {src}; }}")
    return checked.maps["v"].value_type


@pytest.mark.parametrize(
    "src, expected",
    [
        ("1", INT64),
        ("0xffffffffffffffff", UINT64),
        ("-1", INT64),
        ('"abc"', StringType(4)),
        ('"\\x00\\x01"', StringType(3)),
        ("comm", StringType(16)),
        ("pid", UINT32),
        ("nsecs", UINT64),
        ("arg0", UINT64),
        ("(uint8)arg0", IntType(8, False)),
        ("(int32)arg0 + (int16)1", IntType(32, True)),
        ("(int32)arg0 + arg1", IntType(64, False)),
        ("(int32)arg0 >> arg1", IntType(64, True)),
        ("str(arg0)", StringType(64)),
        ("str(arg0, 8)", StringType(9)),  # 8 characters and the NUL (bpftrace 0.17)
        ("ksym(arg0)", SymType(True)),
        ("func", SymType(True)),
        ("((struct task_struct *)arg0)->comm", StringType(16)),
        ("((struct task_struct *)arg0)->real_parent->pid", IntType(32, True)),
        ("*((struct task_struct *)arg0)->stack", UINT64),
        ("((struct task_struct *)arg0)->stack[3]", UINT64),
        ("(uint32 *)arg0", PointerType(IntType(32, False))),
        ("arg0 > 1 ? 1 : 2", INT64),
        ('arg0 ? "a" : "abcd"', StringType(5)),
        ('comm == "bash"', UINT64),
        ("!arg0", UINT64),
        ("~(int8)arg0", IntType(64, True)),
    ],
)
def test_expression_types(src: str, expected: object) -> None:
    assert value_type(src) == expected


def test_retval_and_uprobe_func() -> None:
    assert value_type("retval", "kretprobe:f") == UINT64
    assert value_type("func", "uprobe:/bin/sh:main") == SymType(False)


def test_tracepoint_args() -> None:
    checked = run(
        "tracepoint:sched:sched_switch { @[args.prev_comm] = count(); @p = args->next_pid; }"
    )
    (p,) = checked.probes
    assert p.tracepoint_fields == {"prev_comm", "next_pid"}
    assert "args" in p.builtins
    assert checked.maps[""].key_types == (StringType(16),)
    assert checked.maps["p"].value_type == IntType(32, True)


def test_tracepoint_filename_pointer_through_str() -> None:
    checked = run('tracepoint:syscalls:sys_enter_openat { printf("%s\\n", str(args.filename)); }')
    assert checked.probes[0].tracepoint_fields == {"filename"}


def test_map_read_before_assignment_in_text() -> None:
    checked = run('END { print(@c); printf("%d\\n", @n); } kprobe:f { @c = count(); @n = 1; }')
    assert checked.maps["c"].value_type == AggType("count", False)


def test_aggregation_maps_read_as_integers() -> None:
    checked = run(
        "kprobe:f { @c = count(); if (@c > 10) { exit(); } @s = sum(arg0); @t = @s + 1; }"
    )
    assert checked.maps["t"].value_type == IntType(64, False)


def test_all_aggregations() -> None:
    checked = run(
        "kprobe:f { @a = count(); @b = sum((int32)arg0); @c = avg(arg0); @d = min(arg0); "
        "@e = max(arg0); @f = stats(arg0); @g = hist(arg0); @h = lhist(arg0, 0, 100, 10); "
        "@i = hist(arg0, 2); }"
    )
    kinds = {name: info.value_type for name, info in checked.maps.items()}
    assert kinds["a"] == AggType("count", False)
    assert kinds["b"] == AggType("sum", True)
    assert kinds["d"] == AggType("min", False)
    assert kinds["h"] == AggType("lhist", True)


def test_map_functions() -> None:
    checked = run(
        "kprobe:f { @m[tid, comm] = 1; @s = 1; @k[pid] = comm; } "
        'END { delete(@m[1, "x"]); delete(@k, 2); print(@m); print(@s); print(@m, 5, 10); '
        'print(1 + 2); print(comm); clear(@m); zero(@s); time(); time("%H\\n"); exit(); }'
    )
    assert checked.maps["m"].key_types == (UINT64, StringType(16))
    assert checked.probes[1].calls >= {"delete", "print", "clear", "zero", "time", "exit"}


def test_variables_are_per_probe() -> None:
    assert errors("kprobe:f { $x = 1; } kprobe:g { @y = $x; }") == [
        "Undefined or undeclared variable: $x"
    ]


def test_increments_and_compound_assignment() -> None:
    checked = run("kprobe:f { @n++; ++@m[tid]; $i = 0; $i += 2; $i++; @t -= 1; @t <<= 2; }")
    assert checked.maps["n"].value_type == INT64
    assert checked.maps["m"].key_types == (UINT64,)
    assert checked.probes[0].variables["i"] == INT64


def test_string_variable_keeps_largest_size() -> None:
    checked = run('kprobe:f { $s = "a"; $s = "abcdef"; @v = $s; }')
    assert checked.probes[0].variables["s"] == StringType(7)


def test_warnings_are_returned() -> None:
    checked = check(parse_program("#include <linux/sched.h>\nkprobe:f { @v = str(arg0, 500); }"))
    messages = [w.message for w in checked.warnings]
    assert any("#include is ignored" in m for m in messages)
    assert any("will be shortened to 64 bytes" in m for m in messages)


def test_check_without_provider_refuses_structs() -> None:
    with pytest.raises(LangError, match="Unknown struct/union: 'struct sock'"):
        check(parse_program("kprobe:f { $s = (struct sock *)arg0; }"))


# -- errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, message",
    [
        ("kprobe:f { fake }", "Unknown identifier: 'fake'"),
        ("kprobe:f { @x = retval; }",
         "The retval builtin can only be used with 'kretprobe' and 'uretprobe' probes"),
        ("tracepoint:sched:sched_switch { @x = retval; }",
         "The retval builtin can only be used with 'kretprobe' and 'uretprobe' probes "
         "(try to use args.ret instead)"),
        ("BEGIN { @x = arg0; }",
         "The arg0 builtin can only be used with 'kprobes' and 'uprobes' probes"),
        ("kretprobe:f { @x = arg0; }",
         "The arg0 builtin can only be used with 'kprobes' and 'uprobes' probes"),
        ("kprobe:f { @x = arg6; }", "x86_64 doesn't support arg6"),
        ("interval:s:1 { @x = func; }", "The func builtin can not be used with 'interval' probes"),
        ("kprobe:f { @x = args.foo; }",
         "The args builtin can only be used with tracepoint probes (kprobe used here)"),
        ("tracepoint:sched:sched_switch { @x = args.prev_pdi; }",
         "Struct/union of type 'struct _tracepoint_sched_sched_switch' does not contain a field "
         "named 'prev_pdi'"),
        ("tracepoint:sched:sched_* { @x = args.prev_pid; }",
         "The args builtin is not supported yet with wildcard tracepoints"),
        ("tracepoint:sched:nope { @x = args.x; }", "tracepoint not found: sched:nope"),
        ("kprobe:f { @x = jiffies; }", "Unknown identifier: 'jiffies'"),
        ("BEGIN { @[kstack] = count(); }", "The kstack builtin can not be used with 'BEGIN' probes"),
        ("kprobe:f { @[kstack(fast)] = count(); }", "kstack: unknown stack mode 'fast' (expected bpftrace, perf, raw)"),
        ("kprobe:f { @[ustack(perf, 0)] = count(); }", "ustack: limit must be 1..1024, not 0"),
        ("kprobe:f { @[ustack(arg0)] = count(); }",
         "ustack: expected a stack mode and/or a literal frame limit"),
        ("kprobe:f { @x = $0; }", "param $0 is out of integer range [1, 9223372036854775807]"),
        ("kprobe:f { @x = 1; @x = \"a\"; }",
         "Type mismatch for @x: trying to assign value of type 'string[2]' when map already "
         "contains a value of type 'int64'"),
        ("kprobe:f { @x = count(); @x = sum(arg0); }",
         "Type mismatch for @x: trying to assign value of type 'sum_t' when map already "
         "contains a value of type 'count_t'"),
        ("kprobe:f { $x = 1; $x = comm; }",
         "Type mismatch for $x: trying to assign value of type 'string[16]' when variable "
         "already contains a value of type 'int64'"),
        ("kprobe:f { @x[1] = 1; @x[comm] = 1; }",
         "Argument mismatch for @x: trying to access with arguments: 'string[16]' when map "
         "expects arguments: 'int64'"),
        ("kprobe:f { @x = 1; @x[1] = 1; }",
         "@x used as a map with an explicit key (non-scalar map), previously used without an "
         "explicit key (scalar map)"),
        ("kprobe:f { $x = count(); }", "count() should be directly assigned to a map"),
        ("kprobe:f { @x = hist(arg0) + 1; }", "hist() should be directly assigned to a map"),
        ("kprobe:f { @x += count(); }", "count() should be directly assigned to a map"),
        ("kprobe:f { @h = hist(arg0); @y = @h; }",
         "Map value 'hist_t' of @h cannot be used in an expression"),
        ("kprobe:f { @h = hist(arg0); $y = @h + 1; }",
         "Map value 'hist_t' of @h cannot be used in an expression"),
        ("kprobe:f { @c = count(); @c += 1; }",
         "The += operator can not be used on expressions of types count_t, int64"),
        ("kprobe:f { @x = sum(comm); }", "sum() only supports integer arguments (string provided)"),
        ("kprobe:f { @x = count(1); }", "count() requires no arguments (1 provided)"),
        ("kprobe:f { @x = lhist(arg0, 0, 10); }", "lhist() requires 4 arguments (3 provided)"),
        ("kprobe:f { @x = lhist(arg0, 0, arg1, 1); }",
         "lhist() expects a integer literal (integer provided)"),
        ("kprobe:f { @x = lhist(arg0, 0, 10, 0); }", "lhist() step must be >= 1 (0 provided)"),
        ("kprobe:f { @x = lhist(arg0, 0, 100000, 1); }",
         "lhist() too many buckets, must be <= 1000 (would need 100000)"),
        ("kprobe:f { @x = lhist(arg0, 10, 0, 1); }",
         "lhist() min must be less than max (provided min 10 and max 0)"),
        ("kprobe:f { @x = lhist(arg0, 0, 10, 20); }",
         "lhist() step is too large for the given range (provided step 20 for range 10)"),
        ("kprobe:f { @x = hist(arg0, 7); }", "hist: bits 7 must be 0..5"),
        ("kprobe:f { printf(); }", "printf() requires at least one argument (0 provided)"),
        ("kprobe:f { printf(comm); }", "printf() expects a string literal (string provided)"),
        ("kprobe:f { printf(\"%d %s\\n\", 1); }",
         "printf: Not enough arguments for format string (1 supplied, 2 expected)"),
        ("kprobe:f { printf(\"%d\\n\", 1, 2); }",
         "printf: Too many arguments for format string (2 supplied, 1 expected)"),
        ("kprobe:f { printf(\"%d\\n\", comm); }",
         "printf: %d specifier expects a value of type integer (string supplied)"),
        ("kprobe:f { printf(\"%-8lu\\n\", comm); }",
         "printf: %lu specifier expects a value of type integer (string supplied)"),
        ("kprobe:f { printf(\"%s\\n\", arg0); }",
         "printf: %s specifier expects a value of type string (integer supplied)"),
        ("kprobe:f { printf(\"%q\\n\", arg0); }", "printf: Unknown format string token: %q"),
        ("kprobe:f { print(); }", "print() requires at least one argument (0 provided)"),
        ("kprobe:f { @x = 1; print(@x, \"a\"); }",
         "print() expects a integer literal (string provided)"),
        ("kprobe:f { print(1, 2); }", "Non-map print() only takes 1 argument, 2 found"),
        ("kprobe:f { print(exit()); }", "void type passed to print() is not printable"),
        ("kprobe:f { print(@nope); }", "Undefined map: @nope"),
        ("kprobe:f { @c = count(); print(@c[1]); }",
         "Map type count_t cannot print the value of individual keys. You must print the whole map."),
        ("kprobe:f { clear(1); }", "clear() expects a map argument"),
        ("kprobe:f { @m[1] = 1; clear(@m[1]); }",
         "The map passed to clear() should not be indexed by a key"),
        ("kprobe:f { exit(\"a\"); }", "exit() only supports integer arguments (string provided)"),
        ("kprobe:f { time(1); }", "time() expects a string literal (integer provided)"),
        ("kprobe:f { @s = str(comm, 4, 5); }", "str() takes up to 2 arguments (3 provided)"),
        ("kprobe:f { @s = ksym(comm); }", "ksym() expects an integer or pointer argument"),
        ("kprobe:f { foo(); }", "Unknown function: 'foo'"),
        ("kprobe:f { @x = usym(comm); }", "usym() expects an integer or pointer argument"),
        ("kprobe:f { @x = (struct nope *)arg0; }", "Unknown struct/union: 'struct nope'"),
        ("kprobe:f { @x = (struct sock)arg0; }", 'Cannot cast to "struct sock"'),
        ("kprobe:f { @x = (uint8)comm; }", 'Cannot cast from "string[16]" to "uint8"'),
        ("kprobe:f { @x = ((struct task_struct *)arg0).pid; }",
         "Can not access field 'pid' on type 'struct task_struct *'. Try dereferencing it "
         "first, or using '->'"),
        ("kprobe:f { @x = arg0->pid; }",
         "Can not access field 'pid' on expression of type 'uint64' with '->'"),
        ("kprobe:f { @x = ((struct task_struct *)arg0)->ppid; }",
         "Struct/union of type 'struct task_struct' does not contain a field named 'ppid'"),
        ("kprobe:f { @x = comm[1]; }",
         "The array index operator [] can only be used on arrays and pointers, found string."),
        ("kprobe:f { @x = ((struct task_struct *)arg0)->stack[arg1]; }",
         "The array index operator [] only accepts positive literal integer indices."),
        ("kprobe:f { @x = \"a\" < \"b\"; }",
         "The < operator can not be used on expressions of types string[2], string[2]"),
        ("kprobe:f { @x = 1 == \"b\"; }", "Type mismatch for '==': comparing int64 with string[2]"),
        ("kprobe:f { @x = -comm; }", "The - operator can not be used on expressions of type 'string[16]'"),
        ("kprobe:f { @x = &arg0; }", "The & (address-of) operator is not supported yet"),
        ("kprobe:f { 1++; }", "The ++ operator must be applied to a map or variable"),
        ("kprobe:f { $s = comm; $s++; }",
         "The ++ operator can not be used on expressions of type 'string[16]'"),
        ("kprobe:f { $s = \"a\"; $s += 1; }",
         "Type mismatch for '+': comparing string[2] with int64"),
        ("kprobe:f { @x = comm ? 1 : 2; }", "Invalid condition in ternary: string"),
        ("kprobe:f { @x = 1 ? 2 : \"a\"; }",
         "Ternary operator must return the same type: have 'int64' and 'string[2]'"),
        ("kprobe:f { if (comm) { } }", "Invalid condition in if(): string"),
        ("kprobe:f /comm/ { }", "Invalid type for predicate: string"),
        ("kprobe:f { $x = exit(); }", "Value 'void' cannot be assigned to a scratch variable."),
        ("kprobe:f { @x = exit(); }", "Not a valid assignment: void"),
        ("kprobe:f { @x[((struct task_struct *)arg0)->real_parent->comm, 1] = 1; @y[*(struct sock *)arg0] = 1; }",
         "struct sock cannot be used as a map key"),
        ("kprobe:f { return 1; }", "return with a value is not supported in probes"),
    ],
)  # fmt: skip
def test_error_messages(text: str, message: str) -> None:
    try:
        msgs = errors(text)
    except LangError as exc:  # parse-time refusals
        msgs = [d.message for d in exc.errors]
    assert message in msgs


def test_hints_for_close_names() -> None:
    cases = {
        "kprobe:f { @x = comn; }": "Did you mean 'comm'?",
        "kprobe:f { @x = ((struct task_struct *)arg0)->pdi; }": "Did you mean 'pid'?",
        'kprobe:f { printff("x"); }': "Did you mean 'printf'?",
        "kprobe:f { $value = 1; @x = $valeu; }": "Did you mean '$value'?",
        "kprobe:f { @count = 1; } END { print(@coutn); }": "Did you mean '@count'?",
        "tracepoint:sched:sched_switch { @x = args.next_ipd; }": "Did you mean 'next_pid'?",
    }
    for text, hint in cases.items():
        with pytest.raises(LangError) as exc:
            run(text)
        assert exc.value.errors[0].hints == (hint,), text


def test_multiple_errors_reported_together() -> None:
    assert errors('kprobe:f { @a = fake; @b = retval; printf("%d\\n"); }') == [
        "Unknown identifier: 'fake'",
        "The retval builtin can only be used with 'kretprobe' and 'uretprobe' probes",
        "printf: Not enough arguments for format string (0 supplied, 1 expected)",
    ]


def test_no_cascade_from_one_bad_expression() -> None:
    assert errors('kprobe:f { $x = fake; @y = $x + 1; printf("%d\\n", $x); }') == [
        "Unknown identifier: 'fake'"
    ]


def test_builtin_checked_for_every_attach_point() -> None:
    assert errors("kretprobe:f, kprobe:g { @x = retval; }") == [
        "The retval builtin can only be used with 'kretprobe' and 'uretprobe' probes"
    ]
