"""SIGTERM and SIGHUP always stop `kprobes trace` and `kprobes -e`, quickly and cleanly.

A user saw both commands ignore SIGTERM/SIGHUP half of the time while other
processes were forking (the signal's exception was swallowed by a
``saved_cmdlines`` refresh).  Each run here starts the command, waits until
its instance has an enabled event (armed, reading), sends one signal while a
shell loop forks ``/bin/true`` as fast as it can, and requires the process to
exit within 1 s with nothing of its session left in tracefs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Iterator, List, Optional

import pytest

from tests.helpers import ROOT, tracefs

RUNS = 20  # per signal and command
STOP_WITHIN = 1.0


def _instance_of(pid: int) -> Optional[str]:
    for name in os.listdir(os.path.join(tracefs(), "instances")):
        if name.startswith(f"kp{pid}_"):
            return name
    return None


def _armed(pid: int) -> bool:
    inst = _instance_of(pid)
    if inst is None:
        return False
    try:
        with open(os.path.join(tracefs(), "instances", inst, "set_event")) as f:
            return f.read().strip() != ""
    except OSError:
        return False


def _leftovers(pid: int) -> List[str]:
    out = []
    inst = _instance_of(pid)
    if inst is not None:
        out.append(f"instance {inst}")
    with open(os.path.join(tracefs(), "dynamic_events")) as f:
        out += [line.strip() for line in f if f":kp{pid}_" in line]
    return out


@pytest.fixture(scope="module")
def fork_load() -> Iterator[None]:
    load = subprocess.Popen(["sh", "-c", "while :; do /bin/true & /bin/true & wait; done"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        os.killpg(load.pid, signal.SIGKILL)
        load.wait()


def _signal_runs(args: List[str], expect_rc: dict) -> None:  # type: ignore[type-arg]
    slow: List[str] = []
    for sig in (signal.SIGTERM, signal.SIGHUP):
        for i in range(RUNS):
            p = subprocess.Popen([sys.executable, "-m", "kprobes.cli", *args], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                end = time.monotonic() + 30
                while not _armed(p.pid) and p.poll() is None and time.monotonic() < end:
                    time.sleep(0.005)
                assert p.poll() is None, f"exited before it was armed: {p.stderr.read() if p.stderr else ''}"
                assert _armed(p.pid), "never armed"
                t0 = time.monotonic()
                p.send_signal(sig)
                try:
                    _out, err = p.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    _out, err = p.communicate()
                    pytest.fail(f"{sig.name} run {i}: still running 10 s after the signal")
                took = time.monotonic() - t0
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            if took > STOP_WITHIN:
                slow.append(f"{sig.name} run {i}: {took:.2f} s")
            assert p.returncode == expect_rc[sig], (sig.name, i, p.returncode, err)
            assert "Traceback" not in err, err
            assert _leftovers(p.pid) == [], (sig.name, i)
    assert not slow, slow


def test_trace_stops_on_every_sigterm_and_sighup(fork_load: None) -> None:
    # exit status 128 + signal, as a shell reports a process killed by it
    _signal_runs(["trace", "t:syscalls:sys_enter_getppid"],
                 {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGHUP: 128 + signal.SIGHUP})


def test_program_stops_on_every_sigterm_and_sighup(fork_load: None) -> None:
    # like bpftrace on a signal: END runs, maps are printed, exit status 0
    _signal_runs(["-e", "tracepoint:sched:sched_process_fork { @ = count(); }"],
                 {signal.SIGTERM: 0, signal.SIGHUP: 0})
