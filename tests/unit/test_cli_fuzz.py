"""Fuzzing the whole command line: any argv, any program file, never a traceback.

Random argv is built from the real subcommands and flags, mixed with random
text and random bytes (decoded as the OS decodes argv, ``os.fsdecode``), and
program files of random bytes; each runs in-process through
:func:`kprobes.cli.main.main` with its streams captured.  Nothing reaches the
kernel: every tracefs write, every session and every spawned command is
replaced by an error that stands for "would touch the kernel here" (checks
run offline: ``check --kernel 6.1``, ``--dry-run``, ``probe -n``).

Asserted for every run: no traceback and no ``internal error``, an exit
status from the documented set, and a failure that says why on stderr
(``kprobes: error:``, a usage line or a bpftrace-style diagnostic).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path
from typing import Iterator, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kprobes.cli.main import Streams, main
from kprobes.errors import KprobesError

#: Exit statuses the CLI documents (0 ok, 1 error, 2 usage/syntax, 3 loss, 69 feature
#: missing, 77 permission) plus the stand-in for "the kernel would be touched here".
EXIT_KERNEL = 99
DOCUMENTED = {0, 1, 2, 3, 69, 77, EXIT_KERNEL}


class WouldTouchKernel(KprobesError):
    exit_code = EXIT_KERNEL


def _refuse(*_a: object, **_k: object) -> None:
    raise WouldTouchKernel("fuzz: this run would touch the kernel here")


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[None]:
    """No tracefs write, no session (tracefs or BPF), no child process for the whole module."""
    from kprobes.backends import process
    from kprobes.backends.bpf import session as bpf_session
    from kprobes.backends.tracefs import fs, session
    from kprobes.cli import record
    from kprobes.engines import runner

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fs.TraceFS, "write", _refuse)
        mp.setattr(session.Session, "open", _refuse)
        mp.setattr(bpf_session.BpfSession, "__enter__", _refuse)  # --engine auto picks BPF
        mp.setattr(process, "spawn_gated", _refuse)
        mp.setattr(record, "spawn_gated", _refuse)
        mp.setattr(runner, "spawn_gated", _refuse)
        yield


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clifuzz")


def _raw(b: bytes) -> str:
    return os.fsdecode(b)


DEFS = [
    "p:x do_sys_openat2", "r:y vfs_read ret=$retval", "p:x /etc/hostname:0x10",
    "p:x libc:0xffffffff", "p:u /bin/true:0x0", "p:u /nonexistent:main", "t:sched:sched_switch",
    "tracepoint:nosuch:event", "p:x do_sys_openat2 filename=+0(%si):string", "-:x", "p:", "u:bad",
    "p:x vfs_read%return", "r:libc:malloc", "p:open do_sys_openat2 str(arg2)",
]  # fmt: skip
PROGRAMS = [
    "BEGIN { @n = @n + 1; exit(); }", "BEGIN { printf(\"%s\\n\", str(\"abc\", 2)); exit(); }",
    "kprobe:vfs_read { @[comm] = count(); }", "tracepoint:sched:sched_switch { @ = count(); }",
    "tracepoint:syscalls:sys_enter_openat { printf(\"%s\\n\", str(args->filename, 5)); }",
    "BEGIN { @s = @s + @t; }", "BEGIN { $x = ; }", "END { print(@x); }", "BEGIN {",
    "interval:s:1 { exit(); }", "uprobe:/bin/true:main { exit(); }", "BEGIN { exit() }",
]  # fmt: skip
COMMANDS = ["/nonexistent", "true", "/bin/true --x", "'unbalanced", "", "cd /", "FOO=1 nosuchcmd"]

text = st.text(max_size=12)
raw = st.binary(max_size=12).map(_raw)
noise = st.one_of(text, raw, st.sampled_from(["--", "-", "-e", "-c", "-p", "-o", "--json", "-h"]))
number = st.one_of(
    st.integers(min_value=-5, max_value=1 << 40).map(str),
    st.sampled_from(["0", "-1", "1e999", "nan", "inf", "0.01", "x", "99999999999"]),
)
definition = st.one_of(st.sampled_from(DEFS), text, raw)
program = st.one_of(st.sampled_from(PROGRAMS), text, raw)
command = st.one_of(st.sampled_from(COMMANDS), text, raw)
pid = st.one_of(st.sampled_from(["999999", "0", "-3", "1", str(os.getpid()), "abc"]), text)


@st.composite
def argv(draw: st.DrawFn, workdir: str) -> List[str]:
    out = os.path.join(workdir, "out")
    flags = {
        "--duration": number, "--buffer-size": number, "-p": pid, "-c": command,
        "--filter": st.one_of(text, raw, st.just("common_pid == 1")),
        "-o": st.sampled_from([out, "/nonexistent/dir/x", workdir, "/proc/version"]),
        "--reader": st.sampled_from(["raw", "text", "bogus"]),
        "--arch": st.sampled_from(["x86_64", "arm64", "vax"]),
    }  # fmt: skip
    kind = draw(st.sampled_from(["trace", "check", "probe", "record", "bpftrace", "file",
                                 "script", "random"]))  # fmt: skip
    args: List[str] = []
    if kind == "trace":
        args = ["trace"] + draw(st.lists(definition, min_size=0, max_size=2))
    elif kind == "check":
        args = ["check", "--kernel", draw(st.sampled_from(["6.1", "5.15", "6.12", "9", "x"]))]
        args += draw(st.lists(definition, min_size=0, max_size=2))
    elif kind == "probe":
        args = ["probe", "-n"] + draw(st.lists(definition, min_size=0, max_size=2))
    elif kind == "record":
        args = ["record", "-e", draw(definition), "-o", out]
    elif kind == "bpftrace":
        args = [draw(st.sampled_from(["--dry-run", "-f"])), "-e", draw(program)]
    elif kind == "file":
        data = draw(st.one_of(st.binary(max_size=80),
                              st.sampled_from(PROGRAMS).map(lambda p: p.encode())))  # fmt: skip
        path = os.path.join(workdir, "prog.bt")
        with open(path, "wb") as fh:
            fh.write(data)
        args = ["--dry-run", path] if draw(st.booleans()) else [path]
    elif kind == "script":
        args = [draw(st.sampled_from(["script", "report"])), "-i",
                draw(st.sampled_from([out, "/nonexistent", "/proc/version", workdir]))]  # fmt: skip
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        if kind == "random" or draw(st.integers(0, 4)) == 0:
            args.append(draw(noise))
        else:
            flag = draw(st.sampled_from(sorted(flags)))
            args += [flag, draw(flags[flag])]
    if kind == "record" and draw(st.booleans()):
        args += ["--", draw(command)]
    return args


_OK_START = re.compile(r"^(kprobes: error: |usage: |ERROR: |kprobes[\w ]*: |\S+:\d+:\d+(-\d+)?: ERROR: |"
                       r"[^\n]*: ERROR: |\{)")  # fmt: skip


def _run(args: List[str]) -> "tuple[int, str, str]":
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(args, Streams(out, err))
    return status, out.getvalue(), err.getvalue()


def _check(args: List[str]) -> None:
    status, out, err = _run(args)
    both = out + err
    assert "Traceback" not in both, (args, both)
    assert "kprobes: internal error" not in both, (args, both)
    assert status in DOCUMENTED, (args, status, both)
    if status not in (0, 3):
        assert err.strip() or out.strip(), (args, status)
        first = (err.strip() or out.strip()).splitlines()[0]
        assert _OK_START.match(first), (args, status, first)


@settings(max_examples=int(os.environ.get("KPROBES_FUZZ_EXAMPLES", "200")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])  # fmt: skip
@given(data=st.data())
def test_cli_never_tracebacks(workdir: Path, data: st.DataObject) -> None:
    _check(data.draw(argv(str(workdir))))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["trace", "--buffer-size", "99999999999", "t:sched:sched_switch"], "maximum here is"),
        (["trace", "--buffer-size", "0", "t:sched:sched_switch"], "at least 1"),
        (["trace", _raw(b"p:x /bin/b\xffash:0x10")], "byte 0xff at offset 10"),
        (["trace", "--filter", _raw(b"a\xff"), "t:sched:sched_switch"], "byte 0xff at offset 1"),
        (["-o", "/nonexistent/dir/x", "-e", "BEGIN { exit(); }"], "does not exist"),
        (["trace", "t:sched:sched_switch", "-c", "/nonexistent"], "cannot run '/nonexistent'"),
        (["trace", "t:sched:sched_switch", "-c", "nosuchcmd-kprobes arg"], "command not found"),
        (["record", "-e", "sched:sched_switch", "-o", "/tmp/kprobes-fuzz.data", "--",
          "/nonexistent/cmd"], "cannot run '/nonexistent/cmd'"),
        (["trace", "-p", "999999", "t:sched:sched_switch"], "No such process: 999999"),
        (["-p", "999999", "-e", "BEGIN { exit(); }"], "No such process: 999999"),
        (["trace", "--duration", "-1", "t:sched:sched_switch"], "greater than 0"),
        (["--duration", "0", "-e", "BEGIN { exit(); }"], "greater than 0"),
    ],
)
def test_each_bad_input_has_a_specific_error(args: List[str], needle: str) -> None:
    status, out, err = _run(args)
    assert status not in (0, 70, EXIT_KERNEL), (status, err)
    assert err.startswith("kprobes: error: "), err
    assert needle in err.splitlines()[0], err
    assert "\nhint: " in err
    assert "Traceback" not in err and "internal error" not in err


def test_raw_uprobe_offsets_are_checked_against_the_file(workdir: Path) -> None:
    from kprobes.backends.symbols.elf import check_file_offset
    from kprobes.errors import ELFError

    script = workdir / "script.sh"
    script.write_text("#!/bin/sh\n" + "echo not an ELF file\n" * 4)
    with pytest.raises(ELFError, match="not an ELF file") as e:
        check_file_offset(str(script), 0x10)
    assert e.value.hint
    with pytest.raises(ELFError, match="past the end of the file") as e:
        check_file_offset(sys.executable, 1 << 40)
    assert e.value.hint
    check_file_offset(sys.executable, 0x10)


def test_program_file_that_is_not_utf8_names_line_and_column(workdir: Path) -> None:
    path = workdir / "bad.bt"
    path.write_bytes(b'BEGIN {\n  printf("\xff");\n}\n')
    status, _out, err = _run([str(path)])
    assert status == 1
    assert err.startswith(f"kprobes: error: {path}:2:11: not valid UTF-8: byte 0xff at offset 18")
    assert "\nhint: " in err


def test_unexpected_exception_is_one_line_and_exit_70(monkeypatch: pytest.MonkeyPatch) -> None:
    from kprobes.cli import check

    def boom(args: List[str], streams: Streams) -> int:
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(check, "run", boom)
    monkeypatch.delenv("KPROBES_DEBUG", raising=False)
    status, out, err = _run(["check", "p:x foo"])
    assert status == 70
    assert err == ("kprobes: internal error: ZeroDivisionError: division by zero second line "
                   "(this is a bug; please report it, run with KPROBES_DEBUG=1 for the traceback)\n")  # fmt: skip
    monkeypatch.setenv("KPROBES_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        _run(["check", "p:x foo"])


def test_interrupts_are_not_internal_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from kprobes.cli import check

    class Stop(KeyboardInterrupt):
        exit_code = 143

    def ctrl_c(args: List[str], streams: Streams) -> int:
        raise KeyboardInterrupt

    def term(args: List[str], streams: Streams) -> int:
        raise Stop

    monkeypatch.setattr(check, "run", ctrl_c)
    assert _run(["check", "x"])[0] == 130
    monkeypatch.setattr(check, "run", term)
    status, _out, err = _run(["check", "x"])
    assert status == 143 and "internal error" not in err
