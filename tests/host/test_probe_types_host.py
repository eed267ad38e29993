"""rawtracepoint, software events, interval/profile units and the kfunc refusal on this host.

Raw tracepoints and software perf events need no kprobes, so they run here; fentry
does not load on this kernel (6.18 refuses it), which ``--engine auto`` must say.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import List

import pytest

from tests.conftest import require
from tests.helpers import run_cli

pytestmark = pytest.mark.host

#: __NR_getppid (the raw sys_enter tracepoint passes (regs, id)).
NR_GETPPID = {"x86_64": 110, "aarch64": 173}.get(platform.machine(), 110)
GETPPID = ("import ctypes, os, sys; ctypes.CDLL(None).prctl(15, b'kprtwork', 0, 0, 0); "
           "[os.getppid() for _ in range(int(sys.argv[1]))]")
# touch N fresh 4 KiB pages of an anonymous mapping kept off huge pages: N page faults
FAULTS = ("import ctypes, mmap, sys; ctypes.CDLL(None).prctl(15, b'kpswwork', 0, 0, 0); "
          "n = int(sys.argv[1]); m = mmap.mmap(-1, n * 4096); m.madvise(mmap.MADV_NOHUGEPAGE); "
          "[m.__setitem__(i * 4096, 1) for i in range(n)]")
SLEEPS = ("import ctypes, time; ctypes.CDLL(None).prctl(15, b'kpcswork', 0, 0, 0); "
          "[time.sleep(0.002) for _ in range(40)]")


def _bpf_or_skip() -> None:
    if os.geteuid() != 0:
        require("BPF engine tests need root")


def _ours() -> List[str]:
    from kprobes.backends.bpf import prog_ids, prog_info_by_id

    names = []
    for i in prog_ids():
        info = prog_info_by_id(i)
        if info is not None and info.name.startswith("kp") and "_" in info.name[2:5]:
            names.append(info.name)
    return names


def _value(out: str, name: str) -> int:
    return int(out.split(f"{name}: ")[1].split()[0])


def test_rawtracepoint_counts_match_the_tracepoint() -> None:
    _bpf_or_skip()
    before = _ours()
    prog = (f'rawtracepoint:sys_enter /arg1 == {NR_GETPPID} && comm == "kprtwork"/ {{ @rt = count();'
            ' @p[probe] = count(); }'
            f' tracepoint:raw_syscalls:sys_enter /args->id == {NR_GETPPID} && comm == "kprtwork"/'
            ' { @tp = count(); }')
    rc, out, err = run_cli(["--engine", "bpf", "-c", f'{sys.executable} -c "{GETPPID}" 37',
                            "-e", prog])
    assert rc == 0, err
    assert _value(out, "@rt") == _value(out, "@tp") == 37, out
    assert "@p[rawtracepoint:sys_enter]: 37\n" in out
    assert _ours() == before


def test_rawtracepoint_refusals_say_why() -> None:
    _bpf_or_skip()
    # sched_process_free passes one argument: arg5 is past the end of its context
    rc, _, err = run_cli(["--engine", "bpf", "-e", "rawtracepoint:sched_process_free { @[arg5] = count(); }"])
    assert rc != 0 and "more arguments (argN) than the tracepoint passes" in err, err
    rc, _, err = run_cli(["--engine", "bpf", "-e", "rawtracepoint:no_such_tp_kp { @ = count(); }"])
    assert rc != 0 and "no raw tracepoint named 'no_such_tp_kp'" in err, err
    rc, _, err = run_cli(["--engine", "tracefs", "-e", "rt:sys_enter { @ = count(); }"])
    assert rc != 0 and "'rawtracepoint' probes need --engine bpf" in err, err


def test_software_events_sample_every_nth_event(tmp_path: Path) -> None:
    _bpf_or_skip()
    before = _ours()
    prog = ('software:page-faults:1 /comm == "kpswwork"/ { @pf = count(); }'
            ' software:minor-faults:1 /comm == "kpswwork"/ { @minor = count(); }'
            ' software:faults:100 /comm == "kpswwork"/ { @pf100 = count(); }'
            ' s:cs:1 /comm == "kpcswork"/ { @cs[probe] = count(); }')
    (tmp_path / "faults.py").write_text(FAULTS)
    (tmp_path / "sleeps.py").write_text(SLEEPS)
    (tmp_path / "work.sh").write_text(f"{sys.executable} {tmp_path}/faults.py 3000\n"
                                      f"{sys.executable} {tmp_path}/sleeps.py\n")
    rc, out, err = run_cli(["--engine", "bpf", "-c", f"sh {tmp_path}/work.sh", "-e", prog])
    assert rc == 0, err
    pf, minor, pf100 = _value(out, "@pf"), _value(out, "@minor"), _value(out, "@pf100")
    # the 3000 touched pages fault once each; Python's own start-up adds some more
    assert 3000 <= pf < 3000 + 5000 and minor == pf, out
    assert pf // 100 - 2 <= pf100 <= pf // 100 + 2, out  # one sample per 100 faults per CPU
    assert _value(out, "@cs[software:context-switches:1]") >= 40, out  # each sleep switches
    assert _ours() == before


def test_hardware_events_run_or_say_why() -> None:
    _bpf_or_skip()
    rc, out, err = run_cli(["--engine", "bpf", "-c", "true", "-e", "hardware:cycles:100000 { @ = count(); }"])
    if rc == 0:  # a PMU is passed through
        assert "@:" in out
    else:
        assert "hardware:cpu-cycles" in err and ("no such hardware counter" in err
                                                 or "not supported" in err.lower()), err


def test_interval_and_profile_accept_every_unit() -> None:
    _bpf_or_skip()
    prog = ("interval:us:100000 { @us = count(); } interval:ms:100 { @ms = count(); }"
            " interval:hz:10 { @hz = count(); } interval:s:1 { @s = count(); }"
            " profile:hz:50 { @phz = count(); } profile:ms:20 { @pms = count(); }"
            " profile:us:20000 { @pus = count(); } profile:s:1 { @ps = count(); }")
    rc, out, err = run_cli(["--engine", "bpf", "--duration", "1.25", "-e", prog])
    assert rc == 0, err
    for name in ("@us", "@ms", "@hz"):
        assert 8 <= _value(out, name) <= 14, out
    assert _value(out, "@s") == 1, out
    ncpu = len(os.sched_getaffinity(0))
    for name in ("@phz", "@pms", "@pus"):  # ~50 samples a second on each CPU
        assert 20 <= _value(out, name) <= 70 * ncpu, out
    assert 1 <= _value(out, "@ps") <= ncpu, out
    rc, out, err = run_cli(["--engine", "tracefs", "--duration", "0.35", "-e",
                            "interval:us:100000 { @us = count(); } interval:hz:10 { @hz = count(); }"])
    assert rc == 0, err
    assert 2 <= _value(out, "@us") <= 4 and 2 <= _value(out, "@hz") <= 4, out


def test_kfunc_runs_or_auto_refuses_with_the_kernels_reason() -> None:
    _bpf_or_skip()
    from kprobes.backends.bpf.features import probe_features

    feats = probe_features()
    prog = 'kfunc:vfs_read /comm == "kprtwork"/ { @[args->count] = count(); }'
    rc, out, err = run_cli(["-c", f'{sys.executable} -c "{GETPPID}" 1', "-e", prog])
    if feats.fentry:
        assert rc == 0, err
        return
    assert rc != 0
    assert "kfunc/kretfunc (fentry/fexit) do not work here" in err and feats.fentry_reason in err, err
    assert "--engine bpf" in err and "kprobe:/kretprobe: form" in err, err


def test_listing_kfunc_rawtracepoint_and_perf_events() -> None:
    rc, out, err = run_cli(["-l", "kfunc:vfs_rea*"])
    assert rc == 0 and "kfunc:vmlinux:vfs_read\n" in out, err
    rc, out, err = run_cli(["-lv", "kretfunc:vfs_read"])
    assert rc == 0 and out.startswith("kretfunc:vmlinux:vfs_read\n") and "size_t count" in out, out
    rc, out, err = run_cli(["-l", "rt:sched_switch"])
    assert rc == 0 and out == "rawtracepoint:sched_switch\n", out + err
    rc, out, err = run_cli(["-l", "software:*"])
    assert rc == 0 and len(out.splitlines()) == 11 and "software:page-faults:\n" in out, out
