"""The bpftrace-style command line without a kernel: --dry-run, errors, -l, dispatch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from kprobes.backends.bpf.features import Features
from kprobes.backends.kernel import Kernel, use_kernel
from kprobes.btf import BTF
from kprobes.lang.diagnostics import LangError
from tests.helpers import run_cli
from tests.unit.btf_builder import kernel_like
from tests.unit.test_engine_plan import fake_symbols


def fake_kernel(bpf_error: str = "BPF_MAP_CREATE failed: Operation not permitted (EPERM)") -> Kernel:
    """A kernel with BTF and 1100+ functions, no tracefs, and BPF refused as unprivileged."""
    b, _ = kernel_like()
    extra = [f"fn_{i}" for i in range(1100)]
    return Kernel(tracefs_root=None, btf=BTF(b.build()), config=None,
                  bpf_features=Features(bpf=False, error=bpf_error),
                  symbols=lambda: fake_symbols(extra))  # type: ignore[arg-type,return-value]


@pytest.fixture(autouse=True)
def no_kernel() -> Iterator[None]:
    old = use_kernel(fake_kernel())
    yield
    use_kernel(old)


def test_dry_run_seed_kill() -> None:
    prog = ('kprobe:do_send_sig_info { printf("%s (pid=%d) -> signal %d to pid %d\\n", '
            "comm, pid, arg0, ((struct task_struct *)arg2)->pid); }")
    rc, out, err = run_cli(["--dry-run", "-e", prog])
    assert rc == 0, err
    assert "p:kp0_0 do_send_sig_info comm=$comm:string arg0=%di:u64 pid=+0(%dx):s32" in out
    assert "attach: 1 probes" in out


def test_program_file(tmp_path: Path) -> None:
    f = tmp_path / "prog.bt"
    f.write_text("kretprobe:vfs_read /retval > 100/ { @ = hist(retval); }\n")
    rc, out, err = run_cli([str(f), "--dry-run"])
    assert rc == 0, err
    assert "r:kp0_0 vfs_read retval=$retval:u64" in out
    assert "kernel filter: retval > 100" in out


def test_language_error_is_printed_like_bpftrace(tmp_path: Path) -> None:
    rc, out, err = run_cli(["--dry-run", "-e", "kprobe:vfs_read { @x = fake; }"])
    assert rc == 1
    assert err.startswith("stdin:1:24-28: ERROR: Unknown identifier: 'fake'\n")
    assert "~~~~" in err


def test_governor_refusal_and_consent() -> None:
    prog = "kprobe:* { @[probe] = count(); }"
    rc, out, err = run_cli(["--dry-run", "-e", prog])
    assert rc == 1 and "refusing to attach" in err and "--unsafe" in err
    rc, out, err = run_cli(["--dry-run", "--unsafe", "-e", prog])
    assert rc == 0, err
    assert "kernel events: 1107" in out
    rc, out, err = run_cli(["--dry-run", "--wildcard-filter", "vfs_*", "-e", prog])
    assert rc == 0 and "kernel events: 3" in out


def test_usage_errors() -> None:
    rc, out, err = run_cli(["-p", "1"])  # bpftrace 0.17: the usage on stderr, status 1
    assert rc == 1 and "no program given" in err and "USAGE:" in err
    # after -e PROGRAM, operands are positional parameters ($1 is "x.bt"), as in bpftrace
    rc, out, err = run_cli(["--dry-run", "-e", 'BEGIN { printf("%s\\n", str($1)); }', "x.bt"])
    assert rc == 0, err


def test_list_kprobes_glob() -> None:
    rc, out, err = run_cli(["-l", "kprobe:vfs_*"])
    assert rc == 0, err
    assert out.splitlines() == ["kprobe:vfs_open", "kprobe:vfs_read", "kprobe:vfs_write"]


def test_list_verbose_shows_btf_arguments() -> None:
    rc, out, err = run_cli(["-lv", "kprobe:do_sys_openat2"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "kprobe:do_sys_openat2"
    assert any("filename" in ln for ln in lines[1:]) and lines[-1].strip().endswith("retval")


def test_help() -> None:
    rc, out, err = run_cli(["-e", "BEGIN {}", "--help"])
    assert rc == 0 and "--dry-run" in out and "-c 'CMD'" in out and "BPFTRACE_STRLEN" in out


# -- engine selection (--engine auto|bpf|tracefs) --------------------------------------
_TP = 'tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); }'


def _bpf_ok() -> Features:
    return Features(bpf=True, prog_types={"KPROBE": True, "TRACEPOINT": True, "PERF_EVENT": True},
                    map_types={"RINGBUF": True, "HASH": True, "PERCPU_HASH": True},
                    helpers={"probe_read_kernel": True, "probe_read_user": True},
                    kprobe_pmu=True, uprobe_pmu=True, perf_link=True)


def test_auto_falls_back_to_tracefs_and_says_why_in_dry_run() -> None:
    rc, out, err = run_cli(["--dry-run", "-e", "kprobe:vfs_read { @ = count(); }"])
    assert rc == 0, err
    assert out.startswith("engine: tracefs (auto: this kernel refuses BPF programs (EPERM))\n")
    assert "p:kp0_0 vfs_read" in out


def test_explicit_engine_is_named_in_dry_run(tmp_path: Path) -> None:
    f = tmp_path / "prog.bt"
    f.write_text("kprobe:vfs_read { @ = count(); }\n")
    rc, out, err = run_cli(["--engine", "tracefs", "--dry-run", str(f)])
    assert rc == 0, err
    assert out.startswith("engine: tracefs (--engine tracefs)\n")
    rc, out, err = run_cli(["--engine", "nope", "--dry-run", str(f)])
    assert rc == 2 and "invalid choice" in err


def test_auto_chooses_bpf_when_the_kernel_allows_it() -> None:
    use_kernel(Kernel(tracefs_root=None, btf=fake_kernel().btf, config=None, bpf_features=_bpf_ok()))
    rc, out, err = run_cli(["--dry-run", "-e", "kprobe:vfs_read { @ = count(); }"])
    assert rc == 0, err
    assert out.startswith("engine: bpf (auto: the kernel allows BPF and the program compiles)\n")
    assert "program kp0_kp0" in out and "map @" in out
    assert err == ""


class _NoCodegen:
    """A BPF engine that cannot compile anything (registered in place of the real one)."""

    name = "bpf"

    def refusal(self, prog: Any) -> None:
        return None

    def plan(self, prog: Any, opts: Any) -> Any:
        from kprobes.engines.fetch import plan_error

        probe = prog.checked.program.probes[0]
        raise plan_error(prog.checked.program, "this is not supported by the BPF engine", probe.span)

    def run(self, plan: Any, opts: Any, out: Any, err: Any) -> int:
        raise AssertionError("never planned")


ENGINE = _NoCodegen()


def test_auto_falls_back_when_the_program_does_not_compile_to_bpf(monkeypatch: pytest.MonkeyPatch) -> None:
    from kprobes.engines import base

    monkeypatch.setitem(base.ENGINES, "bpf", __name__)  # the registry: engines by module name
    k = Kernel(tracefs_root=None, btf=fake_kernel().btf, config=None, bpf_features=_bpf_ok())
    prog = base.check_program("kprobe:vfs_read { @ = count(); }", kernel=k)
    sel = base.choose(prog, base.PlanOptions(), "auto")
    assert sel.name == "tracefs"
    assert sel.fallback_line == ("kprobes: using the tracefs engine: the bpf engine cannot run this "
                                 "program: this is not supported by the BPF engine")
    with pytest.raises(LangError):
        base.choose(prog, base.PlanOptions(), "bpf")
    assert base.choose(prog, base.PlanOptions(), "tracefs").fallback_line is None


def test_bpf_refusal_reasons() -> None:
    from kprobes.backends.kernel import bpf_refusal

    assert bpf_refusal(Features(bpf=False, error="x failed: Operation not permitted (EPERM)"),
                       {"kprobe"}) == "this kernel refuses BPF programs (EPERM)"
    f = _bpf_ok()
    assert bpf_refusal(f, {"kprobe", "tracepoint"}) is None
    f.kprobe_pmu = False
    assert "kprobe PMU" in (bpf_refusal(f, {"kprobe"}) or "")
    assert bpf_refusal(f, {"tracepoint"}) is None


def test_api_prepares_on_a_named_or_chosen_engine() -> None:
    import kprobes

    sel = kprobes.prepare_program("kprobe:vfs_read { @ = count(); }", engine="tracefs",
                                  opts=kprobes.PlanOptions(wildcard_filter=None))
    assert sel.name == "tracefs" and sel.fallback_line is None
    assert "p:kp0_0 vfs_read" in sel.describe()
    auto = kprobes.prepare_program("kprobe:vfs_read { @ = count(); }")
    assert auto.name == "tracefs" and auto.reason == "this kernel refuses BPF programs (EPERM)"
    assert kprobes.RunOptions(duration=1.0).duration == 1.0
