"""The offline validator against the real kernel: uprobe_events on this host.

Each definition is written to ``uprobe_events``; the kernel's verdict (accepted,
or refused with the last ``error_log`` entry's message and caret position, or
refused silently) must be the one ``validate()`` gives offline with the
features read from this kernel's README.  uprobes go through the same
trace_probe.c fetcharg parser as kprobes, so this is the ground truth for
the shared part too.  Every event created is removed again.
"""

from __future__ import annotations

import errno
import os
import struct

import pytest

from kprobes.errors import ProbeSyntaxError
from kprobes.probes import KernelFeatures, ProbeSpec, validate
from kprobes.probes.validate import SILENT_EINVAL, local_file_check

pytestmark = pytest.mark.host

TRACEFS = "/sys/kernel/tracing"
UPROBE_EVENTS = os.path.join(TRACEFS, "uprobe_events")
ERROR_LOG = os.path.join(TRACEFS, "error_log")
BINARY = "/bin/true"
CMD_PREFIX = "  Command: "


def require(reason: str) -> None:
    if os.environ.get("KPROBES_REQUIRE_KERNEL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _prerequisites() -> None:
    if os.geteuid() != 0:
        require("needs root to write uprobe_events")
    for path in (UPROBE_EVENTS, ERROR_LOG, os.path.join(TRACEFS, "README")):
        if not os.path.exists(path):
            require(f"{path} missing (tracefs or CONFIG_UPROBE_EVENTS)")
    if not os.path.isfile(BINARY):
        require(f"{BINARY} missing")


def _text_offset(path: str) -> int:
    """File offset of .text in a 64-bit little-endian ELF (fallback 0x1000)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return 0x1000
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    str_off = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)[0]
    for i in range(shnum):
        base = shoff + i * shentsize
        name_off = struct.unpack_from("<I", data, base)[0]
        end = data.index(b"\0", str_off + name_off)
        if data[str_off + name_off : end] == b".text":
            return int(struct.unpack_from("<Q", data, base + 0x18)[0])
    return 0x1000


def _write(line: str) -> int | None:
    """Append one line to uprobe_events (buffered append mode fails on tracefs)."""
    fd = os.open(UPROBE_EVENTS, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
        return None
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _last_error(log: str) -> tuple[str, str, int]:
    """(message, command, caret position) of the last error_log entry."""
    lines = [ln for ln in log.split("\n") if ln.strip()]
    head, cmd, caret = lines[-3], lines[-2], lines[-1]
    assert cmd.startswith(CMD_PREFIX), log
    message = head.split(" error: ", 1)[1]
    return message, cmd[len(CMD_PREFIX) :], caret.index("^") - len(CMD_PREFIX)


def _cases(g: str, off: int) -> list[tuple[str, bool]]:
    """(definition, kernel accepts) — the flag is a sanity check on the harness."""
    b = BINARY
    o = f"0x{off:x}"
    many = " ".join(f"a{i}=%ax" for i in range(128))
    big = " ".join(f"a{i}=+0(%sp):u64[64]" for i in range(6))

    def nest(n: int) -> str:
        return "+0(" * n + "%sp" + ")" * n

    g63 = (g + "x" * 63)[:63]
    return [
        # accepted
        (f"p:{g}/e1 {b}:{o}", True),
        (f"r:{g}/e2 {b}:{o} rv=$retval c=$comm t=$retval:u8", True),
        (f"p:{g}/e3 {b}:{o}%return", True),
        (
            f"p:{g}/e4 {b}:{o} a=%ax:u32 b=$stack c=$stack3 d=+0(%sp):string "
            f'e=@+16:u64 f=\\1 g=\\"hi" h=+0(+8(%sp)):x8[4] i=%ax:b3@2/8',
            True,
        ),
        (f"p:{g}/e5 {b}:{o} %ax $stack2 +8(%sp) @+16 \\7", True),
        (f"p:{g}.e6 {b}:{o}", True),
        (f"r5:{g}/e7 {b}:0x{off + 0x10:x}", True),
        (f"p {b}:0x{off + 0x20:x}", True),
        (f"p:{g}/ {b}:0x{off + 0x30:x}", True),
        (f"p:{g}/e10 {b}:{o}(0x10)", True),
        (f"p:{g}/e10b {b}:{o}%return(0x10)", True),
        (
            f"p:{g}/e11 {b}:{o} a=-u8(%sp) b=+u0(%sp):string c=\\-1 d=\\+5 e=\\0x10 "
            "f=+0(%ax):ustring g=%ax:char",
            True,
        ),
        (
            f"p:{g}/e12 {b}:{o} a=+0(%sp):b3@2/8[2] b=+0(@+0x10):string c=+0(\\1):u8 "
            "d=\\1:string e=+0(%ax)x",
            True,
        ),
        (f"p:{g}/e13 {b}:{o} arg1=%ax %bx", True),
        (f"p:{g}/e14 {b}:{o} a={nest(14)}", True),
        (f"p:{g}/e15 {b}:{o} {many}", True),
        (f"p:{g}/e16 {b}:{o} {big}", True),
        (f"p:{g}/{'e' * 63} {b}:{o}", True),
        (f"p:{g63}/e18 {b}:{o}", True),
        (f"p:{g}/e19 {b}:{o} {'a' * 32}=%ax $stack99999", True),
        (f"p:{g}/e20 {b}:010", True),
        (f'p:{g}/e21 {b}:{o} a=\\"" b=\\"":string', True),
        (f'p:{g}/x0 {b}:{o} a=\\"', False),
        (f"p:{g}/e22 {b}:{o} a={nest(13)}:b3@2/8 b={nest(12)}:u8[2]", True),
        (f"r:{g}/e23 {b}:{o} a=$retvalx b=$COMM c=+0($retval):s16 d=@0x10:x32", True),
        (f"pfoo:{g}/e24 {b}:0x{off + 0x40:x} a=%ax:b1@63/64 b=-0x10(%sp):u8", True),
        # refused by the fetcharg parser (shared with kprobes)
        (f"p:{g}/x1 {b}:{o} a=%foo", False),
        (f"p:{g}/x2 {b}:{o} a=%rax", False),
        (f"p:{g}/x3 {b}:{o} a=$retval", False),
        (f"p:{g}/x4 {b}:{o} $arg1", False),
        (f"p:{g}/x5 {b}:{o} a=$arg0", False),
        (f"p:{g}/x6 {b}:{o} a=$argx", False),
        (f"r:{g}/x7 {b}:{o} a=$arg*", False),
        (f"p:{g}/x8 {b}:{o} foo", False),
        (f"p:{g}/x9 {b}:{o} a=@sym", False),
        (f"p:{g}/x10 {b}:{o} a=%ax:symbol", False),
        (f"p:{g}/x11 {b}:{o} a=+0(%ax):symstr", False),
        (f"p:{g}/x12 {b}:{o} a=%ax:string", False),
        (f"p:{g}/x13 {b}:{o} a=+0(%ax", False),
        (f"p:{g}/x14 {b}:{o} a=+0%ax", False),
        (f"p:{g}/x15 {b}:{o} a=%ax b=%bx a=%cx", False),
        (f"p:{g}/x16 {b}:{o} common_pid=%ax", False),
        (f"p:{g}/x17 {b}:{o} arg2=%ax %bx", False),
        (f"p:{g}/x18 {b}:{o} a=$comm:u32", False),
        (f"p:{g}/x19 {b}:{o} a=$comm:string[2]", False),
        (f'p:{g}/x20 {b}:{o} a=\\"abc', False),
        (f"p:{g}/x21 {b}:{o} a=+8($comm)", False),
        (f'p:{g}/x22 {b}:{o} a=+0(\\"x")', False),
        (f"p:{g}/x23 {b}:{o} a=%ax:u32[65]", False),
        (f"p:{g}/x24 {b}:{o} a=%ax:u32[3", False),
        (f"p:{g}/x25 {b}:{o} a=%ax:u32[3]x", False),
        (f"p:{g}/x26 {b}:{o} a=+0(%ax):u8[0]", False),
        (f"p:{g}/x27 {b}:{o} a=%ax:u12", False),
        (f"p:{g}/x28 {b}:{o} a=%ax:b9@0/8", False),
        (f"p:{g}/x29 {b}:{o} a=%ax:b8@0/3", False),
        (f"p:{g}/x30 {b}:{o} a=%ax:b3@x/8", False),
        (f"p:{g}/x31 {b}:{o} a=+0(%sp):b9@0/8", False),
        (f"p:{g}/x32 {b}:{o} a=\\zz", False),
        (f"p:{g}/x33 {b}:{o} a=$", False),
        (f"p:{g}/x34 {b}:{o} =%ax", False),
        (f"p:{g}/x35 {b}:{o} a=", False),
        (f"p:{g}/x36 {b}:{o} 1a=%ax", False),
        (f"p:{g}/x37 {b}:{o} a=%ax:u32[2]", False),
        (f"p:{g}/x38 {b}:{o} a=+u0(%sp):u8[2]", False),
        (f"p:{g}/x39 {b}:{o} a={nest(15)}", False),
        (f"p:{g}/x40 {b}:{o} a={nest(14)}:u8[2]", False),
        (f"p:{g}/x41 {b}:{o} a=+{'0' * 60}(%sp)", False),
        (f"p:{g}/x42 {b}:{o} {'a' * 33}=%ax", False),
        (f"p:{g}/x43 {b}:{o} {many} z=%ax", False),
        (f"p:{g}/x44 {b}:{o} {big} z=%ax", False),
        (f"p:{g}/x45 {b}:{o} a=()", False),
        (f"p:{g}/x46 {b}:{o} a=+0()", False),
        (f"p:{g}/x47 {b}:{o} a=$stackx", False),
        (f"p:{g}/x48 {b}:{o} a=@0xzz", False),
        (f"p:{g}/x49 {b}:{o} a=@+zz", False),
        (f"p:{g}/x50 {b}:{o} a=+zz(%ax)", False),
        (f"p:{g}/x51 {b}:{o} a=+0(%ax)):u8", False),
        (f"p:{g}/x52 {b}:{o} a=%ax:u8:u16", False),
        (f"p:{g}/x53 {b}:{o} a=%ax:%pd", False),
        (f"p:{g}/x54 {b}:{o} a=$stack:string", False),
        (f"p:{g}/x55 {b}:{o} a=+u8(%sp b=%ax", False),
        # refused while reading the place and the names (trace_uprobe.c)
        (f"p:{g}/y1 {b}:{o}%foo", False),
        (f"p:{g}/y2 {b}:{o}(0x10", False),
        (f"p:{g}/y3 {b}:{o}(0x10)%return", False),
        (f"p:{g}/y4 {b}:{o}(zz)", False),
        (f"p:{g}/y5 {b}:0xzz", False),
        (f"p:{g}/y6 /nonexistent/kpchk:0x10", False),
        (f"p:{g}/y7 /etc:0x10", False),
        (f"p:{g}/y8 {b}", False),
        (f"p:{g}/y9 true:0x10", False),
        (f"x:{g}/y10 {b}:{o}", False),
        (f"p:1{g}/y11 {b}:{o}", False),
        (f"p:/y12 {b}:{o}", False),
        (f"p: {b}:{o}", False),
        (f"p:{g}/y-14 {b}:{o}", False),
        (f"p:{g}/{'e' * 64} {b}:{o}", False),
        (f"p:{g63}x/y16 {b}:{o}", False),
        (f"r:{g}/y17 {b}:{o} a=$arg2", False),
        (f"p:{g}/y18 {b}:{o} a=%ax:b1@64/64", False),
        (f"p:{g}/y19 {b}:{o} a=@", False),
        (f"p:{g}/y20 {b}:{o} a=+(%ax)", False),
        (f"p:{g}/y21 {b}:{o} a=%ax:string[2]", False),
        (f"p:{g}/y22 {b}:{o} a=-u(%sp)", False),
        (f"p:{g}/y23 {b}:{o} a=$stack:u8[2] b=$arg1", False),
        ("-", False),
        ("-:", False),
    ]


@pytest.fixture(scope="module")
def features() -> KernelFeatures:
    _prerequisites()
    return KernelFeatures.from_readme(_read(os.path.join(TRACEFS, "README")), os.uname().release)


def test_offline_verdicts_match_the_kernel(features: KernelFeatures) -> None:
    group = f"kpchk{os.getpid()}"
    off = _text_offset(BINARY)
    created: list[str] = []
    mismatches: list[str] = []
    accepted = refused = 0
    try:
        for line, expect_ok in _cases(group, off):
            before_events = set(_read(UPROBE_EVENTS).splitlines())
            before_log = _read(ERROR_LOG)
            err = _write(line)
            after_log = _read(ERROR_LOG)
            new_events = set(_read(UPROBE_EVENTS).splitlines()) - before_events
            names = [ev.split()[0].split(":", 1)[1] for ev in new_events]
            created.extend(names)
            for name in names:  # one at a time: probes on one offset interact
                _write(f"-:{name}")
            try:
                spec = validate(line, "uprobe", features, file_check=local_file_check)
                offline: ProbeSyntaxError | None = None
            except ProbeSyntaxError as e:
                offline = e
            if (err is None) != expect_ok:
                mismatches.append(
                    f"{line!r}: expected the kernel to {'accept' if expect_ok else 'refuse'}"
                )
            if err is None:
                accepted += 1
                if offline is not None:
                    mismatches.append(f"{line!r}: kernel OK, offline {offline.kernel_message}")
                    continue
                assert isinstance(spec, ProbeSpec)
                want = f"{'r' if spec.is_return else 'p'}:{spec.group_name}/{spec.event_name} "
                if not any(ev.startswith(want) for ev in new_events):
                    mismatches.append(f"{line!r}: created {new_events}, offline names {want!r}")
                continue
            refused += 1
            if offline is None:
                mismatches.append(f"{line!r}: kernel refused (errno {err}), offline OK")
                continue
            if after_log == before_log:
                if offline.kernel_message != SILENT_EINVAL or err != errno.EINVAL:
                    mismatches.append(
                        f"{line!r}: kernel silent errno {err}, offline {offline.kernel_message!r}"
                    )
                continue
            message, command, pos = _last_error(after_log)
            got = (offline.kernel_message, offline.text, offline.position)
            if got != (message, command, pos):
                mismatches.append(f"{line!r}: kernel {(message, pos)}, offline {got[0::2]}")
    finally:
        remaining = _read(UPROBE_EVENTS)
        for name in created:
            if f":{name} " in remaining:
                _write(f"-:{name}")
    leftovers = [ln for ln in _read(UPROBE_EVENTS).splitlines() if group in ln]
    assert not leftovers, f"events left behind: {leftovers}"
    assert not mismatches, "\n".join(mismatches)
    assert accepted >= 20 and refused >= 60
