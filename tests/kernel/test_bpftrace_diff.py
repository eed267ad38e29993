"""Differential test: the same programs under bpftrace (Debian's package) and ``kprobes -e``.

One deterministic workload (a Python script run through a symlink named
``kpdw``, so its comm is known) opens, reads and writes files of known sizes,
calls ``atoi()`` with known strings and sends itself signal 0.  Each program
filters on that comm (or on values only the workload produces) and runs under
both tools with ``-c``; the outputs must be equal: printf lines in order,
maps line for line (sorted: bpftrace breaks ties between equal values in
hash-table order), histograms bucket for bucket.  ``Attaching N probes...``
must agree too.

Skips (or fails with KPROBES_REQUIRE_KERNEL=1) when bpftrace is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from tests.conftest import require
from tests.helpers import run_cli, session_leftovers

#: Every program runs on both engines (``--engine``), each compared with bpftrace.
ENGINES = ("tracefs", "bpf")
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
WORK = Path("/tmp/kpdiff")
FILE_SIZE = 4321
WORKLOAD = f"""\
import ctypes, os
libc = ctypes.CDLL("libc.so.6")
for i in range(5):
    fd = os.open("{WORK}/file", os.O_RDONLY)
    os.read(fd, 7777)
    os.close(fd)
null = os.open("/dev/null", os.O_WRONLY)
for size in (1, 3, 10, 100, 1000, 4000, 65536):
    os.write(null, b"x" * size)
for v in (b"7", b"-3", b"42", b"42", b"100000", b"kp"):
    libc.atoi(v)
os.kill(os.getpid(), 0)
"""
W = '/comm == "kpdw"/'
#: bpftrace's copy of the workload runs under this comm, at the same time as kprobes' one.
BT_COMM = "bpdw"
WR = f"kprobe:vfs_write {W}"

# (name, program, compare in order?)  In order: printf output; otherwise sorted lines.
PROGRAMS: List[Tuple[str, str, bool]] = [
    ("open-btf-str-pred", f"kprobe:vfs_open {W[:-1]} && str(((struct path *)arg0)->dentry->d_name.name) == \"file\"/ "
     "{ @opens[comm, str(((struct path *)arg0)->dentry->d_name.name)] = count(); }", False),
    ("read-retval", f"kretprobe:vfs_read {W[:-1]} && retval == {FILE_SIZE}/ {{ @r = count(); @s = sum(retval); }}", False),
    ("write-hist", f"{WR} {{ @sz = hist(arg2); }}", False),
    ("write-stats", f"{WR} {{ @st = stats(arg2); @a = avg(arg2); @mn = min(arg2); @mx = max(arg2); "
     "@l = lhist(arg2, 0, 5000, 1000); }", False),
    ("printf-formats", f'{WR} {{ printf("%d %x %5d|%-5d|%05d %s %lu\\n", arg2, arg2, arg2, arg2, arg2, comm, arg2 * 3); }}', True),
    ("arith-keys", f"{WR} {{ $s = arg2; $t = $s * 3 + 7; @[$t % 5, $t / 7] = count(); }}", False),
    ("two-probes-preds", f"{WR[:-1]} && arg2 > 50/ {{ @big = count(); }} {WR[:-1]} && arg2 <= 50/ {{ @small = count(); }}", False),
    ("if-else-strings", f'{WR} {{ @c++; if (arg2 > 100) {{ @x += arg2; }} else {{ @y = count(); }} '
     '@last[comm] = "w"; @name = comm; @n[arg2 > 1000] = count(); }', False),
    ("ternary-shift", f"{WR} {{ @[arg2 > 100 ? 1 : 0] = sum(arg2 >> 1); @sh = sum(1 << (arg2 % 5)); }}", False),
    ("int-casts", f"{WR} {{ @[(uint8)arg2, (int8)arg2, (uint16)(arg2 * 1000)] = count(); }}", False),
    ("uprobe-str", f"uprobe:{LIBC}:atoi {W} {{ @[str(arg0)] = count(); }}", False),
    ("uretprobe-signed", f"uretprobe:{LIBC}:atoi {W} {{ @[(int32)retval] = count(); @neg = sum((int32)retval < 0); }}", False),
    ("tp-str-filename", f'tracepoint:syscalls:sys_enter_openat {W[:-1]} && str(args->filename) == "{WORK}/file"/ {{ @[args->flags] = count(); }}', False),
    ("tp-exit-hist", f"tracepoint:syscalls:sys_exit_write {W} {{ @ret = hist(args->ret); }}", False),
    ("tp-kill", f"tracepoint:syscalls:sys_enter_kill {W} {{ @[args->sig, args->pid == pid] = count(); }}", False),
    ("struct-path", f"{WR} {{ $f = (struct file *)arg0; @[str($f->f_path.dentry->d_name.name)] = count(); }}", False),
    ("delete-zero-clear-top", f"{WR} {{ @m[arg2] = count(); @w[arg2] = sum(arg2); }} END {{ delete(@m[3]); "
     "print(@m); zero(@m); print(@m); clear(@m); print(@w, 3, 10); clear(@w); }", False),
    ("begin-exit-end", 'BEGIN { printf("%ld %ld %d %d %lu %d %d\\n", -7 / 2, 1 << 63, (uint8)300, (int8)200, '
     '-8 >> 1, -1 > 0, (uint64)-1 > 0); printf("hello %s %d\\n", "world", 1 + 2); @b = 5; exit(); '
     '@b = 6; } END { printf("bye %d\\n", @b); }', True),
    ("probe-func", f"kprobe:vfs_write, kprobe:vfs_read {W[:-1]} && (arg2 == 7777 || arg2 == 65536)/ {{ @[probe, func] = count(); }}", False),
    ("vars-incdec", f"{WR} {{ $x = arg2; $x++; $x += 10; @v[$x] = count(); @pre = sum(++$x); }}", False),
    ("filter-or", f"{WR[:-1]} && (arg2 == 3 || arg2 == 1000)/ {{ @[arg2] = count(); }}", False),
]


@pytest.fixture(scope="module")
def workload() -> str:
    """The -c command for kprobes (comm kpdw); bpftrace's uses the twin link bpdw."""
    if shutil.which("bpftrace") is None:
        require("bpftrace is not installed (apt-get install bpftrace)")
    WORK.mkdir(exist_ok=True)
    (WORK / "file").write_bytes(b"k" * FILE_SIZE)
    (WORK / "w.py").write_text(WORKLOAD)
    for name in ("kpdw", BT_COMM):
        link = WORK / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.realpath(sys.executable))
    return f"{WORK / 'kpdw'} {WORK / 'w.py'}"


def both(program: str, workload: str, *extra: str, engine: Optional[str] = None) -> Tuple[str, str, int, str, str]:
    """Run ``program`` under bpftrace and kprobes at once, each on its own copy of the
    workload (the programs differ only in the comm they filter on); ``engine``: kprobes'
    ``--engine`` (None: as the command line chooses)."""
    bt_prog = program.replace('"kpdw"', f'"{BT_COMM}"')
    bt_cmd = workload.replace("/kpdw ", f"/{BT_COMM} ")
    bt = subprocess.Popen(["bpftrace", *extra, "-e", bt_prog, "-c", bt_cmd],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pin = ["--engine", engine] if engine else []
        rc, out, err = run_cli([*pin, *extra, "-e", program, "-c", workload])
        bt_out, bt_err = bt.communicate(timeout=180)
    finally:
        if bt.poll() is None:
            bt.kill()
            bt.wait()
    assert bt.returncode == 0, f"bpftrace failed: {bt_err}"
    return bt_out.replace(BT_COMM, "kpdw"), bt_err, rc, out, err


def normalize(out: str, ordered: bool) -> Tuple[List[str], List[str]]:
    lines = out.splitlines()
    attach = [ln for ln in lines if ln.startswith("Attaching ")]
    rest = [ln for ln in lines if not ln.startswith("Attaching ") and ln.strip()]
    return attach, (rest if ordered else sorted(rest))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name, program, ordered", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_same_output_as_bpftrace(workload: str, name: str, program: str, ordered: bool, engine: str) -> None:
    bt_out, _bt_err, rc, out, err = both(program, workload, engine=engine)
    assert rc == 0, err
    bt_attach, bt_lines = normalize(bt_out, ordered)
    kp_attach, kp_lines = normalize(out, ordered)
    assert kp_lines == bt_lines, f"\n--- bpftrace\n{bt_out}\n--- kprobes\n{out}\n{err}"
    assert kp_attach == bt_attach
    assert any(ln.strip() for ln in kp_lines), "the program printed nothing: the workload missed it"
    assert session_leftovers() == []


@pytest.mark.parametrize("engine", ENGINES)
def test_json_output_matches(workload: str, engine: str) -> None:
    program = f"{WR} {{ @st = stats(arg2); @h = hist(arg2); @c[comm] = count(); }}"
    bt_out, _bt_err, rc, out, err = both(program, workload, "-f", "json", engine=engine)
    assert rc == 0, err
    assert sorted(ln for ln in out.splitlines() if ln.strip()) == sorted(
        ln for ln in bt_out.splitlines() if ln.strip()
    )


#: bpftrace 0.17's functions (issue 14) in one program per engine, on their own workload (same
#: comm): formatted in user space (strerror, ntop/pton, strftime, username), computed in the
#: probe (bswap, strncmp, strcontains, reg), resolved when planning (kaddr), run by the tool
#: (system, cat), print() of values; ntop() of tracepoint address arrays and join() of argv.
FUNCTIONS_WORKLOAD = """\
import os, socket, subprocess
null = os.open("/dev/null", os.O_WRONLY)
for size in (1, 3, 10, 100):
    os.write(null, (b"ab\\ncdefghijklmn" * 8)[:size])
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    try:
        s = socket.socket(fam); s.bind((host, 0)); s.listen()
        c = socket.create_connection(s.getsockname()[:2]); a, _ = s.accept(); a.close(); c.close(); s.close()
    except OSError:
        pass
subprocess.run(["/bin/echo", "a", "bb", "ccc"], stdout=subprocess.DEVNULL)
"""
FUNCTIONS_BOTH = (
    f'{WR[:-1]} && arg2 == 100/ {{ printf("%s|%s|%s|%s|%d %d|%d %d %d|%s|%s|%d\\n", strerror(2), '
    'ntop(pton("10.1.2.3")), ntop(pton("fe80::1")), ntop(2, 0x0100007f), bswap((uint16)arg2), '
    'bswap((uint32)arg2), strncmp(comm, "kpdw", 4), strncmp("abc", "abd", 3), strcontains(comm, "pd"), '
    'username, strftime("%Y", nsecs), reg("dx") == arg2); printf("%s\\n", ksym(kaddr("vfs_write"))); '
    f'system("echo sys %d", arg2); cat("{WORK}/cat.txt"); print(strerror(13)); '
    'print(ntop(pton("1.2.3.4"))); print(bswap((uint16)arg2)); } '
    'tracepoint:sock:inet_sock_set_state /comm == "kpdw" && args->newstate == 1 && args->oldstate == 2/ '
    '{ printf("%s %d\\n", ntop(args->saddr), args->family); } '
    'tracepoint:syscalls:sys_enter_execve /comm == "kpdw"/ { join(args->argv); join(args->argv, ","); }'
)
#: What only the BPF engine runs, on top: buf() of user memory with a computed length, numaid,
#: ntop() of 16-byte tracepoint arrays (event probes read fields of at most 8 bytes).
FUNCTIONS_BPF = FUNCTIONS_BOTH.replace(
    'ntop(args->saddr), args->family)',
    'ntop(args->saddr), args->family, ntop(args->daddr_v6), ntop(args->family, args->saddr_v6))',
).replace('"%s %d\\n", ntop(args->saddr)', '"%s %d %s %s\\n", ntop(args->saddr)') + (
    ' tracepoint:syscalls:sys_enter_write /comm == "kpdw" && args->count <= 10/ { '
    'printf("%r %d|%r\\n", buf(args->buf, args->count), numaid, buf(args->buf, 2)); }')


@pytest.mark.parametrize("engine", ENGINES)
def test_functions_same_as_bpftrace(workload: str, engine: str) -> None:
    (WORK / "cat.txt").write_text("cat body\n")
    (WORK / "fn.py").write_text(FUNCTIONS_WORKLOAD)
    cmd = f"{WORK / 'kpdw'} {WORK / 'fn.py'}"
    program = FUNCTIONS_BPF if engine == "bpf" else FUNCTIONS_BOTH
    bt_out, _bt_err, rc, out, err = both(program, cmd, "--unsafe", engine=engine)
    assert rc == 0, err
    # unordered: bpftrace 0.17 reads its per-CPU perf buffers one CPU at a time, so lines of
    # different probes (the sockets' events, then the execve) may come out of time order
    assert normalize(out, False) == normalize(bt_out, False), f"\n--- bpftrace\n{bt_out}\n--- kprobes {engine}\n{out}\n{err}"
    kp = normalize(out, True)[1]
    assert "/bin/echo,a,bb,ccc" in kp and "sys 100" in kp and any(ln.startswith("127.0.0.1 2") for ln in kp)
    assert len(kp) >= (14 if engine == "bpf" else 11), "the workload missed a probe"
    assert session_leftovers() == []
