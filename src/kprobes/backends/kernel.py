"""One object for "the running kernel": tracefs root, BTF, features, config, symbols.

Every fact is computed on first use and kept on the object, so a program that
needs no BTF never opens it, and one run reads each fact at most once.  Engines
and the CLI take a :class:`Kernel` (tests pass one with the facts filled in, or
a subclass) instead of reading module-level caches::

    k = running_kernel()
    k.tracefs_root, k.btf, k.bpf_features, k.tracefs_features, k.config, k.symbols

:func:`running_kernel` returns the process' one instance (set it with
:func:`use_kernel`, e.g. in tests).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

if TYPE_CHECKING:
    from ..btf import BTF
    from ..probes import KernelFeatures
    from .bpf.features import Features
    from .symbols import KernelSymbols

__all__ = ["Kernel", "running_kernel", "use_kernel", "bpf_refusal"]

_UNSET: Any = object()


class Kernel:
    """The running kernel's facts, each read lazily (pass values to pin them: tests)."""

    def __init__(
        self,
        *,
        tracefs_root: Optional[str] = _UNSET,
        btf: Optional["BTF"] = _UNSET,
        bpf_features: Optional["Features"] = _UNSET,
        tracefs_features: Optional["KernelFeatures"] = _UNSET,
        config: Optional[str] = _UNSET,
        symbols: Optional[Callable[[], "KernelSymbols"]] = None,
        release: Optional[str] = None,
    ) -> None:
        self._facts: Dict[str, Any] = {}
        for name, value in (("tracefs_root", tracefs_root), ("btf", btf), ("bpf_features", bpf_features),
                            ("tracefs_features", tracefs_features), ("config", config)):
            if value is not _UNSET:
                self._facts[name] = value
        self._symbols_loader = symbols
        self.release = release or os.uname().release

    def _fact(self, name: str, compute: Callable[[], Any]) -> Any:
        try:
            return self._facts[name]
        except KeyError:
            value = self._facts[name] = compute()
            return value

    # -- tracefs -------------------------------------------------------------
    @property
    def tracefs_root(self) -> Optional[str]:
        """The mounted tracefs directory, or None (never mounts anything)."""
        return self._fact("tracefs_root", _find_tracefs)  # type: ignore[no-any-return]

    @property
    def tracefs_features(self) -> "KernelFeatures":
        """The dynamic-event rules of this kernel (its tracefs README; none: the newest)."""
        return self._fact("tracefs_features", self._read_readme)  # type: ignore[no-any-return]

    def _read_readme(self) -> "KernelFeatures":
        from ..probes import KernelFeatures

        root = self.tracefs_root
        if root:
            try:
                with open(os.path.join(root, "README")) as f:
                    return KernelFeatures.from_readme(f.read(), release=self.release)
            except OSError:
                pass
        return KernelFeatures.latest()

    @property
    def eprobes(self) -> bool:
        """Whether the kernel has event probes (``e:`` dynamic events).

        They need ``dynamic_events``; kernels that made them optional say so in
        their config (CONFIG_EPROBE_EVENTS); without a readable config they are
        assumed present.
        """
        root = self.tracefs_root
        if root is None or not os.path.exists(os.path.join(root, "dynamic_events")):
            return False
        config = self.config
        return config is None or "# CONFIG_EPROBE_EVENTS is not set" not in config

    # -- BTF, config ---------------------------------------------------------
    @property
    def btf(self) -> Optional["BTF"]:
        """The kernel's BTF (opened on first use), or None when there is none."""
        return self._fact("btf", self._load_btf)  # type: ignore[no-any-return]

    def _load_btf(self) -> Optional["BTF"]:
        from ..btf import load_vmlinux
        from ..errors import BTFError

        try:
            return load_vmlinux()
        except BTFError as e:
            self._facts["btf_error"] = e
            return None

    def btf_or_none(self) -> Optional["BTF"]:
        """:attr:`btf` as a callable (a lazy source for type providers)."""
        return self.btf

    def btf_or_raise(self) -> "BTF":
        """:attr:`btf`, or the :class:`~kprobes.errors.BTFError` saying why there is none."""
        btf = self.btf
        if btf is None:
            err = self._facts.get("btf_error")
            if isinstance(err, Exception):
                raise err
            from ..errors import BTFError

            raise BTFError("this kernel has no BTF", hint="see kprobes doctor")
        return btf

    @property
    def config(self) -> Optional[str]:
        """The kernel's build config text (/proc/config.gz or /boot/config-RELEASE), or None."""
        return self._fact("config", lambda: _read_config(self.release))  # type: ignore[no-any-return]

    # -- BPF -----------------------------------------------------------------
    @property
    def bpf_features(self) -> "Features":
        """The kernel's BPF features (probed, or from this boot's cache)."""
        return self._fact("bpf_features", _probe_bpf)  # type: ignore[no-any-return]

    # -- symbols -------------------------------------------------------------
    @property
    def symbols(self) -> "KernelSymbols":
        """kallsyms, available_filter_functions and the kprobe blacklist (read once)."""
        return self._fact("symbols", self._load_symbols)  # type: ignore[no-any-return]

    def _load_symbols(self) -> "KernelSymbols":
        if self._symbols_loader is not None:
            return self._symbols_loader()
        from .symbols import load_kernel_symbols

        return load_kernel_symbols(tracefs=self.tracefs_root)


def _find_tracefs() -> Optional[str]:
    from .tracefs.fs import find_tracefs

    try:
        return find_tracefs(mount=False)
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return None


def _read_config(release: str) -> Optional[str]:
    try:
        import gzip

        with gzip.open("/proc/config.gz", "rt", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        pass
    try:
        with open(f"/boot/config-{release}", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _probe_bpf() -> "Features":
    from .bpf.features import probe_features

    return probe_features()


def bpf_refusal(feats: "Features", providers: "set[str]") -> Optional[str]:
    """Why the BPF engine cannot run programs using ``providers`` here (None: it can)."""
    if not feats.bpf:
        err = feats.error or "bpf() is unusable"
        code = next((c for c in ("EPERM", "EACCES", "ENOSYS", "EINVAL") if c in err), "")
        if code in ("EPERM", "EACCES"):
            return f"this kernel refuses BPF programs ({code})"
        if code == "ENOSYS":
            return "this kernel has no bpf() system call (ENOSYS)"
        return f"BPF is unusable here: {err.splitlines()[0] if err else 'unknown error'}"
    need = {"kprobe": "KPROBE", "kretprobe": "KPROBE", "uprobe": "KPROBE", "uretprobe": "KPROBE",
            "usdt": "KPROBE",
            "tracepoint": "TRACEPOINT", "profile": "PERF_EVENT", "software": "PERF_EVENT",
            "hardware": "PERF_EVENT", "rawtracepoint": "RAW_TRACEPOINT"}
    for prov in sorted(providers):
        t = need.get(prov)
        if t is not None and not feats.prog_types.get(t, False):
            return f"this kernel refuses BPF {t} programs (needed by {prov} probes)"
    if providers & {"kfunc", "kretfunc"} and not feats.fentry:
        return (f"kfunc/kretfunc (fentry/fexit) do not work here: "
                f"{feats.fentry_reason or 'not probed'}; the kprobe:/kretprobe: form traces the "
                "same functions")
    if providers & {"kprobe", "kretprobe"} and not feats.kprobe_pmu:
        return "this kernel has no kprobe PMU for BPF (CONFIG_KPROBE_EVENTS)"
    if providers & {"uprobe", "uretprobe", "usdt"} and not feats.uprobe_pmu:
        return "this kernel has no uprobe PMU for BPF (CONFIG_UPROBE_EVENTS)"
    for h in ("probe_read_kernel", "probe_read_user"):
        if h in feats.helpers and not feats.helpers[h] and not feats.helpers.get("probe_read", False):
            return f"this kernel lacks the BPF helper {h}"
    maps = feats.map_types
    if maps and not (maps.get("RINGBUF") or maps.get("PERF_EVENT_ARRAY")):
        return "this kernel has neither a BPF ring buffer nor perf event arrays"
    return None


_running: Optional[Kernel] = None


def running_kernel() -> Kernel:
    """The process' :class:`Kernel` (made on first use)."""
    global _running
    if _running is None:
        _running = Kernel()
    return _running


def use_kernel(kernel: Optional[Kernel]) -> Optional[Kernel]:
    """Make ``kernel`` the process' running kernel (None: a fresh one on next use); returns the old."""
    global _running
    old, _running = _running, kernel
    return old
