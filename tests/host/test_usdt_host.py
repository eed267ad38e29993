"""USDT probes on the host (a USDT probe is a uprobe), on both engines.

The program of :mod:`tests.usdt_prog` is built here with gcc.  Every argument
of every probe is checked against the value the program computed: sizes 1, 2,
4 and 8 bytes, signed and unsigned, in a register, in memory off ``%rbp``, a
constant, a ``%rip``-relative global and (BPF only: tracefs fetchargs cannot
add two registers) ``base + index * 8``; ``str()`` of a stack string.  The
semaphore-gated probe fires only while it is traced: the program reports its
semaphore 0 when run alone, and when another of its probes is traced.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from typing import List

import pytest

from tests.conftest import require, tracefs_root
from tests.helpers import PY, ROOT, run_cli_subprocess, session_leftovers, wait_for
from tests.usdt_prog import build, expected_rounds, missing

pytestmark = pytest.mark.host

N = 3
ENGINES = ("tracefs", "bpf")


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> str:
    why = missing()
    if why:
        require(why)
    root = tracefs_root()
    if root is None or not os.path.exists(os.path.join(root, "uprobe_events")):
        require("this kernel has no uprobe_events")
    return build(str(tmp_path_factory.mktemp("usdt")))


def program(path: str, engine: str) -> str:
    index = ", arg3" if engine == "bpf" else ""
    return (
        f'usdt:{path}:kpt:sizes {{ printf("sizes %d %d %d %lu\\n", arg0, arg1, arg2, arg3); }}\n'
        f'U:{path}:kpt:places {{ printf("places %s %d %d %d{" %d" if index else ""}\\n", '
        f"str(arg0), arg1, arg2, arg4{index}); }}\n"
        f'usdt:{path}:frame {{ printf("frame %ld %d %d %s\\n", arg0, arg1, arg2, probe); }}\n'
        f'usdt:{path}:kpt:gated {{ @gated = count(); printf("gated %d\\n", arg0); }}\n'
    )


def expected_lines(path: str, engine: str) -> List[str]:
    out = []
    for r in expected_rounds(N):
        u8, s16, s32, u64 = r["sizes"]
        out.append(f"sizes {u8} {s16} {s32} {u64}")
        msg, const, counter, table, vol = r["places"]
        extra = f" {table}" if engine == "bpf" else ""
        out.append(f"places {msg} {const} {counter} {vol}{extra}")
        a, b, c = r["frame"]
        out.append(f"frame {a} {b} {c} usdt:{path}:kpt:frame")
        out.append(f"gated {r['gated'][0]}")
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_arguments_and_semaphore(prog: str, engine: str) -> None:
    r = run_cli_subprocess(["--engine", engine, "-e", program(prog, engine), "-c", f"{prog} {N}"])
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.split(" ", 1)[0] in
             ("sizes", "places", "frame", "gated")]
    assert lines == expected_lines(prog, engine)
    assert f"semaphore=1 gated={N}" in r.stdout  # the kernel counted the semaphore up
    assert f"@gated: {N}" in r.stdout
    assert not session_leftovers()


def test_semaphore_zero_when_not_traced(prog: str) -> None:
    alone = subprocess.run([prog, str(N)], capture_output=True, text=True, check=True)
    assert alone.stdout.strip() == "semaphore=0 gated=0"
    # another probe of the program traced: the gated one stays off
    r = run_cli_subprocess(["-e", f"usdt:{prog}:kpt:sizes {{ @n = count(); }}", "-c", f"{prog} {N}"])
    assert r.returncode == 0, r.stderr
    assert "semaphore=0 gated=0" in r.stdout and f"@n: {N}" in r.stdout


@pytest.mark.parametrize("engine", ENGINES)
def test_attach_to_running_process(prog: str, engine: str) -> None:
    """``-p PID``: the semaphore of an already running process is counted up too."""
    child = subprocess.Popen([prog, str(N), "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    tracer = None
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        tracer = subprocess.Popen(
            [PY, "-m", "kprobes.cli", "--engine", engine, "-p", str(child.pid), "-e",
             f'usdt:{prog}:kpt:gated {{ printf("gated %d\\n", arg0); }}'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert tracer.stdout is not None
        first = tracer.stdout.readline()
        assert first.startswith("Attaching 1 probe"), first + (tracer.stderr.read() if tracer.stderr else "")
        # "Attaching" comes before the arming ends (as in bpftrace): wait for the counter
        assert wait_for(lambda: semaphore(child.pid, prog) == 1, 30), semaphore(child.pid, prog)
        out, _ = child.communicate("go\n", timeout=30)
        assert out.splitlines()[0] == f"semaphore=1 gated={N}"
        # -p only filters: the tracer runs until told to stop, once it has printed the hits
        watchdog = threading.Timer(60, tracer.kill)
        watchdog.start()
        got = [tracer.stdout.readline() for _ in range(N)]
        watchdog.cancel()
        assert got == [f"gated {i}\n" for i in range(N)]
        tracer.send_signal(signal.SIGINT)
        _rest, err = tracer.communicate(timeout=60)
        assert tracer.returncode == 0, err
    finally:
        for p in (child, tracer):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    time.sleep(0.1)
    again = subprocess.run([prog, "1"], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "semaphore=0 gated=0"


def semaphore(pid: int, path: str) -> int:
    """The gated probe's semaphore in process ``pid``, read through /proc/PID/mem."""
    from kprobes.backends.symbols.usdt import find_usdt

    site = find_usdt(path, "kpt", "gated")[0]
    real = os.path.realpath(path)
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == real and int(fields[2], 16) == 0:
                base = int(fields[0].split("-")[0], 16)
                break
        else:
            return -1
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(base + site.semaphore)  # a PIE links at 0: runtime = base + vaddr
        return int.from_bytes(mem.read(2), "little")


def test_listing_and_errors(prog: str) -> None:
    from tests.helpers import run_cli

    rc, out, err = run_cli(["-l", f"usdt:{prog}:*"])
    assert rc == 0, err
    assert out.splitlines() == [f"usdt:{prog}:kpt:{n}" for n in ("frame", "gated", "places", "sizes")]
    rc, out, err = run_cli(["-l", f"usdt:{prog}:kpt:s*"])
    assert out.splitlines() == [f"usdt:{prog}:kpt:sizes"]
    # a name that is not there: the error lists what is
    rc, out, err = run_cli(["-e", f"usdt:{prog}:kpt:nope {{ }}"])
    assert rc != 0 and "no USDT probe kpt:nope" in err and "kpt:sizes" in err
    # base + index * scale cannot be a tracefs fetcharg: refused before arming, with the fix
    rc, out, err = run_cli(["--engine", "tracefs", "--dry-run", "-e",
                            f'usdt:{prog}:kpt:places {{ printf("%d\\n", arg3); }}'])
    assert rc != 0 and "base + index * scale" in err and "--engine bpf" in err
    # an argument the site does not have
    for engine in ENGINES:
        rc, out, err = run_cli(["--engine", engine, "--dry-run", "-e",
                                f'usdt:{prog}:kpt:gated {{ printf("%d\\n", arg1); }}'])
        assert rc != 0 and "arg1" in err and "1 argument" in err, err



@pytest.mark.parametrize("engine", ENGINES)
def test_semaphore_by_hand_without_kernel_counters(prog: str, engine: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel without uprobe reference counters (< 4.20) is played by hiding them: the
    semaphore of the ``-p`` process is then counted up through /proc/PID/mem while traced
    and back down at the end; without ``-p`` the probe is refused with the reason."""
    from kprobes.backends.symbols import usdt as usdt_mod
    from tests.helpers import run_cli

    monkeypatch.setattr(usdt_mod, "kernel_ref_ctr", lambda tracefs_root=None: False)
    text = f'usdt:{prog}:kpt:gated {{ printf("gated %d\\n", arg0); }}'
    rc, _out, err = run_cli(["--engine", engine, "-e", text, "-c", f"{prog} 1"])
    assert rc != 0 and "semaphore" in err and "-p PID" in err
    child = subprocess.Popen([prog, str(N), "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    result: List[object] = []
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        assert child.stdin is not None
        t = threading.Thread(target=lambda: result.append(run_cli(
            ["--engine", engine, "-p", str(child.pid), "--duration", "2", "-e", text])))
        t.start()
        assert wait_for(lambda: semaphore(child.pid, prog) == 1, 30), semaphore(child.pid, prog)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == f"semaphore=1 gated={N}"
        t.join(60)
        assert not t.is_alive()
        assert semaphore(child.pid, prog) == 0  # given back when the tracer ended
        out, _ = child.communicate("end\n", timeout=30)
        assert out.strip() == "semaphore=0"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    rc, out, err = result[0]  # type: ignore[misc]
    assert rc == 0, err
    assert re.findall(r"^gated (\d+)$", out, re.M) == [str(i) for i in range(N)]
    assert not session_leftovers()


PY311 = "/usr/bin/python3.11"
PY_PROGRAM = (f'usdt:{PY311}:python:gc__start /arg0 > 0/ {{ printf("gc %d\\n", arg0); }} '
              f'usdt:{PY311}:python:import__find__load__start /str(arg0) == "json"/ '
              '{ printf("import %s\\n", str(arg0)); }')


@pytest.mark.parametrize("engine", ["bpf"])  # the arguments are checked on both above
def test_system_python(engine: str, tmp_path: "os.PathLike[str]") -> None:
    """Debian's python3.11: a stripped, non-PIE executable whose probes are all gated by
    semaphores; gc__start's generation is on the stack (``-4@112(%rsp)``)."""
    from kprobes.backends.symbols.usdt import find_usdt

    if not os.path.exists(PY311) or not find_usdt(PY311, "python", "gc__start"):
        require(f"{PY311} with USDT notes is needed")
    script = os.path.join(str(tmp_path), "gc.py")
    with open(script, "w") as f:
        f.write("import gc\ngc.collect(1)\nimport json\ngc.collect(2)\n")
    r = run_cli_subprocess(["--engine", engine, "-e", PY_PROGRAM, "-c", f"{PY311} {script}"])
    assert r.returncode == 0, r.stderr
    got = [ln for ln in r.stdout.splitlines() if ln.startswith(("gc ", "import "))]
    assert got[:3] == ["gc 1", "import json", "gc 2"], r.stdout


THROWER = r"""
#include <cstdio>
#include <stdexcept>
int main() {
    int caught = 0;
    for (int i = 0; i < 3; i++) {
        try { throw std::runtime_error("kp"); } catch (const std::exception &) { caught++; }
    }
    std::printf("caught=%d\n", caught);
    return 0;
}
"""


@pytest.mark.parametrize("engine", ["tracefs"])  # the BPF attach path is the same uprobe
def test_shared_library_by_name(engine: str, tmp_path: "os.PathLike[str]") -> None:
    """``usdt:libstdc++:...``: a library found by name (ld.so.cache), its probes hit from a
    program that maps it; the provider may be left out (``usdt:libstdc++:catch``)."""
    import shutil

    from kprobes.backends.symbols.usdt import find_usdt

    if shutil.which("g++") is None:
        require("g++ is needed to build the C++ program")
    if not find_usdt("libstdc++", "libstdcxx", "throw"):
        require("this libstdc++ has no USDT notes")
    src, exe = os.path.join(str(tmp_path), "t.cc"), os.path.join(str(tmp_path), "thrower")
    with open(src, "w") as f:
        f.write(THROWER)
    subprocess.run(["g++", "-O1", "-o", exe, src], check=True)
    r = run_cli_subprocess(["--engine", engine, "-e", "usdt:libstdc++:libstdcxx:throw /pid == cpid/ "
                            "{ @throws = count(); } usdt:libstdc++:catch /pid == cpid/ { @catches = count(); }",
                            "-c", exe])
    assert r.returncode == 0, r.stderr
    assert "caught=3" in r.stdout and "@throws: 3" in r.stdout and "@catches: 3" in r.stdout, r.stdout


def test_trace_definitions(prog: str) -> None:
    """``kprobes trace 'usdt:BINARY:[PROVIDER:]NAME'``: a uprobe on the site, every argument a
    fetcharg can read as argN, the semaphore counted; ``p:EVENT usdt:...`` names the event."""
    r = run_cli_subprocess(["trace", f"usdt:{prog}:kpt:sizes", f"p:gt U:{prog}:gated",
                            "-c", f"{prog} {N}"])
    assert r.returncode == 0, r.stderr
    assert f"semaphore=1 gated={N}" in r.stdout
    sizes = re.findall(r"kpt_sizes: \(0x[0-9a-f]+\) (.*)$", r.stdout, re.M)
    assert sizes == [" ".join(f"arg{j}={v}" for j, v in enumerate(x["sizes"]))
                     for x in expected_rounds(N)]
    assert re.findall(r" gt: \(0x[0-9a-f]+\) arg0=(\d+)$", r.stdout, re.M) == [str(i) for i in range(N)]
    r = run_cli_subprocess(["trace", f"usdt:{prog}:kpt:*"])
    assert r.returncode != 0 and "matches 4 USDT probe sites" in r.stderr
