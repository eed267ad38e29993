"""Differential test of bpftrace v0.17.0's command line: each option under bpftrace and kprobes.

Every case runs ``bpftrace ARGS`` (the reference, installed on the host) and
``kprobes ARGS`` (in-process, for speed) on the same program, operands,
environment and standard input, and compares the exit status and stdout
byte for byte (``err=True``: stderr's first line too, with ``bpftrace:``
read as ``kprobes:``).  The documented differences (README, "bpftrace
compatibility") have their own tests below: ``-h``, ``-V``, ``-v``, ``-d``,
``--info``, a missing program file's status.  Programs use BEGIN, END and
syscall tracepoints, which both tools run on this host.

``-f json`` of a program using every map kind, printf, time and print() of
non-map values runs under bpftrace and on both engines: each line parses,
and equals bpftrace's (map entries compared as JSON objects, whose order
bpftrace does not define); a jq pipeline written for bpftrace gives the same
result on both.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from kprobes.cli.main import Streams, main
from tests.conftest import require
from tests.helpers import session_leftovers

pytestmark = pytest.mark.host

BEGIN_ARGS = 'BEGIN { printf("%d %s %d\\n", $1, str($2), $#); exit(); }'
BEGIN_MAPS = 'BEGIN { @a = 1; @b[2, "x"] = 3; printf("p %d\\n", 7); exit(); } END { printf("end\\n"); }'
FILE_PROG = 'BEGIN { printf("file %d %s\\n", $1, str($2)); exit(); }\n'
#: A workload whose opens are the same every run: cmp of a file with itself, no output, under
#: a comm of its own (a link to cmp) so that nothing else running here is counted.
WORK = Path("/tmp/kpclihost")
COMM = "kpclicmp"
CMP = str(WORK / COMM)


@pytest.fixture(autouse=True, scope="module")
def _workload() -> None:
    WORK.mkdir(exist_ok=True)
    link = WORK / COMM
    if not link.is_symlink():
        link.symlink_to(shutil.which("cmp") or "/usr/bin/cmp")
RLIMIT = "couldn't set RLIMIT_MEMLOCK"


def _bpftrace() -> str:
    path = shutil.which("bpftrace")
    if path is None:
        require("bpftrace (v0.17.0) is not installed: the reference of this differential test")
        raise AssertionError  # pragma: no cover
    return path


Result = Tuple[int, str, str]


def run_bpftrace(args: List[str], env: Optional[Dict[str, str]] = None, stdin: bytes = b"",
                 cwd: Optional[Path] = None) -> Result:
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([_bpftrace(), *args], input=stdin, capture_output=True, env=e, timeout=60,
                       cwd=str(cwd) if cwd else None)
    err = "".join(ln for ln in p.stderr.decode("utf-8", "replace").splitlines(True) if RLIMIT not in ln)
    return p.returncode, p.stdout.decode("utf-8", "replace"), err


def run_kprobes(args: List[str], monkeypatch: pytest.MonkeyPatch, env: Optional[Dict[str, str]] = None,
                stdin: bytes = b"") -> Result:
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)

    class _Stdin:
        buffer = io.BytesIO(stdin)

    monkeypatch.setattr(sys, "stdin", _Stdin())
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(args), Streams(out, err))
    for k in env or {}:
        monkeypatch.delenv(k)
    return rc, out.getvalue(), err.getvalue()


def _first(text: str) -> str:
    """The first line, ``/usr/bin/bpftrace: `` (getopt's argv[0]) read as ``kprobes: ``."""
    return re.sub(r"^\S*bpftrace: ", "kprobes: ", (text.splitlines() or [""])[0])


# (id, args, env, stdin, compare stderr's first line)
CASES: List[Tuple[str, List[str], Dict[str, str], bytes, bool]] = [
    ("params", ["-e", BEGIN_ARGS, "5", "hello"], {}, b"", False),
    ("params-missing", ["-e", BEGIN_ARGS], {}, b"", False),
    ("params-not-a-number", ["-e", BEGIN_ARGS, "abc"], {}, b"", True),
    ("file-params-then-q", ["{prog}", "8", "x", "-q"], {}, b"", False),
    ("double-dash", ["{prog}", "--", "-5"], {}, b"", False),
    ("stdin", ["-", "9", "y"], {}, FILE_PROG.encode(), False),
    ("cluster-qe", ["-qe", BEGIN_MAPS], {}, b"", False),
    ("json", ["-f", "json", "-e", BEGIN_MAPS], {}, b"", False),
    ("json-quiet", ["-q", "-f", "json", "-e", BEGIN_MAPS], {}, b"", False),
    ("B-none", ["-B", "none", "-e", BEGIN_MAPS], {}, b"", False),
    ("B-full", ["-B", "full", "-e", BEGIN_MAPS], {}, b"", False),
    ("B-line", ["-B", "line", "-e", BEGIN_MAPS], {}, b"", False),
    ("I-include-dir", ["-I", "/nonexistent", "-e", BEGIN_MAPS], {}, b"", False),
    ("usdt-file-activation", ["--usdt-file-activation", "-e", BEGIN_MAPS], {}, b"", False),
    ("k", ["-k", "--no-warnings", "-e", BEGIN_MAPS], {}, b"", False),
    ("kk", ["-kk", "--no-warnings", "-e", BEGIN_MAPS], {}, b"", False),
    ("unsafe-system", ["--unsafe", "-e", 'BEGIN { system("echo sys %d", 4); exit(); }'], {}, b"", False),
    ("safe-system-refused", ["-e", 'BEGIN { system("echo sys"); exit(); }'], {}, b"", False),
    ("notify-attached", ["-e", BEGIN_MAPS], {"__BPFTRACE_NOTIFY_PROBES_ATTACHED": "1"}, b"", True),
    ("bad-format", ["-f", "jsonx", "-e", BEGIN_MAPS], {}, b"", True),
    ("bad-B", ["-B", "foo", "-e", BEGIN_MAPS], {}, b"", True),
    ("bad-pid-text", ["-p", "a1111", "-e", BEGIN_MAPS], {}, b"", True),
    ("bad-pid-zero", ["-p", "0", "-e", BEGIN_MAPS], {}, b"", True),
    ("bad-pid-negative", ["-p", "-5", "-e", BEGIN_MAPS], {}, b"", True),
    ("pid", ["-p", "1", "-e", BEGIN_MAPS], {}, b"", False),
    ("command", ["-c", f"{CMP} /etc/hostname /etc/hostname", "-e",
                 'tracepoint:syscalls:sys_enter_openat /comm == "kpclicmp"/ { @ = count(); }'], {}, b"", False),
    ("invalid-option", ["-z", "-e", BEGIN_MAPS], {}, b"", True),
    ("unrecognized-option", ["--bogus", "-e", BEGIN_MAPS], {}, b"", True),
    ("missing-argument", ["-e"], {}, b"", True),
    ("no-program", ["-q"], {}, b"", False),
    ("env-strlen-text", ["-e", BEGIN_MAPS], {"BPFTRACE_STRLEN": "abc"}, b"", True),
    ("env-strlen-large", ["-e", BEGIN_MAPS], {"BPFTRACE_STRLEN": "300"}, b"", True),
    ("env-map-keys-small", ["-e", BEGIN_MAPS], {"BPFTRACE_MAP_KEYS_MAX": "2"}, b"", False),
    ("env-map-keys-empty", ["-e", BEGIN_MAPS], {"BPFTRACE_MAP_KEYS_MAX": ""}, b"", True),
    ("env-cat-bytes-garbage", ["--unsafe", "-e", 'BEGIN { cat("/etc/services"); exit(); }'],
     {"BPFTRACE_CAT_BYTES_MAX": " 100x"}, b"", False),
    ("env-max-probes-text", ["-e", BEGIN_MAPS], {"BPFTRACE_MAX_PROBES": "x"}, b"", True),
    ("env-bool", ["-e", BEGIN_MAPS], {"BPFTRACE_NO_USER_SYMBOLS": "2"}, b"", True),
    ("env-ok", ["-e", BEGIN_MAPS], {"BPFTRACE_STRLEN": "100", "BPFTRACE_MAP_KEYS_MAX": "100",
                                    "BPFTRACE_CACHE_USER_SYMBOLS": "1"}, b"", False),
    ("list", ["-l", "tracepoint:syscalls:sys_enter_getpp*"], {}, b"", False),
    ("list-verbose", ["-lv", "tracepoint:syscalls:sys_enter_getppid"], {}, b"", False),
]  # fmt: skip


@pytest.mark.parametrize("name, args, env, stdin, err", CASES, ids=[c[0] for c in CASES])
def test_option_as_bpftrace(name: str, args: List[str], env: Dict[str, str], stdin: bytes, err: bool,
                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prog = tmp_path / "prog.bt"
    prog.write_text(FILE_PROG)
    args = [str(prog) if a == "{prog}" else a for a in args]
    monkeypatch.chdir(tmp_path)
    want = run_bpftrace(args, env, stdin, tmp_path)
    got = run_kprobes(args, monkeypatch, env, stdin)
    assert got[0] == want[0], (name, want, got)
    assert got[1] == want[1], (name, want, got)
    if err:
        assert _first(got[2]) == _first(want[2]), (name, want[2], got[2])
    assert session_leftovers() == []


def test_notify_line_once_on_stderr_before_begin_output(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"__BPFTRACE_NOTIFY_PROBES_ATTACHED": ""}
    for rc, out, err in (run_bpftrace(["-e", BEGIN_MAPS], env), run_kprobes(["-e", BEGIN_MAPS], monkeypatch, env)):
        assert rc == 0 and err.count("__BPFTRACE_NOTIFY_PROBES_ATTACHED\n") == 1, err
        assert "__BPFTRACE_NOTIFY" not in out


def test_output_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-o FILE: the program's output in FILE; bpftrace writes the two blank lines before the
    exit maps to stdout, and so does kprobes."""
    outs = []
    for tool in ("bpftrace", "kprobes"):
        path = tmp_path / f"{tool}.out"
        for fmt in ("text", "json"):
            args = ["-f", fmt, "-o", str(path), "-e", BEGIN_MAPS]
            res = run_bpftrace(args) if tool == "bpftrace" else run_kprobes(args, monkeypatch)
            outs.append((tool, fmt, res[0], res[1], path.read_text()))
    bt = [o[2:] for o in outs if o[0] == "bpftrace"]
    kp = [o[2:] for o in outs if o[0] == "kprobes"]
    assert kp == bt
    assert bt[0][1] == "\n\n" and "@a: 1" in bt[0][2]


def test_strlen_truncates_strings_as_bpftrace(monkeypatch: pytest.MonkeyPatch) -> None:
    prog = ('tracepoint:syscalls:sys_enter_openat /comm == "kpclicmp"/ '
            '{ @[str(args->filename)] = count(); }')  # fmt: skip
    args = ["--engine", "bpf", "-c", f"{CMP} /etc/hostname /etc/hostname", "-e", prog]
    env = {"BPFTRACE_STRLEN": "5"}
    want = run_bpftrace(args[2:], env)
    got = run_kprobes(args, monkeypatch, env)
    assert got[0] == want[0] == 0, (want, got)
    for out in (want[1], got[1]):  # (a failed read: bpftrace keeps the previous key's bytes)
        keys = [ln.split("]")[0][2:] for ln in out.splitlines() if ln.startswith("@[")]
        assert max(len(k) for k in keys) == 4 and "@[/etc]: 2" in out, out


# -- documented differences ----------------------------------------------------------
def test_help_lists_every_bpftrace_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """-h: bpftrace's option lines, in kprobes' help (which goes to stdout, bpftrace's to stderr)."""
    rc_b, _, bt_help = run_bpftrace(["-h"])
    rc_k, kp_help, _ = run_kprobes(["-h"], monkeypatch)
    assert rc_b == rc_k == 0
    start, end = bt_help.index("OPTIONS:"), bt_help.index("EXAMPLES:")
    for line in bt_help[start:end].splitlines():
        assert line in kp_help.splitlines(), line


def test_version_names_the_bpftrace_release(monkeypatch: pytest.MonkeyPatch) -> None:
    rc, bt_out, _ = run_bpftrace(["-V"])
    version = bt_out.split()[-1]
    for flag in ("-V", "--version"):
        rc_k, out, _ = run_kprobes([flag], monkeypatch)
        assert rc == rc_k == 0 and f"bpftrace {version}" in out, out


def test_debug_dumps_are_dry_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    prog = 'tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); }'
    for flag in ("-d", "-dd"):
        rc_b, bt_out, _ = run_bpftrace([flag, "-e", prog])
        rc_k, out, err = run_kprobes([flag, "--engine", "bpf", "-e", prog], monkeypatch)
        assert rc_b == rc_k == 0, err
        assert bt_out.startswith("\nAST after: parser\n") and out.startswith("\nAST after: parser\n")
        assert "Attaching" not in out and "call bpf_get_current_comm" in out
        assert ("Types" in out) == (flag == "-dd")


def test_info_reports_kernel_support_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    rc_b, bt_out, bt_err = run_bpftrace(["--info"])
    rc_k, out, err = run_kprobes(["--info"], monkeypatch)
    assert rc_b == rc_k == 0 and bt_out == out == ""
    for section in ("System", "Build", "Kernel helpers", "Kernel features", "Map types", "Probe types"):
        assert f"\n{section}\n" in f"\n{bt_err}" and f"\n{section}\n" in f"\n{err}", section
    assert "  tracepoint: yes" in err


def test_missing_program_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same message; bpftrace exits 255 here, kprobes 1 (its documented error status)."""
    rc_b, out_b, err_b = run_bpftrace(["/nonexistent/prog.bt"])
    rc_k, out_k, err_k = run_kprobes(["/nonexistent/prog.bt"], monkeypatch)
    assert (rc_b, rc_k) == (255, 1) and out_b == out_k == ""
    assert _first(err_k) == _first(err_b) == "ERROR: failed to open file '/nonexistent/prog.bt': No such file or directory"


def test_command_and_pid_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """bpftrace refuses -c with -p; kprobes runs CMD and keeps the events of PID (an extension)."""
    args = ["-c", "/bin/true", "-p", "1", "-e", BEGIN_MAPS]
    rc_b, out_b, err_b = run_bpftrace(args)
    assert rc_b == 1 and out_b == "" and err_b.startswith("ERROR: USAGE: Cannot use both -c and -p.\n")
    rc, out, err = run_kprobes(args, monkeypatch)
    assert rc == 0 and out == run_bpftrace(args[4:])[1], err


def test_ignored_settings_are_reported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"BPFTRACE_VMLINUX": "/boot/vmlinux", "BPFTRACE_LOG_SIZE": "100", "BPFTRACE_MAX_MAP_KEYS": "5"}
    rc, out, err = run_kprobes(["--include", "stddef.h", "-k", "-e", BEGIN_MAPS], monkeypatch, env)
    assert rc == 0 and out == run_bpftrace(["-e", BEGIN_MAPS])[1]
    lines = [ln for ln in err.splitlines() if ln.startswith("kprobes: ignoring")]
    assert len(lines) == 3, err  # environment, --include, -k
    for name in env:
        assert err.count(name) == 1, err
    rc, out, err = run_kprobes(["--no-warnings", "-k", "-e", BEGIN_MAPS], monkeypatch, env)
    assert rc == 0 and err == ""


# -- -f json ---------------------------------------------------------------------------
JSON_PROG = """\
tracepoint:syscalls:sys_enter_openat /comm == "kpclicmp"/ {
  @c[comm] = count();
  @h = hist(args->flags);
  STR_MAPS
  @i = 7;
  printf("open \\"%s\\"\\t%d\\n", STR_ARG, args->flags & 0xfff);
}
tracepoint:syscalls:sys_exit_openat /comm == "kpclicmp"/ {
  @s = sum(args->ret + 10);
  @mi = min(args->ret + 10);
  @ma = max(args->ret + 10);
  @av = avg(args->ret + 10);
  @st[comm] = stats(args->ret + 10);
  @l = lhist(args->ret + 5, 0, 20, 2);
  @r[args->ret >= 0] = hist(args->ret + 10);
}
END { time("%Y\\n"); print(@c); print(@h); print(123); print("text"); print(@av, 0, 1); print(@st); print(@s, 0, 5); }
"""
#: No str() of user memory: a file name not yet paged in reads as "" under either tool, by luck.
JSON_MAPS = ("@f[args->dfd, \"k\"] = count(); @last = comm;", "comm")


def _json_prog() -> str:
    maps, arg = JSON_MAPS
    return JSON_PROG.replace("STR_MAPS", maps).replace("STR_ARG", arg)


def _normal(line: str) -> object:
    """A line as JSON (``""`` for bpftrace's blank lines before the exit maps); time() masked."""
    if line == "":
        return ""
    obj = json.loads(line)
    if obj.get("type") == "time":
        obj["data"] = "TIME"
    return obj


@pytest.mark.parametrize("engine", ["bpf", "tracefs"])
def test_json_every_record_as_bpftrace(engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prog = _json_prog()
    workload = ["-c", f"{CMP} /etc/hostname /etc/hostname"]
    rc_b, bt, bt_err = run_bpftrace(["-f", "json", *workload, "-e", prog])
    assert rc_b == 0, bt_err
    rc, kp, err = run_kprobes(["--engine", engine, "-f", "json", *workload, "-e", prog], monkeypatch)
    assert rc == 0, err
    bt_lines, kp_lines = bt.splitlines(), kp.splitlines()
    assert [_normal(x) for x in kp_lines] == [_normal(x) for x in bt_lines]
    types = {json.loads(x)["type"] for x in kp_lines if x}
    assert types == {"attached_probes", "printf", "time", "value", "map", "hist", "stats"}
    assert kp_lines.count("") == 2 and kp_lines[-1] != ""
    jq = shutil.which("jq")
    if jq is None:
        require("jq is not installed (scripts/install-vm-deps installs it)")
    pipeline = 'select(.type == "map" or .type == "hist" or .type == "stats") | .data'
    outs = []
    for text in (bt, kp):
        p = subprocess.run([jq, "-c", pipeline], input=text, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        outs.append([json.loads(x) for x in p.stdout.splitlines()])
    assert outs[1] == outs[0] and len(outs[0]) >= 15


def test_command_started_before_arming_never_runs_if_not_released(tmp_path: Path) -> None:
    """-c's command is held at its gate from attaching() on (bpftrace forks it before attaching);
    an error before the program starts kills it instead of letting it run."""
    import gc
    import time
    from types import SimpleNamespace

    from kprobes.engines.lifecycle import Lifecycle, RunOptions, UserProbes

    marker = tmp_path / "ran"
    lc = Lifecycle(RunOptions(command=f"/usr/bin/touch {marker}", quiet=True), SimpleNamespace(),  # type: ignore[arg-type]
                   SimpleNamespace(cpid=0), UserProbes.empty(), io.StringIO())  # type: ignore[arg-type]
    lc.attaching(1)
    proc = lc.proc
    assert proc is not None and lc.rt.cpid == proc.pid and proc.poll() is None
    with open(f"/proc/{proc.pid}/stat") as fh:
        assert fh.read().rsplit(")", 1)[1].split()[0] == "S"  # asleep at its gate
    del lc
    gc.collect()
    assert proc.poll() is not None
    time.sleep(0.2)
    assert not marker.exists()
