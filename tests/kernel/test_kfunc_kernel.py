"""kfunc/kretfunc (fentry/fexit) on the BPF engine, against the kprobe form and bpftrace 0.17.

One program on the differential suite's deterministic workload (comm ``kpdw``, five
7777-byte reads of a 4321-byte file, writes of known sizes): the kfunc maps must
equal the kprobe maps of the same run (``args->count`` vs ``arg2``, a struct member
through a typed argument vs a cast), and the whole output must equal bpftrace's.
"""

from __future__ import annotations

from typing import Dict, List

import pytest

from tests.helpers import run_cli, session_leftovers
from tests.kernel.test_bpftrace_diff import W, both, normalize, workload

pytestmark = pytest.mark.kernel

__all__ = ["workload"]  # the module fixture, shared with the differential suite

PROGRAM = (
    f"kfunc:vfs_read {W} {{ @k[args->count] = count(); @kf[args->file->f_flags & 3] = count(); }}\n"
    f"kprobe:vfs_read {W} {{ @p[arg2] = count(); @pf[((struct file *)arg0)->f_flags & 3] = count(); }}\n"
    f"kretfunc:vfs_read {W} {{ @r[retval] = count(); }}\n"
    f"kretprobe:vfs_read {W} {{ @rp[(int64)retval] = count(); }}\n"
    f"kfunc:vfs_write {W} {{ @w = hist(args->count); @ws = sum(args->count); }}\n"
)


def _maps(out: str) -> Dict[str, List[str]]:
    """``@name[key]: value`` lines by map name, with the map name cut off."""
    got: Dict[str, List[str]] = {}
    for ln in out.splitlines():
        if ln.startswith("@"):
            name, _, rest = ln.partition("[") if "[" in ln.split(":")[0] else ln.partition(":")
            got.setdefault(name, []).append(rest)
    return {k: sorted(v) for k, v in got.items()}


def test_kfunc_counts_equal_the_kprobe_form_and_bpftrace(workload: str) -> None:
    from kprobes.backends.bpf.features import probe_features

    feats = probe_features()
    assert feats.fentry, f"fentry must work on this kernel: {feats.fentry_reason}"
    bt_out, _bt_err, rc, out, err = both(PROGRAM, workload, engine="bpf")
    assert rc == 0, err
    maps = _maps(out)
    assert maps["@k"] == maps["@p"] and maps["@kf"] == maps["@pf"], out
    assert maps["@r"] == maps["@rp"], out
    assert "7777]: 5" in " ".join(maps["@k"]), out  # the workload's five reads
    assert "4321]: 5" in " ".join(maps["@r"]), out  # ... each returning the file's size
    bt_attach, bt_lines = normalize(bt_out, False)
    kp_attach, kp_lines = normalize(out, False)
    assert kp_lines == bt_lines, f"\n--- bpftrace\n{bt_out}\n--- kprobes\n{out}\n{err}"
    assert kp_attach == bt_attach
    assert session_leftovers() == []


def test_kfunc_wildcards_probe_names_and_refusals(workload: str) -> None:
    # bpftrace 0.17 names fentry probes by BTF object: kretfunc:vmlinux:vfs_read
    rc, out, err = run_cli(["--engine", "bpf", "-c", workload, "-e",
                            f"kretfunc:vfs_rea*d {W} {{ @[probe] = count(); }}"
                            f" kretprobe:vfs_read {W} {{ @n = count(); }}"])
    assert rc == 0, err
    assert out.count("@[kretfunc:vmlinux:vfs_read]: ") == 1, out
    assert out.split("@[kretfunc:vmlinux:vfs_read]: ")[1].split()[0] == out.split("@n: ")[1].split()[0]
    rc, _, err = run_cli(["--engine", "bpf", "-e", "kfunc:vfs_raed { @ = count(); }"])
    assert rc != 0 and "the kernel's BTF has no function 'vfs_raed'" in err and "vfs_read" in err, err
    rc, _, err = run_cli(["--engine", "tracefs", "-e", "kretfunc:vfs_read { @ = count(); }"])
    assert rc != 0 and "'kretfunc' probes need --engine bpf" in err, err
