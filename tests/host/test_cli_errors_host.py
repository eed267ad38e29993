"""Every bad input found by a user test, run as the real ``kprobes`` command on this host.

Each case must end with one ``kprobes: error:`` line naming the problem, a
``hint:`` line, a non-zero status, no traceback, and no session left in
tracefs (the uprobe cases open a session before the definition is refused).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Union

import pytest

from tests.helpers import OWNER_RX, ROOT, tracefs

pytestmark = pytest.mark.host

Arg = Union[str, bytes]


def _leftovers_of(pid: int) -> List[str]:
    root = tracefs()
    mine = f"kp{pid}_"
    out = [i for i in os.listdir(os.path.join(root, "instances")) if OWNER_RX.match(i) and i.startswith(mine)]
    with open(os.path.join(root, "dynamic_events")) as fh:
        out += [ln for ln in fh if f":{mine}" in ln]
    return out


def run_kprobes(args: List[Arg], tmp_path: Path) -> "tuple[int, str, int]":
    env = dict(os.environ)
    env.pop("KPROBES_DEBUG", None)
    p = subprocess.Popen([sys.executable, "-m", "kprobes.cli", *args], cwd=str(tmp_path), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    del out
    return p.returncode, err.decode("utf-8", "replace"), p.pid


CASES = [
    (["trace", "p:x /etc/hostname:0x10"], "/etc/hostname: not an ELF file"),
    (["trace", "p:x libc:0xffffffff"], "offset 0xffffffff is past the end of the file"),
    (["trace", "--buffer-size", "99999999999", "t:sched:sched_switch"], "the maximum here is"),
    (["trace", b"p:x /bin/b\xffash:0x10"], "is not valid UTF-8: byte 0xff at offset 10"),
    (["trace", "--filter", b"a\xff", "t:sched:sched_switch"], "is not valid UTF-8: byte 0xff at offset 1"),
    (["-o", "/nonexistent/dir/x", "-e", "BEGIN { exit(); }"], "directory /nonexistent/dir does not exist"),
    (["trace", "t:sched:sched_switch", "-c", "/nonexistent"], "cannot run '/nonexistent'"),
    (["-e", "BEGIN { exit(); }", "-c", "/nonexistent"], "cannot run '/nonexistent'"),
    (["record", "-e", "sched:sched_switch", "-o", "out.data", "--", "/nonexistent/cmd"],
     "cannot run '/nonexistent/cmd'"),
    (["trace", "-p", "999999", "t:sched:sched_switch"], "No such process: 999999"),
    (["-p", "999999", "-e", "BEGIN { exit(); }"], "No such process: 999999"),
    (["trace", "--duration", "-1", "t:sched:sched_switch"], "must be a number of seconds greater than 0"),
]  # fmt: skip


@pytest.mark.parametrize("args, message", CASES, ids=[str(i) for i in range(len(CASES))])
def test_bad_input_is_one_error_with_a_hint(args: List[Arg], message: str, tmp_path: Path) -> None:
    status, err, pid = run_kprobes(args, tmp_path)
    assert status not in (0, 70), err
    lines = err.splitlines()
    assert lines and lines[0].startswith("kprobes: error: "), err
    assert message in lines[0], err
    assert len(lines) == 2 and lines[1].startswith("hint: "), err
    assert "Traceback" not in err
    assert _leftovers_of(pid) == []


def test_program_file_with_a_bad_byte(tmp_path: Path) -> None:
    prog = tmp_path / "bad.bt"
    prog.write_bytes(b'BEGIN { printf("\xff"); exit(); }\n')
    status, err, _pid = run_kprobes([str(prog)], tmp_path)
    assert status == 1
    assert err.splitlines()[0] == f"kprobes: error: {prog}:1:17: not valid UTF-8: byte 0xff at offset 16"
    assert err.splitlines()[1].startswith("hint: ")


@pytest.mark.parametrize(
    "program, expected",
    [
        ("BEGIN { @n = @n + 1; @n = @n + 1; exit(); }", "@n: 2\n"),
        ("BEGIN { @m[1] = @m[1] * 2 + 1; @m[1] = @m[1] * 2 + 1; exit(); }", "@m[1]: 3\n"),
        ("BEGIN { @t = 5; @s = @s + @t; @s = @s + @t; exit(); }", "@s: 10\n"),
    ],
)
def test_map_reads_in_begin(program: str, expected: str, tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "kprobes.cli", "-e", program], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert expected in p.stdout
    assert "Traceback" not in p.stderr
