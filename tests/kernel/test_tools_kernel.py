"""``kprobes tools``: each tool on a workload whose answer is known, values checked.

One Python workload script (written once for the module) does one job per
mode and names itself first (``/proc/self/comm``), so each tool runs with
``-n COMM -c 'python3 wl.py MODE'`` and sees that job's events only:

* open: opens two known files, a missing one and creates one -> opensnoop
  prints the paths, fds, -ENOENT and the create flags; trace prints the paths.
* read: N one-byte os.read() calls -> vfsreadlat's histogram totals N; argdist
  -H sees count 1 N times; funccount counts N vfs_read; stackcount's stacks
  total N and go through ksys_read.
* kill: signals a child (SIGTERM, 0) and a pid that does not exist (-ESRCH)
  -> killsnoop prints sender, target, signal, result.
* alloc: 128 MiB of pipe buffers: one kcalloc of 1.25 MiB, an order-9 page
  allocation -> bigalloc, on __alloc_pages or (6.10+) __alloc_pages_noprof.
* dns: UDP sendto 127.0.0.1:53 twice, a connected UDP socket to
  127.0.0.2:53, a datagram to port 5353 (not DNS), a TCP connection to a
  listener on 127.0.0.1:53 sending 5 bytes -> dnssnoop's four lines;
  tcpconnect's one connection.
Tools run on ``--engine auto`` (BPF on these kernels); opensnoop, killsnoop,
bigalloc and dnssnoop also on ``--engine tracefs`` (vfsreadlat is the seed's
vfs_read program, which tests/kernel/test_seed_bpftrace.py runs on tracefs;
every vfs_read return of the guest goes through Python there: slow under TCG).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tests.helpers import run_cli, session_leftovers

pytestmark = pytest.mark.kernel

PY = sys.executable
N_READS = 40

WORKLOAD = r'''
import fcntl, os, socket, subprocess, sys, time
mode, out = sys.argv[1], sys.argv[2]
def name(comm):
    with open("/proc/self/comm", "w") as f:
        f.write(comm)
if mode == "open":
    name("kptopen")
    for p in (out + "/a.txt", out + "/b.txt", out + "/missing.txt"):
        try:
            os.close(os.open(p, os.O_RDONLY))
        except OSError:
            pass
    os.close(os.open(out + "/new.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
elif mode == "read":
    fd = os.open(out + "/a.txt", os.O_RDONLY)
    name("kptread")
    for _ in range(int(sys.argv[3])):
        os.read(fd, 1)
elif mode == "kill":
    child = subprocess.Popen(["sleep", "30"])
    gone = 4000000
    while os.path.exists(f"/proc/{gone}"):
        gone -= 1
    with open(out + "/pids", "w") as f:
        f.write(f"{os.getpid()} {child.pid} {gone}")
    name("kptkill")
    os.kill(child.pid, 15)
    try:
        os.kill(gone, 10)
    except ProcessLookupError:
        pass
    child.wait()
elif mode == "alloc":
    r, w = os.pipe()
    name("kptalloc")
    fcntl.fcntl(w, 1031, 128 << 20)
elif mode == "dns":
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 53))
    srv.listen(1)
    name("kptdns")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"q1", ("127.0.0.1", 53))
    u.sendto(b"q22", ("127.0.0.1", 53))
    u.sendto(b"x", ("127.0.0.1", 5353))
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.connect(("127.0.0.2", 53))
    c.send(b"q4444")
    t = socket.create_connection(("127.0.0.1", 53))
    t.sendall(b"hello")
    conn, _ = srv.accept()
    assert conn.recv(16) == b"hello"
'''


@pytest.fixture(scope="module")
def wl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tools")
    (d / "wl.py").write_text(WORKLOAD)
    (d / "a.txt").write_text("a" * 100)
    (d / "b.txt").write_text("b")
    return d


def tool(wl: Path, args: List[str], mode: str, *extra: str) -> Tuple[str, str]:
    """Run ``kprobes tools ARGS -c 'python3 wl.py MODE DIR ...'``; (stdout, stderr)."""
    cmd = " ".join([PY, str(wl / "wl.py"), mode, str(wl), *extra])
    rc, out, err = run_cli(["tools", *args, "-c", cmd])
    assert rc == 0, err
    assert session_leftovers() == []
    return out, err


def rows(out: str, comm: str) -> List[List[str]]:
    return [ln.split() for ln in out.splitlines() if len(ln.split()) > 2 and ln.split()[1] == comm]


def hist_total(out: str) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for ln in out.splitlines():
        m = re.match(r"^(\[.*?[\])])\s+(\d+) \|", ln)
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.mark.parametrize("engine", ["auto", "tracefs"])
def test_opensnoop_paths_flags_and_results(wl: Path, engine: str) -> None:
    out, _ = tool(wl, ["opensnoop", "-n", "kptopen", "--engine", engine], "open")
    got = {r[4]: (int(r[2]), int(r[3], 8)) for r in rows(out, "kptopen")}
    assert set(got) == {f"{wl}/a.txt", f"{wl}/b.txt", f"{wl}/missing.txt", f"{wl}/new.txt"}, out
    assert got[f"{wl}/a.txt"][0] >= 3 and got[f"{wl}/b.txt"][0] >= 3
    assert got[f"{wl}/missing.txt"][0] == -2  # ENOENT
    assert got[f"{wl}/a.txt"][1] & 0o3 == os.O_RDONLY
    want = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    assert got[f"{wl}/new.txt"][1] & want == want, oct(got[f"{wl}/new.txt"][1])


def test_trace_bcc_form_prints_the_opened_paths(wl: Path) -> None:
    out, _ = tool(wl, ["trace", 'do_sys_openat2 "%s", arg2', "-n", "kptopen"], "open")
    paths = [r[-1] for r in (ln.split() for ln in out.splitlines())
             if len(r) == 5 and r[2] == "kptopen" and r[3] == "do_sys_openat2"]
    assert paths == [f"{wl}/a.txt", f"{wl}/b.txt", f"{wl}/missing.txt", f"{wl}/new.txt"], out


def test_vfsreadlat_histogram_totals_the_reads(wl: Path) -> None:
    out, _ = tool(wl, ["vfsreadlat", "-n", "kptread"], "read", str(N_READS))
    assert "@usecs: \n" in out, out
    assert sum(hist_total(out).values()) == N_READS, out


def test_funclatency_in_ns_argdist_funccount_stackcount_count_the_reads(wl: Path) -> None:
    out, _ = tool(wl, ["funclatency", "vfs_read", "--unit", "ns", "-n", "kptread"], "read",
                  str(N_READS))
    assert "@nsecs: \n" in out and sum(hist_total(out).values()) == N_READS, out
    out, _ = tool(wl, ["argdist", "-H", "vfs_read:arg2", "-n", "kptread"], "read", str(N_READS))
    assert hist_total(out) == {"[1]": N_READS}, out
    out, _ = tool(wl, ["funccount", "vfs_rea*", "--top", "3", "-n", "kptread"], "read",
                  str(N_READS))
    assert f"@[kprobe:vfs_read]: {N_READS}\n" in out, out
    out, _ = tool(wl, ["stackcount", "vfs_read", "-n", "kptread"], "read", str(N_READS))
    counts = [int(c) for c in re.findall(r"^\]: (\d+)$", out, re.M)]
    assert sum(counts) == N_READS and "ksys_read" in out, out


@pytest.mark.parametrize("engine", ["auto", "tracefs"])
def test_killsnoop_sender_target_signal_result(wl: Path, engine: str) -> None:
    out, _ = tool(wl, ["killsnoop", "-n", "kptkill", "--engine", engine, "-f", "json"], "kill")
    sender, child, gone = (wl / "pids").read_text().split()
    lines = [json.loads(ln)["data"] for ln in out.splitlines()
             if ln.startswith("{") and json.loads(ln)["type"] == "printf"]
    got = [ln.split() for ln in lines if "kptkill" in ln]
    assert got == [[sender, "kptkill", child, "15", "0"], [sender, "kptkill", gone, "10", "-3"]], out


@pytest.mark.parametrize("engine", ["auto", "tracefs"])
def test_bigalloc_sees_the_order_9_allocation(wl: Path, engine: str) -> None:
    rc, prog, err = run_cli(["tools", "bigalloc", "--program"])
    assert rc == 0, err
    with open("/proc/kallsyms") as fh:
        names = {ln.split()[2] for ln in fh if len(ln.split()) > 2}
    func = "__alloc_pages" if "__alloc_pages" in names else "__alloc_pages_noprof"
    assert f"\nkprobe:{func}\n" in prog
    out, _ = tool(wl, ["bigalloc", "-n", "kptalloc", "--engine", engine], "alloc")
    got = [(int(r[2]), int(r[3])) for r in rows(out, "kptalloc")]
    assert got == [(9, 2048)], out


@pytest.mark.parametrize("engine", ["auto", "tracefs"])
def test_dnssnoop_udp_and_tcp_sends_to_53_and_tcpconnect(wl: Path, engine: str) -> None:
    out, _ = tool(wl, ["dnssnoop", "-n", "kptdns", "--engine", engine], "dns")
    got = [r[2:] for r in rows(out, "kptdns")]
    assert got == [["UDP", "127.0.0.1", "53", "2"], ["UDP", "127.0.0.1", "53", "3"],
                   ["UDP", "127.0.0.2", "53", "5"], ["TCP", "127.0.0.1", "53", "5"]], out
    out, _ = tool(wl, ["tcpconnect", "-n", "kptdns", "--engine", engine], "dns")
    assert [r[2:] for r in rows(out, "kptdns")] == [["127.0.0.1", "127.0.0.1", "53"]], out


def test_execsnoop_file_arguments_and_result(wl: Path) -> None:
    rc, out, err = run_cli(["tools", "execsnoop", "-c", "/bin/true kpt-a kpt-b; /nonexistent-kpt x"])
    assert rc == 0, err
    lines = [ln.split() for ln in out.splitlines()]
    assert ["true", "0", "/bin/true", "kpt-a", "kpt-b"] in [ln[1:] for ln in lines], out
    assert any(ln[2:] == ["-2", "/nonexistent-kpt", "x"] for ln in lines if len(ln) > 2), out
