"""bpftrace 0.17's command line on kprobes, under bpftrace and kprobes at once (the VM).

The host test (tests/host/test_bpftrace_cli_host.py) covers every option on
BEGIN/END/tracepoint programs; this one runs what needs kprobes: a
kprobe/kretprobe program given on standard input (``-``) or as a file, with
positional parameters, under ``-q -B none`` on the BPF engine and ``-f json
-o FILE`` on the tracefs engine.  The program's ``$1`` is the comm it
counts: bpftrace's copy of the workload runs as ``bpcmp``, kprobes' as
``kpcmp`` (both ``cmp`` of a file with itself), at the same time.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.conftest import require
from tests.helpers import run_cli, session_leftovers

WORK = Path("/tmp/kpcli")
PROGRAM = """\
kprobe:vfs_open /comm == str($1)/ { @opens = count(); }
kretprobe:vfs_read /comm == str($1)/ { @reads = hist(retval); @n[$2, $#] = count(); }
END { printf("end %d\\n", $2); }
"""


@pytest.fixture(scope="module")
def links() -> Path:
    if shutil.which("bpftrace") is None:
        require("bpftrace is not installed (apt-get install bpftrace)")
    WORK.mkdir(exist_ok=True)
    (WORK / "data").write_bytes(b"d" * 3000)
    (WORK / "prog.bt").write_text(PROGRAM)
    for name in ("kpcmp", "bpcmp"):
        link = WORK / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(shutil.which("cmp") or "/usr/bin/cmp")
    return WORK


def both(engine: str, args: List[str], stdin: bool,
         monkeypatch: pytest.MonkeyPatch) -> Tuple[Tuple[int, str, str], Tuple[int, str, str]]:
    """bpftrace ARGS with comm bpcmp and kprobes --engine ENGINE ARGS with comm kpcmp, at once."""
    data = WORK / "data"
    bt_args = [a.replace("kpcmp", "bpcmp") for a in args]
    bt = subprocess.Popen(["bpftrace", *bt_args, "-c", f"{WORK}/bpcmp {data} {data}"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if stdin:
            class _Stdin:
                buffer = io.BytesIO(PROGRAM.encode())

            monkeypatch.setattr(sys, "stdin", _Stdin())
        kp = run_cli(["--engine", engine, *args, "-c", f"{WORK}/kpcmp {data} {data}"])
        bt_out, bt_err = bt.communicate(PROGRAM if stdin else "", timeout=180)
    finally:
        if bt.poll() is None:
            bt.kill()
            bt.wait()
    return (bt.returncode, bt_out, bt_err), kp


def test_stdin_program_params_quiet_unbuffered_bpf(links: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("__BPFTRACE_NOTIFY_PROBES_ATTACHED", "1")
    (rc_b, out_b, err_b), (rc, out, err) = both("bpf", ["-q", "-B", "none", "-", "kpcmp", "3"], True,
                                                monkeypatch)
    assert rc_b == 0, err_b
    assert rc == 0, err
    assert out.startswith("end 3\n\n\n@n[3, 2]: ") and "@reads: \n[" in out, out
    assert sorted(out.splitlines()) == sorted(out_b.replace("bpftrace", "kprobes").splitlines())
    assert err.count("__BPFTRACE_NOTIFY_PROBES_ATTACHED\n") == 1 == err_b.count("__BPFTRACE_NOTIFY_PROBES_ATTACHED\n")
    assert session_leftovers() == []


def test_json_to_file_with_params_tracefs(links: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kp_file, bt_file = links / "kpcmp.json", links / "bpcmp.json"  # bpftrace's path: kpcmp -> bpcmp
    for f in (kp_file, bt_file):
        if f.exists():
            f.unlink()
    args = ["-f", "json", "-o", str(kp_file), str(links / "prog.bt"), "kpcmp", "3"]
    (rc_b, out_b, err_b), (rc, out, err) = both("tracefs", args, False, monkeypatch)
    assert rc_b == 0, err_b
    assert rc == 0, err
    assert out == out_b == "\n\n"  # bpftrace writes these to stdout even with -o
    lines = kp_file.read_text().splitlines()
    assert lines[:2] == ['{"type": "attached_probes", "data": {"probes": 3}}',
                         '{"type": "printf", "data": "end 3\\n"}'], lines
    assert [json.loads(ln) for ln in lines] == [json.loads(ln) for ln in bt_file.read_text().splitlines()]
    assert json.loads(lines[2]) == {"type": "map", "data": {"@n": {"3,2": json.loads(lines[2])["data"]["@n"]["3,2"]}}}
