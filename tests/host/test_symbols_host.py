"""A real uprobe on an offset computed by the ELF reader fires exactly as often as the
function is called.  Proves the symbol -> file offset arithmetic on this kernel.

Needs root and tracefs with uprobe_events.  Creates ``kpsym<pid>/probe1`` and a
private instance ``kpsym<pid>``, and removes both whatever happens.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kprobes.backends.symbols.elf import ELFFile, resolve_uprobe

pytestmark = pytest.mark.host

TRACEFS = "/sys/kernel/tracing"

PROG = r"""
#include <stdio.h>
int kp_lib_fn(int x);
volatile int sink;
__attribute__((noinline)) int kp_target(int x) { sink += x; return x * 3 + 1; }
__attribute__((noinline)) int kp_other(int x) { sink -= x; return x + 1; }
int main(void) {
    int s = 0;
    for (int i = 0; i < TARGET_CALLS; i++) s += kp_target(i);
    for (int i = 0; i < OTHER_CALLS; i++) s += kp_other(i);
    for (int i = 0; i < LIB_CALLS; i++) s += kp_lib_fn(i);
    printf("%d\n", s);
    return 0;
}
"""
LIB = "__attribute__((noinline)) int kp_lib_fn(int x) { return x + 7; }\n"

CALLS = {"kp_target": 7, "kp_other": 3, "kp_lib_fn": 5}


def require(reason: str) -> None:
    if os.environ.get("KPROBES_REQUIRE_KERNEL") == "1":
        pytest.fail(reason)
    print(f"skipping: {reason}")
    pytest.skip(reason)


def _preconditions() -> None:
    if os.geteuid() != 0:
        require("not root")
    if not os.path.exists(os.path.join(TRACEFS, "uprobe_events")):
        require(f"{TRACEFS}/uprobe_events missing (tracefs not mounted or no CONFIG_UPROBE_EVENTS)")
    if not os.path.isdir(os.path.join(TRACEFS, "instances")):
        require("tracefs has no instances directory")
    if shutil.which("gcc") is None:
        require("no gcc to build the test program")


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    _preconditions()
    d = tmp_path_factory.mktemp("uprobe")
    (d / "prog.c").write_text(PROG)
    (d / "lib.c").write_text(LIB)
    lib = d / "libkpmoved.so"
    # -Ttext-segment moves the library's virtual addresses away from its file offsets
    subprocess.run(
        [
            "gcc",
            "-O1",
            "-shared",
            "-fPIC",
            "-Wl,-Ttext-segment=0x10000",
            "-o",
            str(lib),
            str(d / "lib.c"),
        ],
        check=True,
        capture_output=True,
    )
    defs = [
        f"-D{k}={v}"
        for k, v in (
            ("TARGET_CALLS", CALLS["kp_target"]),
            ("OTHER_CALLS", CALLS["kp_other"]),
            ("LIB_CALLS", CALLS["kp_lib_fn"]),
        )
    ]
    out = {"lib": str(lib)}
    for name, flags in (
        ("nopie", ["-no-pie", "-fno-pie"]),
        ("pie_moved", ["-pie", "-fPIE", "-Wl,--section-start=.text=0x30000"]),
    ):
        exe = d / name
        subprocess.run(
            [
                "gcc",
                "-O1",
                *defs,
                *flags,
                "-o",
                str(exe),
                str(d / "prog.c"),
                "-L",
                str(d),
                "-lkpmoved",
                f"-Wl,-rpath,{d}",
            ],
            check=True,
            capture_output=True,
        )
        out[name] = str(exe)
    return out


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _count_hits(binary: str, target: str, spec: str) -> int:
    """Probe ``spec`` in ``target``, run ``binary`` once, return the number of hits."""
    tag = f"kpsym{os.getpid()}"
    loc = resolve_uprobe(target, spec)
    definition = f"p:{tag}/probe1 {loc.render()}"
    inst = os.path.join(TRACEFS, "instances", tag)
    enable = os.path.join(inst, "events", tag, "probe1", "enable")
    created = made_instance = enabled = False
    try:
        try:
            _write(os.path.join(TRACEFS, "uprobe_events"), definition)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV, errno.EOPNOTSUPP):
                require(f"kernel refused a uprobe event: {exc}")
            raise
        created = True
        os.mkdir(inst)
        made_instance = True
        _write(enable, "1")
        enabled = True
        run = subprocess.run([binary], capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        _write(enable, "0")
        enabled = False
        with open(os.path.join(inst, "trace")) as fh:
            trace = fh.read()
        # e.g. "  nopie-1234  [001] ..... 12.345678: probe1: (0x401126)"
        return sum(
            1
            for line in trace.splitlines()
            if not line.startswith("#") and re.search(r"\sprobe1: \(", line)
        )
    finally:
        if enabled:
            try:
                _write(enable, "0")
            except OSError:
                pass
        if made_instance:
            try:
                os.rmdir(inst)
            except OSError:
                pass
        if created:
            _write(os.path.join(TRACEFS, "uprobe_events"), f"-:{tag}/probe1")


@pytest.mark.parametrize("build", ["nopie", "pie_moved"])
@pytest.mark.parametrize("func", ["kp_target", "kp_other"])
def test_uprobe_on_resolved_offset_counts_calls(
    programs: dict[str, str], build: str, func: str
) -> None:
    exe = programs[build]
    with ELFFile(exe) as elf:
        loc = elf.locate(func)
        assert loc.offset != loc.vaddr  # the two would be confused otherwise
    assert _count_hits(exe, exe, func) == CALLS[func]


def test_uprobe_in_shared_library(programs: dict[str, str]) -> None:
    lib = programs["lib"]
    with ELFFile(lib) as elf:
        assert elf.is_shared_object
        loc = elf.locate("kp_lib_fn")
        assert loc.offset != loc.vaddr
    assert _count_hits(programs["nopie"], lib, "kp_lib_fn") == CALLS["kp_lib_fn"]


def test_nothing_left_behind(programs: dict[str, str]) -> None:
    tag = f"kpsym{os.getpid()}"
    assert not os.path.exists(os.path.join(TRACEFS, "instances", tag))
    with open(os.path.join(TRACEFS, "uprobe_events")) as fh:
        assert tag not in fh.read()
    assert Path(programs["nopie"]).exists()
