"""Fuzzing the front end: any text must give a Program/CheckedProgram or a LangError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kprobes.lang import DictTypeProvider, LangError, MemberInfo, check, parse_program
from kprobes.lang.typesys import IntType, PointerType, RecordType

PROVIDER = DictTypeProvider(
    structs={
        "struct task_struct": {
            "pid": MemberInfo("pid", IntType(32, True), 0),
            "parent": MemberInfo("parent", PointerType(RecordType("struct task_struct")), 8),
        }
    },
    tracepoints={
        ("sched", "sched_switch"): {"prev_pid": MemberInfo("prev_pid", IntType(32, True), 8)}
    },
)

TOKENS = [
    "kprobe:vfs_read", "kretprobe:f", "uprobe:/bin/sh:main", "tracepoint:sched:sched_switch",
    "interval:s:1", "BEGIN", "END", "k:*", "i:ms:5", ",", "{", "}", "/", "(", ")", "[", "]",
    ";", "=", "+=", "<<=", "==", "!=", "<", ">", "<=", ">=", "&&", "||", "!", "~", "&", "|",
    "^", "<<", ">>", "+", "-", "*", "%", "?", ":", ".", "->", "++", "--", "@", "@x", "@m",
    "$a", "$b", "$1", "0", "1", "42", "0x10", "0755", "1_000", "\"s\"", "\"%d %s\\n\"",
    "pid", "tid", "comm", "nsecs", "retval", "arg0", "arg9", "args", "func", "probe", "kstack",
    "if", "else", "return", "unroll", "while", "struct", "task_struct", "(struct task_struct *)",
    "(uint8)", "(int)", "printf", "print", "count()", "sum", "hist", "lhist", "str", "ksym",
    "delete", "clear", "exit", "prev_pid", "pid", "#include <x.h>\n", "//c\n", "/*", "*/",
    "\n", " ", "\t", "config", "`", "\"",
]  # fmt: skip


def front_end(text: str) -> None:
    try:
        program = parse_program(text)
    except LangError:
        return
    try:
        check(program, PROVIDER)
    except LangError:
        return


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_random_text_raises_only_lang_error(text: str) -> None:
    front_end(text)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_token_soup_raises_only_lang_error(tokens: list) -> None:  # type: ignore[type-arg]
    front_end(" ".join(tokens))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup_inside_a_probe(tokens: list) -> None:  # type: ignore[type-arg]
    front_end("kprobe:f { " + " ".join(tokens) + " }")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup_in_a_tracepoint_predicate(tokens: list) -> None:  # type: ignore[type-arg]
    front_end("tracepoint:sched:sched_switch /" + " ".join(tokens) + "/ { @x = count(); }")


ATOMS = [
    "1", "0xff", "-3", "\"abc\"", "comm", "pid", "arg0", "arg1", "retval", "func", "probe",
    "nsecs", "$a", "@m", "@k[pid]", "args.prev_pid", "args->prev_pid", "(struct task_struct *)arg0",
    "((struct task_struct *)arg0)->pid", "((struct task_struct *)arg0)->parent->pid", "count()",
    "str(arg0)", "ksym(arg0)", "cgroup", "$1", "nope",
]  # fmt: skip
BINOPS = ["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>", "==", "!=", "<", ">=", "&&", "||"]

expressions = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(BINOPS), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "!", "~", "*", "(uint8)", "(int64)"]), inner).map(
            lambda t: f"{t[0]}{t[1]}"
        ),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        st.tuples(inner, inner).map(lambda t: f'printf("%d %s", {t[0]}, {t[1]})'),
        st.tuples(st.sampled_from(["sum", "hist", "str", "print", "ksym", "exit"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
    ),
    max_leaves=12,
)
statements = st.one_of(
    expressions.map(lambda e: f"$a = {e}"),
    expressions.map(lambda e: f"@m = {e}"),
    expressions.map(lambda e: f"@k[{e}] = count()"),
    expressions.map(lambda e: f"if ({e}) {{ @m++ }} else {{ $a += 1 }}"),
    expressions,
)
PROBES = [
    "kprobe:f",
    "kretprobe:f",
    "tracepoint:sched:sched_switch",
    "BEGIN",
    "i:s:1",
    "uprobe:/bin/sh:main",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(PROBES), st.lists(statements, max_size=4)), min_size=1, max_size=3
    )
)
def test_well_formed_programs_raise_only_lang_error(probes: list) -> None:  # type: ignore[type-arg]
    text = "\n".join(f"{p} {{ {'; '.join(stmts)} }}" for p, stmts in probes)
    front_end(text)
