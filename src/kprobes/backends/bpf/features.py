"""What this kernel's BPF can do, found by asking it (never by comparing versions).

The probes follow the ideas of libbpf's feature detection: load a two-instruction
program of each type, create a tiny map of each type, load ``call HELPER; exit``
and read the verifier log (``invalid func`` / ``unknown func`` means the helper
does not exist for that program type; any other complaint — bad arguments — means
it does), and ask ``BPF_LINK_CREATE`` for links with arguments that can only fail
in a telling way:

* perf links: a TRACEPOINT program with an invalid perf fd: EBADF means the
  kernel got as far as looking the fd up (v5.15+), EINVAL that it knows no
  ``BPF_PERF_EVENT`` attach type;
* kprobe_multi: a KPROBE program loaded with ``expected_attach_type =
  BPF_TRACE_KPROBE_MULTI`` (refused before 5.18) linked to one symbol that
  cannot exist: ESRCH (symbol lookup ran) means supported, EOPNOTSUPP means the
  kernel lacks CONFIG_FPROBE.

Results are cached for the boot (``bpf-features.json`` in the cache directory
of :mod:`kprobes.btf.cache`, keyed by ``/proc/sys/kernel/random/boot_id``), so a
second process pays nothing; and kept per process.
"""

from __future__ import annotations

import errno as _errno
import json
import os
from typing import Dict, List, Optional, Tuple

from ..._record import asdict, dataclass, field
from ...bpf.helpers import Helper
from ...bpf.maps import AttachType, MapType, ProgType
from ...errors import BPFError, KprobesError, PermissionProblem, VerifierError
from .maps import Map
from .perf import PMU_ROOT
from .prog import Program
from .sys import Cmd, bpf_errno, close_fd, pack

__all__ = ["Features", "probe_features", "CACHE_VERSION", "cache_path"]

CACHE_VERSION = 2

_PROG_TYPES = ("KPROBE", "TRACEPOINT", "PERF_EVENT", "RAW_TRACEPOINT", "SOCKET_FILTER")
#: (RAW_TRACEPOINT is probed by a trivial load; TRACING needs a BTF id: see _probe_fentry.)
_MAP_TYPES = ("HASH", "ARRAY", "PERCPU_HASH", "PERCPU_ARRAY", "LRU_HASH", "LRU_PERCPU_HASH",
              "PERF_EVENT_ARRAY", "RINGBUF", "STACK_TRACE")
_HELPERS = ("probe_read_kernel", "probe_read_user", "probe_read_kernel_str", "probe_read_user_str",
            "get_func_ip", "get_attach_cookie", "ringbuf_output", "ringbuf_reserve",
            "perf_event_output", "get_stackid", "get_current_task_btf", "ktime_get_boot_ns",
            "send_signal", "get_current_cgroup_id", "get_smp_processor_id")


@dataclass
class Features:
    """Probed BPF capabilities of the running kernel (all False when bpf() is unusable)."""

    bpf: bool = False
    error: str = ""
    prog_types: Dict[str, bool] = field(default_factory=dict)
    map_types: Dict[str, bool] = field(default_factory=dict)
    #: Helpers callable from KPROBE programs.
    helpers: Dict[str, bool] = field(default_factory=dict)
    object_names: bool = False
    perf_link: bool = False
    kprobe_multi: bool = False
    kprobe_multi_reason: str = ""
    batch_ops: bool = False
    kprobe_pmu: bool = False
    uprobe_pmu: bool = False
    #: fentry/fexit (kfunc/kretfunc): a TRACING program loaded and attached to a function.
    fentry: bool = False
    fentry_reason: str = ""
    boot_id: str = ""
    release: str = ""
    from_cache: bool = False

    def summary(self) -> List[Tuple[str, bool, str]]:
        """(name, ok, detail) rows for ``kprobes doctor``."""
        rows: List[Tuple[str, bool, str]] = [("bpf() syscall", self.bpf, self.error or "usable")]
        if not self.bpf:
            return rows

        def listing(d: Dict[str, bool]) -> str:
            no = [k for k, v in d.items() if not v]
            yes = [k for k, v in d.items() if v]
            return ", ".join(yes) + (f"; missing: {', '.join(no)}" if no else "")

        rows.append(("BPF program types", all(self.prog_types.get(t, False)
                                              for t in ("KPROBE", "TRACEPOINT", "PERF_EVENT")),
                     listing(self.prog_types)))
        rows.append(("BPF map types", all(self.map_types.values()), listing(self.map_types)))
        rows.append(("BPF helpers (kprobe)", all(self.helpers.get(h, False)
                                                 for h in ("probe_read_kernel", "probe_read_user")),
                     listing(self.helpers)))
        rows.append(("BPF perf links", self.perf_link,
                     "BPF_LINK_CREATE on perf events (cookies)" if self.perf_link
                     else "absent: PERF_EVENT_IOC_SET_BPF is used instead"))
        rows.append(("BPF kprobe_multi", self.kprobe_multi,
                     "one link for many functions" if self.kprobe_multi
                     else self.kprobe_multi_reason or "absent"))
        rows.append(("BPF kprobe PMU", self.kprobe_pmu,
                     f"{PMU_ROOT}/kprobe" if self.kprobe_pmu else "absent (no CONFIG_KPROBE_EVENTS)"))
        rows.append(("BPF uprobe PMU", self.uprobe_pmu,
                     f"{PMU_ROOT}/uprobe" if self.uprobe_pmu else "absent (no CONFIG_UPROBE_EVENTS)"))
        rows.append(("BPF fentry/fexit", self.fentry, "kfunc/kretfunc probes (BPF trampolines)"
                     if self.fentry else self.fentry_reason or "absent"))
        rows.append(("BPF object names", self.object_names, "prog/map names" if self.object_names
                     else "absent: objects are anonymous"))
        rows.append(("BPF batch map ops", self.batch_ops, "LOOKUP_(AND_DELETE_)BATCH"
                     if self.batch_ops else "absent: maps are walked key by key"))
        return rows


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def cache_path() -> Optional[str]:
    from ...btf.cache import cache_dir

    d = cache_dir()
    return os.path.join(d, "bpf-features.json") if d else None


#: Per-boot cache first (tmpfs, gone at reboot; writable by root where the home cache
#: is not, e.g. a VM with a read-only root), then the user's cache directory.
RUN_CACHE = "/run/kprobes/bpf-features.json"


def _cache_paths() -> List[str]:
    home = cache_path()
    return [RUN_CACHE, home] if home else []  # None: caching disabled (KPROBES_CACHE_DIR="")


def _load_cache(boot: str) -> Optional[Features]:
    for p in _cache_paths():
        feats = _load_one(p, boot)
        if feats is not None:
            return feats
    return None


def _load_one(p: str, boot: str) -> Optional[Features]:
    if not boot:
        return None
    try:
        with open(p) as f:
            raw = json.load(f)
        if raw.get("version") != CACHE_VERSION or raw.get("boot_id") != boot:
            return None
        feats = Features(**raw["features"])
        feats.from_cache = True
        return feats
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _store_cache(feats: Features) -> None:
    if not feats.boot_id:
        return
    for p in _cache_paths():
        if _store_one(p, feats):
            return


def _store_one(p: str, feats: Features) -> bool:
    try:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        tmp = f"{p}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"version": CACHE_VERSION, "boot_id": feats.boot_id,
                       "features": asdict(feats)}, f)
        os.replace(tmp, p)
        return True
    except OSError:
        return False


_TRIVIAL = pack("BBhiBBhi", 0xB7, 0, 0, 0, 0x95, 0, 0, 0).raw  # r0 = 0; exit


def _prog(ptype: int, code: bytes = _TRIVIAL, **kw: object) -> Tuple[Optional[Program], str, int]:
    """Load; (program or None, verifier log, errno)."""
    try:
        return Program.load(ptype, code, **kw), "", 0  # type: ignore[arg-type]
    except VerifierError as e:
        return None, e.log, e.errno or 0
    except BPFError as e:
        return None, "", e.errno or 0


def _helper_ok(helper: int) -> bool:
    code = pack("BBhiBBhi", 0x85, 0, 0, helper, 0x95, 0, 0, 0).raw  # call helper; exit
    prog, log, _ = _prog(ProgType.KPROBE, code, log_level=1)
    if prog is not None:
        prog.close()
        return True
    return not any(s in log for s in ("invalid func", "unknown func", "cannot use helper"))


def _probe_kprobe_multi() -> Tuple[bool, str]:
    prog, _, err = _prog(ProgType.KPROBE, expected_attach_type=AttachType.TRACE_KPROBE_MULTI)
    if prog is None:
        return False, ("the kernel knows no BPF_TRACE_KPROBE_MULTI programs (needs Linux 5.18+)"
                       if err == _errno.EINVAL else f"probe program refused ({os.strerror(err)})")
    try:
        import ctypes

        name = ctypes.c_char_p(b"__kprobes_no_such_function_probe__")
        syms = (ctypes.c_char_p * 1)(name.value)
        attr = pack("IIIIIIQQQ", prog.fd, 0, AttachType.TRACE_KPROBE_MULTI, 0, 0, 1,
                    ctypes.addressof(syms), 0, 0)
        fd, e = bpf_errno(Cmd.LINK_CREATE, attr)
        if fd >= 0:
            close_fd(fd)
            return True, ""
        if e == _errno.ESRCH:
            return True, ""
        if e == _errno.EOPNOTSUPP:
            return False, "the kernel was built without CONFIG_FPROBE (kprobe_multi links need it)"
        if e == _errno.EINVAL:
            return False, "the kernel has no kprobe_multi links (needs Linux 5.18+)"
        return False, f"kprobe_multi probe failed: {os.strerror(e)}"
    finally:
        prog.close()


#: The function the fentry probe attaches to for an instant (always built, rarely called).
_FENTRY_PROBE_FUNC = "bpf_fentry_test1"
_FENTRY_FALLBACK_FUNC = "vfs_fsync"


def _probe_fentry() -> Tuple[bool, str]:
    """Load a trivial fentry program for a kernel function and attach it (that builds
    the trampoline); (ok, why not)."""
    try:
        from ...btf import load_vmlinux
        from ...btf import types as T

        btf = load_vmlinux()
        ids = btf.ids_by_name(_FENTRY_PROBE_FUNC, T.KIND_FUNC) or \
            btf.ids_by_name(_FENTRY_FALLBACK_FUNC, T.KIND_FUNC)
    except KprobesError as e:
        return False, f"no kernel BTF ({e.message.splitlines()[0]}): fentry needs it"
    if not ids:
        return False, "no probe function in the kernel's BTF"
    try:
        prog, _, err = _prog(ProgType.TRACING, expected_attach_type=AttachType.TRACE_FENTRY,
                             attach_btf_id=ids[0])
    except PermissionProblem as pe:
        prog, err = None, getattr(pe, "errno", None) or _errno.EPERM
    if prog is None:
        name = _errno.errorcode.get(err, str(err))
        if err in (_errno.EPERM, _errno.EACCES):
            return False, f"the kernel refuses fentry programs ({name}: lockdown or no trampolines?)"
        if err == _errno.EINVAL:
            return False, "the kernel knows no fentry programs (needs Linux 5.5+ with BTF)"
        return False, f"fentry program refused ({name})"
    try:
        from .attach import ENOTSUPP

        attr = pack("QI", 0, prog.fd)
        fd, aerr = bpf_errno(Cmd.RAW_TRACEPOINT_OPEN, attr)
        if fd >= 0:
            close_fd(fd)
            return True, ""
        if aerr == ENOTSUPP:
            return False, "the kernel cannot build BPF trampolines (no direct ftrace calls)"
        return False, f"fentry attach refused ({_errno.errorcode.get(aerr, str(aerr))})"
    finally:
        prog.close()


def _probe_perf_link() -> bool:
    prog, _, _ = _prog(ProgType.TRACEPOINT)
    if prog is None:
        return False
    try:
        attr = pack("IiII", prog.fd, -1, AttachType.PERF_EVENT, 0)
        fd, e = bpf_errno(Cmd.LINK_CREATE, attr)
        if fd >= 0:
            close_fd(fd)
        return e == _errno.EBADF
    finally:
        prog.close()


def _probe_batch() -> bool:
    try:
        with Map.create(MapType.HASH, 4, 4, 4) as m:
            m.items()
            return m.batch_supported is True
    except KprobesError:
        return False


def _probe() -> Features:

    f = Features(boot_id=_boot_id(), release=os.uname().release)
    try:
        m = Map.create(MapType.ARRAY, 4, 4, 1, name="kp_feat_names")
    except PermissionProblem as e:
        f.error = e.message
        return f
    except BPFError as e:
        f.error = e.message
        return f
    f.bpf = True
    f.object_names = m.name == "kp_feat_names"
    m.close()
    for t in _PROG_TYPES:
        prog, _, _ = _prog(getattr(ProgType, t))
        f.prog_types[t] = prog is not None
        if prog is not None:
            prog.close()
    for t in _MAP_TYPES:
        mt = getattr(MapType, t)
        try:
            if t == "RINGBUF":
                mm = Map.ringbuf(4096)
            elif t == "PERF_EVENT_ARRAY":
                mm = Map.perf_event_array()
            elif t == "STACK_TRACE":
                mm = Map.stack_trace(1)
            else:
                mm = Map.create(mt, 4, 8, 1)
            mm.close()
            f.map_types[t] = True
        except KprobesError:
            f.map_types[t] = False
    for h in _HELPERS:
        f.helpers[h] = _helper_ok(getattr(Helper, h))
    f.perf_link = _probe_perf_link()
    f.kprobe_multi, f.kprobe_multi_reason = _probe_kprobe_multi()
    f.batch_ops = _probe_batch()
    f.fentry, f.fentry_reason = _probe_fentry()
    f.kprobe_pmu = os.path.exists(os.path.join(PMU_ROOT, "kprobe", "type"))
    f.uprobe_pmu = os.path.exists(os.path.join(PMU_ROOT, "uprobe", "type"))
    return f


_memo: Optional[Features] = None


def probe_features(*, refresh: bool = False, use_cache: bool = True) -> Features:
    """The kernel's BPF features: from this process' memo, the boot's cache, or probed now."""
    global _memo
    if _memo is not None and not refresh:
        return _memo
    boot = _boot_id()
    feats = None if (refresh or not use_cache) else _load_cache(boot)
    if feats is None:
        feats = _probe()
        if feats.bpf and use_cache:
            _store_cache(feats)
    _memo = feats
    return feats
