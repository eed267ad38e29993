"""Planning bpftrace programs for the tracefs engine: fetchargs, pushdown, wildcards, dry-run.

No kernel: BTF is the synthetic ``kernel_like()`` blob, kernel symbols are
parsed from text, tracepoint formats live in a temporary tracefs-like tree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pytest

from kprobes.backends.symbols import (
    KernelSymbols,
    parse_filter_functions,
    parse_kallsyms,
    parse_kprobe_blacklist,
)
from kprobes.btf import BTF
from kprobes.engines.plan import ProgramPlan
from kprobes.engines.provider import KernelTypeProvider
from kprobes.engines.targets import SymbolSource, Target, explain_refusal
from kprobes.engines.tracefs_engine import EngineOptions, prepare
from kprobes.errors import KprobesError, NotTraceableError
from kprobes.lang import LangError
from tests.unit.btf_builder import kernel_like

FUNCS = ["do_sys_openat2", "vfs_read", "vfs_write", "vfs_open", "udp_sendmsg",
         "do_send_sig_info", "__alloc_pages", "kprobe_busy_begin", "trace_event_foo"]
OPENAT_FORMAT = """\
name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: "dfd: 0x%08lx, filename: 0x%08lx", ((unsigned long)(REC->dfd)), ((unsigned long)(REC->filename))
"""
EXEC_FORMAT = """\
name: sched_process_exec
ID: 365
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:16;\tsize:16;\tsigned:0;

print fmt: "filename=%s pid=%d", __get_str(filename), REC->pid
"""


def fake_symbols(extra: Optional[list[str]] = None) -> KernelSymbols:
    names = FUNCS + (extra or [])
    ks = "".join(f"ffffffff81{i:06x} T {n}\n" for i, n in enumerate(names, 16))
    ff = "".join(f"{n}\n" for n in names)
    return KernelSymbols(parse_kallsyms(ks), parse_filter_functions(ff), parse_kprobe_blacklist(""))


@pytest.fixture(scope="module")
def btf() -> BTF:
    b, _ = kernel_like()
    return BTF(b.build())


@pytest.fixture()
def tracefs_tree(tmp_path: Path) -> str:
    for sys_, ev, text in (("syscalls", "sys_enter_openat", OPENAT_FORMAT),
                           ("sched", "sched_process_exec", EXEC_FORMAT)):
        d = tmp_path / "events" / sys_ / ev
        d.mkdir(parents=True)
        (d / "format").write_text(text)
    return str(tmp_path)


def make_plan(
    text: str,
    btf: Optional[BTF] = None,
    root: Optional[str] = None,
    *,
    eprobes: bool = True,
    unsafe: bool = False,
    extra: Optional[list[str]] = None,
    wildcard_filter: Optional[str] = None,
) -> ProgramPlan:
    provider = KernelTypeProvider(btf, root)
    symbols = SymbolSource(lambda: fake_symbols(extra), root)
    opts = EngineOptions(unsafe=unsafe, eprobes=eprobes, arch="x86_64",
                         wildcard_filter=wildcard_filter)
    return prepare(text, "stdin", opts, provider=provider, symbols=symbols)


def defs(plan: ProgramPlan) -> list[Optional[str]]:
    return [ev.definition for ev in plan.kernel_events]


# -- the seed's programs ----------------------------------------------------
def test_seed_opens(btf: BTF) -> None:
    plan = make_plan('kprobe:do_sys_openat2 { printf("%s: %s\\n", comm, str(arg1)); }', btf)
    assert defs(plan) == ["p:kp0_0 do_sys_openat2 comm=$comm:string str_arg1=+0(%si):string"]
    assert plan.variants[0].kernel_filter is None
    assert plan.attach_count == 1


def test_seed_kill_casts_through_btf(btf: BTF) -> None:
    plan = make_plan(
        'kprobe:do_send_sig_info { printf("%s (pid=%d) -> signal %d to pid %d\\n", '
        "comm, pid, arg0, ((struct task_struct *)arg2)->pid); }",
        btf,
    )
    assert defs(plan) == [
        "p:kp0_0 do_send_sig_info comm=$comm:string arg0=%di:u64 pid=+0(%dx):s32"
    ]


def test_seed_dns_variable_base_fetched_once(btf: BTF) -> None:
    plan = make_plan(
        "kprobe:udp_sendmsg { $sk = (struct sock *)arg0;\n"
        "$dport = ($sk->__sk_common.skc_dport >> 8) | (($sk->__sk_common.skc_dport & 0xff) << 8);\n"
        'if ($dport == 53) { printf("%s -> DNS query\\n", comm); } }',
        btf,
    )
    (d,) = defs(plan)
    assert d is not None
    assert d.count("skc_dport=") == 1
    assert "skc_dport=+4(%di):u16" in d


def test_seed_alloc_pushes_predicate(btf: BTF) -> None:
    plan = make_plan(
        'kprobe:__alloc_pages /arg1 > 8/ { printf("%s: alloc order %d (%d KB)\\n", '
        "comm, arg1, (1 << arg1) * 4); }",
        btf,
    )
    v = plan.variants[0]
    assert v.kernel_filter == "arg1 > 8"
    assert v.python_conjuncts == ()
    assert plan.kernel_events[0].filter == "arg1 > 8"


def test_seed_vfs_read_fetches_nothing(btf: BTF) -> None:
    plan = make_plan(
        "kprobe:vfs_read { @start[tid] = nsecs; }\n"
        "kretprobe:vfs_read /@start[tid]/ { @us = hist((nsecs - @start[tid]) / 1000); "
        "delete(@start[tid]); }",
        btf,
    )
    assert defs(plan) == ["p:kp0_0 vfs_read", "r:kp1_0 vfs_read"]
    assert len(plan.variants[1].python_conjuncts) == 1


def test_seed_top10_governor_and_probe_names(btf: BTF) -> None:
    many = [f"fn_{i}" for i in range(1200)]
    text = "kprobe:* { @[probe] = count(); } interval:s:5 { print(@, 10); clear(@); }"
    with pytest.raises(KprobesError, match="refusing to attach 1207 kernel probes"):
        make_plan(text, btf, extra=many)
    plan = make_plan(text, btf, extra=many, unsafe=True)
    names = {ev.target.name for ev in plan.kernel_events}
    # the kprobe machinery and the tracing core are never expanded
    assert "kprobe:kprobe_busy_begin" not in names and "kprobe:trace_event_foo" not in names
    assert "kprobe:vfs_read" in names and len(names) == 1207
    assert plan.attach_count == 1208
    assert plan.variants[1].period_ns == 5_000_000_000
    small = make_plan(text, btf, extra=many, wildcard_filter="vfs_*")
    assert sorted(ev.target.func for ev in small.kernel_events) == ["vfs_open", "vfs_read", "vfs_write"]


# -- pushdown -----------------------------------------------------------------
@pytest.mark.parametrize(
    "pred, kernel, n_python",
    [
        ("arg1 > 8", "arg1 > 8", 0),
        ("8 < arg1", "arg1 > 8", 0),
        ("arg0 == 5 && @x[tid]", "arg0 == 5", 1),
        ("pid == 5", None, 1),
        ("tid == 42", "common_pid == 42", 0),
        ('comm == "bash"', 'comm == "bash"', 0),
        ('comm == "ba*"', None, 1),
        ('comm == "a-very-long-comm"', None, 1),
        ('str(arg1) == "/etc/passwd"', 'str_arg1 == "/etc/passwd"', 0),
        ('str(arg1) != "x"', 'str_arg1 != "x"', 0),
        ("arg0 == 1 || arg1 == 2", "(arg0 == 1) || (arg1 == 2)", 0),
        ("arg0 == 1 || pid == 2", None, 1),
        ("arg0 > -1", None, 1),
        ("arg0 != -1", None, 1),
        ("((struct task_struct *)arg1)->pid < -1", "pid < -1", 0),
        ("((struct task_struct *)arg1)->pid < 18446744073709551615", None, 1),
        ("((struct task_struct *)arg1)->pid == 18446744073709551615", None, 1),
        ("arg0", "arg0 != 0", 0),
        ("!arg0", "arg0 == 0", 0),
        ("arg0 + 1 > 5", None, 1),
        ("arg0 > 1 && arg1 < 2 && arg2 == 3", "(arg0 > 1) && (arg1 < 2) && (arg2 == 3)", 0),
    ],
)
def test_pushdown(btf: BTF, pred: str, kernel: Optional[str], n_python: int) -> None:
    plan = make_plan(f"kprobe:vfs_read /{pred}/ {{ @x[tid] = 1; }}", btf)
    v = plan.variants[0]
    assert v.kernel_filter == kernel
    assert len(v.python_conjuncts) == n_python


def test_pushdown_retval(btf: BTF) -> None:
    plan = make_plan("kretprobe:vfs_read /retval == 0/ { @ = count(); }", btf)
    assert defs(plan) == ["r:kp0_0 vfs_read retval=$retval:u64"]
    assert plan.variants[0].kernel_filter == "retval == 0"


# -- tracepoints ----------------------------------------------------------------
def test_tracepoint_eprobe_fields_and_user_string(btf: BTF, tracefs_tree: str) -> None:
    plan = make_plan(
        "tracepoint:syscalls:sys_enter_openat /args.dfd == -100/ "
        '{ printf("%s %d\\n", str(args.filename), args->flags); }',
        btf, tracefs_tree,
    )
    assert defs(plan) == [
        "e:ep0_0 syscalls.sys_enter_openat dfd=$dfd:s64 str_filename=+0($filename):ustring "
        "flags=$flags:s64"
    ]
    assert plan.variants[0].kernel_filter == "dfd == -100"
    assert plan.kernel_events[0].kind == "eprobe"


def test_tracepoint_without_eprobes_uses_the_event(btf: BTF, tracefs_tree: str) -> None:
    plan = make_plan(
        "tracepoint:syscalls:sys_enter_openat /args.dfd == -100/ { @[comm] = count(); }",
        btf, tracefs_tree, eprobes=False,
    )
    (ev,) = plan.kernel_events
    assert ev.kind == "tracepoint" and ev.definition is None
    assert ev.event == "sys_enter_openat"
    assert ev.filter == "dfd == -100"
    with pytest.raises(LangError, match="event probes"):
        make_plan('tracepoint:syscalls:sys_enter_openat { printf("%s\\n", str(args.filename)); }',
                  btf, tracefs_tree, eprobes=False)


def test_tracepoint_string_field_and_no_fetch(btf: BTF, tracefs_tree: str) -> None:
    plan = make_plan('tracepoint:sched:sched_process_exec /args.comm == "ls"/ { @[args.pid] = count(); }',
                     btf, tracefs_tree)
    assert defs(plan) == ["e:ep0_0 sched.sched_process_exec comm=$comm:string pid=$pid:s32"]
    assert plan.variants[0].kernel_filter == 'comm == "ls"'
    bare = make_plan("tracepoint:sched:sched_process_exec { @ = count(); }", btf, tracefs_tree)
    assert bare.kernel_events[0].kind == "tracepoint"


def test_shared_plain_tracepoint_filters_in_python(btf: BTF, tracefs_tree: str) -> None:
    plan = make_plan(
        "tracepoint:syscalls:sys_enter_openat /args.dfd == 1/ { @a = count(); }\n"
        "tracepoint:syscalls:sys_enter_openat /args.dfd == 2/ { @b = count(); }",
        btf, tracefs_tree, eprobes=False,
    )
    assert [ev.filter for ev in plan.kernel_events] == [None, None]
    assert [len(v.python_conjuncts) for v in plan.variants] == [1, 1]


def test_tracepoint_wildcard(btf: BTF, tracefs_tree: str) -> None:
    plan = make_plan("tracepoint:sys*:sys_enter_* { @[probe] = count(); }", btf, tracefs_tree)
    assert [ev.target.name for ev in plan.kernel_events] == ["tracepoint:syscalls:sys_enter_openat"]


# -- other providers and errors ----------------------------------------------------
def test_begin_end_interval_are_python(btf: BTF) -> None:
    plan = make_plan("BEGIN { @a = 1; } interval:ms:250 { @b = 2; } END { @c = 3; }", btf)
    assert [v.family for v in plan.variants] == ["BEGIN", "interval", "END"]
    assert plan.kernel_events == [] and plan.attach_count == 3
    assert plan.variants[1].period_ns == 250_000_000


def test_uprobe_definition_and_strings(btf: BTF) -> None:
    plan = make_plan('uprobe:/lib/libc.so.6:atoi { @[str(arg0)] = count(); }\n'
                     "uretprobe:/lib/libc.so.6:atoi { @r = hist(retval); }", btf)
    assert defs(plan) == [
        "p:up0_0 /lib/libc.so.6:atoi str_arg0=+0(%di):ustring",
        "r:up1_0 /lib/libc.so.6:atoi retval=$retval:u64",
    ]


def test_int_pointer_deref_without_btf() -> None:
    plan = make_plan("kprobe:vfs_read { @ = sum(*(uint32 *)arg1); @b = sum(((int16 *)arg2)[3]); }")
    assert defs(plan) == ["p:kp0_0 vfs_read deref=+0(%si):u32 arg2_3=+6(%dx):s16"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("kprobe:vfs_read { @p[tid] = arg0; } kretprobe:vfs_read "
         "{ $t = (struct task_struct *)@p[tid]; @x = sum($t->pid); }", "cannot run in the kernel"),
        ("kprobe:vfs_read { $a = arg0 + 8; printf(\"%s\\n\", str($a)); }", "computed in Python"),
        ("uprobe:/lib/libc.so.6:atoi { @ = sum(((struct task_struct *)arg0)->pid); }",
         "uprobes need the program's own type"),
    ],
)
def test_plan_errors(btf: BTF, text: str, message: str) -> None:
    with pytest.raises(LangError, match=message) as info:
        make_plan(text, btf)
    assert "stdin:1:" in str(info.value)


def test_unknown_function_is_explained_with_close_names(btf: BTF) -> None:
    plan = make_plan("kprobe:vfs_reed { @ = count(); }", btf)
    assert defs(plan) == ["p:kp0_0 vfs_reed"]  # not looked up while planning
    assert plan.symbols is not None
    err = explain_refusal(plan.kernel_events[0].target, plan.symbols)
    assert isinstance(err, NotTraceableError) and "vfs_read" in err.suggestions
    assert explain_refusal(Target("kprobe", "vfs_read", "kprobe:vfs_read", "vfs_read"),
                           plan.symbols) is None


def test_wildcard_matching_nothing(btf: BTF) -> None:
    with pytest.raises(NotTraceableError, match="matches no probeable"):
        make_plan("kprobe:nothing_*{ @ = count(); }", btf)


def test_describe_reports_kernel_and_python(btf: BTF) -> None:
    plan = make_plan('BEGIN { @on = 1; } kprobe:vfs_read /arg2 > 100 && @on/ { printf("%d\\n", arg2); }', btf)
    text = plan.describe()
    assert "p:kp1_0 vfs_read arg2=%dx:u64" in text
    assert "kernel filter: arg2 > 100" in text
    assert "python predicate: @on" in text
    assert 'python action: { printf("%d\\n", arg2); }' in text


def test_provider_flattens_anonymous_members(btf: BTF) -> None:
    prov = KernelTypeProvider(btf, None)
    members = prov.struct_members("struct sock_common")
    assert members is not None
    assert members["skc_dport"].offset == 4 and str(members["skc_dport"].type) == "uint16"
    assert str(members["skc_bound"].type) == "int32"
    task = prov.struct_members("struct task_struct")
    assert task is not None and str(task["comm"].type) == "int8[16]"
    assert prov.struct_members("struct nope") is None


def test_provider_tracepoint_types(tracefs_tree: str) -> None:
    prov = KernelTypeProvider(None, tracefs_tree)
    fields = prov.tracepoint_fields("syscalls", "sys_enter_openat")
    assert fields is not None
    assert {k: str(v.type) for k, v in fields.items()} == {
        "__syscall_nr": "int32", "dfd": "int64", "filename": "int8 *", "flags": "int64",
        "mode": "uint64",
    }
    exec_fields = prov.tracepoint_fields("sched", "sched_process_exec")
    assert exec_fields is not None and str(exec_fields["filename"].type) == "string[64]"
    assert prov.tracepoint_fields("nope", "nope") is None
    assert os.path.isdir(tracefs_tree)
