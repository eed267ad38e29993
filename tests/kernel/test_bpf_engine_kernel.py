"""The seed's bpftrace programs with ``--engine bpf``: kprobes and kretprobes compiled to eBPF.

The tests of :mod:`tests.kernel.test_seed_bpftrace` run unchanged, with every
``kprobes`` command line given ``--engine bpf`` first: the same workloads, the
same expected values.  One more test checks kprobe arguments, retval, struct
members through BTF and a wildcard's ``probe``/``func`` keys against the
tracefs engine on one workload.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Sequence, Tuple

import pytest

import tests.kernel.test_seed_bpftrace as seed
from tests.helpers import run_cli

pytestmark = pytest.mark.kernel


def _bpf_cli(args: Sequence[str]) -> Tuple[int, str, str]:
    return run_cli(["--engine", "bpf", *args])


@pytest.fixture(autouse=True)
def bpf_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seed, "run_cli", _bpf_cli)


def test_opens_prints_each_open_of_a_known_file() -> None:
    seed.test_opens_prints_each_open_of_a_known_file()


def test_vfs_read_latency_histogram_counts_the_reads(tmp_path: Path) -> None:
    seed.test_vfs_read_latency_histogram_counts_the_reads(tmp_path)


def test_top10_counts_every_vfs_function() -> None:
    seed.test_top10_refused_without_consent_and_counts_with_it()


def test_kills_show_sender_and_target(tmp_path: Path) -> None:
    seed.test_kills_show_sender_and_target(tmp_path)


def test_allocations_over_1mb() -> None:
    seed.test_allocations_over_1mb()


def test_dns_queries_to_port_53() -> None:
    seed.test_dns_queries_to_port_53()


def test_args_retval_members_and_wildcard_keys_match_the_tracefs_engine(tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.write_bytes(b"y" * 64)
    prog = ("kprobe:vfs_read /comm == \"dd\"/ { @n[arg2] = count(); @f[((struct file *)arg0)->f_flags & 3] = count(); }\n"
            "kretprobe:vfs_read /comm == \"dd\"/ { @r = hist(retval); @s = sum(retval); }\n"
            "kprobe:vfs_rea?,kprobe:vfs_writ? /comm == \"dd\"/ { @p[probe, func] = count(); }")
    cmd = f"dd if={src} of=/dev/null bs=16 count=4 2>/dev/null"
    outs: List[str] = []
    for engine in ("tracefs", "bpf"):
        rc, out, err = run_cli(["--engine", engine, "-c", cmd, "-e", prog])
        assert rc == 0, err
        outs.append(out)
    assert outs[0] == outs[1]
    assert "@n[16]: 4\n" in outs[1] and "@f[0]: " in outs[1], outs[1]
    assert re.search(r"@p\[kprobe:vfs_read, vfs_read\]: \d+", outs[1]), outs[1]
