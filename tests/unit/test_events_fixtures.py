"""Decode real pages captured on a 6.18 host (tests/fixtures/capture_pages.py made them)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def capture_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kp_capture_pages", FIXTURES / "capture_pages.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kp_capture_pages", mod)
    spec.loader.exec_module(mod)
    return mod


CAP = capture_module()


def test_host_618_pages_match_text_and_triggers() -> None:
    cap = CAP.load(str(FIXTURES / "host-6.18"))
    assert cap.pages, "fixture has no pages"
    assert CAP.check(cap) == []


def test_host_618_decoded_details() -> None:
    cap = CAP.load(str(FIXTURES / "host-6.18"))
    raw, text, results = CAP.decode_capture(cap)
    exp = cap.expected
    genv = [e for e in raw if e.event == "genv"]
    assert [e.fields["name"] for e in genv] == exp["markers"]
    assert all(e.group == "uprobes" and e.probe_ip == genv[0].probe_ip for e in genv)
    rets = [e for e in raw if e.event == "genvr"]
    assert len(rets) >= len(exp["markers"]) and all(e.ret_ip and e.probe_ip == genv[0].probe_ip for e in rets)
    stamps = [e.timestamp_ns for e in raw]
    assert stamps == sorted(stamps)
    assert all(r.data_length > 0 for r in results)


def test_check_notices_a_disagreement() -> None:
    cap = CAP.load(str(FIXTURES / "host-6.18"))
    cap.trace_text = cap.trace_text.replace('name="KPCAP_0', 'name="XPCAP_0', 1)
    assert any("getenv marker" in p or "!=" in p for p in CAP.check(cap))
