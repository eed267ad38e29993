"""Attaching loaded programs, each attachment owned by a :class:`Link`.

* perf events (kprobes, uprobes, tracepoints, software events):
  ``BPF_LINK_CREATE`` with ``attach_type = BPF_PERF_EVENT`` (v5.15, which also
  gives a per-attachment ``bpf_cookie``), else the older
  ``PERF_EVENT_IOC_SET_BPF``; then ``PERF_EVENT_IOC_ENABLE``.
* many kernel functions at once: a *kprobe_multi* link (``BPF_LINK_CREATE``
  with ``BPF_TRACE_KPROBE_MULTI``, v5.18, commit 0dcac2725406 "bpf: Add multi
  kprobe link"; built on fprobe, so it needs CONFIG_FPROBE — Debian's 6.12 has
  it, its 6.1 does not).  :func:`attach_kprobes` falls back to one perf event
  per function and says why in :attr:`KprobeAttachment.reason`.

Nothing here writes to tracefs: closing the fds (or the process dying, SIGKILL
included) makes the kernel drop the probes, links and programs.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import time
from typing import Callable, List, Optional, Sequence

from ...bpf.maps import AttachType
from ...errors import BPFError, FeatureMissing, KprobesError, PermissionProblem, VerifierError
from .perf import PerfEvent, open_kprobe, open_tracepoint, open_uprobe
from .prog import Program
from .sys import Cmd, OwnedFd, addr, bpf_errno, pack, translate

__all__ = [
    "Link",
    "KprobeAttachment",
    "attach_perf_event",
    "attach_kprobe",
    "attach_uprobe",
    "attach_tracepoint",
    "attach_kprobe_multi",
    "attach_kprobes",
    "kernel_functions",
    "probe_symbols",
    "close_all",
    "BPF_F_KPROBE_MULTI_RETURN",
    "attach_tracing",
    "attach_raw_tracepoint",
    "open_perf_counter",
]

BPF_F_KPROBE_MULTI_RETURN = 1

#: Whether BPF_LINK_CREATE takes perf events here (learnt on first use).
_perf_link_ok: Optional[bool] = None


class Link(OwnedFd):
    """An attachment: a BPF link fd, or a perf event carrying the program (ioctl path).

    ``kind`` is ``"perf_link"``, ``"perf_ioctl"`` or ``"kprobe_multi"``.
    Closing it detaches the program and removes the probe.
    """

    def __init__(self, fd: int, kind: str, description: str,
                 event: Optional[PerfEvent] = None) -> None:
        self.fd = fd
        self.kind = kind
        self.description = description
        self.event = event

    @property
    def closed(self) -> bool:
        return self.fd < 0 and (self.event is None or self.event.closed)

    def close(self) -> None:
        super().close()
        if self.event is not None:
            self.event.close()

    def __repr__(self) -> str:
        return f"Link({self.description!r}, {self.kind}, fd={self.fd})"


def _perf_link(prog: Program, event: PerfEvent, cookie: int) -> int:
    """BPF_LINK_CREATE(BPF_PERF_EVENT): the link fd, or -errno."""
    attr = pack("IIIIQ", prog.fd, event.fd, AttachType.PERF_EVENT, 0, cookie)
    fd, err = bpf_errno(Cmd.LINK_CREATE, attr)
    return fd if fd >= 0 else -err


def attach_perf_event(prog: Program, event: PerfEvent, *, cookie: int = 0,
                      use_link: Optional[bool] = None) -> Link:
    """Attach ``prog`` to ``event`` and enable it; the returned link owns ``event``.

    ``use_link`` None tries a BPF link first and remembers whether the kernel
    has them; False forces the ioctl path (no cookies there).
    """
    global _perf_link_ok
    try:
        if use_link is not False and _perf_link_ok is not False:
            fd = _perf_link(prog, event, cookie)
            if fd >= 0:
                _perf_link_ok = True
                event.enable()
                return Link(fd, "perf_link", event.description, event)
            err = -fd
            # EINVAL: no BPF_PERF_EVENT attach type (before 5.15).
            if err != _errno.EINVAL or _perf_link_ok or use_link:
                raise translate(err, f"BPF_LINK_CREATE({event.description})",
                                detail=_attach_detail(prog, event, err))
            # EINVAL: no perf links, or a program that fits no perf event; the ioctl
            # below tells which (only its success proves the kernel lacks the links).
            learnt = True
        else:
            learnt = False
        if cookie:
            raise FeatureMissing(
                f"cannot give {event.description} a BPF cookie: this kernel has no perf links",
                hint="BPF cookies need Linux 5.15+")
        try:
            event.set_bpf(prog.fd)
        except BPFError as e:
            raise BPFError(e.message, errno=e.errno,
                           hint=_attach_detail(prog, event, e.errno or 0) or e.hint) from None
        if learnt:
            _perf_link_ok = False
        event.enable()
        return Link(-1, "perf_ioctl", event.description, event)
    except BaseException:
        event.close()
        raise


def _attach_detail(prog: Program, event: PerfEvent, err: int) -> str:
    if err == _errno.EINVAL:
        return (f"program type {prog.prog_type} cannot attach to {event.description} "
                "(kprobe/uprobe want KPROBE, tracepoints TRACEPOINT, software events PERF_EVENT)")
    if err == _errno.EEXIST:
        return "a program is already attached to that event"
    return ""


def attach_kprobe(prog: Program, func: str, *, retprobe: bool = False, offset: int = 0,
                  cookie: int = 0, explain: Optional[Callable[[str], Optional[KprobesError]]] = None) -> Link:
    """A kprobe (kretprobe) perf event on ``func+offset`` carrying ``prog``.

    ``explain(func)`` may turn a refusal into a better error (e.g. the
    probeability verdict: blacklisted, notrace, no such function).
    """
    try:
        ev = open_kprobe(func, offset=offset, retprobe=retprobe)
    except BPFError as e:
        if isinstance(e, PermissionProblem):
            raise
        better = explain(func) if explain is not None else None
        if better is not None:
            raise better from None
        if e.errno in (_errno.ENOENT, _errno.EINVAL):
            raise BPFError(e.message, errno=e.errno,
                           hint=f"is {func!r} a probeable kernel function? try: kprobes list "
                           f"'kprobe:{func}'") from None
        raise
    return attach_perf_event(prog, ev, cookie=cookie)


def attach_uprobe(prog: Program, path: str, symbol_or_offset: object, *, retprobe: bool = False,
                  pid: int = -1, cookie: int = 0, ref_ctr_offset: int = 0) -> Link:
    """A uprobe (uretprobe) on ``path``'s ``symbol`` (``"atoi"``, ``"atoi+4"``) or file offset;
    ``ref_ctr_offset``: the file offset of a USDT semaphore the kernel counts up while armed."""
    if isinstance(symbol_or_offset, int):
        real, offset = path, symbol_or_offset
    else:
        from ..symbols import resolve_library, resolve_uprobe

        real = path if "/" in path else resolve_library(path)
        loc = resolve_uprobe(real, str(symbol_or_offset))
        real, offset = loc.path, loc.offset
    ev = open_uprobe(real, offset, retprobe=retprobe, pid=pid, ref_ctr_offset=ref_ctr_offset)
    if not isinstance(symbol_or_offset, int):
        ev.description = f"{'uretprobe' if retprobe else 'uprobe'}:{real}:{symbol_or_offset}"
    return attach_perf_event(prog, ev, cookie=cookie)


def attach_tracepoint(prog: Program, group: str, event: str, *, tracefs_root: Optional[str] = None,
                      cookie: int = 0) -> Link:
    """A perf event on tracepoint ``group:event`` carrying ``prog`` (a TRACEPOINT program)."""
    root = tracefs_root or _tracefs_root()
    return attach_perf_event(prog, open_tracepoint(group, event, root), cookie=cookie)


def _tracefs_root() -> str:
    for p in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(p, "events")):
            return p
    raise FeatureMissing("tracefs is not mounted: tracepoint ids are read from events/*/*/id",
                         hint="mount -t tracefs nodev /sys/kernel/tracing")


#: The kernel's internal ENOTSUPP (not in errno.h): an fentry trampoline cannot be made.
ENOTSUPP = 524


def _raw_tp_open(prog: Program, name: Optional[str], what: str, detail: Callable[[int], str]) -> Link:
    keep = ctypes.create_string_buffer(name.encode()) if name is not None else None
    attr = pack("QI", addr(keep), prog.fd)
    fd, err = bpf_errno(Cmd.RAW_TRACEPOINT_OPEN, attr)
    del keep
    if fd < 0:
        if err == ENOTSUPP:
            raise FeatureMissing(f"BPF_RAW_TRACEPOINT_OPEN({what}) failed: {detail(err)}",
                                 hint="use the kprobe form (kprobe:/kretprobe:) on this kernel")
        raise translate(err, f"BPF_RAW_TRACEPOINT_OPEN({what})", detail=detail(err))
    return Link(fd, "raw_tp", what)


def attach_tracing(prog: Program, description: str) -> Link:
    """Attach a TRACING program (fentry/fexit: loaded with the function's ``attach_btf_id``)
    to the function it was loaded for: ``BPF_RAW_TRACEPOINT_OPEN`` with no name (v5.5)
    builds the BPF trampoline; the returned link owns it."""

    def detail(err: int) -> str:
        if err == ENOTSUPP:
            return ("this kernel cannot build a BPF trampoline for it (no "
                    "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS, or an argument the arch's "
                    "trampoline does not pass)")
        if err in (_errno.EBUSY, _errno.EEXIST):
            return "another trampoline user holds the function exclusively"
        if err == _errno.EINVAL:
            return "the function is not traceable by fentry/fexit (not in ftrace's list?)"
        return ""

    return _raw_tp_open(prog, None, description, detail)


def attach_raw_tracepoint(prog: Program, name: str) -> Link:
    """Attach a RAW_TRACEPOINT program to raw tracepoint ``name`` (``sched_switch``)."""

    def detail(err: int) -> str:
        if err == _errno.ENOENT:
            return f"no raw tracepoint named {name!r} (see btf_trace_* in BTF, or events/*/)"
        if err == _errno.EINVAL:
            return "the program reads more arguments (argN) than the tracepoint passes"
        return ""

    return _raw_tp_open(prog, name, f"rawtracepoint:{name}", detail)


def open_perf_counter(type_: int, config: int, period: int, cpu: int, description: str) -> PerfEvent:
    """A sampling perf event (``PERF_TYPE_SOFTWARE``/``HARDWARE`` ``config``) on ``cpu`` that
    runs the attached program every ``period`` events; created disabled."""
    from .perf import perf_attr
    from .sys import perf_event_open

    attr = perf_attr(type_, config, sample_period=max(1, period), disabled=True)
    what = f"cpu {cpu} {description}"
    detail = ""
    try:
        fd = perf_event_open(attr, -1, cpu, what=f"perf_event_open({what})")
    except BPFError as e:
        if e.errno == _errno.ENOENT and type_ == 0:
            detail = ("this CPU/PMU has no such hardware counter (common in VMs and "
                      "containers: no PMU is passed through)")
        elif e.errno == _errno.EOPNOTSUPP:
            detail = "the PMU cannot sample this event (no overflow interrupt)"
        if detail:
            raise BPFError(f"{e.message}: {detail}", errno=e.errno, hint=e.hint) from None
        raise
    return PerfEvent(fd, what, cpu)


def attach_kprobe_multi(prog: Program, funcs: Sequence[str] = (), *, addrs: Sequence[int] = (),
                        retprobe: bool = False, cookies: Sequence[int] = ()) -> Link:
    """One kprobe_multi link on every function of ``funcs`` (or kernel ``addrs``).

    ``prog`` must have been loaded with ``expected_attach_type =
    AttachType.TRACE_KPROBE_MULTI``.  ``cookies[i]`` is what
    ``bpf_get_attach_cookie()`` returns in ``funcs[i]``.  Every name must be
    an ftrace-hookable function (``available_filter_functions``); the kernel
    refuses the whole link with ESRCH if one is not.
    """
    n = len(funcs) or len(addrs)
    if not n:
        raise BPFError("kprobe_multi needs at least one function")
    if cookies and len(cookies) != n:
        raise BPFError(f"{len(cookies)} cookies for {n} functions")
    keep: List[object] = []
    syms_p = addrs_p = cookies_p = 0
    if funcs:
        names = [f.encode() for f in funcs]
        arr = (ctypes.c_char_p * n)(*names)
        keep += [arr, names]
        syms_p = addr(arr)
    else:
        aarr = (ctypes.c_uint64 * n)(*addrs)
        keep.append(aarr)
        addrs_p = addr(aarr)
    if cookies:
        carr = (ctypes.c_uint64 * n)(*cookies)
        keep.append(carr)
        cookies_p = addr(carr)
    flags = BPF_F_KPROBE_MULTI_RETURN if retprobe else 0
    attr = pack("IIIIIIQQQ", prog.fd, 0, AttachType.TRACE_KPROBE_MULTI, 0, flags, n,
                syms_p, addrs_p, cookies_p)
    fd, err = bpf_errno(Cmd.LINK_CREATE, attr)
    del keep
    kind = "kretprobe" if retprobe else "kprobe"
    what = f"{kind}_multi on {n} functions"
    if fd < 0:
        raise translate(err, f"BPF_LINK_CREATE({what})", detail=_multi_detail(err))
    return Link(fd, "kprobe_multi", what)


def _multi_detail(err: int) -> str:
    if err == _errno.EOPNOTSUPP:
        return "this kernel has no kprobe_multi links (needs Linux 5.18+ built with CONFIG_FPROBE)"
    if err == _errno.ESRCH:
        return "a function is not in available_filter_functions (ftrace cannot hook it)"
    if err == _errno.EINVAL:
        return ("kprobe_multi refused the program or the arguments (was it loaded with "
                "expected_attach_type BPF_TRACE_KPROBE_MULTI? kernels before 5.18 know no such link)")
    if err == _errno.EBUSY:
        return "another ftrace user holds one of the functions exclusively"
    return ""


#: Why kprobe_multi is unavailable in this kernel, once a link was refused for good.
_multi_missing: Optional[str] = None


def _remember_no_multi(reason: str) -> str:
    global _multi_missing
    _multi_missing = reason
    return reason


def _raise_nofile(want: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards ``want`` fds (one perf event + one link per
    function: 1000 functions need more than the usual soft limit of 1024)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ImportError, ValueError, OSError):
        pass


def close_all(links: Sequence[Link], *, threads: int = 32) -> None:
    """Close many links at once.  Removing a kprobe waits for an RCU grace period
    (``unregister_kprobe()`` calls ``synchronize_rcu()`` outside ``kprobe_mutex``), so
    closing from several threads lets those waits overlap: 1000 perf-event kprobes
    detach several times faster than one close after another."""
    links = [ln for ln in links if not ln.closed]
    if len(links) < 8:
        for ln in links:
            ln.close()
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(links))) as pool:
        list(pool.map(Link.close, links))


class KprobeAttachment:
    """Programs and links that put one program on many kernel functions.

    :attr:`method` is ``"kprobe_multi"`` or ``"perf_event"`` (one kprobe perf
    event per function); :attr:`reason` says why kprobe_multi was not used.
    :attr:`functions` lists the functions in cookie order (``cookie == index``
    when cookies were asked for).
    """

    def __init__(self, functions: Sequence[str], retprobe: bool) -> None:
        self.functions = list(functions)
        self.retprobe = retprobe
        self.method = ""
        self.reason = ""
        self.programs: List[Program] = []
        self.links: List[Link] = []

    def close(self) -> None:
        close_all(self.links)
        for p in self.programs:
            p.close()
        self.links.clear()
        self.programs.clear()

    def __enter__(self) -> "KprobeAttachment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"KprobeAttachment({len(self.functions)} functions, {self.method}"
                + (f", because {self.reason}" if self.reason else "") + ")")


#: Builds the program for one attach method: ``load(expected_attach_type)`` with
#: ``AttachType.TRACE_KPROBE_MULTI`` for a multi link, None for perf events.
ProgramFactory = Callable[[Optional[int]], Program]


def attach_kprobes(
    load: ProgramFactory,
    funcs: Sequence[str],
    *,
    retprobe: bool = False,
    cookies: bool = True,
    method: str = "auto",
    explain: Optional[Callable[[str], Optional[KprobesError]]] = None,
    max_seconds: Optional[float] = None,
) -> KprobeAttachment:
    """Attach a program to every function of ``funcs``, by kprobe_multi when possible.

    ``load(expected_attach_type)`` returns a freshly loaded program (a
    kprobe_multi program cannot go on a perf event and vice versa).  With
    ``cookies`` the i-th function gets cookie ``i``.  ``method`` is
    ``"auto"``, ``"multi"`` (no fallback) or ``"perf"``.  ``max_seconds``: one
    perf event per function is timed on the first functions; when the whole
    list would take longer, nothing stays attached and the error says how long.
    """
    funcs = list(dict.fromkeys(funcs))
    att = KprobeAttachment(funcs, retprobe)
    try:
        if method in ("auto", "multi") and _multi_missing is not None:
            att.reason = _multi_missing
            if method == "multi":
                raise FeatureMissing(f"kprobe_multi: {att.reason}",
                                     hint="use one perf event per function (method='perf')")
        elif method in ("auto", "multi"):
            # Try it (cheaper than a full feature probe); remember a kernel-wide "no".
            try:
                prog = load(AttachType.TRACE_KPROBE_MULTI)
            except VerifierError:
                raise
            except BPFError as e:
                if method == "multi" or isinstance(e, PermissionProblem) or e.errno != _errno.EINVAL:
                    raise
                prog = None
                att.reason = _remember_no_multi(
                    "the kernel knows no BPF_TRACE_KPROBE_MULTI programs (needs Linux 5.18+)")
            if prog is not None:
                att.programs.append(prog)
                try:
                    att.links.append(attach_kprobe_multi(
                        prog, funcs, retprobe=retprobe,
                        cookies=list(range(len(funcs))) if cookies else ()))
                    att.method = "kprobe_multi"
                    return att
                except BPFError as e:
                    if method == "multi" or isinstance(e, PermissionProblem):
                        raise
                    att.reason = f"the kernel refused the kprobe_multi link: {e.message}"
                    if e.errno in (_errno.EOPNOTSUPP, _errno.EINVAL):
                        _remember_no_multi(att.reason)
                    prog.close()
                    att.programs.clear()
        _raise_nofile(2 * len(funcs) + 64)
        prog = load(None)
        att.programs.append(prog)
        t0 = time.monotonic()
        sample = min(len(funcs), _TIMED)
        for i, f in enumerate(funcs):
            att.links.append(attach_kprobe(prog, f, retprobe=retprobe,
                                           cookie=i if cookies else 0, explain=explain))
            if max_seconds is not None and i + 1 == sample < len(funcs):
                _check_estimate(len(funcs), sample, time.monotonic() - t0, max_seconds, att.reason)
        att.method = "perf_event"
        return att
    except BaseException:
        att.close()
        raise


#: Functions timed before estimating how long one perf event per function takes.
_TIMED = 20


def _check_estimate(total: int, done: int, spent: float, limit: float, why: str) -> None:
    per = spent / max(done, 1)
    estimate = per * total
    if estimate <= limit:
        return
    mins = f"{estimate / 60:.0f} min" if estimate >= 120 else f"{estimate:.0f} s"
    raise KprobesError(
        f"attaching {total} kprobes one perf event at a time would take about {mins} "
        f"({per * 1000:.1f} ms per function, measured on the first {done}); "
        f"kprobe_multi would attach them at once, but {why or 'it is not available'}",
        hint="narrow the wildcard (or --wildcard-filter GLOB), or use a kernel with "
             "kprobe_multi (Linux 5.18+, CONFIG_FPROBE)")


def probe_symbols(tracefs_root: Optional[str] = None) -> object:
    """What wildcard expansion needs, read fast: ftrace's ``available_filter_functions``
    and the kprobe blacklist, without kallsyms (its ~200k lines cost seconds, and the
    ftrace list already leaves out ``noinstr``/entry/init code).  Falls back to the
    full :func:`~kprobes.backends.symbols.load_kernel_symbols` when the ftrace list
    is unreadable."""
    from ..symbols import (
        KernelSymbols,
        load_kernel_symbols,
        parse_filter_functions,
        parse_kprobe_blacklist,
    )

    roots = [tracefs_root] if tracefs_root else ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
    for root in roots:
        try:
            with open(os.path.join(root, "available_filter_functions")) as f:
                filt = parse_filter_functions(f.read())
        except OSError:
            continue
        try:
            with open("/sys/kernel/debug/kprobes/blacklist") as f:
                black = parse_kprobe_blacklist(f.read())
        except OSError:
            black = None
        return KernelSymbols(None, filt, black)
    return load_kernel_symbols(tracefs=tracefs_root)


def kernel_functions(pattern: str, *, tracefs_root: Optional[str] = None,
                     symbols: Optional[object] = None) -> List[str]:
    """Probeable kernel functions matching the glob ``pattern`` (``vfs_*``): the ftrace
    list minus the kprobe blacklist, as :func:`kprobes.backends.symbols.expand_glob`
    decides for wildcards everywhere else in kprobes.  ``symbols`` (a
    ``KernelSymbols``) defaults to :func:`probe_symbols`."""
    from ..symbols import KernelSymbols, expand_glob

    syms = symbols if symbols is not None else probe_symbols(tracefs_root)
    if not isinstance(syms, KernelSymbols):
        raise BPFError("kernel_functions needs KernelSymbols")
    return expand_glob(pattern, syms.kallsyms, syms.filter_functions, syms.blacklist)
