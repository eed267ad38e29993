"""The seed's perf sequence through kprobes, one command each: probe --add, record -a, script, probe --del.

The recording is also written to results/perf_workflow.data with the script output
next to it (results/perf_workflow.expected).  A copy made on Debian's 6.1 kernel in
the VM is kept in tests/fixtures/vm-6.1/, and tests/unit/test_recording_vm_fixture.py
decodes it on the host (another kernel, another machine) on every run and compares it
with that expected output; it also compares a fresh results/ pair when one exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import ROOT, run_cli, tracefs

ADD = "do_sys_openat2 filename=+0(%si):string"


def _results_dir(tmp: Path) -> Path:
    d = Path(ROOT) / "results"
    return d if os.access(d, os.W_OK) else tmp


def _has_event(group: str, event: str) -> bool:
    return os.path.isdir(os.path.join(tracefs(), "events", group, event))


def test_seed_perf_sequence(tmp_path: Path) -> None:
    paths = [f"/tmp/kprobes-perfwf-{os.getpid()}-{i}" for i in range(3)]
    for p in paths:
        with open(p, "w") as f:
            f.write(p)
    if _has_event("probe", "do_sys_openat2"):  # a previous run that died half-way
        run_cli(["probe", "--del", "probe:do_sys_openat2"])
    out_dir = _results_dir(tmp_path)
    data = out_dir / "perf_workflow.data"

    # 1. sudo perf probe --add 'do_sys_openat2 filename=+0(%si):string'
    rc, out, err = run_cli(["probe", "--add", ADD])
    assert rc == 0, err
    assert "probe:do_sys_openat2" in out and _has_event("probe", "do_sys_openat2")
    try:
        # 2. sudo perf record -e probe:do_sys_openat2 -a -- sleep 5   (here: --duration 3)
        rec = subprocess.Popen(
            [sys.executable, "-m", "kprobes.cli", "record", "-e", "probe:do_sys_openat2", "-a",
             "--duration", "3", "-o", str(data)],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert rec.stderr is not None
        ready = rec.stderr.readline()
        assert "recording probe:do_sys_openat2 system-wide" in ready, ready
        for _ in range(2):
            for p in paths:
                with open(p) as f:
                    assert f.read() == p
            time.sleep(0.2)
        rest = rec.stderr.read()
        assert rec.wait(timeout=120) == 0, rest
        assert "wrote" in rest

        # 3. sudo perf script
        rc, script, err = run_cli(["script", "-i", str(data)])
        assert rc == 0, err
        mine = [ln for ln in script.splitlines() if any(f'filename="{p}"' in ln for p in paths)]
        assert {p for p in paths if any(f'filename="{p}"' in ln for ln in mine)} == set(paths), script[-3000:]
        assert len(mine) >= 2 * len(paths)
        for ln in mine:
            assert f" {os.getpid():>6} [" in ln and "probe:do_sys_openat2: (ffffffff" in ln, ln
    finally:
        # 4. sudo perf probe --del do_sys_openat2
        rc, out, err = run_cli(["probe", "--del", "do_sys_openat2"])
    assert rc == 0, err
    assert "Removed event: probe:do_sys_openat2" in out
    assert not _has_event("probe", "do_sys_openat2")
    with open(os.path.join(tracefs(), "kprobe_events")) as f:
        assert "probe/do_sys_openat2" not in f.read()
    for p in paths:
        os.unlink(p)

    (out_dir / "perf_workflow.expected").write_text(script)
    # The file is all a reader needs: another process, other locale, cwd and
    # time zone print exactly the same lines.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "Pacific/Kiritimati",
           "PYTHONPATH": os.path.join(ROOT, "src") + os.pathsep + ROOT}  # fmt: skip
    again = subprocess.run([sys.executable, "-m", "kprobes.cli", "script", "-i", str(data)],
                           capture_output=True, text=True, cwd="/", env=env, timeout=120)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout == script
