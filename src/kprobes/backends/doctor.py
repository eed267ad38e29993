"""Probeability doctor: what this kernel and this user can do, and how to fix what they can't.

Detects features (files in tracefs, the kernel config, BTF, capabilities) rather
than comparing kernel versions.  Returns data; the CLI prints it.
"""

from __future__ import annotations

import gzip
import os
from typing import Dict, List, Optional

from .._record import dataclass

__all__ = ["Check", "run_checks", "bpf_checks", "read_kernel_config"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: Optional[str] = None
    required_for: str = ""
    #: A missing optional feature has a fallback: a warning, not a failure.
    optional: bool = False


def read_kernel_config(release: Optional[str] = None) -> Dict[str, str]:
    """CONFIG_* values from /proc/config.gz or /boot/config-RELEASE ({} when neither exists)."""
    release = release or os.uname().release
    text = ""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            text = f.read()
    except OSError:
        for p in (f"/boot/config-{release}", f"/lib/modules/{release}/config"):
            try:
                with open(p) as f:
                    text = f.read()
                break
            except OSError:
                continue
    out: Dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, _, v = line.partition("=")
            out[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:].split()[0]] = "n"
    return out


def _cap_eff() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


def _mounted(fstype: str) -> Optional[str]:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                p = line.split()
                if len(p) > 2 and p[2] == fstype:
                    return p[1]
    except OSError:
        pass
    return None


def run_checks() -> List[Check]:
    """Every check, in the order a person reads them."""
    checks: List[Check] = []
    cfg = read_kernel_config()
    release = os.uname().release

    def conf(name: str, what: str, needed: str) -> None:
        v = cfg.get(name, "n" if cfg else None)  # absent from a config file: not set
        if v is None:
            checks.append(Check(name, False, "unknown (no /proc/config.gz or /boot/config-"
                                f"{release})", None, needed))
        else:
            ok = v in ("y", "m")
            checks.append(Check(
                name, ok, f"{name}={v}" + ("" if ok else f": {what} unavailable"),
                None if ok else f"this kernel was built without {what}; use a distribution kernel "
                f"(Debian, Ubuntu, Fedora, RHEL enable it) or rebuild with {name}=y",
                needed,
            ))  # fmt: skip

    conf("CONFIG_KPROBES", "kprobes", "kprobe:, kretprobe:")
    conf("CONFIG_KPROBE_EVENTS", "kprobe_events", "kprobes trace p:/r: on kernel functions")
    conf("CONFIG_UPROBE_EVENTS", "uprobe_events", "uprobes on user binaries")
    conf("CONFIG_HIST_TRIGGERS", "hist triggers", "in-kernel aggregation engine")
    conf("CONFIG_BPF_SYSCALL", "bpf()", "BPF engine")
    conf("CONFIG_DEBUG_INFO_BTF", "BTF type information", "argument names and struct fields")

    euid = os.geteuid()
    caps = _cap_eff()
    perm_ok = euid == 0 or bool(caps & (1 << CAP_PERFMON)) or bool(caps & (1 << CAP_SYS_ADMIN))
    checks.append(Check(
        "privileges", perm_ok,
        "root" if euid == 0 else ("CAP_PERFMON" if perm_ok else f"uid {euid} without CAP_PERFMON"),
        None if perm_ok else "run as root (sudo kprobes ...) or grant CAP_PERFMON plus tracefs access",
        "everything",
    ))  # fmt: skip

    tr = _mounted("tracefs")
    root = None
    for cand in ([tr] if tr else []) + ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]:
        if cand and os.path.exists(os.path.join(cand, "README")):
            root = cand
            break
    checks.append(Check(
        "tracefs", root is not None, f"mounted at {root}" if root else "not mounted",
        None if root else "mount -t tracefs nodev /sys/kernel/tracing", "everything",
    ))  # fmt: skip
    dbg = _mounted("debugfs")
    checks.append(Check(
        "debugfs", dbg is not None, f"mounted at {dbg}" if dbg else "not mounted",
        None if dbg else "mount -t debugfs none /sys/kernel/debug (only for the kprobes blacklist)",
        "blacklist in 'kprobes list'",
    ))  # fmt: skip
    if root:
        for rel, needed in (
            ("kprobe_events", "kprobes"),
            ("uprobe_events", "uprobes"),
            ("dynamic_events", "dynamic events"),
            ("instances", "private sessions"),
        ):
            p = os.path.join(root, rel)
            ok = os.path.exists(p)
            writable = ok and os.access(p, os.W_OK)
            checks.append(Check(
                f"tracefs/{rel}", ok and writable,
                ("present" + ("" if writable else ", not writable")) if ok else "absent",
                None if ok and writable else (
                    "needs root or tracefs group access" if ok else
                    f"the kernel lacks {needed} (see the CONFIG lines above)"),
                needed,
            ))  # fmt: skip
        try:
            with open(os.path.join(root, "README")) as f:
                readme = f.read()
            hist = "hist trigger" in readme or "hist:keys" in readme
        except OSError:
            hist = False
        checks.append(Check("hist triggers (README)", hist, "advertised" if hist else "absent",
                            None if hist else "needs CONFIG_HIST_TRIGGERS", "in-kernel aggregation"))
    blk = "/sys/kernel/debug/kprobes/blacklist"
    bl_ok = os.access(blk, os.R_OK)
    checks.append(Check("kprobes blacklist", bl_ok, blk if bl_ok else "unreadable or absent",
                        None if bl_ok else "mount debugfs as root; without it blacklisted "
                        "functions are only found when the kernel refuses them", "kprobes list"))
    btf = os.path.exists("/sys/kernel/btf/vmlinux")
    checks.append(Check("BTF", btf, "/sys/kernel/btf/vmlinux" if btf else "absent",
                        None if btf else "needs CONFIG_DEBUG_INFO_BTF=y; meanwhile use raw "
                        "fetchargs like +0(%si):string", "argument names, struct fields"))
    ks_ok = False
    try:
        with open("/proc/kallsyms") as f:
            first = f.readline()
        ks_ok = bool(first) and not first.startswith("0000000000000000")
    except OSError:
        pass
    checks.append(Check("kallsyms addresses", ks_ok, "visible" if ks_ok else "hidden (zeros)",
                        None if ks_ok else "run as root, or sysctl kernel.kptr_restrict=0",
                        "ksym(), address probes"))
    checks.extend(bpf_checks())
    return checks


#: BPF features whose absence has a fallback (name in Features.summary() -> fix).
_BPF_OPTIONAL = {
    "BPF perf links": "Linux 5.15+; meanwhile programs attach with PERF_EVENT_IOC_SET_BPF",
    "BPF kprobe_multi": "Linux 5.18+ built with CONFIG_FPROBE=y (Debian 6.12 has it); "
                        "meanwhile one perf event per function is used (slower to attach)",
    "BPF batch map ops": "Linux 5.6+; meanwhile maps are read key by key",
    "BPF object names": "Linux 4.15+; meanwhile programs and maps are anonymous",
}
_BPF_FIXES = {
    "BPF kprobe PMU": "needs CONFIG_KPROBE_EVENTS (BPF kprobes are created through it)",
    "BPF uprobe PMU": "needs CONFIG_UPROBE_EVENTS (BPF uprobes are created through it)",
}


def bpf_checks() -> List[Check]:
    """The BPF backend's probed features (:mod:`kprobes.backends.bpf.features`)."""
    from .bpf.features import probe_features

    feats = probe_features()
    out = []
    for name, ok, detail in feats.summary():
        if name == "bpf() syscall":
            out.append(Check(name, ok, detail,
                             None if ok else "run as root (or with CAP_BPF + CAP_PERFMON) on a "
                             "kernel with CONFIG_BPF_SYSCALL", "BPF engine"))
            continue
        opt = name in _BPF_OPTIONAL
        fix = _BPF_OPTIONAL.get(name) or _BPF_FIXES.get(name)
        out.append(Check(name, ok, detail, None if ok else fix, "BPF engine", optional=opt))
    return out
