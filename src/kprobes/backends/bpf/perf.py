"""perf events a BPF program attaches to, each owned by a :class:`PerfEvent`.

* kprobes/kretprobes and uprobes/uretprobes through the *dynamic PMUs*
  ``/sys/bus/event_source/devices/{kprobe,uprobe}`` (v4.17, commit e12f03d7031a
  "perf/core: Implement the 'perf_kprobe' PMU"): the probe lives exactly as long
  as the fd and nothing is written to tracefs' ``kprobe_events`` (it shows in
  ``/sys/kernel/debug/kprobes/list`` while open).  ``config`` carries the
  retprobe bit named by ``format/retprobe`` (``config:0``), ``config1`` a
  pointer to the function name (kprobe) or the binary's path (uprobe),
  ``config2`` the offset (or, with ``config1 == 0``, a kernel address).  The PMU
  has no way to ask for a kretprobe ``maxactive``: the kernel's default applies.
* tracepoints by id (``PERF_TYPE_TRACEPOINT``, ``events/GROUP/EVENT/id``);
* software events on every CPU: ``cpu-clock`` sampling at a frequency
  (``profile:hz:N``) and ``PERF_COUNT_SW_BPF_OUTPUT``, the per-CPU targets of a
  ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` (the ring readers mmap these fds).

``perf_event_attr`` is packed in its VER5 layout (112 bytes, v4.1+).
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ...errors import BPFError, FeatureMissing
from .sys import OwnedFd, cstr, ioctl, online_cpus, perf_event_open

__all__ = [
    "PerfEvent",
    "PerfEventSet",
    "perf_attr",
    "pmu_type",
    "pmu_config_bit",
    "open_kprobe",
    "open_uprobe",
    "open_tracepoint",
    "tracepoint_id",
    "open_bpf_output",
    "open_bpf_output_all",
    "open_cpu_clock",
    "PERF_TYPE_HARDWARE",
    "PERF_TYPE_SOFTWARE",
    "PERF_TYPE_TRACEPOINT",
    "PERF_COUNT_SW_CPU_CLOCK",
    "PERF_COUNT_SW_BPF_OUTPUT",
    "PERF_SAMPLE_RAW",
    "IOC_ENABLE",
    "IOC_DISABLE",
    "IOC_SET_BPF",
    "PMU_ROOT",
]

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2

PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_BPF_OUTPUT = 10

PERF_SAMPLE_RAW = 1 << 10

# perf_event_attr flag bits (the bitfield after read_format).
_F_DISABLED = 1 << 0
_F_FREQ = 1 << 10
_F_WATERMARK = 1 << 14

#: _IO('$', 0), _IO('$', 1), _IOW('$', 8, __u32) (include/uapi/linux/perf_event.h).
IOC_ENABLE = 0x2400
IOC_DISABLE = 0x2401
IOC_SET_BPF = 0x40042408

PERF_ATTR_SIZE_VER5 = 112
PMU_ROOT = "/sys/bus/event_source/devices"
_ATTR_HEAD = struct.Struct("=IIQQQQQIIQQ")  # up to config2 (72 bytes)


def perf_attr(
    type_: int,
    config: int = 0,
    *,
    sample_period: int = 0,
    sample_freq: int = 0,
    sample_type: int = 0,
    disabled: bool = False,
    wakeup_events: int = 0,
    wakeup_watermark: int = 0,
    config1: int = 0,
    config2: int = 0,
) -> bytes:
    """A packed ``struct perf_event_attr`` (VER5 size).

    ``sample_freq`` sets the ``freq`` bit and replaces ``sample_period``;
    ``wakeup_watermark`` (bytes) sets the ``watermark`` bit and replaces
    ``wakeup_events``.
    """
    flags = _F_DISABLED if disabled else 0
    period = sample_period
    if sample_freq:
        flags |= _F_FREQ
        period = sample_freq
    wake = wakeup_events
    if wakeup_watermark:
        flags |= _F_WATERMARK
        wake = wakeup_watermark
    head = _ATTR_HEAD.pack(type_, PERF_ATTR_SIZE_VER5, config, period, sample_type, 0, flags,
                           wake, 0, config1, config2)
    return head + b"\0" * (PERF_ATTR_SIZE_VER5 - len(head))


class PerfEvent(OwnedFd):
    """One perf event fd: closing it removes the probe (or stops the sampling).

    ``description`` says what it is (``kprobe:vfs_read``, ``cpu 3 bpf-output``).
    """

    def __init__(self, fd: int, description: str, cpu: int = -1) -> None:
        self.fd = fd
        self.description = description
        self.cpu = cpu

    def enable(self) -> None:
        ioctl(self.fd, IOC_ENABLE, 0, what=f"PERF_EVENT_IOC_ENABLE on {self.description}")

    def disable(self) -> None:
        ioctl(self.fd, IOC_DISABLE, 0, what=f"PERF_EVENT_IOC_DISABLE on {self.description}")

    def set_bpf(self, prog_fd: int) -> None:
        """``PERF_EVENT_IOC_SET_BPF``: the pre-5.15 way to attach a program."""
        ioctl(self.fd, IOC_SET_BPF, prog_fd, what=f"PERF_EVENT_IOC_SET_BPF on {self.description}")

    def __repr__(self) -> str:
        return f"PerfEvent({self.description!r}, fd={self.fd})"


class PerfEventSet:
    """Several perf events owned together (one per CPU, or one per function)."""

    def __init__(self, events: Iterable[PerfEvent] = ()) -> None:
        self.events: List[PerfEvent] = list(events)

    def __iter__(self) -> Iterator[PerfEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def close(self) -> None:
        for ev in self.events:
            ev.close()

    def __enter__(self) -> "PerfEventSet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_pmu_cache: Dict[Tuple[str, str, str], int] = {}


def pmu_type(name: str, root: str = PMU_ROOT) -> int:
    """The dynamic PMU number of ``name`` (``kprobe``, ``uprobe``); read once per process."""
    got = _pmu_cache.get((root, name, "type"))
    if got is not None:
        return got
    path = os.path.join(root, name, "type")
    try:
        with open(path) as f:
            val = int(f.read().strip())
    except FileNotFoundError:
        need = "CONFIG_KPROBE_EVENTS" if name == "kprobe" else "CONFIG_UPROBE_EVENTS"
        raise FeatureMissing(
            f"this kernel has no {name} perf PMU ({path} is missing)",
            hint=f"BPF {name}s need a kernel with {need} (v4.17+ for the PMU)",
        ) from None
    except (OSError, ValueError) as e:
        raise BPFError(f"cannot read {path}: {e}") from None
    _pmu_cache[(root, name, "type")] = val
    return val


def pmu_config_bit(name: str, field: str, root: str = PMU_ROOT) -> int:
    """The bit that ``format/FIELD`` names (``config:0`` -> 0); read once per process."""
    got = _pmu_cache.get((root, name, field))
    if got is not None:
        return got
    path = os.path.join(root, name, "format", field)
    try:
        with open(path) as f:
            spec = f.read().strip()
    except FileNotFoundError:
        raise FeatureMissing(f"{path} is missing", hint=f"this kernel's {name} PMU has no {field}") from None
    except OSError as e:
        raise BPFError(f"cannot read {path}: {e}") from None
    where, _, bits = spec.partition(":")
    if where != "config" or not bits:
        raise FeatureMissing(f"unexpected format {spec!r} in {path}")
    _pmu_cache[(root, name, field)] = int(bits.split("-", 1)[0])
    return _pmu_cache[(root, name, field)]


def open_kprobe(
    func: Optional[str] = None,
    *,
    offset: int = 0,
    address: Optional[int] = None,
    retprobe: bool = False,
    pmu_root: str = PMU_ROOT,
) -> PerfEvent:
    """A kprobe (or kretprobe) perf event on ``func+offset`` or a kernel ``address``.

    Created disabled; :mod:`.attach` enables it once a program is attached.
    """
    pmu = pmu_type("kprobe", pmu_root)
    config = 1 << pmu_config_bit("kprobe", "retprobe", pmu_root) if retprobe else 0
    kind = "kretprobe" if retprobe else "kprobe"
    if func is not None:
        name = cstr(func)
        attr = perf_attr(pmu, config, sample_period=1, wakeup_events=1, disabled=True,
                         config1=ctypes.addressof(name), config2=offset)
        what = f"{kind}:{func}" + (f"+{offset}" if offset else "")
    elif address is not None:
        attr = perf_attr(pmu, config, sample_period=1, wakeup_events=1, disabled=True,
                         config1=0, config2=address)
        what = f"{kind}:0x{address:x}"
    else:
        raise BPFError("open_kprobe needs a function name or an address")
    # pid -1, cpu 0: the probe itself fires on every CPU; the event only needs a home.
    fd = perf_event_open(attr, -1, 0, what=f"perf_event_open({what})")
    return PerfEvent(fd, what)


def open_uprobe(
    path: str,
    offset: int,
    *,
    retprobe: bool = False,
    pid: int = -1,
    ref_ctr_offset: int = 0,
    pmu_root: str = PMU_ROOT,
) -> PerfEvent:
    """A uprobe (or uretprobe) on file ``offset`` of ``path``; ``pid`` -1 = every process.

    ``ref_ctr_offset`` is the USDT semaphore offset (``format/ref_ctr_offset``).
    """
    pmu = pmu_type("uprobe", pmu_root)
    config = 1 << pmu_config_bit("uprobe", "retprobe", pmu_root) if retprobe else 0
    if ref_ctr_offset:
        config |= ref_ctr_offset << pmu_config_bit("uprobe", "ref_ctr_offset", pmu_root)
    name = cstr(os.fsencode(path))
    attr = perf_attr(pmu, config, sample_period=1, wakeup_events=1, disabled=True,
                     config1=ctypes.addressof(name), config2=offset)
    what = f"{'uretprobe' if retprobe else 'uprobe'}:{path}:0x{offset:x}"
    fd = perf_event_open(attr, pid, 0 if pid == -1 else -1, what=f"perf_event_open({what})")
    return PerfEvent(fd, what)


def tracepoint_id(group: str, event: str, tracefs_root: str) -> int:
    """The id of tracepoint ``group:event`` (``events/GROUP/EVENT/id`` under tracefs)."""
    path = os.path.join(tracefs_root, "events", group, event, "id")
    try:
        with open(path) as f:
            return int(f.read().strip())
    except FileNotFoundError:
        raise BPFError(f"no tracepoint {group}:{event} ({path} is missing)",
                       hint="list them with: kprobes list 'tracepoint:*'") from None
    except (OSError, ValueError) as e:
        raise BPFError(f"cannot read {path}: {e}", hint="run as root") from None


def open_tracepoint(group: str, event: str, tracefs_root: str, *, pid: int = -1) -> PerfEvent:
    """A perf event on tracepoint ``group:event`` (nothing is written to tracefs)."""
    tp = tracepoint_id(group, event, tracefs_root)
    attr = perf_attr(PERF_TYPE_TRACEPOINT, tp, sample_period=1, wakeup_events=1, disabled=True)
    what = f"tracepoint:{group}:{event}"
    fd = perf_event_open(attr, pid, 0 if pid == -1 else -1, what=f"perf_event_open({what})")
    return PerfEvent(fd, what)


def open_bpf_output(cpu: int, *, wakeup_events: int = 1, wakeup_watermark: int = 0) -> PerfEvent:
    """A ``PERF_COUNT_SW_BPF_OUTPUT`` event on ``cpu`` with ``PERF_SAMPLE_RAW`` samples:
    the slot of ``bpf_perf_event_output()`` for that CPU in a PERF_EVENT_ARRAY.

    Enabled at once; the caller mmaps the fd (1 + 2^n pages) to read it and
    stores the fd in the map at index ``cpu``.
    """
    attr = perf_attr(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_BPF_OUTPUT, sample_period=1,
                     sample_type=PERF_SAMPLE_RAW, wakeup_events=wakeup_events,
                     wakeup_watermark=wakeup_watermark)
    what = f"cpu {cpu} bpf-output"
    fd = perf_event_open(attr, -1, cpu, what=f"perf_event_open({what})")
    return PerfEvent(fd, what, cpu)


def open_bpf_output_all(cpus: Optional[Sequence[int]] = None, **kw: int) -> PerfEventSet:
    """:func:`open_bpf_output` on every online CPU (or ``cpus``); all or nothing."""
    out = PerfEventSet()
    try:
        for cpu in (cpus if cpus is not None else online_cpus()):
            out.events.append(open_bpf_output(cpu, **kw))
    except BaseException:
        out.close()
        raise
    return out


def open_cpu_clock(cpu: int, *, hz: int = 0, period_ns: int = 0) -> PerfEvent:
    """A ``cpu-clock`` sampling event on ``cpu``: ``hz`` samples a second
    (``profile:hz:N``) or one every ``period_ns`` (``interval``); created disabled."""
    if hz:
        attr = perf_attr(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, sample_freq=hz, disabled=True)
        what = f"cpu {cpu} cpu-clock {hz} Hz"
    else:
        attr = perf_attr(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, sample_period=period_ns or 1_000_000,
                         disabled=True)
        what = f"cpu {cpu} cpu-clock every {period_ns} ns"
    fd = perf_event_open(attr, -1, cpu, what=f"perf_event_open({what})")
    return PerfEvent(fd, what, cpu)
