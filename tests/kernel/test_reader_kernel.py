"""The raw reader on kprobes/kretprobes (VM): the seed's probes via binary pages, raw == text."""

from __future__ import annotations

import os
import re
from typing import Tuple

import kprobes
from kprobes.events.model import TraceEvent
from kprobes.events.text import parse_text
from tests.helpers import run_cli, session_leftovers

OPEN_DEF = "p:myprobe do_sys_openat2 filename=+0(%si):string"
READ_DEF = "r:myretprobe vfs_read ret=$retval"
SYM_OFF = re.compile(r"^[\w.]+\+0x[0-9a-f]+/0x[0-9a-f]+$")


def marker(tag: str) -> str:
    return f"/tmp/kprobes-reader-{tag}-{os.getpid()}"


def key(e: TraceEvent) -> Tuple[object, ...]:
    ts = (e.timestamp_ns + 500) // 1000 * 1000 if e.timestamp_ns % 1000 else e.timestamp_ns
    return (ts, e.cpu, e.pid, e.comm, e.event, e.location, e.caller, dict(e.fields))


def test_seed_open_probe_via_raw_pages() -> None:
    path = marker("open")
    with kprobes.Session(exclude_self=False) as s:
        s.add(OPEN_DEF, filter=f'filename == "{path}"')
        for _ in range(3):
            try:
                open(path).close()
            except FileNotFoundError:
                pass
        evs = list(s.events(duration=0.3))
        assert s.reader_kind == "raw", s.reader_fallback
        ledger = s.ledger
    assert [e.fields["filename"] for e in evs] == [path] * 3
    assert all(e.pid == os.getpid() and e.group is None for e in evs)
    assert evs[0].location is not None and evs[0].location.startswith("do_sys_openat2+0x0/0x")
    assert evs[0].timestamp_ns % 1000 != 0 or evs[1].timestamp_ns % 1000 != 0  # nanoseconds
    p = ledger.probes["myprobe"]
    assert p.delivered == 3 and p.kernel_hits is not None and p.kernel_hits >= 3 and p.misses == 0
    assert not ledger.any_loss, ledger.report()
    assert session_leftovers() == []


def test_kprobe_and_kretprobe_raw_equals_text_same_run() -> None:
    path = marker("read")
    with open(path, "wb") as f:
        f.write(b"y" * 1234)
    try:
        # event_comm off: the instance's text has saved_cmdlines' comms and no __comm field
        with kprobes.Session(exclude_self=False, event_comm=False) as s:
            s.add(OPEN_DEF, filter=f'filename == "{path}"')
            s.add(READ_DEF, filter="ret == 1234")
            for _ in range(2):
                with open(path, "rb") as f:
                    assert len(f.read(4096)) == 1234
            for label in list(s.probes):
                s.enable(label, False)
            assert s.fs is not None
            text = [e for e in parse_text(s.fs.read(f"{s.instance}/trace"), {"myretprobe": {"ret": "u64"}})
                    if isinstance(e, TraceEvent)]
            raw = list(s.events(duration=0))
            assert s.reader_kind == "raw"
    finally:
        os.unlink(path)
    rets = [e for e in raw if e.event == "myretprobe" and e.pid == os.getpid()]
    assert len(rets) >= 2 and all(e.fields["ret"] == 1234 for e in rets)
    assert rets[0].location == "vfs_read" and rets[0].caller and SYM_OFF.match(rets[0].caller)
    assert len([e for e in raw if e.event == "myprobe"]) == 2
    assert [key(e) for e in raw] == [key(e) for e in text]
    print(raw[0], text[0], sep="\n")


def test_cli_raw_and_text_readers_print_the_same_kprobe_line() -> None:
    path = marker("cli")
    lines = {}
    for reader in ("raw", "text"):
        rc, out, err = run_cli(["trace", "--reader", reader, "--stats", "-c", f"cat {path} 2>/dev/null; true",
                                "--filter", f'filename == "{path}"', OPEN_DEF])
        assert rc == 0, err
        (line,) = [ln for ln in out.splitlines() if f'filename="{path}"' in ln]
        lines[reader] = line.split(": ", 1)[1]  # drop comm-pid [cpu] timestamp
        assert "myprobe" in err and "kernel hits" in err  # the --stats table
    assert lines["raw"] == lines["text"]
    assert lines["raw"].startswith("myprobe: (do_sys_openat2+0x0/0x")
