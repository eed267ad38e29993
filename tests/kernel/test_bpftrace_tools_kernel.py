"""bpftrace 0.17's own tools (Debian ships them as /usr/sbin/*.bt) run unchanged under kprobes.

Every (tool, engine) of :data:`RUNS` (the "works" cells of docs/bpftrace-tools.md, checked
by tests/unit/test_bpftrace_tools.py) runs as ``kprobes --engine ENGINE /usr/sbin/TOOL.bt``,
the exact file, all at once in two batches (a guest under TCG starts a Python process in
~4 s of CPU): each batch waits for every tool's ``Attaching N probes...`` and header, runs
one workload (opens, stats, sync, kill -0, setuid, getaddrinfo, a localhost TCP
connection, a nanosleep, an fsync'd write), stops the tools with SIGINT as Ctrl-C does and
checks the exit status 0, the header line (the tool's first BEGIN printf) and, for the
tools in :data:`EVENTS`, the workload's own event.  bpftrace 0.17 runs the tools of
:data:`WITH_BPFTRACE` in the same batch: the same event line (time columns aside).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tests.conftest import require

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
WORK = Path("/tmp/kpbt")
TOOLS = Path("/usr/sbin")

#: Tools that run unchanged under kprobes on both kernels, per engine (docs/bpftrace-tools.md).
#: Under TCG each kprobes process costs ~8 s of guest CPU: the timed test runs the tools
#: whose workload events it checks (the other tools that run are "runs" rows of the doc).
BPF_TOOLS = (
    "cpuwalk dcsnoop gethostlatency killsnoop opensnoop pidpersec runqlat runqlen setuids statsnoop "
    "syncsnoop syscount tcpaccept tcpconnect tcplife tcpsynbl vfscount"
).split()
TRACEFS_TOOLS = ["killsnoop", "setuids", "syncsnoop", "tcplife"]
BATCH = 8
RUNS: List[Tuple[str, str]] = [(t, "bpf") for t in BPF_TOOLS] + [(t, "tracefs") for t in TRACEFS_TOOLS]
WITH_BPFTRACE = ("opensnoop",)

#: stdout must match: the workload's events (or, for summaries, a non-empty map).
EVENTS: Dict[str, str] = {
    "opensnoop": r"\bcat\s+\d+\s+0 " + re.escape(f"{WORK}/marker-open") + "$",
    "statsnoop": r"\bstat\s+0 " + re.escape(f"{WORK}/marker-stat") + "$",
    "dcsnoop": r"\bcat\s+M missing-dcsnoop$",
    "syncsnoop": r"\bsync\s+tracepoint:syscalls:sys_enter_sync$",
    "killsnoop": r"\bsh\s+0\s+(\d+)\s+0$",
    "setuids": r"\bsetuid\s+uid=0 \(0\)$",
    "gethostlatency": r"\s\d+ localhost$",
    "tcpconnect": r"127\.0\.0\.1\s+\d+\s+127\.0\.0\.1\s+(\d+)",
    "tcpaccept": r"127\.0\.0\.1\s+\d+\s+127\.0\.0\.1\s+(\d+)",
    "tcplife": r"127\.0\.0\.1\s+\d+\s+127\.0\.0\.1\s+\d+\s+\d+\s+\d+\s+\d+$",
    "tcpsynbl": r"^@backlog\[\d+\]:$",
    "vfscount": r"^@\[vfs_open\]: [1-9]\d*$",
    "vfsstat": r"^@\[vfs_read\]: [1-9]\d*$",
    "syscount": r"^@process\[\w+\]: [1-9]\d*$",
    "runqlat": r"^@usecs:$",
    "cpuwalk": r"^@cpu:$",
    "runqlen": r"^@runqlen:$",
    "pidpersec": r"PIDs/sec: @: [1-9]",
}

WORKLOAD_PY = """
import ctypes, os, socket, threading
libc = ctypes.CDLL(None, use_errno=True)
class TS(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
libc.syscall(35, ctypes.byref(TS(0, 20000000)), None)   # nanosleep
os.setuid(0)
socket.getaddrinfo("localhost", 80)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4)
c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()
c.sendall(b"x" * 3000); a.recv(4096); c.close(); a.close(); srv.close()
"""
WORKLOAD_SH = f"""
cat {WORK}/marker-open > /dev/null
stat {WORK}/marker-stat > /dev/null
cat {WORK}/missing-dcsnoop 2>/dev/null
sync
kill -0 $$
{PY} {WORK}/w.py
dd if=/dev/zero of={WORK}/dd bs=4k count=8 conv=fsync 2>/dev/null
sleep 1.2
"""


def header_of(tool: str) -> str:
    """The first line the tool's BEGIN prints when its first printf has no conversions."""
    text = (TOOLS / f"{tool}.bt").read_text()
    m = re.search(r'printf\("((?:[^"\\]|\\.)*)"', text)
    return m.group(1).split("\\n")[0] if m and "%" not in m.group(1) else ""


class Run:
    def __init__(self, tool: str, engine: str) -> None:
        self.tool, self.engine = tool, engine
        self.out_path = WORK / f"{tool}.{engine}.out"
        self.err_path = WORK / f"{tool}.{engine}.err"
        cmd = (["bpftrace"] if engine == "bpftrace"
               else [PY, "-m", "kprobes.cli", "--engine", engine]) + [str(TOOLS / f"{tool}.bt")]
        with open(self.out_path, "w") as o, open(self.err_path, "w") as e:
            self.proc = subprocess.Popen(cmd, stdout=o, stderr=e, cwd=ROOT)
        self.rc: int | None = None

    def ready(self) -> bool:
        text = self.out_path.read_text(errors="replace")
        return self.proc.poll() is not None or ("Attaching" in text and text.count("\n") >= 2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def finish(self) -> None:
        try:
            self.rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.rc = -9

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")


def _batch(jobs: List[Tuple[str, str]]) -> List[Run]:
    """Start the tools, wait for their headers, run the workload once, stop them (SIGINT)."""
    runs = [Run(tool, engine) for tool, engine in jobs]
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and not all(r.ready() for r in runs):
            time.sleep(0.2)
        subprocess.run(["sh", str(WORK / "w.sh")], timeout=60, check=True)
    finally:
        for r in runs:
            r.stop()
        for r in runs:
            r.finish()
    return runs


@pytest.fixture(scope="module")
def results() -> Dict[Tuple[str, str], Run]:
    if not TOOLS.joinpath("opensnoop.bt").exists():
        require("bpftrace's tools are not installed (/usr/sbin/*.bt, Debian's bpftrace package)")
    if shutil.which("bpftrace") is None:
        require("bpftrace is not installed (apt-get install bpftrace)")
    WORK.mkdir(exist_ok=True)
    (WORK / "marker-open").write_text("x")
    (WORK / "marker-stat").write_text("x")
    (WORK / "w.py").write_text(WORKLOAD_PY)
    (WORK / "w.sh").write_text(WORKLOAD_SH)
    # bpftrace first, next to kprobes' run of the same tool: the same workload, the same events
    jobs = [(t, "bpftrace") for t in WITH_BPFTRACE] + RUNS
    done: Dict[Tuple[str, str], Run] = {}
    t0 = time.monotonic()
    # batches of BATCH processes: a 1 GiB guest holds that many Python tracers at once
    for i in range(0, len(jobs), BATCH):
        done.update({(r.tool, r.engine): r for r in _batch(jobs[i:i + BATCH])})
    print(f"{len(jobs)} tool runs in {time.monotonic() - t0:.1f} s")
    return done


@pytest.mark.parametrize("tool, engine", RUNS, ids=[f"{t}-{e}" for t, e in RUNS])
def test_tool_runs_unchanged(results: Dict[Tuple[str, str], Run], tool: str, engine: str) -> None:
    r = results[(tool, engine)]
    out = r.out
    assert r.rc == 0, f"{tool} on {engine}: exit {r.rc}\nstdout:\n{out[-2000:]}\nstderr:\n{r.err[-2000:]}"
    lines = out.splitlines()
    assert lines and re.fullmatch(r"Attaching \d+ probes?\.\.\.", lines[0]), out[:500]
    head = header_of(tool)
    if head:
        assert head in lines[1:3], f"{tool}: header {head!r} missing:\n{out[:500]}"
    want = EVENTS.get(tool)
    if want is not None:
        assert any(re.search(want, ln.rstrip()) for ln in lines), \
            f"{tool} on {engine}: no line matches {want!r}:\n{out[-3000:]}\nstderr:\n{r.err[-1000:]}"


@pytest.mark.parametrize("tool", WITH_BPFTRACE)
def test_same_event_lines_as_bpftrace(results: Dict[Tuple[str, str], Run], tool: str) -> None:
    bt, kp = results[(tool, "bpftrace")], results[(tool, "bpf")]
    assert bt.rc == 0, f"bpftrace {tool}: exit {bt.rc}: {bt.err[-1000:]}"
    want = re.compile(EVENTS[tool])

    def events(out: str) -> List[str]:
        lines = [ln.rstrip() for ln in out.splitlines() if want.search(ln.rstrip())]
        if tool == "tcplife":  # MS: each tool takes its own nsecs
            lines = [ln.rsplit(None, 1)[0] for ln in lines]
        return sorted(lines)

    assert events(bt.out), bt.out[-2000:]
    assert events(kp.out) == events(bt.out)
    assert bt.out.splitlines()[1:3] == kp.out.splitlines()[1:3]  # the header lines
