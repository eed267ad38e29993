"""Kernel line probes in the VM from the distribution's debug vmlinux (found like perf, build id checked).

* ``vfs_read:17 count`` (the line that picks f_op->read / read_iter, after the
  size checks) as a persistent probe, recorded while dd reads a file with known
  block sizes: the recorded ``count`` values of dd are exactly that series.
* the seed's ``tcp_sendmsg:15 size`` on 6.1: refused with perf's explanation and
  suggestion, and the suggested point can be probed.

The debug vmlinux comes from scripts/install-kernel-debug on the host, which links it
to /usr/lib/debug/boot/vmlinux-RELEASE (the guest sees the host's /usr, not /var/cache).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require
from tests.helpers import ROOT, run_cli, tracefs


def _need_debug_vmlinux() -> None:
    from kprobes.backends.kdebug import find_kernel_vmlinux
    from kprobes.errors import KprobesError

    try:
        find_kernel_vmlinux()
    except KprobesError as e:
        require(f"{e.message}: run scripts/install-kernel-debug on the host")
        pytest.skip(e.message)


def _has_event(group: str, event: str) -> bool:
    return os.path.isdir(os.path.join(tracefs(), "events", group, event))


def test_vfs_read_line_probe_counts(tmp_path: Path) -> None:
    _need_debug_vmlinux()
    ev = f"kpl{os.getpid()}"
    sizes = [(3000, 3), (5000, 2), (777, 4)]
    src = tmp_path / "data"
    src.write_bytes(os.urandom(64 * 1024))
    rc, out, err = run_cli(["probe", "--add", f"{ev}=vfs_read:17 count"])
    assert rc == 0, err
    assert f"probe:{ev}" in out and _has_event("probe", ev)
    data = tmp_path / "rec.data"
    try:
        rec = subprocess.Popen(
            [sys.executable, "-m", "kprobes.cli", "record", "-e", f"probe:{ev}", "-a", "--duration", "4",
             "-o", str(data)],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert rec.stderr is not None
        ready = rec.stderr.readline()
        assert "recording" in ready, ready
        for bs, n in sizes:
            subprocess.run(["dd", f"if={src}", "of=/dev/null", f"bs={bs}", f"count={n}"], check=True,
                           capture_output=True)  # fmt: skip
        rest = rec.stderr.read()
        assert rec.wait(timeout=120) == 0, rest
        rc, script, err = run_cli(["script", "-i", str(data)])
        assert rc == 0, err
    finally:
        rc2, _out, err2 = run_cli(["probe", "--del", f"probe:{ev}"])
    assert rc2 == 0, err2
    assert not _has_event("probe", ev)
    wanted = {bs for bs, _ in sizes}
    got = [int(m.group(1), 0) for ln in script.splitlines() if ln.lstrip().startswith("dd ")
           for m in [re.search(r"count=(\S+)", ln)] if m]  # fmt: skip
    series = [c for c in got if c in wanted]
    assert series == [bs for bs, n in sizes for _ in range(n)], (got, script[-2000:])


def test_seed_tcp_sendmsg_15_explained_and_suggestion_works() -> None:
    _need_debug_vmlinux()
    rc, out, err = run_cli(["probe", "--add", "tcp_sendmsg:15 size"])
    assert rc != 0
    assert "This line is sharing the address with other lines." in err, err
    m = re.search(r"Please try to probe at (\S+) instead\.", err)
    assert m, err
    where = m.group(1)
    if os.uname().release.startswith("6.1."):
        assert where == "net/ipv4/tcp.c:1503"
    ev = f"kps{os.getpid()}"
    rc, out, err = run_cli(["probe", "--add", f"{ev}={where}"])
    assert rc == 0, err
    try:
        assert _has_event("probe", ev)
        with open(os.path.join(tracefs(), "kprobe_events")) as f:
            line = next(ln for ln in f if f"probe/{ev} " in ln)
        assert re.search(r" \w+\+\d+$", line.strip()), line
    finally:
        rc, _o, err = run_cli(["probe", "--del", f"probe:{ev}"])
    assert rc == 0, err
