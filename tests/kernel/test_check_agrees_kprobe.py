"""The offline validator against the real kernel: kprobe_events in the VM.

Each definition is written to ``kprobe_events``; the kernel's verdict (accepted,
or refused with the last ``error_log`` entry's message and caret position, or
refused silently) must be the one ``validate()`` gives offline with the
features read from this kernel's README and release.  The same line is then
written through the product path, ``TraceFS.write_definition``, which must
raise ``KernelRefused`` with the kernel's message and position (or succeed).

Some verdicts need the running kernel's symbol table (unknown functions,
``@SYM`` that does not exist, offsets that are not instruction boundaries,
BTF parameter names, IBT's endbr slack): those cases are marked ``KERNEL``
and compared only between the raw write and the product path.  Every event
created is removed again.
"""

from __future__ import annotations

import errno
import os
from typing import Dict, List, Optional, Tuple

from kprobes.backends.tracefs.fs import TraceFS
from kprobes.errors import KernelRefused, KprobesError, ProbeSyntaxError
from kprobes.probes import KernelFeatures, ProbeSpec, validate
from kprobes.probes.spec import AllArgs
from kprobes.probes.validate import SILENT_E2BIG, SILENT_EINVAL
from tests.conftest import require

TRACEFS = "/sys/kernel/tracing"
KPROBE_EVENTS = os.path.join(TRACEFS, "kprobe_events")
ERROR_LOG = os.path.join(TRACEFS, "error_log")
CMD_PREFIX = "  Command: "
FUNC = "vfs_read"  # vfs_read(struct file *file, char __user *buf, size_t count, loff_t *pos)

# What the harness expects of the kernel (a sanity check on the cases):
OK = "ok"  # both kernels accept
NO = "no"  # both kernels refuse
NEW = "new"  # 6.12 accepts, 6.1 refuses (a newer feature)
OLD = "old"  # 6.1 accepts, 6.12 refuses (an older behaviour)
KERNEL = "kernel"  # needs the live kernel (symbols, BTF, IBT): not checked offline

Case = Tuple[str, str]
Seen = Tuple[Optional[int], Optional[Tuple[str, str, int]], List[str]]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(line: str) -> Optional[int]:
    """Append one line to kprobe_events (buffered append mode fails on tracefs)."""
    fd = os.open(KPROBE_EVENTS, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
        return None
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def _last_error(log: str) -> Tuple[str, str, int]:
    """(message, command, caret position) of the last error_log entry."""
    lines = [ln for ln in log.split("\n") if ln.strip()]
    head, cmd, caret = lines[-3], lines[-2], lines[-1]
    assert cmd.startswith(CMD_PREFIX), log
    message = head.split(" error: ", 1)[1]
    return message, cmd[len(CMD_PREFIX) :], caret.index("^") - len(CMD_PREFIX)


def _events() -> List[str]:
    return [ln for ln in _read(KPROBE_EVENTS).splitlines() if ln.strip()]


def _remove_new(before: List[str]) -> List[str]:
    """Delete the events that appeared since ``before``; return their definitions."""
    new = [ev for ev in _events() if ev not in before]
    for ev in new:
        _write("-:" + ev.split()[0].split(":", 1)[1])
    return new


def _kernel_write(line: str) -> Seen:
    """Write ``line``; (errno, last error_log entry if a new one, events created)."""
    before = _events()
    before_log = _read(ERROR_LOG)
    err = _write(line)
    after_log = _read(ERROR_LOG)
    created = _remove_new(before)
    logged = _last_error(after_log) if err is not None and after_log != before_log else None
    return err, logged, created


def _module_symbol() -> Optional[Tuple[str, str]]:
    """(module, function) of some loaded module, from kallsyms."""
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4 and parts[1] in ("t", "T") and parts[3].startswith("["):
                mod = parts[3].strip("[]")
                if "." not in parts[2] and not parts[2].startswith("__"):
                    return mod, parts[2]
    return None


def _address_of(name: str) -> Optional[int]:
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == name and len(parts) == 3:
                value = int(parts[0], 16)
                return value or None
    return None


def _cases(g: str) -> List[Case]:
    f = FUNC
    many = " ".join(f"a{i}=%ax" for i in range(128))
    big = " ".join(f"a{i}=+0(%sp):u64[64]" for i in range(6))

    def nest(n: int) -> str:
        return "+0(" * n + "%di" + ")" * n

    cases: List[Case] = [
        # accepted everywhere
        (f"p:{g}/a1 {f}", OK),
        (f"r:{g}/a2 {f} rv=$retval", OK),
        (f"p:{g}/a3 {f}%return rv=$retval c=$comm t=$retval:s32", OK),
        (
            f"p:{g}/a4 {f} a=%di b=%si:u32 c=%dx:s64 d=%cx:x16 e=$stack f=$stack3 "
            "g=$comm h=+0(%di):u64 i=-8(%sp):u8 j=%ip k=%orig_ax l=%flags:x64",
            OK,
        ),
        (f"p:{g}/a5 {f} $arg1 $arg2:u32 a=$arg4 b=+0($arg1):x32", OK),
        (f"p:{g}/a24 {f} $arg1:b3@2/8", OK),
        (f"p:{g}/a6 {f}+0 $arg1", OK),
        (
            f"p:{g}/a7 {f} a=+0(+0(%di)):x8[4] b=%di:b3@2/8 c=+0(%si):string "
            "d=+u0(%si):ustring e=+u8(%si):u64 f=+0(%si):string[2] g=+0(%di):b4@60/64",
            OK,
        ),
        (
            f'p:{g}/a8 {f} a=@jiffies b=@jiffies+8 c=@jiffies-8:u32 d=\\1 e=\\"x" '
            "f=\\-5 h=\\0x10:x8 i=$COMM j=$comm:string k=+0(@jiffies):u8",
            OK,
        ),
        (f"p:{g}.a9 {f}", OK),
        (f"r10:{g}/a10 {f}", OK),
        (f"r4096:{g}/a11 {f}", OK),
        (f"p {f}", OK),
        (f"r5 {f}", OK),
        (f"pfoo:{g}/a12 {f}", OK),
        (f"p:{g}/a13 {f} a={nest(14)}", OK),
        (f"p:{g}/a14 {f} a={nest(13)}:b3@2/8 b={nest(12)}:u8[2]", OK),
        (f"p:{g}/a15 {f} {many}", OK),
        (f"p:{g}/a16 {f} {big}", OK),
        (f"p:{g}/a17 {f} a=%di:symbol b=$stack2048 c=$arg2048 d=$arg5", OK),
        (f"p:{g}/{'e' * 63} {f}", OK),
        (f"r:{g}/a18 {f} a=+0($retval):s16 c=$stack:x8 $retval $retval", OK),
        (f"p:{g}/a19 {f} {'a' * 32}=%di", OK),
        (f"p:{g}/ {f}", OK),
        (f"p:{g}-x/a20 {f}", OK),
        (f"p:{g}/a21 {f} a=%di:symstr b=+0(%di):symstr $arg1:symstr", OK),
        (f"r:{g}/a22 {f} $retval:symstr $retval:b3@2/8 rv=$retval:x16", OK),
        (f"p:{g}/a23 {f} $comm $comm +0($arg1):string", OK),
        # newer features: 6.12 accepts, 6.1 refuses
        (f"r:{g}/n1 {f} a=$arg1 b=$arg2:u32", NEW),
        (f"p:{g}/n2 {f}%return a=$arg1", NEW),
        (f"p:{g}/n3 {f} a=%di:char", NEW),
        (f"p:{g}/n4 {f} a=%di:%pD b=+0x18(%di):%pd", NEW),
        (f"p:{g}/n5 {f} %di:%pD", NEW),
        (f"p:{g}/n6 {f} $arg*", NEW),
        (f"p:{g}/n7 {f} file count:u32 file->f_flags", NEW),
        (f"r:{g}/n8 {f} $arg* $retval", NEW),
        (f"r:{g}/n9 {f} $retval:string", NEW),
        (f"r:{g}/n10 {f} a=$retval:ustring b=$retval:string[2]", NEW),
        (f"p:{g}/n11 {f} $arg2:string", NEW),  # buf is a char *: BTF adds the load
        (f"p:{g}/n12 {f} $arg*:u32 a=%di", NEW),
        (f"p:{g}/n13 {f}%return a=%di $arg*", NEW),
        (f"r:{g}/n14 {f} a=$arg5", NEW),
        (f"p:{g}/n15 {f} a=file b=file", NEW),
        (f"p:{g}/n16 {f} a=+0(%di):%pd b=%di:%pd", NEW),
        (f"r:{g}/n17 {f} a=$retval:%pd", NEW),
        # older behaviour: 6.1 ignores fetchargs past 128, 6.12 refuses them
        (f"p:{g}/o1 {f} {many} z=%ax", OLD),
        # refused everywhere: registers, types, bitfields
        (f"p:{g}/x1 {f} a=%rax", NO),
        (f"p:{g}/x2 {f} a=%foo", NO),
        (f"p:{g}/x3 {f} a=%eax:u32", NO),
        (f"p:{g}/x4 {f} a=%di:u12", NO),
        (f"p:{g}/x5 {f} a=%di:foo", NO),
        (f"p:{g}/x6 {f} a=%di:x128", NO),
        (f"p:{g}/x7 {f} a=%di:b9@0/8", NO),
        (f"p:{g}/x8 {f} a=%di:b8@1/8", NO),
        (f"p:{g}/x9 {f} a=%di:b0@0/8", NO),
        (f"p:{g}/x10 {f} a=%di:b3@x/8", NO),
        (f"p:{g}/x11 {f} a=%di:b3@2/7", NO),
        (f"p:{g}/x12 {f} a=+0(%di):b3@2/8x", NO),
        (f"p:{g}/x13 {f} a=+0(%di):b9@0/8", NO),
        # variables: $retval, $argN, $stackN, $comm
        (f"p:{g}/x14 {f} a=$retval", NO),
        (f"p:{g}/x15 {f} $retval:u8", NO),
        (f"r:{g}/x16 {f} a=$retval:string:u8", NO),
        (f"r:{g}/x17 {f} $retval:u8[2]", NO),
        (f"r:{g}/x18 {f} b=$retvalx", NO),
        (f"r:{g}/x19 {f} $retval.x", NO),
        (f"r:{g}/x20 {f} $retval-x", NO),
        (f"p:{g}/x21 {f} a=$arg0", NO),
        (f"p:{g}/x22 {f} a=$arg2049", NO),
        (f"p:{g}/x23 {f} a=$argx", NO),
        (f"p:{g}/x24 {f} a=$arg", NO),
        (f"p:{g}/x25 {f}+8 a=$arg1", NO),
        (f"p:{g}/x26 {f}+8 a=$arg0", NO),
        (f"r:{g}/x27 {f} a=$arg0", NO),
        (f"p:{g}/x28 {f} a=$arg*", NO),
        (f"p:{g}/x29 {f} $arg* $arg*", NO),
        (f"p:{g}/x30 {f}+8 $arg*", NO),
        (f"p:{g}/x31 {f} $arg1->f_flags", NO),
        (f"p:{g}/x32 {f} a=$arg2:string", NO),
        (f"r:{g}/x33 {f} $arg1 $arg1", NO),
        (f"p:{g}/x34 {f} a=$stack2049", NO),
        (f"p:{g}/x35 {f} a=$stackx", NO),
        (f"p:{g}/x36 {f} a=$stack:string", NO),
        (f"p:{g}/x37 {f} $stack1:string", NO),
        (f"p:{g}/x38 {f} a=$comm:u32", NO),
        (f"p:{g}/x39 {f} a=$comm:string[2]", NO),
        (f"p:{g}/x40 {f} a=+8($comm)", NO),
        (f"p:{g}/x41 {f} a=$commx", NO),
        (f"p:{g}/x42 {f} a=$", NO),
        # strings, arrays, immediates, symbols, file offsets
        (f"p:{g}/x43 {f} a=%di:string", NO),
        (f"p:{g}/x44 {f} a=%di:u8[4]", NO),
        (f"p:{g}/x45 {f} a=+0(%di):u8[65]", NO),
        (f"p:{g}/x46 {f} a=+0(%di):u8[0]", NO),
        (f"p:{g}/x47 {f} a=+0(%di):u8[3", NO),
        (f"p:{g}/x48 {f} a=+0(%di):u8[3]x", NO),
        (f"p:{g}/x49 {f} a=%di:string[2]", NO),
        (f"p:{g}/x50 {f} a=\\zz", NO),
        (f"p:{g}/x51 {f} a=\\0xzz", NO),
        (f'p:{g}/x52 {f} a=\\"abc', NO),
        (f'p:{g}/x53 {f} a=\\"abc":u32', NO),
        (f'p:{g}/x54 {f} a=+0(\\"x")', NO),
        (f"p:{g}/x55 {f} a=@+16", NO),
        (f"p:{g}/x56 {f} a=@0xzz", NO),
        (f"p:{g}/x57 {f} a=@jiffies+zz", NO),
        (f"p:{g}/x58 {f} a=@", NO),
        (f"p:{g}/x59 {f} a=\\1:symstr", NO),
        (f"p:{g}/x60 {f} a=$comm:symstr", NO),
        (f"p:{g}/x61 {f} a=+u0(%di):symstr", NO),
        (f"p:{g}/x62 {f} a=%di:%pd:u8", NO),
        (f"p:{g}/x63 {f} a=%di:%pdx", NO),
        (f"p:{g}/x64 {f} %pd", NO),
        (f"p:{g}/x65 {f} a=:%pd", NO),
        (f"p:{g}/x66 {f} a=%di:%pD b=%foo", NO),
        (f"p:{g}/x67 {f} a=%foo:%pd", NO),
        # dereferences: nesting, braces, offsets, user space
        (f"p:{g}/x68 {f} a={nest(15)}", NO),
        (f"p:{g}/x69 {f} a={nest(14)}:u8[2]", NO),
        (f"p:{g}/x70 {f} a=+0(%di", NO),
        (f"p:{g}/x71 {f} a=+0%di", NO),
        (f"p:{g}/x72 {f} a=+zz(%di)", NO),
        (f"p:{g}/x73 {f} a=+0(%di)):u8", NO),
        (f"p:{g}/x74 {f} a=-u(%sp)", NO),
        (f"p:{g}/x75 {f} a=+u0(%di):u8[2]", NO),
        (f"p:{g}/x76 {f} a=+0()", NO),
        (f"p:{g}/x77 {f} a=()", NO),
        (f"p:{g}/x78 {f} (struct file *)%di", NO),
        # argument names and counts
        (f"p:{g}/x79 {f} a=%di b=%si a=%dx", NO),
        (f"p:{g}/x80 {f} common_pid=%di", NO),
        (f"p:{g}/x81 {f} __probe_ip=%di", NO),
        (f"p:{g}/x82 {f} common_tgid=%di", NO),
        (f"p:{g}/x83 {f} 1a=%di", NO),
        (f"p:{g}/x84 {f} =%di", NO),
        (f"p:{g}/x85 {f} a=", NO),
        (f"p:{g}/x86 {f} {'a' * 33}=%di", NO),
        (f"p:{g}/x87 {f} a=+{'0' * 60}(%di)", NO),
        (f"p:{g}/x88 {f} arg2=%di %si", NO),
        (f"p:{g}/x89 {f} {big} z=%ax", NO),
        (f"p:{g}/x90 {f} a=file.f_flags", NO),
        (f"p:{g}/x91 {f} a=file-f_flags", NO),
        (f"p:{g}/x92 {f} file file", NO),
        # the probed place, maxactive, names
        (f"p:{g}/y1 {f}%foo", NO),
        (f"p:{g}/y2 {f}%return+4", NO),
        (f"p:{g}/y3 {f}-8", NO),
        (f"p:{g}/y4 {f}+zz", NO),
        (f"r:{g}/y5 {f}+8", NO),
        (f"p:{g}/y6 {f}+8%return", NO),
        (f"p:{g}/y7 /bin/true:0x10", NO),
        (f"r0:{g}/y8 {f}", NO),
        (f"p5:{g}/y9 {f}", NO),
        (f"r4097:{g}/y10 {f}", NO),
        (f"r99999999999:{g}/y11 {f}", NO),
        (f"p:1{g}/y12 {f}", NO),
        (f"p:{g}/y-13 {f}", NO),
        (f"p:/y14 {f}", NO),
        (f"p: {f}", NO),
        (f"p:{g}/{'e' * 64} {f}", NO),
        (f"p:{(g + 'x' * 64)[:64]}/y16 {f}", NO),
        (f"p:{g}/y17", NO),
        (f"x:{g}/y18 {f}", NO),
        # only the live kernel knows (symbols, BTF names and types, IBT)
        (f"p:{g}/k1 nosuchfunc_kpchk", KERNEL),
        (f"p:{g}/k2 nosuchmod_kpchk:nosuchfunc", KERNEL),
        (f"p:{g}/k3 {f} a=@nosuchsym_kpchk", KERNEL),
        (f"p:{g}/k4 {f}+1", KERNEL),
        (f"r:{g}/k5 {f}+4", KERNEL),
        (f"p:{g}/k6 {f}+4 $arg1", KERNEL),
        (f"p:{g}/k7 {f} nosuchparam", KERNEL),
        (f"p:{g}/k8 0x10", KERNEL),
        (f"r:{g}/k9 {f} $retval->f_flags", KERNEL),
        (f"p:{g}/k10 {f}:{f}", KERNEL),
        (f"p:{g}/k11 {f} $arg1:string", KERNEL),
        (f"p:{g}/k12 {f} file->nosuch", KERNEL),
        (f"p:{g}/k13 {f} count->x", KERNEL),
        (f"p:{g}/k14 {f} $arg5", KERNEL),
        (f"p:{g}/k15 {f} $arg1 file", KERNEL),
        (f"p:{g}/k16 {f} foo", KERNEL),
    ]
    addr = _address_of(f)
    if addr is not None:
        cases.append((f"p:{g}/k17 0x{addr:x} a=%di", KERNEL))
    mod = _module_symbol()
    if mod is not None:
        cases.append((f"p:{g}/k18 {mod[0]}:{mod[1]} a=%di", KERNEL))
        cases.append((f"r:{g}/k19 {mod[0]}:{mod[1]}", KERNEL))
    return cases


def _prerequisites() -> None:
    if os.geteuid() != 0:
        require("needs root to write kprobe_events")
    for path in (KPROBE_EVENTS, ERROR_LOG, os.path.join(TRACEFS, "README")):
        if not os.path.exists(path):
            require(f"{path} missing (tracefs or CONFIG_KPROBE_EVENTS)")


def _offline(
    line: str, features: KernelFeatures
) -> Tuple[Optional[ProbeSpec], Optional[ProbeSyntaxError]]:
    try:
        spec = validate(line, "kprobe", features, os.uname().machine)
    except ProbeSyntaxError as e:
        return None, e
    assert isinstance(spec, ProbeSpec), line
    return spec, None


def _compare_offline(line: str, seen: Seen, features: KernelFeatures) -> List[str]:
    """How the offline verdict differs from what the kernel did (empty: agrees)."""
    err, logged, created = seen
    spec, offline = _offline(line, features)
    if err is None:
        if offline is not None:
            return [f"kernel accepted, offline {offline.kernel_message!r}@{offline.position}"]
        assert spec is not None and len(created) == 1, created
        out = []
        head, _, rest = created[0].partition(" ")
        if head[0] != ("r" if spec.is_return else "p"):
            out.append(f"kernel made {head!r}, offline is_return={spec.is_return}")
        if spec.event_name is not None:
            name = f"{spec.group_name or 'kprobes'}/{spec.event_name}"
            if head.split(":", 1)[1] != name:
                out.append(f"kernel named it {head!r}, offline {name!r}")
        nargs = len(rest.split()) - 1
        if not any(isinstance(a.expr, AllArgs) for a in spec.args) and nargs != len(spec.args):
            out.append(f"kernel kept {nargs} fetchargs, offline {len(spec.args)}")
        return out
    if offline is None:
        how = f"{logged[0]!r}@{logged[2]}" if logged else f"silently (errno {err})"
        return [f"kernel refused {how}, offline accepted"]
    if logged is None:
        want = {errno.EINVAL: SILENT_EINVAL, errno.E2BIG: SILENT_E2BIG}.get(err, str(err))
        if offline.kernel_message != want:
            return [f"kernel refused silently ({want}), offline {offline.kernel_message!r}"]
        return []
    got = (offline.kernel_message, offline.text, offline.position)
    if got == logged:
        return []
    out = [f"kernel {logged[0]!r}@{logged[2]}, offline {got[0]!r}@{got[2]}"]
    if got[1] != logged[1]:
        out.append(f"kernel logged {logged[1]!r}, offline {got[1]!r}")
    return out


def _compare_product(line: str, seen: Seen, fs: TraceFS) -> List[str]:
    """The product path must refuse/accept as the raw write did, with its words."""
    err, logged, _ = seen
    before = _events()
    try:
        fs.write_definition("kprobe_events", line)
        raised: Optional[KprobesError] = None
    except KprobesError as e:
        raised = e
    finally:
        _remove_new(before)
    if err is None:
        return [] if raised is None else [f"product path raised {raised!r} on an accepted line"]
    if raised is None:
        return ["product path accepted a line the kernel refused"]
    if logged is None:
        # Silent refusals through the product path: see the test below.
        return []
    if not isinstance(raised, KernelRefused):
        return [f"product path raised {type(raised).__name__}, not KernelRefused"]
    got = (raised.kernel_message, raised.text, raised.position)
    return (
        []
        if got == logged
        else [f"product path {got[0]!r}@{got[2]}, kernel {logged[0]!r}@{logged[2]}"]
    )


def _expected_ok(expect: str, newer: bool) -> Optional[bool]:
    return {OK: True, NO: False, NEW: newer, OLD: not newer}.get(expect)


def test_offline_verdicts_match_kprobe_events() -> None:
    _prerequisites()
    release = os.uname().release
    features = KernelFeatures.from_readme(_read(os.path.join(TRACEFS, "README")), release)
    newer = KernelFeatures.for_version(release).detailed_arg_errors  # 6.5 and later
    group = f"kpchk{os.getpid()}"
    fs = TraceFS(TRACEFS)
    initial = _events()
    problems: List[str] = []
    counts = {"accepted": 0, "refused": 0, "kernel-only": 0}
    cases = _cases(group)
    try:
        for line, expect in cases:
            seen = _kernel_write(line)
            found: List[str] = []
            want_ok = _expected_ok(expect, newer)
            if want_ok is not None and (seen[0] is None) != want_ok:
                found.append(f"harness expected the kernel to {'accept' if want_ok else 'refuse'}")
            if expect == KERNEL:
                counts["kernel-only"] += 1
            else:
                counts["accepted" if seen[0] is None else "refused"] += 1
                found += _compare_offline(line, seen, features)
            found += _compare_product(line, seen, fs)
            if found:
                problems.append(f"{line[:100]!r}:\n    " + "\n    ".join(found))
    finally:
        leftovers = [ev for ev in _events() if ev not in initial]
        for ev in leftovers:
            _write("-:" + ev.split()[0].split(":", 1)[1])
    assert not leftovers, f"events left behind: {leftovers}"
    print(f"{release}: {len(cases)} cases, {counts}")
    assert not problems, f"{len(problems)} of {len(cases)} cases disagree:\n" + "\n".join(problems)
    assert counts["accepted"] >= 25 and counts["refused"] >= 90


def test_product_path_reports_silent_refusals_as_silent() -> None:
    _prerequisites()
    group = f"kpchk{os.getpid()}"
    fs = TraceFS(TRACEFS)
    initial = _events()
    wrong: List[str] = []
    try:
        _write(f"p:{group}/s0 {FUNC} a=%foo")  # an older, unrelated error_log entry
        for line in (f"x:{group}/s1 {FUNC}", f"p:{group}/s2", f"p:{group}/s3 /bin/true:0x10"):
            try:
                fs.write_definition("kprobe_events", line)
                wrong.append(f"{line!r}: accepted")
            except KernelRefused as e:
                wrong.append(f"{line!r}: KernelRefused {e.kernel_message!r} from {e.text!r}")
            except KprobesError:
                pass
    finally:
        _remove_new(initial)
    assert not wrong, "\n".join(wrong)


# --------------------------------------------------------------------------------------
# `kprobes check` on the running kernel (live facts) against the kernel itself
# --------------------------------------------------------------------------------------

BASE_K = "p:{g}/c vfs_read a=%di"  # an event that exists while the clash cases are checked
BASE_U = "p:{g}/uc {code}"


def _code() -> str:
    """``PATH:0xOFFSET`` of a function's code (kprobes refuses offsets outside code)."""
    from kprobes.backends.symbols import resolve_uprobe

    loc = resolve_uprobe("/bin/bash", "readline")
    return f"{loc.path}:0x{loc.offset:x}"


def _live_cases(g: str) -> List[Tuple[str, str]]:
    """(events file, line): the registration-time facts only the live check knows."""
    k, u = "kprobe_events", "uprobe_events"
    code = _code()
    cases = [
        # symbols that do not exist (the kernel checks them before the arguments)
        (k, f"p:{g}/l1 nosuchfunc_kpchk"),
        (k, f"p:{g}/l2 {FUNC} a=@nosuchsym_kpchk"),
        (k, f"p:{g}/l3 {FUNC} a=+0(@nosuchsym_kpchk):u32"),
        (k, f"p:{g}/l4 nosuchfunc_kpchk a=%foo"),
        (k, f"r:{g}/l5 nosuchfunc_kpchk"),
        (k, f"p:{g}/l6 nosuchfunc_kpchk+8"),
        (k, f"p:{g}/l7 _do_fork"),
        (k, f"p:{g}/l8 {FUNC} a=@jiffies_kpchk+8"),
        # several kallsyms entries: refused (a memory argument may name one)
        (k, f"p:{g}/l9 name_show"),
        (k, f"r:{g}/l10 name_show"),
        (k, f"p:{g}/l11 name_show+4"),
        (k, f"p:{g}/l12 {FUNC} a=@name_show"),
        # exists, but the kprobe layer refuses it: data, blacklisted, notrace
        (k, f"p:{g}/l13 jiffies"),
        (k, f"p:{g}/l14 kprobe_int3_handler"),
        (k, f"p:{g}/l15 trace_event_buffer_reserve"),
        (k, f"p:{g}/l16 do_idle"),
        # modules: not loaded (deferred, accepted), loaded without the symbol
        (k, f"p:{g}/l17 nosuchmod_kpchk:nosuchfunc"),
        # event names taken by another event, or by an event of this kind
        (k, f"p:sched/sched_switch {FUNC}"),
        (k, f"p:{g}/uc {FUNC}"),
        (k, f"p:{g}/c {FUNC} a=%di"),
        (k, f"r:{g}/c vfs_write"),
        (k, f"p:{g}/c vfs_readv b=%di"),
        (k, f"p:{g}/c vfs_readv a=%di:u32"),
        (k, f"p:{g}/c vfs_readv"),
        (k, f"p:{g}/c vfs_readv a=%di b=%si"),
        (k, f"p:{g}/c vfs_write a=%di"),  # same arguments: a second probe of the event
        # uprobes: the file must exist and be a regular file
        (u, f"p:{g}/u1 /nonexist_kpchk:0x10"),
        (u, f"p:{g}/u2 /tmp:0x10"),
        (u, f"p:{g}/u3 /dev/null:0x10"),
        (u, f"p:{g}/u4 /nonexist_kpchk:0x10 a=%foo"),
        (u, f"p:{g}/u5 {code}"),
        (u, f"p:sched/sched_switch {code}"),
        (u, f"p:{g}/c {code}"),
        (u, f"p:{g}/uc {code}"),
        (u, f"r:{g}/uc {code}"),
        (u, f"p:{g}/uc {code} a=%di"),
        (u, f"p:{g}/u6 {code} a=%di b=%si:u32 c=$comm"),
    ]
    mod = _module_symbol()
    if mod is not None:
        cases += [
            (k, f"p:{g}/l18 {mod[0]}:nosuchfunc_kpchk"),
            (k, f"p:{g}/l19 {mod[0]}:{FUNC}"),
            (k, f"p:{g}/l20 {mod[0]}:{mod[1]}"),
        ]
    return cases


def _write_to(rel: str, line: str) -> Optional[int]:
    fd = os.open(os.path.join(TRACEFS, rel), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
        return None
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def _group_events(rel: str, group: str) -> List[str]:
    return [
        ln.split()[0].split(":", 1)[1]
        for ln in _read(os.path.join(TRACEFS, rel)).splitlines()
        if ln.strip() and ln.split()[0].split(":", 1)[1].startswith(group + "/")
    ]


def _listed(rel: str) -> List[str]:
    return [ln.split()[0].split(":", 1)[1] for ln in _read(os.path.join(TRACEFS, rel)).splitlines()
            if ln.strip()]


def _remove_created(before: Dict[str, List[str]]) -> None:
    """Delete the events that appeared since ``before`` (one entry per file)."""
    for rel, old in before.items():
        for ev in sorted(set(_listed(rel)) - set(old)):
            _write_to(rel, f"-:{ev}")


def _drop_group(group: str) -> None:
    assert group.startswith("kplive"), group
    for rel in ("kprobe_events", "uprobe_events"):
        for ev in sorted(set(_group_events(rel, group))):
            _write_to(rel, f"-:{ev}")


def _live_disagreement(rel: str, line: str, live: object, features: KernelFeatures) -> Optional[str]:
    """Check ``line`` live, then write it: None when check said what the kernel did."""
    from kprobes.backends.prepare import guess_kind
    from kprobes.cli.check import check_one

    kind = "kprobe" if rel == "kprobe_events" else "uprobe"
    # The product's own path (prepare: BTF names compiled by kprobes) when the line
    # is of the kind it would be taken for; else the raw syntax of that file.
    how = "auto" if guess_kind(line.split()) == kind else kind
    res = check_one(line, how, features, os.uname().machine, live)  # type: ignore[arg-type]
    before = {r: _listed(r) for r in ("kprobe_events", "uprobe_events")}
    before_log = _read(ERROR_LOG)
    err = _write_to(rel, line)
    after_log = _read(ERROR_LOG)
    _remove_created(before)
    logged = _last_error(after_log) if err is not None and after_log != before_log else None
    if err is None:
        return None if res["ok"] else f"kernel accepted, check {res['message']!r}@{res['position']}"
    if res["ok"]:
        if res["normalized"] != line:
            # check expanded the line (friendly names): what kprobes writes must pass
            ok = _write_to(rel, str(res["normalized"])) is None
            _remove_created(before)
            if ok:
                return None
        how = f"{logged[0]!r}@{logged[2]}" if logged else f"silently (errno {err})"
        return f"kernel refused {how}, check accepted"
    if logged is None:
        want = {errno.EINVAL: SILENT_EINVAL, errno.E2BIG: SILENT_E2BIG}.get(err, str(err))
        return None if res["message"] == want else f"kernel refused silently ({want}), check {res['message']!r}"
    got = (res["message"], res["position"])
    if got == (logged[0], logged[2]) or res["position"] is None:
        return None  # the kernel's words, or kprobes' own (a BTF name prepare compiles)
    return f"kernel {logged[0]!r}@{logged[2]}, check {got[0]!r}@{got[1]}"


def test_live_check_agrees_with_the_kernel() -> None:
    """Every case, the syntax corpus and the live categories: ``check`` then the kernel."""
    _prerequisites()
    from kprobes.backends.livecheck import LiveKernel

    release = os.uname().release
    features = KernelFeatures.from_readme(_read(os.path.join(TRACEFS, "README")), release)
    group = f"kplive{os.getpid()}"
    live = LiveKernel(TRACEFS)
    cases = [("kprobe_events", line) for line, _ in _cases(group)] + _live_cases(group)
    bad: List[str] = []
    try:
        for rel, line in cases:
            _drop_group(group)
            _write_to("kprobe_events", BASE_K.format(g=group))
            _write_to("uprobe_events", BASE_U.format(g=group, code=_code()))
            why = _live_disagreement(rel, line, live, features)
            if why:
                bad.append(f"{line[:100]!r}: {why}")
    finally:
        _drop_group(group)
    assert not _group_events("kprobe_events", group) and not _group_events("uprobe_events", group)
    agree = len(cases) - len(bad)
    print(f"{release}: check agrees with the kernel on {agree}/{len(cases)} "
          f"({100.0 * agree / len(cases):.1f}%)")
    print("\n".join(bad))
    # Known gap: offsets that are not instruction boundaries (the kernel decodes its text).
    assert agree >= 0.98 * len(cases), f"{len(bad)} of {len(cases)} disagree:\n" + "\n".join(bad)
