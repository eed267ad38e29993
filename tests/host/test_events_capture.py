"""Real pages from this host's tracefs, decoded and compared with the kernel's own text.

Makes its own instance (instances/kpcap<pid>) and uprobe group (kpcap<pid>), triggers
events deterministically (getenv with marker names, opens, execs, sleeps), reads the
non-consuming ``trace`` text and the per-CPU trace_pipe_raw pages, and removes all it made.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.host

ROOT = "/sys/kernel/tracing"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def require(reason: str) -> None:
    if os.environ.get("KPROBES_REQUIRE_KERNEL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def capture_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kp_capture_pages", FIXTURES / "capture_pages.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kp_capture_pages", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def tracefs() -> str:
    if os.geteuid() != 0:
        require("needs root to create tracefs instances")
    if not os.path.exists(os.path.join(ROOT, "instances")):
        require(f"tracefs not mounted at {ROOT}")
    if not os.path.exists(os.path.join(ROOT, "uprobe_events")):
        require("kernel has no uprobe_events")
    try:
        import elftools  # noqa: F401
    except ImportError:
        require("pyelftools is needed to find libc's getenv")
    return ROOT


def test_raw_pages_match_trace_text(tracefs: str) -> None:
    cap_mod = capture_module()
    tag = f"kpcap{os.getpid()}"
    try:
        cap = cap_mod.capture(tracefs)
    finally:
        assert not os.path.exists(os.path.join(tracefs, "instances", tag)), "instance left behind"
        with open(os.path.join(tracefs, "uprobe_events")) as f:
            assert f"{tag}/" not in f.read(), "uprobe events left behind"
    assert cap.pages, "no page read from trace_pipe_raw"
    assert cap_mod.check(cap) == []
    raw, text, results = cap_mod.decode_capture(cap)
    assert len(raw) >= len(cap.expected["markers"]) + cap.expected["exec_count"]
    assert all(len(p) % cap.page_size == 0 for p in cap.pages.values())
    assert sum(len(r.events) for r in results) == len(raw)
