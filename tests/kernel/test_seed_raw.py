"""The seed's first tracefs example, by hand, with no kprobes code: proves the VM harness."""

from __future__ import annotations

import os
import time

from tests.conftest import tracefs_root


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def test_raw_kprobe_do_sys_openat2_string_fetcharg(tmp_path: object) -> None:
    root = tracefs_root()
    assert root
    grp = f"kpraw{os.getpid()}"
    inst = os.path.join(root, "instances", grp)
    target = f"/tmp/kprobes-raw-{os.getpid()}-marker"
    os.mkdir(inst)
    try:
        _write(f"{root}/kprobe_events", f"p:{grp}/open do_sys_openat2 filename=+0(%si):string\n")
        try:
            ev = f"{inst}/events/{grp}/open"
            _write(f"{ev}/filter", f'filename == "{target}"')
            _write(f"{ev}/enable", "1")
            for _ in range(3):
                try:
                    open(target).close()
                except FileNotFoundError:
                    pass
            time.sleep(0.05)
            with open(f"{inst}/trace") as f:
                lines = [ln for ln in f if not ln.startswith("#")]
            _write(f"{ev}/enable", "0")
            hits = [ln for ln in lines if f'filename="{target}"' in ln]
            assert len(hits) == 3, lines
            print(hits[0].strip())
        finally:
            _write(f"{root}/kprobe_events", f"-:{grp}/open\n")
    finally:
        os.rmdir(inst)
    with open(f"{root}/kprobe_events") as f:
        assert grp not in f.read()
