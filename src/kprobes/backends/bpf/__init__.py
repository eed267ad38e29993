"""eBPF through ``bpf(2)`` and ``perf_event_open(2)`` in pure Python (ctypes).

* :mod:`.sys`      -- the syscalls, attr packing, errno -> :mod:`kprobes.errors`;
* :mod:`.perf`     -- perf events: kprobe/uprobe PMUs, tracepoints, software events;
"""

from __future__ import annotations
