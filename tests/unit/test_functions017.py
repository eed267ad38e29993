"""bpftrace 0.17's formatting/resolving functions on both engines, offline.

Each function is checked (types and bpftrace's error texts), evaluated by the
tracefs engine's evaluator, and compiled to eBPF and run in the Python
interpreter (tests/bpf_interp.py), its records decoded by the BPF engine's own
decoder.  Expected texts come from the C library / the ipaddress module, or
were printed by bpftrace v0.17.0 on the host (noted where so).
"""

from __future__ import annotations

import io
import os
import time
from typing import Iterator, List

import pytest

from kprobes.engines import functions as F
from kprobes.engines.bpf.lifecycle import RecordDecoder
from kprobes.engines.evaluator import Runtime, compile_variants
from kprobes.engines.runtime import Output, ProcInfo, make_maps
from kprobes.errors import KprobesError
from kprobes.lang import LangError, check, parse_program
from kprobes.lang.typesys import FmtType, IntType
from tests.bpf_interp import Machine, pt_regs
from tests.unit.test_bpf_codegen import bpf_map, run_bpf
from tests.unit.test_engine_eval import Env
from tests.unit.test_engine_plan import make_plan, tracefs_tree  # noqa: F401 - a fixture


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(F, "_boot_ns", 1_700_000_000 * 10**9)  # boot at 2023-11-14 22:13:20
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def errors(text: str) -> List[str]:
    with pytest.raises(LangError) as exc:
        check(parse_program(text))
    return [d.message + "".join(" | " + h for h in d.hints) for d in exc.value.errors]


def tracefs_out(body: str) -> str:
    env = Env.__new__(Env)
    env.plan = make_plan("BEGIN { " + body + " }", unsafe=True)
    env.out = io.StringIO()
    env.rt = Runtime(make_maps(env.plan.checked), Output(env.out), 1_000, ProcInfo("/nonexistent"),
                     ksym=hex)
    env.runners = compile_variants(env.plan.checked, env.plan.variants, env.rt)
    env.fire(0, tgid=1)
    return env.out.getvalue()


def bpf_out(body: str, *ctxs: bytes, machine: Machine | None = None) -> str:
    unit, m = run_bpf("kprobe:f { " + body + " }", *ctxs, machine=machine)

    class _Plan:
        pass

    plan = _Plan()
    plan.unit = unit  # type: ignore[attr-defined]
    out = io.StringIO()
    dec = RecordDecoder(plan, {}, Output(out), ksym=hex)  # type: ignore[arg-type]
    for rec in m.records:
        dec(rec)
    return out.getvalue()


def both(body: str) -> str:
    """The output of ``body`` on both engines, which must agree."""
    a, b = tracefs_out(body), bpf_out(body)
    assert a == b, (a, b)
    return a


# -- values formatted in user space -----------------------------------------------------------
def test_strftime_counts_from_boot_with_microseconds() -> None:
    # boot + 1.5 s: bpftrace 0.17 adds the boot time to nsecs; %f is microseconds
    out = both('printf("%s\\n", strftime("%Y-%m-%d %H:%M:%S.%f %%f", 1500000123));')
    assert out == "2023-11-14 22:13:21.500000 %f\n"


def test_strftime_in_variables_keys_and_print() -> None:
    out = both('$t = strftime("%H:%M", 60000000000); print($t); printf("[%s]\\n", $t);')
    assert out == "22:14\n[22:14]\n"
    unit, m = run_bpf('kprobe:f { @[strftime("%S", 0)] = count(); }')
    got = bpf_map(unit, m, "")
    assert list(got) == [("20",)] and got[("20",)].count == 1  # type: ignore[attr-defined]


def test_strerror_is_the_c_library_text() -> None:
    out = both('printf("%s|%s\\n", strerror(2), strerror(3)); print(strerror(1));')
    assert out == f"{os.strerror(2)}|{os.strerror(3)}\n{os.strerror(1)}\n"


def test_ntop_of_pton_ints_and_families() -> None:
    out = both('printf("%s %s %s %s\\n", ntop(pton("1.2.3.4")), ntop(pton("fe80::1")), '
               'ntop(2, 0x0100007f), ntop(0x0a00a8c0));')
    assert out == "1.2.3.4 fe80::1 127.0.0.1 192.168.0.10\n"


def test_ntop_and_macaddr_read_kernel_bytes() -> None:
    m = Machine()
    base = 0xFFFF880000001000
    m.kmem[base] = bytes([0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x2A]) + bytes([10, 0, 0, 1])
    out = bpf_out('printf("%s %s %r\\n", macaddr((uint8 *)arg0), ntop(2, *(uint32 *)(arg0 + 6)),'
                  ' buf(arg0, 4));', pt_regs(di=base), machine=m)
    assert out == "DE:AD:BE:EF:00:2A 10.0.0.1 \\xde\\xad\\xbe\\xef\n"


def test_buf_escapes_like_bpftrace() -> None:
    # bpftrace 0.17: printf("%r", buf("abc\n", 4)) prints abc\x0a
    assert bpf_out('printf("%r|\\n", buf("abc\\n", 4));') == "abc\\x0a|\n"
    assert F.format_buf(b"a\x00\x7f~") == "a\\x00\\x7f~"


def test_username_is_looked_up_in_user_space() -> None:
    assert both("print(username);") == "root\n"
    assert F.format_username(4_000_000) == "4000000"


# -- integer functions ------------------------------------------------------------------------
def test_bswap_strncmp_and_constants() -> None:
    # bpftrace 0.17 on the host: 256 65279 0 1; print(bswap(1)) 72057594037927936
    out = both('printf("%d %d %d %d\\n", bswap((uint16)1), bswap((int16)-2), '
               'strncmp("abc", "abd", 2), strncmp("abc", "abd", 3)); print(bswap(1));'
               'printf("%d %d\\n", strncmp("ab", "abc", 9), strncmp("ab", "ab", 9));')
    assert out == "256 65279 0 1\n72057594037927936\n1 0\n"
    assert both('print(kptr(5) + uptr(6));') == "11\n"


def test_cgroupid_is_the_directory_inode(tmp_path: object) -> None:
    d = str(tmp_path)
    assert both(f'print(cgroupid("{d}"));') == f"{os.stat(d).st_ino}\n"
    with pytest.raises(KprobesError, match="Failed to get `cgroupid`"):
        tracefs_out('print(cgroupid("/nonexistent/cg"));')


def test_kaddr_reads_kallsyms(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "kallsyms")
    with open(path, "w") as fh:
        fh.write("ffffffff81000000 T _stext\nffffffff82a0b000 D jiffies\n")
    assert F.kernel_address("jiffies", path) == 0xFFFFFFFF82A0B000
    assert F.kernel_address("nope", path) is None


def test_reg_and_sarg_read_the_context() -> None:
    m = Machine()
    stack = 0xFFFFC90000010000
    m.kmem[stack] = (1).to_bytes(8, "little") + (42).to_bytes(8, "little") + (43).to_bytes(8, "little")
    out = bpf_out('printf("%lx %d %d %d\\n", reg("ip"), reg("sp") == sarg0 - sarg0 + reg("sp"), '
                  'sarg0, sarg1);', pt_regs(ip=0xFFFFFFFF81234567, sp=stack), machine=m)
    assert out == "ffffffff81234567 1 42 43\n"
    plan = make_plan('kprobe:vfs_read { printf("%d %x\\n", sarg1, reg("ip")); }')
    assert "sarg1=+16(%sp):u64 reg_ip=%ip:u64" in (plan.kernel_events[0].definition or "")


def test_numaid_signal_override_on_bpf() -> None:
    unit, m = run_bpf('kprobe:f { @n = numaid; signal("SIGUSR1"); signal(15); override(-12); }')
    assert bpf_map(unit, m, "n")[()].value == 1  # type: ignore[attr-defined]
    assert m.signals == [10, 15] and m.overrides == [(-12) & ((1 << 64) - 1)]


def test_system_cat_join_records(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "f.txt")
    with open(path, "w") as fh:
        fh.write("file body")
    assert both(f'system("echo hi %d", 5); cat("{path}"); printf("|\\n");') == "hi 5\nfile body|\n"
    m = Machine()
    argv, s = 0xFFFF880000100000, 0xFFFF880000200000
    m.kmem[argv] = b"".join(x.to_bytes(8, "little") for x in (s, s + 8, s + 16, 0))
    m.kmem[s] = b"ls\0\0\0\0\0\0-l\0\0\0\0\0\0/tmp\0"
    assert bpf_out('join(arg0); join(arg0, ",");', pt_regs(di=argv), machine=m) == "ls -l /tmp\nls,-l,/tmp\n"


# -- the checker ------------------------------------------------------------------------------
def test_types() -> None:
    c = check(parse_program('kprobe:f { $a = strftime("%H", nsecs); $b = strerror(1); '
                            '$c = bswap((uint32)arg0); $d = ntop(arg0); $e = buf(arg0, 100); }'))
    v = c.probes[0].variables
    assert v["a"] == FmtType("strftime", 8, "%H") and str(v["a"]) == "timestamp"
    assert str(v["b"]) == "strerror_t" and v["c"] == IntType(32, False) and str(v["d"]) == "inet"
    assert v["e"] == FmtType("buf", 8 + 64)  # cut to BPFTRACE_MAX_STRLEN, with a warning
    assert any("too long" in w.message for w in c.warnings)


@pytest.mark.parametrize("text, message", [
    # the texts bpftrace v0.17.0 prints for the same programs (checked on the host)
    ('BEGIN { printf("%s", strftime(1, 2)) }', "strftime() expects a string literal (integer provided)"),
    ('BEGIN { strncmp("a", "b") }', "strncmp() requires 3 arguments (2 provided)"),
    ('BEGIN { $x = bswap("a") }', "bswap() only supports integer arguments (string provided)"),
    ('BEGIN { $x = strerror("a") }', "strerror() only supports integer arguments (string provided)"),
    ("BEGIN { $x = kaddr(1) }", "kaddr() expects a string literal (integer provided)"),
    ("BEGIN { $x = ntop(1, 2, 3) }", "ntop() takes up to 2 arguments (3 provided)"),
    ('BEGIN { $x = ntop("a") }', "ntop() argument must be 4 or 16 bytes in size"),
    ('BEGIN { $x = pton("zz") }', "pton() expects an string argument of an IPv4/IPv6 address, got zz"),
    ("BEGIN { $x = cgroupid(1) }", "cgroupid() expects a string literal (integer provided)"),
    ("BEGIN { $x = buf(1) }", "buf() expects a length argument for non-array type integer"),
    ('BEGIN { $x = buf("a", -1) }', "buf cannot use negative length (-1)"),
    ("BEGIN { cat(1) }", "cat() expects a string literal (integer provided)"),
    ('BEGIN { $x = strncmp("a", "b", -1) }', "Builtin strncmp requires a non-negative size"),
    ('BEGIN { $x = strftime("%H") }', "strftime() requires 2 arguments (1 provided)"),
    ('BEGIN { $x = macaddr("ab") }', "macaddr() does not support literal string arguments"),
    ("kprobe:f { $x = macaddr(arg0) }", "macaddr() argument must be 6 bytes in size"),
    ("BEGIN { $x = sarg0 }", "The sarg0 builtin can only be used with 'kprobes' and 'uprobes' probes"),
    ('BEGIN { printf("%r\\n", 1) }', "printf: %r specifier expects a value of type buffer (integer supplied)"),
    ('BEGIN { $x = reg("ip") }', 'reg can not be used with "BEGIN" probes | reg() works in kprobes, '
     "uprobes and profile probes (they have registers)"),
    ('kprobe:f { $x = reg("ipp") }', "'ipp' is not a valid register on this architecture (x86_64) | "
     "Did you mean 'ip'?"),
    ('BEGIN { $x = uaddr("x") }', 'uaddr can not be used with "BEGIN" probes | uaddr() works in '
     "uprobes (the symbol is looked up in the probed binary)"),
    ("BEGIN { signal(9) }", 'signal can not be used with "BEGIN" probes | signal() works in probes '
     "that run in the kernel for a task"),
    ('kprobe:f { signal("SIGNOPE") }', "Invalid signal: SIGNOPE | signals are named like SIGKILL or "
     "KILL, or numbered 1..64"),
    ("tracepoint:a:b { override(1) }", 'override can not be used with "tracepoint" probes | override() '
     "works in kprobes on functions marked ALLOW_ERROR_INJECTION"),
    ("kprobe:f { $x = path(arg0) }", "path() is not supported yet | path() calls bpf_d_path, which the "
     "kernel allows only in fentry/fexit (kfunc) programs; print a member instead, e.g. "
     "str($f->f_path.dentry->d_name.name)"),
    ("BEGIN { $x = has_key(@a, 1) }", "Unknown function: 'has_key' | has_key() is not in bpftrace "
     "0.17, the language kprobes follows"),
    ("BEGIN { $x = jiffies }", "Unknown identifier: 'jiffies' | jiffies is not in bpftrace 0.17, the "
     "language kprobes follows"),
    ('BEGIN { debugf("x") }', "debugf() is not supported yet | debugf() writes to the global "
     "trace_pipe, which kprobes never touches; use printf()"),
])  # fmt: skip
def test_errors(text: str, message: str) -> None:
    assert message in errors(text)


@pytest.mark.parametrize("call", ['system("true")', "signal(9)", "override(0)"])
def test_unsafe_functions_need_unsafe(call: str) -> None:
    text = f"kprobe:vfs_read {{ {call}; }}"
    name = call.split("(")[0]
    with pytest.raises(LangError, match=f"{name}\\(\\) is an unsafe function being used in safe mode"):
        make_plan(text)
    if name == "system":
        make_plan(text, unsafe=True)  # the tracefs engine runs system() in Python
    else:
        with pytest.raises(LangError, match="needs --engine bpf"):
            make_plan(text, unsafe=True)


def test_override_only_on_error_injection_functions(tmp_path: object) -> None:
    from kprobes.engines.functions import refuse_override

    listing = os.path.join(str(tmp_path), "list")
    with open(listing, "w") as fh:
        fh.write("should_failslab\tERRNO\n__x64_sys_open\tERRNO\n")
    c = check(parse_program("kprobe:should_failslab, kprobe:vfs_read { override(-12); } "
                            "kprobe:vfs_write { @x = 1; }"))
    refuse_override(c, 0, ["should_failslab"], listing)
    refuse_override(c, 1, ["vfs_write"], listing)  # no override() in that probe
    with pytest.raises(LangError, match="override\\(\\) needs a function marked ALLOW_ERROR_INJECTION; "
                       "vfs_read is not one"):
        refuse_override(c, 0, ["should_failslab", "vfs_read"], listing)
    refuse_override(c, 0, ["vfs_read"], os.path.join(str(tmp_path), "absent"))  # the kernel decides


def test_strcontains() -> None:
    # bpftrace 0.17 on the host: 1 0 1 0, then 1
    out = both('printf("%d %d %d %d\\n", strcontains("hello world", "o w"), strcontains("hello", "xyz"), '
               'strcontains("abc", ""), strcontains("", "a")); $s = "kprobes"; '
               'printf("%d %d\\n", strcontains($s, "obe"), strcontains($s, "kprobes!"));')
    assert out == "1 0 1 0\n1 0\n"
    assert "strcontains() only supports string arguments (integer provided)" in errors(
        'BEGIN { $x = strcontains(1, "a") }')


def test_join_on_the_tracefs_engine(tracefs_tree: str) -> None:  # noqa: F811 - the fixture
    plan = make_plan('kprobe:vfs_read { join(arg1); join(arg1, ","); }')
    definition = plan.kernel_events[0].definition or ""
    assert "join_p1=+8(%si):u64 join_s1=+0(+8(%si)):string" in definition
    env = Env.__new__(Env)
    env.plan, env.out = plan, io.StringIO()
    env.rt = Runtime(make_maps(plan.checked), Output(env.out), 0, ProcInfo("/nonexistent"), ksym=hex)
    env.runners = compile_variants(plan.checked, plan.variants, env.rt)
    fields = {"join_p0": 1, "join_s0": "ls", "join_p1": 2, "join_s1": "-l", "join_p2": 0,
              "join_s2": "(fault)"}
    env.fire(0, fields)
    assert env.out.getvalue() == "ls -l\nls,-l\n"
    with pytest.raises(LangError, match="join\\(\\) of a tracepoint field needs kernel event probes"):
        make_plan('tracepoint:syscalls:sys_enter_openat { join(args->filename); }', root=tracefs_tree,
                  eprobes=False)
    plan = make_plan('tracepoint:syscalls:sys_enter_openat { join(args->filename); }', root=tracefs_tree)
    assert "join_s1=+0(+8($filename)):ustring" in (plan.kernel_events[0].definition or "")


def test_buf_and_macaddr_on_the_tracefs_engine() -> None:
    plan = make_plan('kprobe:vfs_read { printf("%r %r %s\\n", buf(arg1, 3), buf(arg1, arg2), '
                     'macaddr((uint8 *)arg1)); }')
    definition = plan.kernel_events[0].definition or ""
    assert "buf_arg1=+0(%si):u8[3]" in definition and ":u8[64]" in definition
    assert "macaddr_arg1=+0(%si):u8[6]" in definition
    env = Env.__new__(Env)
    env.plan, env.out = plan, io.StringIO()
    env.rt = Runtime(make_maps(plan.checked), Output(env.out), 0, ProcInfo("/nonexistent"), ksym=hex)
    env.runners = compile_variants(plan.checked, plan.variants, env.rt)
    names = {f.expr + ":" + f.type: f.name for f in plan.variants[0].fetches}
    data = (0x61, 0x0A, 0xFF, 0x41, 0x42, 0x43) + (0,) * 58
    env.fire(0, {names["+0(%si):u8[3]"]: data[:3], names["+0(%si):u8[64]"]: data,
                 names["+0(%si):u8[6]"]: data[:6], names["%dx:u64"]: 4})
    assert env.out.getvalue() == "a\\x0a\\xff a\\x0a\\xffA 61:0A:FF:41:42:43\n"


def test_ntop_text_is_inet_ntop() -> None:
    mapped = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
    assert F.format_ntop(F.AF_INET6, mapped) == "::ffff:127.0.0.1"
    assert F.format_ntop(F.AF_INET, bytes([10, 1, 2, 3])) == "10.1.2.3"
    assert both('print(ntop(pton("::ffff:10.0.0.1")));') == "::ffff:10.0.0.1\n"


SOCK_FORMAT = """\
name: inet_sock_set_state
ID: 1234
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;

print fmt: "family=%d", REC->family
"""


def test_ntop_of_tracepoint_arrays_on_the_tracefs_engine(tmp_path: object) -> None:
    d = os.path.join(str(tmp_path), "events", "sock", "inet_sock_set_state")
    os.makedirs(d)
    with open(os.path.join(d, "format"), "w") as fh:
        fh.write(SOCK_FORMAT)
    root = str(tmp_path)
    tp = "tracepoint:sock:inet_sock_set_state"
    plan = make_plan(f'{tp} {{ printf("%s\\n", ntop(args->saddr)); }}', root=root)
    assert "saddr=$saddr:u32" in (plan.kernel_events[0].definition or "")
    with pytest.raises(LangError, match="ntop\\(\\) of the 16-byte array args.saddr_v6 needs --engine bpf"):
        make_plan(f'{tp} {{ printf("%s\\n", ntop(args->saddr_v6)); }}', root=root)
    plain = make_plan(f'{tp} {{ printf("%s\\n", ntop(args->saddr_v6)); }}', root=root, eprobes=False)
    env = Env.__new__(Env)
    env.plan, env.out = plain, io.StringIO()
    env.rt = Runtime(make_maps(plain.checked), Output(env.out), 0, ProcInfo("/nonexistent"), ksym=hex)
    env.runners = compile_variants(plain.checked, plain.variants, env.rt)
    env.fire(0, {"saddr_v6": (0,) * 10 + (255, 255, 127, 0, 0, 1)})  # the record's u8[16]
    assert env.out.getvalue() == "::ffff:127.0.0.1\n"
