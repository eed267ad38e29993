"""Flame graphs and Perfetto traces from kernel probes (kprobes, kernel stacks) in the VM.

* ``profile:hz:99`` with ``@[kstack] = count()`` while ``dd`` reads /dev/zero,
  printed with ``--folded``: kernel stacks root first with bare function names
  (the syscall entry below ``ksys_read`` below ``vfs_read``), rendered by
  ``kprobes flamegraph`` into an SVG naming those functions; the folded input,
  the SVG and what the workload ran through (``vfs_read``) are kept in
  ``results/flamegraph-vm-KERNEL.{folded,svg,json}`` (KERNEL: ``6.1``, ``6.12``)
  for tests/cross/test_flamegraph_vm_in_chromium.py, which loads the SVG in
  Chromium on the host after the VM stages (the guest has no browser);
* ``kprobes record`` of a kprobe and a kretprobe on ``do_sys_openat2`` while
  ``cat`` opens known files, turned by ``kprobes perfetto`` into a Chrome JSON
  trace and a Perfetto protobuf: one slice per recorded entry/return pair, with
  the recorded durations, on cat's thread.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, List

import pytest

from tests.helpers import ROOT, run_cli, session_leftovers

pytestmark = pytest.mark.kernel


def _flame_artifacts(tmp: Path) -> Dict[str, Path]:
    """results/flamegraph-vm-KERNEL.{json,svg,folded}, this kernel's old files removed."""
    results = Path(ROOT) / "results"
    out = results if os.access(results, os.W_OK) else tmp
    release = os.uname().release
    m = re.match(r"\d+\.\d+", release)
    paths = {s: out / f"flamegraph-vm-{m.group(0) if m else release}.{s}" for s in ("json", "svg", "folded")}
    for p in paths.values():  # a failed run must not leave an older graph
        p.unlink(missing_ok=True)
    return paths


def test_profile_kstack_folded_and_flamegraph(tmp_path: Path) -> None:
    keep = _flame_artifacts(tmp_path)
    prog = 'profile:hz:99 /comm == "dd"/ { @[kstack] = count(); }'
    rc, out, err = run_cli(["--engine", "bpf", "--folded", "-e", prog, "--duration", "4",
                            "-c", "dd if=/dev/zero of=/dev/null bs=1M count=100000"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines, err
    read_stacks = []
    total = 0
    for ln in lines:
        frames_text, _, n = ln.rpartition(" ")
        frames = frames_text.split(";")
        total += int(n)
        assert not any("+" in f for f in frames if not f.startswith("0x")), ln  # bare names
        if "vfs_read" in frames and "ksys_read" in frames:
            assert frames.index("ksys_read") < frames.index("vfs_read"), ln  # root first
            read_stacks.append(frames)
    assert read_stacks, out
    assert total >= 20  # ~99 Hz for up to 4 s of a process that is mostly in the kernel
    folded = keep["folded"]
    folded.write_text(out)
    svg = keep["svg"]
    title = f"profile:hz:99 kernel stacks of dd (Linux {os.uname().release})"
    rc, _, err = run_cli(["flamegraph", str(folded), "-o", str(svg), "--title", title])
    assert rc == 0, err
    text = svg.read_text()
    assert 'data-n="vfs_read"' in text and 'data-n="ksys_read"' in text
    assert f'data-total="{total}"' in text
    # Written last: the cross test takes the graph only when this says what it holds.
    keep["json"].write_text(json.dumps(
        {"kernel": os.uname().release, "workload": "dd if=/dev/zero of=/dev/null bs=1M",
         "frame": "vfs_read", "total": total}))


def test_kprobe_recording_to_perfetto(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        f = tmp_path / f"f{i}"
        f.write_text("x")
        files.append(str(f))
    data = tmp_path / "open.data"
    rc, _, err = run_cli(["record", "-q", "-o", str(data),
                          "-e", "p:kpx_open do_sys_openat2 dfd=%di:s32",
                          "-e", "r:kpx_open_ret do_sys_openat2 ret=$retval:s32",
                          "--", "cat", *files])
    assert rc == 0, err
    assert session_leftovers() == []
    entries: List[int] = []
    durs: List[int] = []
    tids = set()
    for line in data.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("t") != "e":
            continue
        tids.add(rec["pid"])
        if rec["ev"].endswith(":kpx_open"):
            entries.append(rec["ts"])
        elif rec["ev"].endswith(":kpx_open_ret"):
            durs.append(rec["ts"] - entries[len(durs)])
    assert len(durs) == len(entries) >= len(files)
    out = tmp_path / "t.json"
    rc, _, err = run_cli(["perfetto", "-i", str(data), "-o", str(out)])
    assert rc == 0, err
    doc = json.loads(out.read_text())
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert [e["name"] for e in xs] == ["kpx_open"] * len(durs)
    assert [round(e["dur"] * 1000) for e in xs] == durs
    assert sum(1 for e in xs if e["args"].get("return.ret", -1) >= 0) >= len(files)
    names: Dict[str, str] = {e["name"]: e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M"}
    assert names["thread_name"] == "cat" and {e["tid"] for e in xs} == tids
    pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
    pf = tmp_path / "t.pftrace"
    rc, _, err = run_cli(["perfetto", "-i", str(data), "-o", str(pf)])
    assert rc == 0, err
    trace = pb.Trace.FromString(pf.read_bytes())
    begins: List[int] = []
    got: List[int] = []
    for p in trace.packet:
        if p.HasField("track_event"):
            if p.track_event.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
                begins.append(p.timestamp)
            elif p.track_event.type == pb.TrackEvent.TYPE_SLICE_END:
                got.append(p.timestamp - begins.pop())
    assert not begins and sorted(got) == sorted(durs)
    assert os.path.getsize(pf) > 0
