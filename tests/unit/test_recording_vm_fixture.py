"""Recordings made in the VM (another kernel) decode on this machine to exactly what the VM printed.

tests/fixtures/vm-*/perf_workflow.data was written by tests/kernel/test_perf_workflow.py
inside the VM (Debian's kernel) and perf_workflow.expected is what ``kprobes script``
printed there.  Decoding happens here, on the host's kernel, with only the file.  When a
fresh VM run left results/perf_workflow.{data,expected}, those are compared too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kprobes.backends.recording import Recording
from tests.helpers import ROOT, run_cli

FIXTURES = sorted(Path(ROOT, "tests", "fixtures").glob("vm-*/perf_workflow.data"))


@pytest.mark.parametrize("data", FIXTURES, ids=[p.parent.name for p in FIXTURES])
def test_vm_recording_decodes_identically_here(data: Path) -> None:
    rec = Recording.open(str(data))
    assert rec.complete
    assert rec.header.kernel_release.startswith(data.parent.name[3:])  # vm-6.1 -> 6.1.x
    assert rec.header.events == ("probe:do_sys_openat2",)
    assert "filename" in rec.header.formats["probe:do_sys_openat2"]
    rc, out, err = run_cli(["script", "-i", str(data)])
    assert rc == 0, err
    expected = data.with_suffix(".expected").read_text()
    assert out == expected
    assert "probe:do_sys_openat2: (ffffffff" in out and 'filename="/tmp/kprobes-perfwf-' in out


def test_fixture_exists() -> None:
    assert FIXTURES, "tests/fixtures/vm-*/perf_workflow.data is missing"
