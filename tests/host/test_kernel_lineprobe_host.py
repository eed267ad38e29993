"""Kernel line probes side by side with Debian's ``perf probe -k VMLINUX -D`` on the VM kernels' debug vmlinux.

For every spec, perf is the oracle: where it prints definitions, kprobes prints
the same lines (probe point ``FUNC+OFF``, every variable's location and type);
where perf refuses, kprobes raises a KprobesError, and where perf suggests
another line ("Please try to probe at X instead."), kprobes suggests X too.
The debug vmlinux files come from scripts/install-kernel-debug.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple

import pytest

from kprobes.backends import kdebug
from kprobes.errors import KprobesError
from tests.conftest import require

pytestmark = pytest.mark.host

CACHE = os.environ.get("KPROBES_VM_CACHE", "/var/cache/kprobes-vm")
KERNELS = ("6.1.0-57-amd64", "6.12.118+deb12-amd64")

# 19 specs over 9 functions, 8 of them refusals (bench/lineprobe runs them all on both kernels)
SPECS = [
    "tcp_sendmsg:5 size",
    "tcp_sendmsg:15 size",  # the seed's: line sharing an address, perf suggests another
    "tcp_sendmsg $vars",
    "tcp_sendmsg msg->msg_iter.count",
    "tcp_sendmsg msg.foo",  # '.' on a pointer
    "vfs_read:20 count",
    "vfs_read:10 count",  # no code on that line
    "vfs_read file->f_path.dentry->d_name.name:string",
    "vfs_read+5000",  # beyond the function
    "vfs_read size_x=count:x32",
    "vfs_write:14 count",
    "ksys_read:5 fd",
    "do_sys_openat2:3 filename how->flags",
    "do_sys_openat2 how->flags:s32",
    "tcp_sendmsg_locked:20 size",
    "tcp_recvmsg:3 len",
    "kernel_clone:5 args->flags",
    "do_filp_open:5 pathname",
    "nosuchfn_xyz",
]
# each kernel gets a share of the specs so the host suite stays short; bench/lineprobe runs all
PER_KERNEL = {
    KERNELS[0]: ["tcp_sendmsg:15 size", "vfs_read:20 count", "vfs_read:10 count", "ksys_read:5 fd",
                 "do_sys_openat2:3 filename how->flags", "tcp_sendmsg_locked:20 size", "tcp_sendmsg msg.foo",
                 "vfs_read file->f_path.dentry->d_name.name:string"],
    KERNELS[1]: ["tcp_sendmsg:5 size", "tcp_sendmsg:15 size", "vfs_write:14 count", "do_filp_open:5 pathname",
                 "tcp_recvmsg:3 len", "tcp_sendmsg $vars", "vfs_read+5000", "do_sys_openat2 how->flags:s32"],
}  # fmt: skip


def _vmlinux(rel: str) -> str:
    path = os.path.join(CACHE, "dbg", rel, f"vmlinux-{rel}")
    if not os.path.isfile(path):
        require(f"{path} missing: run scripts/install-kernel-debug (or scripts/install-vm-deps)")
        pytest.skip(f"{path} missing: run scripts/install-kernel-debug")
    return path


def _perf(vmlinux: str, spec: str) -> Tuple[bool, str]:
    r = subprocess.run(["perf", "probe", "-k", vmlinux, "-D", spec], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "LANG": "C"})  # fmt: skip
    return r.returncode == 0, (r.stdout if r.returncode == 0 else r.stderr)


def _ours(vmlinux: str, spec: str) -> Tuple[bool, str]:
    try:
        with kdebug.KernelDebug(vmlinux) as kd:
            return True, "".join(line + "\n" for line in kdebug.definitions(kd, spec))
    except KprobesError as e:
        return False, e.format()


def _suggestion(text: str) -> Optional[str]:
    m = re.search(r"Please try to probe at (\S+) instead", text)
    return m.group(1) if m else None


@pytest.mark.parametrize("rel", KERNELS)
def test_definitions_agree_with_perf(rel: str) -> None:
    vmlinux = _vmlinux(rel)
    if shutil.which("perf") is None:
        require("perf (Debian linux-perf) is not installed: apt install linux-perf")
        pytest.skip("perf not installed")
    specs = PER_KERNEL[rel]
    with ThreadPoolExecutor(max_workers=4) as pool:
        peer = list(pool.map(lambda s: _perf(vmlinux, s), specs))
    problems: List[str] = []
    refusals = 0
    for spec, (p_ok, p_out) in zip(specs, peer):
        ok, out = _ours(vmlinux, spec)
        if p_ok != ok:
            problems.append(f"{spec!r}: perf {'ok' if p_ok else 'refused'}: {p_out.strip()!r}; "
                            f"kprobes {'ok' if ok else 'refused'}: {out.strip()!r}")  # fmt: skip
        elif ok and p_out.strip().splitlines() != out.strip().splitlines():
            problems.append(f"{spec!r}: perf {p_out.strip()!r} != kprobes {out.strip()!r}")
        elif not ok:
            refusals += 1
            if _suggestion(p_out) != _suggestion(out):
                problems.append(f"{spec!r}: perf suggests {_suggestion(p_out)}, kprobes {_suggestion(out)}")
    assert not problems, "\n".join(problems)
    assert refusals >= 3 and len(specs) - refusals >= 4


def test_seed_tcp_sendmsg_15_on_61() -> None:
    """The seed's ``tcp_sendmsg:15 size`` is refused with perf's explanation; the suggested line works."""
    vmlinux = _vmlinux(KERNELS[0])
    with kdebug.KernelDebug(vmlinux) as kd:
        with pytest.raises(KprobesError) as ei:
            kdebug.definitions(kd, "tcp_sendmsg:15 size")
        msg = ei.value.format()
        assert "This line is sharing the address with other lines." in msg
        where = _suggestion(msg)
        assert where == "net/ipv4/tcp.c:1503"
        # tcp_sendmsg is ten lines long on 6.1: its last probeable line reads size
        lines = kdebug.definitions(kd, "tcp_sendmsg:5 size")
        assert lines == ["p:probe/tcp_sendmsg_L5 tcp_sendmsg+25 size=%r12:x64"]


def test_finder_checks_build_id(tmp_path: "os.PathLike[str]") -> None:
    """A found vmlinux of another build is skipped with a clear message; the cache dir is searched."""
    vmlinux = _vmlinux(KERNELS[0])
    bid = kdebug.vmlinux_build_id(vmlinux)
    assert bid and len(bid) == 40
    notes = os.path.join(str(tmp_path), "notes")
    good = bytes.fromhex("040000001400000003000000474e5500") + bytes.fromhex(bid)
    with open(notes, "wb") as f:
        f.write(good)
    found = kdebug.find_kernel_vmlinux(release=KERNELS[0], root=str(tmp_path), notes=notes, cache=CACHE)
    assert found == vmlinux
    with open(notes, "wb") as f:
        f.write(good[:16] + bytes(20))
    with pytest.raises(KprobesError, match="no debug vmlinux matches the running kernel"):
        kdebug.find_kernel_vmlinux(release=KERNELS[0], root=str(tmp_path), notes=notes, cache=CACHE)
    with pytest.raises(KprobesError, match="is not the running kernel's vmlinux"):
        kdebug.find_kernel_vmlinux(vmlinux, notes=notes)


# ---------------------------------------------------------------------- -L with source, lazy ;PATTERN

SOURCES = {KERNELS[0]: "6.1.192-3/linux-source-6.1", KERNELS[1]: "6.12.118-1~deb12u1/linux-source-6.12"}
LAZY_SPECS = ["vfs_read;ret=* count", "fs/read_write.c;inc_syscr*", "tcp_sendmsg;*release_sock* size"]


def _source_tree(rel: str) -> str:
    path = os.path.join(CACHE, "src", SOURCES[rel])
    if not os.path.isdir(path):
        require(f"{path} missing: run scripts/install-kernel-debug (it extracts Debian's linux-source)")
        pytest.skip(f"{path} missing: run scripts/install-kernel-debug")
    return path


def _perf_run(args: List[str]) -> Tuple[bool, str]:
    r = subprocess.run(["perf", "probe"] + args, capture_output=True, text=True, timeout=120,
                       cwd="/", env={**os.environ, "LANG": "C"})  # fmt: skip
    return r.returncode == 0, (r.stdout if r.returncode == 0 else r.stderr)


def test_line_listing_and_lazy_lines_agree_with_perf() -> None:
    """``-L vfs_read`` (found in the linux-source tree without -s) is byte-identical to perf's with -s;
    ``;PATTERN`` points equal perf's -D; without the source the same lines come as a table."""
    rel = KERNELS[0]
    vmlinux = _vmlinux(rel)
    src = _source_tree(rel)
    if shutil.which("perf") is None:
        require("perf (Debian linux-perf) is not installed: apt install linux-perf")
        pytest.skip("perf not installed")
    jobs = [["-k", vmlinux, "-s", src, "-L", "vfs_read"], ["-k", vmlinux, "-s", src, "-L", "tcp_sendmsg:2-6"]]
    jobs += [["-k", vmlinux, "-s", src, "-D", spec] for spec in LAZY_SPECS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        peer = list(pool.map(_perf_run, jobs))
    assert all(ok for ok, _ in peer), peer
    with kdebug.KernelDebug(vmlinux) as kd:
        for (_ok, p_out), desc in zip(peer[:2], ("vfs_read", "tcp_sendmsg:2-6")):
            lr = kd.line_range(desc)
            text = kd.source(lr.file, lr.comp_dir)
            assert text is not None and text.path.startswith(os.path.join(CACHE, "src"))
            ours = kdebug.format_line_range(lr, text)
            # perf names the file by its -s path; ours is the cached tree: the same file
            assert ours.replace(text.path, "@") == p_out.replace(os.path.join(src, lr.file), "@")
            numbered = [int(w.split()[0]) for w in p_out.splitlines()[1:] if w[:7].strip()]
            table = kdebug.format_line_range(lr, None).splitlines()
            assert [int(w.split()[0]) for w in table[1:]] == numbered
            assert table[0] == f"<{desc.split(':')[0]}@{lr.file}:{lr.start - lr.offset}>"
        for spec, (_ok, p_out) in zip(LAZY_SPECS, peer[2:]):
            ours = kdebug.definitions(kd, spec, unique=False)
            assert ours == p_out.strip().splitlines(), spec
        assert len(kdebug.definitions(kd, LAZY_SPECS[1])) == len(set(kdebug.definitions(kd, LAZY_SPECS[1])))
        # perf silently probes the function entry when nothing matches; kprobes refuses and says why
        with pytest.raises(KprobesError, match="No matched lines"):
            kdebug.definitions(kd, "vfs_read;no_such_line*")
    # no source: a lazy pattern is refused with the way to get it
    with kdebug.KernelDebug(vmlinux, source_dirs=["/nonexistent"]) as kd:
        with pytest.raises(KprobesError, match="needs the source"):
            kdebug.definitions(kd, LAZY_SPECS[0])
