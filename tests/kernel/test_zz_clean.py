"""Runs last in the kernel suite: nothing may be left in the guest's tracefs."""

from __future__ import annotations

import os

from tests.helpers import tracefs


def test_no_dynamic_events_instances_or_enabled_events_left() -> None:
    root = tracefs()
    for rel in ("dynamic_events", "kprobe_events", "uprobe_events"):
        p = os.path.join(root, rel)
        if os.path.exists(p):
            with open(p) as f:
                left = [ln for ln in f.read().splitlines() if ln and not ln.startswith("#")]
            assert left == [], f"{rel} still has {left}"
    assert os.listdir(os.path.join(root, "instances")) == []
    enabled = []
    events = os.path.join(root, "events")
    for sys_ in os.listdir(events):
        d = os.path.join(events, sys_)
        if not os.path.isdir(d):
            continue
        for ev in os.listdir(d):
            en = os.path.join(d, ev, "enable")
            if os.path.exists(en):
                with open(en) as f:
                    if f.read().strip() not in ("0", ""):
                        enabled.append(f"{sys_}/{ev}")
    assert enabled == []
