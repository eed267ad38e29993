"""eBPF through ``bpf(2)`` and ``perf_event_open(2)`` in pure Python (ctypes).

* :mod:`.sys`      -- the syscalls, attr packing, errno -> :mod:`kprobes.errors`;
* :mod:`.maps`     -- :class:`Map`: create, lookup/update/delete, batches, per-CPU values;
* :mod:`.prog`     -- :class:`Program`: load with the verifier's log on failure;
* :mod:`.perf`     -- perf events: kprobe/uprobe PMUs, tracepoints, software events;
* :mod:`.attach`   -- :class:`Link`: perf links / ioctl, kprobe_multi with fallback;
* :mod:`.features` -- what this kernel's BPF can do (probed, cached per boot);
* :mod:`.session`  -- :class:`BpfSession`, the owner of all of the above;
* :mod:`.perfring`, :mod:`.ringbuf` -- readers of perf rings and BPF ring buffers.

Importing touches no kernel.  Programs are written with
:class:`kprobes.bpf.Assembler`; see the README's "eBPF from Python" section.
"""

from __future__ import annotations

from .attach import (
    KprobeAttachment,
    Link,
    attach_kprobe,
    attach_kprobe_multi,
    attach_kprobes,
    attach_perf_event,
    attach_tracepoint,
    attach_uprobe,
    kernel_functions,
)
from .features import Features, probe_features
from .maps import Map, MapInfo
from .perf import (
    PerfEvent,
    PerfEventSet,
    open_bpf_output,
    open_bpf_output_all,
    open_cpu_clock,
    open_kprobe,
    open_tracepoint,
    open_uprobe,
)
from .prog import ProgInfo, Program, prog_ids, prog_info_by_id, programs_named
from .session import BpfSession
from .sys import online_cpus, possible_cpus

__all__ = [
    "BpfSession",
    "Map", "MapInfo",
    "Program", "ProgInfo", "prog_ids", "prog_info_by_id", "programs_named",
    "Link", "KprobeAttachment", "attach_perf_event", "attach_kprobe", "attach_uprobe",
    "attach_tracepoint", "attach_kprobe_multi", "attach_kprobes", "kernel_functions",
    "PerfEvent", "PerfEventSet", "open_kprobe", "open_uprobe", "open_tracepoint",
    "open_bpf_output", "open_bpf_output_all", "open_cpu_clock",
    "Features", "probe_features",
    "possible_cpus", "online_cpus",
]
