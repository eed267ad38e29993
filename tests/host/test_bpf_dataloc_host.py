"""``__data_loc`` tracepoint fields on the BPF engine: the string at ctx + (u32 & 0xffff).

sched:sched_process_exec's ``filename`` is one: a private copy of ``true`` is
executed twice and both engines must report its path, as a printf argument and
as a map key (a string key must stop at the NUL, or equal paths would differ).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.conftest import require
from tests.helpers import run_cli_subprocess

pytestmark = pytest.mark.host


def test_dynamic_string_field_as_value_and_key() -> None:
    if os.geteuid() != 0:
        require("needs root (BPF)")
    if not os.path.exists("/sys/kernel/tracing/events/sched/sched_process_exec/format"):
        require("no sched:sched_process_exec tracepoint")
    short = tempfile.mkdtemp(prefix="kpdl", dir="/tmp")  # under 64 bytes: bpftrace's string size
    true = os.path.join(short, "kpdataloc")
    shutil.copy(shutil.which("true") or "/bin/true", true)
    try:
        _run(true)
    finally:
        shutil.rmtree(short, ignore_errors=True)


def _run(true: str) -> None:
    cmd = f"/bin/sh -c '{true}; {true}'"
    prog = ('tracepoint:sched:sched_process_exec /comm == "kpdataloc"/ '
            '{ printf("exec %s\\n", str(args->filename)); @[args->filename] = count(); }')
    outs = {}
    for engine in ("bpf", "tracefs"):
        r = run_cli_subprocess(["--engine", engine, "-c", cmd, "-e", prog], timeout=60)
        assert r.returncode == 0, r.stderr
        outs[engine] = r.stdout
        assert r.stdout.count(f"exec {true}\n") == 2, r.stdout
        assert f"@[{true}]: 2\n" in r.stdout, r.stdout
    assert outs["bpf"] == outs["tracefs"]
