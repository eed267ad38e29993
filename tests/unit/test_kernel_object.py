"""backends.kernel.Kernel: one object for the running kernel's facts, read lazily, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from kprobes.backends import prepare
from kprobes.backends.kernel import Kernel, running_kernel, use_kernel
from kprobes.errors import BTFError


def test_facts_are_read_once_and_pinned_values_win(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("\t  +|-[u]<offset>(<fetcharg>)\n")
    (tmp_path / "dynamic_events").write_text("")
    calls = []

    def symbols() -> object:
        calls.append(1)
        return object()

    k = Kernel(tracefs_root=str(tmp_path), config="# CONFIG_EPROBE_EVENTS is not set\n",
               symbols=symbols, release="6.1.0-test")  # type: ignore[arg-type]
    assert k.eprobes is False  # the config says so, though dynamic_events exists
    assert k.symbols is k.symbols and calls == [1]
    feats = k.tracefs_features
    assert feats is k.tracefs_features
    assert Kernel(tracefs_root=str(tmp_path), config=None).eprobes is True
    assert Kernel(tracefs_root=None).eprobes is False


def test_btf_error_is_kept_for_who_needs_btf(monkeypatch: pytest.MonkeyPatch) -> None:
    import kprobes.btf as btf_pkg

    def refuse() -> object:
        raise BTFError("no /sys/kernel/btf/vmlinux", hint="CONFIG_DEBUG_INFO_BTF=y")

    monkeypatch.setattr(btf_pkg, "load_vmlinux", refuse)
    k = Kernel(tracefs_root=None)
    assert k.btf is None and k.btf_or_none() is None
    with pytest.raises(BTFError, match="no /sys/kernel/btf/vmlinux"):
        k.btf_or_raise()
    old = use_kernel(k)
    try:
        assert running_kernel() is k
        with pytest.raises(BTFError):
            prepare.vmlinux_btf()  # the definition path asks the same object
        assert prepare.running_kernel_features(None) is k.tracefs_features
    finally:
        use_kernel(old)


def test_bpf_features_cache_falls_back_to_a_writable_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kprobes.backends.bpf import features as F

    (tmp_path / "afile").write_text("")  # /run not writable (even for root: not a directory)
    monkeypatch.setattr(F, "RUN_CACHE", str(tmp_path / "afile" / "bpf-features.json"))
    monkeypatch.setenv("KPROBES_CACHE_DIR", str(tmp_path / "home"))
    feats = F.Features(bpf=True, boot_id="b1", prog_types={"KPROBE": True})
    F._store_cache(feats)
    got = F._load_cache("b1")
    assert got is not None and got.from_cache and got.prog_types == {"KPROBE": True}
    assert (tmp_path / "home" / "bpf-features.json").exists()
    assert F._load_cache("other-boot") is None
    monkeypatch.setenv("KPROBES_CACHE_DIR", "")
    assert F._cache_paths() == []
