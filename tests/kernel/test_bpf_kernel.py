"""The BPF backend on real kprobes (VM, 6.1 and 6.12): exact counts, log2 histograms,
kprobe_multi (or its fallback, with the reason), verifier errors, SIGKILL cleanup."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

import pytest

from kprobes.backends.bpf import BpfSession, Map, Program, kernel_functions, programs_named
from kprobes.backends.bpf.features import probe_features
from kprobes.bpf import R0, R1, R6, R10, Assembler
from kprobes.bpf.maps import ProgType
from kprobes.errors import VerifierError
from tests.bpf_programs import bump, cookie_counter, key, retval_hist, tgid_guard, u64
from tests.helpers import ROOT, wait_for

#: offsetof(struct pt_regs, dx): vfs_read's third argument (count) on x86_64.
PT_REGS_DX = 96
KPROBES_LIST = "/sys/kernel/debug/kprobes/list"


class SigChild:
    """A Python child that runs ``body`` once per SIGUSR1 and reports ``done`` with write(2).

    It waits in sigwait(), not read(): between two runs it enters no vfs_* function,
    so a count over its tgid is exactly what ``body`` did.
    """

    def __init__(self, body: str) -> None:
        src = (
            "import os, signal, socket, sys\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
            f"{body}\n"
            "os.write(1, b'ready\\n')\n"
            "while True:\n"
            "    signal.sigwait({signal.SIGUSR1})\n"
            "    work()\n"
            "    os.write(1, b'done\\n')\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", src], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"ready\n"
        self.pid = self.proc.pid

    def run(self) -> None:
        assert self.proc.stdout is not None
        os.kill(self.pid, signal.SIGUSR1)
        assert self.proc.stdout.readline() == b"done\n"

    def __enter__(self) -> "SigChild":
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def ksyms() -> object:
    """The ftrace list + kprobe blacklist, read once."""
    from kprobes.backends.bpf.attach import probe_symbols

    return probe_symbols()


def multi_expected() -> Optional[bool]:
    """What the suite's two Debian kernels are known to have: 6.12 is built with
    CONFIG_FPROBE (kprobe_multi), 6.1 is not.  None for any other kernel."""
    rel = os.uname().release
    if rel.startswith("6.12."):
        return True
    if rel.startswith("6.1."):
        return False
    return None


@pytest.fixture()
def data_file():  # type: ignore[no-untyped-def]
    fd, path = tempfile.mkstemp(prefix="kp-bpf-")
    os.write(fd, os.urandom(1 << 17))
    os.close(fd)
    yield path
    os.unlink(path)


SIZES = [1, 3, 8, 100, 1000, 4096, 5000, 65536]
COUNT = 4321  # a read size nobody else uses


def test_kprobe_and_kretprobe_on_vfs_read_exact_counts_and_log2_hist(data_file: str) -> None:
    body = (
        f"fd = os.open({data_file!r}, os.O_RDONLY)\n"
        f"def work():\n"
        f"    for _ in range(37): os.pread(fd, {COUNT}, 0)\n"
        f"    for sz in {SIZES!r}: os.pread(fd, sz, 0)\n"
    )
    with SigChild(body) as child, BpfSession() as s:
        counts = s.adopt_map(Map.array(8, 1, name="kpt_vfs_cnt"))
        hist = s.adopt_map(Map.array(8, 64, name="kpt_vfs_hist"))
        a = Assembler()
        a.mov64(R6, R1).ldx("dw", R6, R6, PT_REGS_DX)
        tgid_guard(a, child.pid)
        a.jne(R6, COUNT, "out")
        bump(a, counts, 0)
        a.label("out").mov64(R0, 0).exit()
        entry = s.load(ProgType.KPROBE, a.assemble(), name="kpt_vfs_entry")
        ret = s.load(ProgType.KPROBE, retval_hist(hist, child.pid).assemble(), name="kpt_vfs_ret")
        s.attach(entry, "kprobe:vfs_read")
        s.attach(ret, "kretprobe:vfs_read")
        child.run()
        child.run()
        assert u64(counts.lookup(key(0))) == 2 * 37
        want: Dict[int, int] = {}
        for sz in [COUNT] * 37 + SIZES:
            b = sz.bit_length() - 1
            want[b] = want.get(b, 0) + 2
        got = {i: u64(v) for i, v in ((int.from_bytes(k, sys.byteorder), v) for k, v in hist.items())
               if u64(v)}
        assert got == want


def _tcp_vfs_body(path: str) -> str:
    # numeric addresses only: getaddrinfo() would read /etc/hosts & co (more vfs_read)
    return (
        f"fd = os.open({path!r}, os.O_RDONLY)\n"
        "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(16)\n"
        "def work():\n"
        "    for _ in range(25): os.pread(fd, 100, 0)\n"
        "    for _ in range(7):\n"
        "        c = socket.socket(); c.connect(srv.getsockname()); p, _ = srv.accept()\n"
        "        c.sendall(b'x' * 10); p.recv(100); c.close(); p.close()\n"
    )


ASSERTED = ("vfs_read", "tcp_v4_connect", "tcp_sendmsg", "tcp_recvmsg")


def test_kprobe_multi_on_vfs_and_tcp_or_fallback_with_reason(data_file: str, ksyms: object) -> None:
    feats = probe_features(refresh=True)
    expected = multi_expected()
    if expected is not None:
        assert feats.kprobe_multi == expected, feats.kprobe_multi_reason
    funcs = sorted(set(kernel_functions("vfs_*", symbols=ksyms))
                   | set(kernel_functions("tcp_*", symbols=ksyms)))
    assert set(ASSERTED) <= set(funcs) and len(funcs) > 100
    if not feats.kprobe_multi:
        # one perf event per function costs ~0.2 s under TCG: the fallback gets a sample
        funcs = list(ASSERTED) + [f for f in funcs if f not in ASSERTED][::25]
    with SigChild(_tcp_vfs_body(data_file)) as child, BpfSession() as s:
        counts = s.adopt_map(Map.array(8, len(funcs), name="kpt_multi"))

        def load(expected: object) -> Program:
            return Program.load(ProgType.KPROBE, cookie_counter(counts, child.pid).assemble(),
                                name="kpt_multi", expected_attach_type=expected)  # type: ignore[arg-type]

        att = s.attach_kprobes(load, funcs)
        if feats.kprobe_multi:
            assert att.method == "kprobe_multi" and len(att.links) == 1, att.reason
        else:
            assert att.method == "perf_event" and len(att.links) == len(funcs)
            assert "CONFIG_FPROBE" in att.reason or "5.18" in att.reason, att.reason
        child.run()
        hits = {att.functions[int.from_bytes(k, sys.byteorder)]: u64(v) for k, v in counts.items()}
    assert hits["vfs_read"] == 25
    assert hits["tcp_v4_connect"] == 7
    assert hits["tcp_sendmsg"] == 7
    assert hits["tcp_recvmsg"] == 7
    # the full vfs_*/tcp_* set sees many more functions fire (tcp_v4_rcv, vfs_write...)
    assert sum(1 for v in hits.values() if v) > (10 if feats.kprobe_multi else len(ASSERTED))


def test_invalid_program_is_refused_with_the_verifier_lines() -> None:
    a = Assembler()
    a.ldx("dw", R0, R10, 8).exit()  # above the frame pointer
    with pytest.raises(VerifierError) as ei:
        Program.load(ProgType.KPROBE, a.assemble(), name="kpt_invalid")
    e = ei.value
    assert any("invalid read from stack" in ln or "invalid stack" in ln for ln in e.last_lines), e.log
    assert "0: (79) r0 = *(u64 *)(r10 +8)" in e.log


_HOLDER = r"""
import os, sys, time
sys.path.insert(0, {src!r}); sys.path.insert(0, {root!r})
from kprobes.backends.bpf import BpfSession, Map, Program
from kprobes.bpf.maps import ProgType
from tests.bpf_programs import cookie_counter
funcs = {funcs!r}
with BpfSession() as s:
    m = s.adopt_map(Map.array(8, len(funcs), name={prefix!r}))
    load = lambda exp: Program.load(ProgType.KPROBE, cookie_counter(m, 1).assemble(),
                                    name={prefix!r}, expected_attach_type=exp)
    att = s.attach_kprobes(load, funcs, method="perf")
    print(len(att.links), flush=True)
    time.sleep(120)
"""


def _listed(funcs: List[str]) -> List[str]:
    want = set(funcs)
    with open(KPROBES_LIST) as f:
        return [ln for ln in f if ln.split()[2].split("+", 1)[0] in want]


def test_sigkill_with_100_kprobes_leaves_no_kprobe_and_no_program(ksyms: object) -> None:
    if not os.path.exists(KPROBES_LIST):
        subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"], check=False)
    assert os.path.exists(KPROBES_LIST), "debugfs with kprobes/list is needed"
    funcs = kernel_functions("tcp_*", symbols=ksyms)[:100]
    assert len(funcs) == 100
    prefix = "kpk" + secrets.token_hex(3)
    code = _HOLDER.format(src=os.path.join(ROOT, "src"), root=ROOT, funcs=funcs, prefix=prefix)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "100"
        assert len(_listed(funcs)) == 100
        assert len(programs_named(prefix)) == 1
        with open("/sys/kernel/tracing/kprobe_events") as f:
            assert f.read().strip() == ""  # the PMU path writes nothing to tracefs
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert wait_for(lambda: not _listed(funcs) and not programs_named(prefix), timeout=60), (
            _listed(funcs)[:5], programs_named(prefix))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
