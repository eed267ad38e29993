"""Runs after the VM stages (scripts/test): the recording the 6.1 guest just made, decoded here.

The kernel test tests/kernel/test_perf_workflow.py writes results/perf_workflow.data and
the `kprobes script` output it printed in the guest; this host (another kernel) must
print the same.  Missing files are a failure: this stage only runs after the VM.
"""

from __future__ import annotations

import os
from pathlib import Path

from kprobes.backends.recording import Recording
from tests.helpers import ROOT, run_cli


def test_fresh_vm_results_decode_identically_here() -> None:
    data = Path(ROOT, "results", "perf_workflow.data")
    expected = data.with_suffix(".expected")
    if not (data.exists() and expected.exists()):
        raise AssertionError("no fresh VM recording in results/: the VM stage did not write it")
    assert Recording.open(str(data)).header.kernel_release != os.uname().release, (
        "results/perf_workflow.data was recorded on this kernel, not in the VM")
    rc, out, err = run_cli(["script", "-i", str(data)])
    assert rc == 0, err
    assert out == expected.read_text()
