"""The event model shared by the trace_pipe text parser and the raw page decoder."""

from __future__ import annotations

from typing import Mapping, Optional, Tuple, Union

from .._record import dataclass, field

FieldValue = Union[int, str, bytes, Tuple[object, ...]]


@dataclass(frozen=True)
class TraceEvent:
    """One event read from a tracefs instance.

    ``timestamp_ns`` is the event's time in the instance's trace clock, in
    nanoseconds (the text format only has microseconds: those events have
    ``timestamp_ns`` rounded to whole microseconds).

    ``fields`` holds the event's own fields (probe fetchargs, tracepoint
    fields) typed as the event format says: ints for numbers, str for
    strings.  For kprobe/uprobe events ``location`` is the text form of the
    probed place as trace_pipe prints it (``do_sys_openat2+0x0/0x1b0``) and,
    for return probes, ``caller`` the place returned to (the kernel prints
    ``(CALLER <- LOCATION)``).  ``tgid`` is set when the buffer records it.
    ``probe_ip``/``ret_ip`` carry the raw addresses when decoded from
    binary pages.
    """

    comm: str
    pid: int
    cpu: int
    timestamp_ns: int
    event: str
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    group: Optional[str] = None
    flags: Optional[str] = None
    location: Optional[str] = None
    caller: Optional[str] = None
    probe_ip: Optional[int] = None
    ret_ip: Optional[int] = None
    tgid: Optional[int] = None

    @property
    def timestamp(self) -> float:
        """Seconds, as trace_pipe prints them."""
        return self.timestamp_ns / 1e9

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable dict (NDJSON records of ``--json``)."""
        out: dict[str, object] = {
            "ts": self.timestamp_ns,
            "cpu": self.cpu,
            "comm": self.comm,
            "pid": self.pid,
            "event": self.event if self.group is None else f"{self.group}/{self.event}",
        }
        if self.location is not None:
            out["location"] = self.location
        if self.caller is not None:
            out["caller"] = self.caller
        out["fields"] = {
            k: (v.decode("latin-1") if isinstance(v, bytes) else list(v) if isinstance(v, tuple) else v)
            for k, v in self.fields.items()
        }
        return out


@dataclass(frozen=True)
class UnparsedLine:
    """A trace_pipe line the parser could not understand: reported, never dropped."""

    text: str
    reason: str
