"""Evaluating bpftrace programs in Python: C integer semantics, maps, builtins, output, the loop.

Synthetic TraceEvents are fed to the compiled probes; no kernel.  Expected
values follow bpftrace 0.17's code generator (64-bit operands, unsigned
``/`` and ``%``, logical ``>>``, signed compares only between signed values).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobes.backends.tracefs.session import Session
from kprobes.btf import BTF
from kprobes.engines.evaluator import ExitProgram, Runtime, compile_variants
from kprobes.engines.lifecycle import Timers
from kprobes.engines.plan import ProgramPlan
from kprobes.engines.runner import RunOptions, run_plan
from kprobes.engines.runtime import Output, ProcInfo, make_maps
from kprobes.engines.targets import Target
from kprobes.errors import KprobesError
from kprobes.events.model import TraceEvent
from tests.unit.btf_builder import kernel_like
from tests.unit.test_engine_plan import make_plan

S64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)


@pytest.fixture(scope="module")
def btf() -> BTF:
    b, _ = kernel_like()
    return BTF(b.build())


class Env:
    """A compiled program with captured output and a fake /proc."""

    def __init__(self, text: str, btf: Optional[BTF] = None, fmt: str = "text",
                 proc: Optional[str] = None) -> None:
        self.plan: ProgramPlan = make_plan(text, btf)
        self.out = io.StringIO()
        self.rt = Runtime(make_maps(self.plan.checked), Output(self.out, fmt), 1_000,
                          ProcInfo(proc or "/nonexistent"), ksym=lambda a: f"sym_{a:x}")
        self.runners = compile_variants(self.plan.checked, self.plan.variants, self.rt)

    def fire(self, variant: int, fields: Optional[Dict[str, Any]] = None, *, tid: int = 100,
             ts: int = 0, comm: str = "cat", tgid: Optional[int] = None, target: int = 0) -> None:
        v = self.plan.variants[variant]
        tgt = v.events[target].target if v.events else Target(v.family, "", v.family, "")
        ev = TraceEvent(comm=comm, pid=tid, cpu=1, timestamp_ns=ts,
                        event=v.events[target].event if v.events else v.family,
                        fields=fields or {}, tgid=tgid)
        self.runners[variant](ev, tgt)

    def exit_text(self) -> str:
        self.rt.out.exit_maps(list(self.rt.maps.values()))
        return self.out.getvalue()


def begin(expr_fmt: str, *args: str) -> str:
    """printf of ``args`` from BEGIN, the printed line."""
    joined = ", ".join(args)
    env = Env(f'BEGIN {{ printf("{expr_fmt}\\n", {joined}); }}')
    env.fire(0, tgid=1)
    return env.out.getvalue().rstrip("\n")


# -- integer semantics -------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt, expr, expected",
    [
        ("%ld", "-7 / 2", str(((-7) % (1 << 64)) // 2)),
        ("%ld", "7 % 0", "7"),
        ("%ld", "7 / 0", "0"),
        ("%ld", "-7 % 3", str(((-7) % (1 << 64)) % 3)),
        ("%d", "(uint8)300", "44"),
        ("%d", "(int8)200", "-56"),
        ("%d", "(int16)65535", "-1"),
        ("%lu", "(uint32)-1", "4294967295"),
        ("%ld", "1 << 63", str(-(1 << 63))),
        ("%lu", "0xffffffffffffffff + 1", "0"),
        ("%ld", "9223372036854775807 + 1", str(-(1 << 63))),
        ("%d", "-1 > 0", "0"),
        ("%d", "(uint64)-1 > 0", "1"),
        ("%d", "-1 < (uint8)1", "0"),
        ("%lu", "-8 >> 1", str(((-8) % (1 << 64)) >> 1)),
        ("%d", "~0", "-1"),
        ("%d", "!5", "0"),
        ("%d", "!0", "1"),
        ("%d", "5 > 3 ? 10 : 20", "10"),
        ("%d", "0 ? 10 : 20", "20"),
        ("%d", "3 && 0", "0"),
        ("%d", "0 || 7", "1"),
        ("%d", "6 & 3 | 8 ^ 1", str(6 & 3 | 8 ^ 1)),
        ("%d", '"abc" == "abc"', "1"),
        ("%d", '"abc" != "abd"', "1"),
        ("%ld", "-(-9223372036854775807 - 1)", str(-(1 << 63))),
    ],
)
def test_integer_semantics(fmt: str, expr: str, expected: str) -> None:
    assert begin(fmt, expr) == expected


def _s64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


@settings(max_examples=40, deadline=None)
@given(S64, S64)
def test_wraparound_matches_two_complement(a: int, b: int) -> None:
    ops = ("+", "-", "*", "^", "&", "|")
    args = ", ".join(f"({a}) {op} ({b})" for op in ops)
    env = Env(f'BEGIN {{ printf("{" ".join(["%ld"] * len(ops))}\\n", {args}); }}')
    env.fire(0, tgid=1)
    want = [a + b, a - b, a * b, a ^ b, a & b, a | b]
    assert env.out.getvalue().split() == [str(_s64(w)) for w in want]


def test_variables_compound_and_incdec() -> None:
    env = Env('BEGIN { $x = 1; $x += 41; $x++; ++$x; $x -= 2; $y = $x++; '
              'printf("%d %d\\n", $x, $y); @c++; @c++; @c += 5; @c--; }')
    env.fire(0, tgid=1)
    assert env.out.getvalue().splitlines()[0] == "43 42"
    assert "@c: 6\n" in env.exit_text()


# -- builtins and fetched fields ----------------------------------------------------
def test_seed_kill_line_uses_tgid_from_proc(btf: BTF, tmp_path: Path) -> None:
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "status").write_text("Name:\tkill\nTgid:\t70\nPid:\t77\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\t5\t5\t5\n")
    env = Env('kprobe:do_send_sig_info { printf("%s (pid=%d) -> signal %d to pid %d\\n", '
              "comm, pid, arg0, ((struct task_struct *)arg2)->pid); @u[uid, gid] = count(); }",
              btf, proc=str(tmp_path))
    env.fire(0, {"comm": "kill", "arg0": 15, "pid": 1234}, tid=77)
    assert env.out.getvalue() == "kill (pid=70) -> signal 15 to pid 1234\n"
    assert "@u[1000, 5]: 1" in env.exit_text()


def test_pid_prefers_event_tgid(btf: BTF) -> None:
    env = Env('kprobe:vfs_read { printf("%d %d %d %s %s\\n", pid, tid, cpu, probe, func); }', btf)
    env.fire(0, tid=5, tgid=4)
    assert env.out.getvalue() == "4 5 1 kprobe:vfs_read vfs_read\n"


def test_seed_dns_byteswap(btf: BTF) -> None:
    env = Env("kprobe:udp_sendmsg { $sk = (struct sock *)arg0;\n"
              "$dport = ($sk->__sk_common.skc_dport >> 8) | (($sk->__sk_common.skc_dport & 0xff) << 8);\n"
              'if ($dport == 53) { printf("%s -> DNS query\\n", comm); } }', btf)
    env.fire(0, {"arg0": 0xFFFF888000001000, "skc_dport": 0x3500, "comm": "dig"})
    env.fire(0, {"arg0": 0xFFFF888000001000, "skc_dport": 0x5000, "comm": "curl"})
    assert env.out.getvalue() == "dig -> DNS query\n"


def test_seed_alloc_line(btf: BTF) -> None:
    env = Env('kprobe:__alloc_pages /arg1 > 8/ { printf("%s: alloc order %d (%d KB)\\n", '
              "comm, arg1, (1 << arg1) * 4); }", btf)
    env.fire(0, {"comm": "python3", "arg1": 9})
    assert env.out.getvalue() == "python3: alloc order 9 (2048 KB)\n"


def test_strings_truncate_and_fault(btf: BTF) -> None:
    env = Env('kprobe:do_sys_openat2 { printf("%s|%s|%s\\n", str(arg1), str(arg1, 4), comm); }', btf)
    long = "/" + "x" * 100
    env.fire(0, {"str_arg1": long, "comm": "a"})
    env.fire(0, {"str_arg1": "(fault)", "comm": "b"})
    first, second = env.out.getvalue().splitlines()
    assert first == f"{long[:63]}|/xxx|a"  # str(x, 4): 4 characters, as bpftrace 0.17
    assert second == "||b"


def test_signed_struct_field_and_int_cast(btf: BTF) -> None:
    env = Env('kprobe:vfs_read { printf("%d %d\\n", ((struct task_struct *)arg1)->pid, '
              "(int8)((struct task_struct *)arg1)->pid); }", btf)
    env.fire(0, {"pid": -2})
    env.fire(0, {"pid": 300})
    assert env.out.getvalue() == "-2 -2\n300 44\n"


# -- maps and output --------------------------------------------------------------------
def test_seed_vfs_read_latency_histogram(btf: BTF) -> None:
    env = Env("kprobe:vfs_read { @start[tid] = nsecs; }\n"
              "kretprobe:vfs_read /@start[tid]/ { @us = hist((nsecs - @start[tid]) / 1000); "
              "delete(@start[tid]); }", btf)
    env.fire(0, tid=1, ts=1_000_000)
    env.fire(1, tid=1, ts=1_005_000)  # 5 us
    env.fire(0, tid=2, ts=2_000_000)
    env.fire(1, tid=2, ts=2_100_000)  # 100 us
    env.fire(1, tid=3, ts=3_000_000)  # no entry: predicate false
    text = env.exit_text()
    buckets = {ln.split()[0] + ln.split()[1]: int(ln.split()[2]) for ln in text.splitlines()
               if ln.startswith("[") and "|" in ln}
    assert buckets["[4,8)"] == 1 and buckets["[64,128)"] == 1
    assert sum(buckets.values()) == 2
    assert "@start[" not in text  # every entry was deleted


def test_seed_top10_interval_print_and_clear(btf: BTF) -> None:
    extra = [f"fn_{i}" for i in range(12)]
    from tests.unit.test_engine_plan import make_plan as mk

    plan = mk("kprobe:fn_* { @[probe] = count(); } interval:s:5 { print(@, 3); clear(@); }",
              btf, extra=extra)
    out = io.StringIO()
    rt = Runtime(make_maps(plan.checked), Output(out), 0, ProcInfo("/nonexistent"))
    runners = compile_variants(plan.checked, plan.variants, rt)
    kv = plan.variants[0]
    for j, ev in enumerate(kv.events):
        for _ in range(j + 1):
            runners[0](TraceEvent("c", 1, 0, 0, ev.event), ev.target)
    runners[1](TraceEvent("c", 1, 0, 0, "interval"), Target("interval", "", "interval:s:5", ""))
    names = sorted(ev.target.name for ev in kv.events)
    counts = {ev.target.name: j + 1 for j, ev in enumerate(kv.events)}
    top = sorted(names, key=lambda n: counts[n])[-3:]
    assert out.getvalue() == "".join(f"@[{n}]: {counts[n]}\n" for n in top)
    assert len(rt.maps[""]) == 0


def test_all_aggregations_exit_output() -> None:
    env = Env("BEGIN { @c = count(); @s = sum(-3); @s = sum(10); @a = avg(4); @a = avg(7); "
              "@mi = min(5); @mi = min(-2); @ma = max(5); @ma = max(9); @st = stats(10); "
              "@st = stats(20); @l = lhist(15, 0, 100, 10); @k[\"b\", 2] = 7; @k[\"a\", 1] = 8; "
              '@str[1] = "one"; }')
    env.fire(0, tgid=1)
    text = env.exit_text()
    for line in ("@c: 1", "@s: 7", "@a: 5", "@mi: -2", "@ma: 9",
                 "@st: count 2, average 15, total 30", "@k[b, 2]: 7", "@k[a, 1]: 8",
                 "@str[1]: one"):
        assert line + "\n" in text, (line, text)
    assert "[10, 20)" in text
    assert text.startswith("\n\n")


def test_delete_clear_zero_and_print_top_div() -> None:
    env = Env("BEGIN { @m[1] = 10; @m[2] = 20; @m[3] = 30; delete(@m[2]); print(@m); "
              "print(@m, 1, 10); zero(@m); print(@m); clear(@m); print(@m); print(5); }")
    env.fire(0, tgid=1)
    assert env.out.getvalue() == (
        "@m[1]: 10\n@m[3]: 30\n" "@m[3]: 3\n" "@m[1]: 0\n@m[3]: 0\n" "\n" "5\n"
    )


def test_json_output() -> None:
    env = Env('BEGIN { printf("hi %d\\n", 3); @x[1] = count(); @y = hist(3); }', fmt="json")
    env.fire(0, tgid=1)
    text = env.exit_text()
    lines = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    assert lines[0] == {"type": "printf", "data": "hi 3\n"}
    assert {"type": "map", "data": {"@x": {"1": 1}}} in lines
    assert any(d["type"] == "hist" for d in lines)


def test_exit_stops_the_probe() -> None:
    env = Env('BEGIN { printf("a\\n"); exit(); printf("b\\n"); }')
    with pytest.raises(ExitProgram):
        env.fire(0, tgid=1)
    assert env.out.getvalue() == "a\n" and env.rt.exit_requested


def test_return_ends_the_action_only() -> None:
    env = Env('BEGIN { @x = 1; if (@x == 1) { return; } @x = 2; }')
    env.fire(0, tgid=1)
    assert env.rt.maps["x"].get(()).value == 1  # type: ignore[union-attr]


def test_ksym_and_string_map_keys(btf: BTF) -> None:
    env = Env('kprobe:vfs_read { @[ksym(arg0), comm] = count(); }', btf)
    env.fire(0, {"arg0": 0xFFFFFFFF81000010, "comm": "cat"})
    assert "@[sym_ffffffff81000010, cat]: 1" in env.exit_text()


# -- the event loop ----------------------------------------------------------------------
class FakeSession(Session):
    """A Session that arms nothing and yields prepared events."""

    def __init__(self, events: List[TraceEvent]) -> None:
        super().__init__(reap_dead=False, handle_signals=False)
        self.fake_events = events
        self.armed: List[str] = []

    def __enter__(self) -> "FakeSession":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add(self, definition: str, *, filter: Optional[str] = None, enable: bool = True) -> Any:
        self.armed.append(definition)

    def add_tracepoint(self, name: str, *, filter: Optional[str] = None, enable: bool = True) -> Any:
        self.armed.append(name)

    def events(self, duration: Optional[float] = None, *, until: Any = None,
               poll_ms: int = 100) -> Iterator[TraceEvent]:
        for ev in self.fake_events:
            if self._stop or (until is not None and until()):
                return
            yield ev


def test_run_plan_begin_events_exit_end(btf: BTF) -> None:
    plan = make_plan('BEGIN { printf("start\\n"); } kprobe:vfs_read { @n = count(); '
                     "if (@n == 2) { exit(); } } END { printf(\"end\\n\"); }", btf)
    evs = [TraceEvent("c", 1, 0, i, "kp1_0") for i in range(5)]
    fake = FakeSession(evs)
    out, err = io.StringIO(), io.StringIO()
    rc = run_plan(plan, RunOptions(), out, err, session_factory=lambda: fake)
    assert rc == 0
    assert fake.armed == ["p:kp1_0 vfs_read"]
    assert out.getvalue() == "Attaching 3 probes...\nstart\nend\n\n\n@n: 2\n"


def test_timers_fire_in_order() -> None:
    fired: List[str] = []

    def mk(name: str) -> Any:
        return lambda ev, tgt: fired.append(f"{name}@{ev.timestamp_ns}")

    t = Timers([(10, mk("a"), Target("interval", "", "a", "")),
                (25, mk("b"), Target("interval", "", "b", ""))], 0)
    t.fire(5)
    t.fire(30)
    assert fired == ["a@10", "a@20", "b@25", "a@30"]


class RefusingSession(FakeSession):
    def add(self, definition: str, *, filter: Optional[str] = None, enable: bool = True) -> Any:
        from kprobes.errors import KernelRefused

        raise KernelRefused("Failed to create probe", definition, 8, from_kernel=True)


def test_kernel_refusal_is_explained_with_close_names(btf: BTF) -> None:
    from kprobes.errors import NotTraceableError

    plan = make_plan("kprobe:vfs_reed { @ = count(); }", btf)
    with pytest.raises(NotTraceableError) as info:
        run_plan(plan, RunOptions(), io.StringIO(), io.StringIO(),
                 session_factory=lambda: RefusingSession([]))
    assert "vfs_read" in info.value.suggestions


def test_wildcard_refusals_are_skipped_and_reported(btf: BTF) -> None:
    class RefuseSome(FakeSession):
        def add(self, definition: str, *, filter: Optional[str] = None, enable: bool = True) -> Any:
            if "vfs_open" in definition:
                from kprobes.errors import KernelRefused

                raise KernelRefused("Failed to create probe", definition, 8, from_kernel=True)
            self.armed.append(definition)

    plan = make_plan("kprobe:vfs_* { @[probe] = count(); }", btf)
    err = io.StringIO()
    fake = RefuseSome([])
    assert run_plan(plan, RunOptions(), io.StringIO(), err, session_factory=lambda: fake) == 0
    assert "the kernel refused 1 of 3 wildcard probes (vfs_open" in err.getvalue()
    assert len(fake.armed) == 2
    with pytest.raises(KprobesError, match="refused every probe"):
        run_plan(plan, RunOptions(), io.StringIO(), io.StringIO(),
                 session_factory=lambda: RefusingSession([]))
