"""Event-time comm for tracepoints: CommTracker and TrackedReader (no kernel)."""

from __future__ import annotations

from typing import Dict, List, Optional

from kprobes.backends.tracefs.reader import CommTracker, TrackedReader
from kprobes.events.model import TraceEvent, UnparsedLine


def ev(ts: int, tid: int, comm: str = "saved", event: str = "sys_enter_getppid",
       group: Optional[str] = "syscalls", fields: Optional[Dict[str, object]] = None) -> TraceEvent:
    return TraceEvent(comm=comm, pid=tid, cpu=0, timestamp_ns=ts, event=event, group=group,
                      fields=dict(fields or {}))  # type: ignore[arg-type]


def rename(ts: int, tid: int, old: str, new: str) -> TraceEvent:
    return ev(ts, tid, event="task_rename", group="task",
              fields={"pid": tid, "oldcomm": old, "newcomm": new})


def fork(ts: int, parent: int, child: int, comm: str) -> TraceEvent:
    return ev(ts, parent, event="task_newtask", group="task", fields={"pid": child, "comm": comm})


class Fake:
    kind = "raw"

    def __init__(self, batches: List[List[TraceEvent]]) -> None:
        self.batches = batches
        self.unparsed: List[UnparsedLine] = []

    def update(self, probes: object) -> None:
        pass

    def wait(self, timeout_ms: int) -> None:
        pass

    def read(self) -> List[TraceEvent]:
        return self.batches.pop(0) if self.batches else []

    def flush(self) -> List[TraceEvent]:
        return []

    def close(self) -> None:
        pass


def test_tracker_orders_renames_and_events_in_one_batch() -> None:
    t = CommTracker()
    out = t.apply([fork(1, 10, 11, "sh"), ev(2, 11), rename(3, 11, "sh", "prog"), ev(4, 11),
                   rename(5, 11, "prog", "NEW"), ev(6, 11), ev(7, 99)])
    assert [(e.pid, e.comm) for e in out] == [(11, "sh"), (11, "prog"), (11, "NEW"), (99, "saved")]


def test_first_rename_fixes_earlier_events_of_an_unknown_pid() -> None:
    out = CommTracker().apply([ev(1, 7), ev(2, 7), rename(3, 7, "old", "new"), ev(4, 7)])
    assert [e.comm for e in out] == ["old", "old", "new"]


def test_events_with_their_own_comm_are_left_alone() -> None:
    t = CommTracker(exact=["kp"])
    out = t.apply([rename(1, 5, "a", "b"), ev(2, 5, comm="fetched", event="kp", group=None)])
    assert out[0].comm == "fetched"


def test_renames_read_before_their_events_wait_for_them() -> None:
    # the task events of a rename pair are read in batch 1, the events between them in batch 2
    main = Fake([[ev(1, 3)], [ev(10, 8), ev(12, 8), ev(21, 8)]])
    tasks = Fake([[fork(2, 3, 8, "sh"), rename(5, 8, "sh", "prog"), rename(20, 8, "prog", "NEW")], []])
    r = TrackedReader(main, tasks, CommTracker())
    assert [e.comm for e in r.read()] == ["saved"]
    assert [e.comm for e in r.read()] == ["prog", "prog", "NEW"]
