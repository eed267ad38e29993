"""A real recording as a timeline: uprobe entry/return pairs and syscall pairs on this host.

A gcc-built program calls ``work()`` N times, ``work`` sleeps and calls ``leaf()``,
which sleeps again.  ``kprobes record`` records uprobe+uretprobe on both
functions and the clock_nanosleep syscall tracepoints; ``kprobes perfetto``
writes the Chrome JSON trace and the Perfetto protobuf, and both are read back:
N ``work`` slices, N ``leaf`` slices inside them, 2N ``clock_nanosleep``
slices, durations equal to the recorded return-minus-entry times, names and ids
of the process and thread attached.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tests.conftest import require
from tests.helpers import run_cli, session_leftovers

pytestmark = pytest.mark.host

N = 4
WORK = r"""
#include <unistd.h>
#include <stdlib.h>
__attribute__((noinline)) int leaf(int x) { usleep(2000); return x * 2; }
__attribute__((noinline)) int work(int x) { usleep(1000); return leaf(x) + 1; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), s = 0;
    for (int i = 0; i < n; i++) s += work(i);
    return s & 1;
}
"""


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, str]:
    if os.geteuid() != 0:
        require("recording needs root")
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the recorded program")
    d = tmp_path_factory.mktemp("perfetto")
    (d / "work.c").write_text(WORK)
    exe = str(d / "kpwork")
    subprocess.run(["gcc", "-O1", "-o", exe, str(d / "work.c")], check=True)
    data = d / "rec.data"
    rc, out, err = run_cli([
        "record", "-q", "-o", str(data),
        "-e", f"p:kpp_work {exe}:work x=%di:s32", "-e", f"r:kpp_work_ret {exe}:work ret=$retval:s32",
        "-e", f"p:kpp_leaf {exe}:leaf", "-e", f"r:kpp_leaf_ret {exe}:leaf",
        "-e", "syscalls:sys_enter_clock_nanosleep,syscalls:sys_exit_clock_nanosleep",
        "--", exe, str(N)])
    assert rc == 0, err
    assert session_leftovers() == []
    return data, exe


def _recorded_pairs(data: Path) -> Dict[str, List[int]]:
    """Durations (ns) of entry/return pairs straight from the recording file (one thread)."""
    durs: Dict[str, List[int]] = {}
    open_: Dict[str, List[int]] = {}
    for line in data.read_text().splitlines():
        rec = json.loads(line)
        if rec["t"] != "e":
            continue
        ev = rec["ev"].partition(":")[2]
        base = {"kpp_work": "work", "kpp_leaf": "leaf", "sys_enter_clock_nanosleep": "sleep"}
        rets = {"kpp_work_ret": "work", "kpp_leaf_ret": "leaf", "sys_exit_clock_nanosleep": "sleep"}
        if ev in base:
            open_.setdefault(base[ev], []).append(rec["ts"])
        elif ev in rets:
            durs.setdefault(rets[ev], []).append(rec["ts"] - open_[rets[ev]].pop())
    return durs


def test_recording_to_chrome_json(recording: Tuple[Path, str], tmp_path: Path) -> None:
    data, _exe = recording
    out = tmp_path / "trace.json"
    rc, _, err = run_cli(["perfetto", "-i", str(data), "-o", str(out)])
    assert rc == 0, err
    doc = json.loads(out.read_text())
    evs = doc["traceEvents"]
    xs = [e for e in evs if e["ph"] == "X"]
    by_name: Dict[str, List[dict]] = {}
    for e in xs:
        by_name.setdefault(e["name"], []).append(e)
    assert len(by_name["kpp_work"]) == N and len(by_name["kpp_leaf"]) == N
    assert len(by_name["clock_nanosleep"]) == 2 * N
    assert sorted(e["args"]["x"] for e in by_name["kpp_work"]) == list(range(N))
    assert sorted(e["args"]["return.ret"] for e in by_name["kpp_work"]) == [2 * i + 1 for i in range(N)]
    tids = {e["tid"] for e in xs}
    assert len(tids) == 1
    (tid,) = tids
    meta = {(e["name"], e["pid"], e["tid"]): e["args"]["name"] for e in evs if e["ph"] == "M"}
    assert meta[("thread_name", tid, tid)] == "kpwork"
    assert meta[("process_name", tid, tid)] == "kpwork"
    # Balanced and nested: every leaf lies inside one work; work's own sleep too.
    for leaf in by_name["kpp_leaf"]:
        assert sum(1 for w in by_name["kpp_work"]
                   if w["ts"] <= leaf["ts"] and leaf["ts"] + leaf["dur"] <= w["ts"] + w["dur"]) == 1
    for w in by_name["kpp_work"]:
        inside = [s for s in by_name["clock_nanosleep"]
                  if w["ts"] <= s["ts"] and s["ts"] + s["dur"] <= w["ts"] + w["dur"]]
        assert len(inside) == 2
        assert w["dur"] >= 3000  # usleep(1000) + usleep(2000), in microseconds
    # Durations are the recorded pairs', to the nanosecond.
    rec = _recorded_pairs(data)
    for name, key in (("kpp_work", "work"), ("kpp_leaf", "leaf"), ("clock_nanosleep", "sleep")):
        got = sorted(round(e["dur"] * 1000) for e in by_name[name])
        assert got == sorted(rec[key])


def test_recording_to_perfetto_protobuf(recording: Tuple[Path, str], tmp_path: Path) -> None:
    pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2",
                             reason="the perfetto package (pip install 'kprobes[perfetto]')")
    data, _exe = recording
    out = tmp_path / "trace.pftrace"
    rc, _, err = run_cli(["perfetto", "-i", str(data), "-o", str(out)])
    assert rc == 0, err
    trace = pb.Trace.FromString(out.read_bytes())
    names: Dict[int, str] = {}
    open_: Dict[int, List[Tuple[str, int]]] = {}
    durs: Dict[str, List[int]] = {}
    last_ts = 0
    for p in trace.packet:
        if p.HasField("track_descriptor") and p.track_descriptor.HasField("thread"):
            names[p.track_descriptor.uuid] = p.track_descriptor.thread.thread_name
        if not p.HasField("track_event"):
            continue
        assert p.timestamp >= last_ts  # sorted on the one sequence
        last_ts = p.timestamp
        te = p.track_event
        assert names[te.track_uuid] == "kpwork"
        if te.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            open_.setdefault(te.track_uuid, []).append((te.name, p.timestamp))
        elif te.type == pb.TrackEvent.TYPE_SLICE_END:
            name, start = open_[te.track_uuid].pop()
            durs.setdefault(name, []).append(p.timestamp - start)
    assert all(not v for v in open_.values())
    rec = _recorded_pairs(data)
    assert sorted(durs["kpp_work"]) == sorted(rec["work"]) and len(rec["work"]) == N
    assert sorted(durs["kpp_leaf"]) == sorted(rec["leaf"])
    assert sorted(durs["clock_nanosleep"]) == sorted(rec["sleep"]) and len(rec["sleep"]) == 2 * N
