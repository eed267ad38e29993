"""BTF against this machine's kernel: /sys/kernel/btf/vmlinux and tracefs formats.

The kernel reports field offsets of the structs it copies into trace entries
(``events/<system>/<event>/format``).  Those structs — ``struct trace_entry``
and ``struct trace_event_raw_<event>`` — are also in BTF, so every offset can
be checked against the kernel's own word.  :func:`compare_tracepoint_offsets`
is reusable by the VM tests on other kernels.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pytest

from kprobes.btf import BTF, Composite, compile_btf_arg, find_member, load_vmlinux
from kprobes.btf.btf import FuncSignature

pytestmark = pytest.mark.host

VMLINUX = "/sys/kernel/btf/vmlinux"
TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_FIELD = re.compile(
    r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);", re.M
)


def _require(reason: str) -> None:
    if os.environ.get("KPROBES_REQUIRE_KERNEL") == "1":
        pytest.fail(f"prerequisite missing and KPROBES_REQUIRE_KERNEL=1: {reason}", pytrace=False)
    pytest.skip(reason)


def _tracefs() -> str:
    for root in TRACEFS_CANDIDATES:
        if os.path.exists(os.path.join(root, "events")):
            return root
    _require("tracefs is not mounted")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def vmlinux() -> BTF:
    if not os.path.exists(VMLINUX):
        _require(f"{VMLINUX} missing (kernel built without CONFIG_DEBUG_INFO_BTF)")
    return load_vmlinux()


@dataclass(frozen=True)
class FieldCheck:
    field: str
    format_offset: int
    format_size: int
    btf_offset: int
    btf_size: int

    @property
    def ok(self) -> bool:
        return self.format_offset == self.btf_offset and self.format_size == self.btf_size


def _format_fields(path: str) -> list[tuple[str, int, int]]:
    with open(path) as f:
        text = f.read()
    out = []
    for m in _FIELD.finditer(text):
        decl = m.group("decl").strip()
        name_part = decl.split()[-1].split("[", 1)[0]
        if decl.startswith(("__data_loc", "__rel_loc")):
            name_part = decl.split()[0] + "_" + name_part
        out.append((name_part, int(m.group("offset")), int(m.group("size"))))
    return out


def compare_tracepoint_offsets(
    btf: BTF, tracefs_root: str, system: str, event: str, struct_name: str | None = None
) -> list[FieldCheck]:
    """Compare a tracepoint's format offsets/sizes with BTF; AssertionError on a mismatch.

    Common fields (``common_pid``...) are checked against ``struct trace_entry``;
    the event's own fields against ``struct trace_event_raw_<event>`` (or
    ``struct_name``), whose first member is the ``struct trace_entry ent``.
    Returns every comparison made.  LookupError when BTF has no such struct.
    """
    fmt = os.path.join(tracefs_root, "events", system, event, "format")
    fields = _format_fields(fmt)
    entry = btf.resolve(btf.find("trace_entry", "struct"))
    sname = struct_name or f"trace_event_raw_{event}"
    ids = btf.ids_by_name(sname, "struct")
    if not ids:
        raise LookupError(f"no struct {sname} in BTF")
    raw = btf.type(ids[0])
    assert isinstance(entry, Composite) and isinstance(raw, Composite)
    checks = []
    for name, off, size in fields:
        if name.startswith("common_"):
            m = find_member(btf, entry, name[len("common_") :])
        else:
            m = find_member(btf, raw, name)
        if m is None:
            raise AssertionError(f"{system}/{event}: field {name} not found in BTF {sname}")
        checks.append(FieldCheck(name, off, size, m.offset, btf.size_of(m.type)))
    bad = [c for c in checks if not c.ok]
    assert not bad, f"{system}/{event}: BTF disagrees with the format file: {bad}"
    return checks


def test_do_sys_openat2_signature(vmlinux: BTF) -> None:
    sig: FuncSignature = vmlinux.func_proto("do_sys_openat2")
    assert [p.name for p in sig.params] == ["dfd", "filename", "how"]
    from kprobes.btf import format_func

    text = format_func(vmlinux, sig)
    assert "do_sys_openat2(int dfd, const char *filename, struct open_how *how)" in text


def test_task_struct_has_pid(vmlinux: BTF) -> None:
    task = vmlinux.resolve(vmlinux.find("task_struct", "struct"))
    assert isinstance(task, Composite)
    pid = find_member(vmlinux, task, "pid")
    assert pid is not None and vmlinux.size_of(pid.type) == 4
    assert 0 < pid.offset < task.size


def test_sk_dport_fetcharg(vmlinux: BTF) -> None:
    common = vmlinux.resolve(vmlinux.find("sock_common", "struct"))
    assert isinstance(common, Composite)
    m = find_member(vmlinux, common, "skc_dport")
    assert m is not None
    text = compile_btf_arg(vmlinux, "tcp_connect", "sk->__sk_common.skc_dport", "x86_64")
    assert text == f"skc_dport=+{m.offset}(%di):u16"


def test_trace_entry_matches_common_fields(vmlinux: BTF) -> None:
    root = _tracefs()
    fmt = os.path.join(root, "events", "sched", "sched_switch", "format")
    if not os.access(fmt, os.R_OK):
        _require(f"{fmt} is not readable (need root)")
    checks = compare_tracepoint_offsets(vmlinux, root, "sched", "sched_switch")
    names = {c.field for c in checks}
    assert {"common_type", "common_flags", "common_preempt_count", "common_pid"} <= names
    assert {"prev_comm", "prev_pid", "next_pid"} <= names


@pytest.mark.parametrize(
    "system, event",
    [
        ("sched", "sched_switch"),
        ("raw_syscalls", "sys_enter"),
        ("raw_syscalls", "sys_exit"),
        ("sched", "sched_process_exec"),
        ("signal", "signal_generate"),
    ],
)
def test_tracepoint_offsets(vmlinux: BTF, system: str, event: str) -> None:
    root = _tracefs()
    if not os.path.exists(os.path.join(root, "events", system, event)):
        pytest.skip(f"no {system}/{event} tracepoint on this kernel")
    checks = compare_tracepoint_offsets(vmlinux, root, system, event)
    assert len(checks) >= 5


def test_every_tracepoint_with_a_raw_struct(vmlinux: BTF) -> None:
    """Sweep all of tracefs: every event whose raw struct is in BTF must agree."""
    root = _tracefs()
    compared = 0
    events = os.path.join(root, "events")
    for system in sorted(os.listdir(events)):
        sdir = os.path.join(events, system)
        if not os.path.isdir(sdir):
            continue
        for event in sorted(os.listdir(sdir)):
            if not os.path.exists(os.path.join(sdir, event, "format")):
                continue
            try:
                compare_tracepoint_offsets(vmlinux, root, system, event)
            except LookupError:
                continue  # DEFINE_EVENT: the struct is named after its class
            compared += 1
    assert compared >= 50, f"only {compared} tracepoints have a trace_event_raw_* struct"


def test_cached_and_uncached_index_agree(tmp_path: object) -> None:
    if not os.path.exists(VMLINUX):
        _require(f"{VMLINUX} missing")
    cold = load_vmlinux(use_cache=False)
    cdir = str(tmp_path)
    load_vmlinux(cache_dir=cdir)
    warm = load_vmlinux(cache_dir=cdir)
    assert list(warm.offsets) == list(cold.offsets)
    assert warm.func_proto("vfs_read").params[0].name == "file"
