"""Ready tools (``kprobes tools NAME``): bpftrace programs shipped as ``.bt`` files.

Each tool is a readable program in this directory (``opensnoop.bt``,
``funclatency.bt`` ...) that runs as it is (``kprobes opensnoop.bt``); the
command line's options rewrite it in small, visible steps (:func:`build`):
the function or pattern to probe, a process-name filter added to the probes
that start an event, an ``interval`` probe that prints and clears the maps,
a top-N print at the end.  The result is an ordinary program, run on
whichever engine the kernel allows (``kprobes tools NAME --program`` prints
it).

    from kprobes.tools import get_tool, build
    text = build(get_tool("funclatency"), {"target": "vfs_read", "interval": 1})

Nothing here prints or exits; bad options raise :class:`ToolError`.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from .._record import dataclass, field
from ..errors import KprobesError

if TYPE_CHECKING:
    from ..backends.kernel import Kernel

__all__ = [
    "Option", "Tool", "ToolError", "TOOLS", "tool_names", "get_tool", "source", "build",
    "probe_target", "add_predicate", "resolve_function",
]  # fmt: skip

HERE = os.path.dirname(os.path.abspath(__file__))


class ToolError(KprobesError):
    """A tool's option or argument is not usable (exit status 2, as a usage error)."""

    exit_code = 2


@dataclass(frozen=True)
class Option:
    """One tool-specific command-line option (``kind``: int, float, str, flag, list)."""

    flags: Tuple[str, ...]
    dest: str
    help: str
    kind: str = "str"
    metavar: Optional[str] = None
    default: Any = None
    choices: Optional[Tuple[str, ...]] = None


@dataclass(frozen=True)
class Tool:
    """A tool: its ``.bt`` file, options, and how options become the program."""

    name: str
    summary: str
    file: str
    examples: Tuple[Tuple[str, str], ...]
    builder: Callable[["Tool", Mapping[str, Any], Optional["Kernel"]], str]
    #: The positional argument (dest "target"), or None.
    positional: Optional[Option] = None
    options: Tuple[Option, ...] = ()
    #: Whether -i/--interval makes sense (periodic tables).
    interval: bool = False
    #: Whether -x (only failed calls) applies.
    failed: bool = False
    #: Only the BPF engine can run it (kernel stacks).
    bpf_only: bool = False
    notes: Tuple[str, ...] = field(default=())


# -- text helpers ----------------------------------------------------------------------
def source(tool: Tool) -> str:
    """The text of the tool's ``.bt`` file."""
    with open(os.path.join(HERE, tool.file), encoding="utf-8") as fh:
        return fh.read()


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:  # the .bt file and its builder disagree: a bug, not a user error
        raise RuntimeError(f"tool program has no {old!r} to replace")
    return text.replace(old, new)


def add_predicate(text: str, attach: str, cond: str) -> str:
    """Add ``cond`` to the predicate of every probe whose attach line is ``attach``.

    The tools' files put each attach point on its own line, the predicate
    (if any) on the next line as ``/.../`` and ``{`` after it.
    """
    lines = text.split("\n")
    out: List[str] = []
    found = False
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        if line.strip() == attach:
            found = True
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if nxt.startswith("/") and nxt.endswith("/") and len(nxt) > 1:
                out.append(f"/({cond}) && ({nxt[1:-1]})/")
                i += 2
                continue
            out.append(f"/{cond}/")
        i += 1
    if not found:
        raise RuntimeError(f"tool program has no probe {attach!r}")
    return "\n".join(out)


_FUNC_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]-]+$")
_TP = re.compile(r"^[A-Za-z0-9_*?]+$")
_PATH = re.compile(r"^[^\s:\"'{}/][^\s:\"'{}]*$|^/[^\s:\"'{}]*$")


def probe_target(spec: str, *, ret: bool = False, what: str = "FUNC") -> Tuple[str, str]:
    """(entry attach point, return attach point or "") for a BCC-style target.

    ``vfs_read``, ``k:vfs_*``, ``p::vfs_read`` and ``kprobe:vfs_read`` are
    kernel functions; ``t:SYSTEM:EVENT`` (``tracepoint:...``) tracepoints (no
    return); ``u:/path:func``, ``/path:func`` and ``uprobe:/path:func`` user
    functions.  ``r::func`` asks for the return probe only when ``ret`` allows.
    """
    s = spec.strip()
    parts = s.split(":")
    head = parts[0]
    bad = ToolError(
        f"{what} {spec!r} is not a function, pattern or probe",
        hint="give vfs_read, 'vfs_*', k:FUNC, t:SYSTEM:EVENT or u:/path/to/binary:FUNC",
    )
    if len(parts) == 1:
        kind, name = "k", head
    elif head in ("k", "kprobe", "p", "r", "kretprobe") and len(parts) in (2, 3):
        if len(parts) == 3 and parts[1]:
            raise ToolError(f"{what} {spec!r}: kernel functions take no library",
                            hint="p::FUNC or r::FUNC")
        kind = "r" if head in ("r", "kretprobe") else "k"
        name = parts[-1]
    elif head in ("t", "tracepoint") and len(parts) == 3:
        if not (_TP.match(parts[1]) and _TP.match(parts[2])):
            raise bad
        return f"tracepoint:{parts[1]}:{parts[2]}", ""
    elif head in ("u", "uprobe", "uretprobe") and len(parts) == 3:
        path, name = parts[1], parts[2]
        if not _PATH.match(path) or not _FUNC_GLOB.match(name):
            raise bad
        if head == "uretprobe":
            return f"uretprobe:{path}:{name}", ""
        return f"uprobe:{path}:{name}", f"uretprobe:{path}:{name}"
    elif len(parts) == 2 and head.startswith("/"):
        if not _PATH.match(head) or not _FUNC_GLOB.match(parts[1]):
            raise bad
        return f"uprobe:{head}:{parts[1]}", f"uretprobe:{head}:{parts[1]}"
    else:
        raise bad
    if not name or not _FUNC_GLOB.match(name):
        raise bad
    if kind == "r":
        if not ret:
            raise ToolError(f"{what} {spec!r}: this tool probes the function's entry",
                            hint=f"give the function without r:: ({name})")
        return f"kretprobe:{name}", ""
    return f"kprobe:{name}", f"kretprobe:{name}"


def resolve_function(name: str, kernel: Optional["Kernel"]) -> str:
    """``name``, or what this kernel renamed it to (``__alloc_pages`` -> ``__alloc_pages_noprof``)."""
    if kernel is None:
        return name
    ks = kernel.symbols.kallsyms
    if ks is None or ks.lookup(name):
        return name
    from ..backends.symbols.renames import known_rename

    r = known_rename(name, ks.function_names())
    return r.new if r is not None else name


def _comm_filter(text: str, comm: Optional[str], attaches: List[str]) -> str:
    if not comm:
        return text
    if len(comm) > 15 or not re.match(r"^[^\"\\\x00-\x1f]+$", comm):
        raise ToolError(f"--comm {comm!r} is not a process name",
                        hint="a comm has at most 15 bytes, no quotes or backslashes")
    for a in attaches:
        text = add_predicate(text, a, f'comm == "{comm}"')
    return text


def _interval(text: str, secs: Optional[float], body: str) -> str:
    if not secs:
        return text
    if secs != int(secs) or secs < 1:
        ms = int(round(secs * 1000))
        if ms < 1:
            raise ToolError(f"--interval {secs}: too short", hint="at least 0.001 seconds")
        attach = f"interval:ms:{ms}"
    else:
        attach = f"interval:s:{int(secs)}"
    return text.rstrip("\n") + f'\n\n{attach}\n{{\n\ttime("%H:%M:%S\\n");\n{body}}}\n'


def _top(text: str, top: Optional[int], maps: str = "@") -> str:
    if top is None:
        return text
    if top < 1:
        raise ToolError(f"--top {top}: must be at least 1")
    return text.rstrip("\n") + f"\n\nEND\n{{\n\tprint({maps}, {top});\n\tclear({maps});\n}}\n"


def _print_body(maps: str, top: Optional[int]) -> str:
    n = f", {top}" if top else ""
    return f"\tprint({maps}{n});\n\tclear({maps});\n"


# -- builders ---------------------------------------------------------------------------
def _b_opensnoop(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    text = source(tool)
    if o.get("failed"):
        text = add_predicate(text, "kretprobe:do_sys_openat2", "(int64)retval < 0")
    return _comm_filter(text, o.get("comm"), ["kprobe:do_sys_openat2"])


def _b_killsnoop(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    text = source(tool)
    if o.get("failed"):
        text = add_predicate(text, "tracepoint:syscalls:sys_exit_tgkill", "args->ret < 0")
    return _comm_filter(text, o.get("comm"), ["tracepoint:syscalls:sys_enter_kill",
                                              "tracepoint:syscalls:sys_enter_tgkill"])


def _b_execsnoop(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    text = source(tool)
    if o.get("failed"):
        text = add_predicate(text, "tracepoint:syscalls:sys_exit_execve", "args->ret < 0")
    return _comm_filter(text, o.get("comm"), ["tracepoint:syscalls:sys_enter_execve"])


def _b_bigalloc(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    text = source(tool)
    order = o.get("order")
    order = 9 if order is None else int(order)
    if not 0 <= order <= 20:
        raise ToolError(f"--order {order}: page allocation orders are 0 to 20 (MAX_ORDER)")
    text = _replace(text, "/arg1 >= 9/", f"/arg1 >= {order}/")
    func = resolve_function("__alloc_pages", kernel)
    if func != "__alloc_pages":
        text = _replace(text, "kprobe:__alloc_pages\n", f"kprobe:{func}\n")
    return _comm_filter(text, o.get("comm"), [f"kprobe:{func}"])


def _port(o: Mapping[str, Any], default: Optional[int]) -> Optional[int]:
    port = o.get("port")
    if port is None:
        return default
    if not 0 < int(port) < 65536:
        raise ToolError(f"--port {port}: not a TCP/UDP port", hint="1 to 65535")
    return int(port)


def _b_dnssnoop(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    text = _replace(source(tool), "$port == 53 ", f"$port == {_port(o, 53)} ")
    return _comm_filter(text, o.get("comm"), ["kprobe:udp_sendmsg", "kprobe:tcp_sendmsg"])


def _b_tcpconnect(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    text = source(tool)
    port = _port(o, None)
    if port is not None:
        text = _replace(text, "if ($sk->__sk_common.skc_family == 2) {",
                        f"if ($sk->__sk_common.skc_family == 2 && $port == {port}) {{")
    return _comm_filter(text, o.get("comm"), ["kprobe:tcp_connect"])


_UNITS = {"ns": ("@nsecs", "nsecs - @start[tid, $d]"),
          "us": ("@usecs", "(nsecs - @start[tid, $d]) / 1000"),
          "ms": ("@msecs", "(nsecs - @start[tid, $d]) / 1000000")}


def _b_funclatency(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    text = source(tool)
    target = o.get("target") or "vfs_read"
    entry, ret = probe_target(str(target))
    if not ret:
        raise ToolError(f"funclatency needs a function with a return, not {target!r}",
                        hint="a kernel function (vfs_read) or a user one (/path/to/binary:func)")
    if entry.startswith("kprobe:"):
        entry = "kprobe:" + resolve_function(entry[7:], kernel)
        ret = "kretprobe:" + entry[7:]
    text = _replace(text, "kprobe:vfs_read\n", entry + "\n")
    text = _replace(text, "kretprobe:vfs_read\n", ret + "\n")
    unit = o.get("unit") or "us"
    name, expr = _UNITS[unit]
    text = _replace(text, "@usecs = hist((nsecs - @start[tid, $d]) / 1000);",
                    f"{name} = hist({expr});")
    text = _comm_filter(text, o.get("comm"), [entry])
    return _interval(text, o.get("interval"), _print_body(name, None))


def _counting(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"], default: str) -> str:
    text = source(tool)
    target = o.get("target") or default
    entry, _ = probe_target(str(target), what="PATTERN")
    if entry.startswith("kprobe:") and not any(c in entry for c in "*?["):
        entry = "kprobe:" + resolve_function(entry[7:], kernel)
    text = _replace(text, f"kprobe:{default}\n", entry + "\n")
    text = _comm_filter(text, o.get("comm"), [entry])
    top = o.get("top")
    text = _interval(text, o.get("interval"), _print_body("@", top))
    return _top(text, top)


def _b_funccount(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    return _counting(tool, o, kernel, "vfs_*")


def _b_stackcount(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    return _counting(tool, o, kernel, "vfs_read")


# -- trace and argdist: programs made from BCC-style specs ------------------------------
def _split_top(text: str, sep: str = ",") -> List[str]:
    """Split at ``sep`` outside parentheses, brackets and string literals."""
    out, depth, cur, quote = [], 0, "", False
    prev = ""
    for ch in text:
        if quote:
            quote = not (ch == '"' and prev != "\\")
        elif ch == '"':
            quote = True
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append(cur)
            cur = ""
            prev = ch
            continue
        cur += ch
        prev = ch
    out.append(cur)
    return [p.strip() for p in out]


_ARGN = re.compile(r"\barg(\d+)\b")


def _bcc_args(expr: str, kprobe: bool) -> str:
    """BCC numbers function arguments from 1 (``arg1`` is the first); bpftrace from 0."""
    if not kprobe:
        return expr

    def sub(m: "re.Match[str]") -> str:
        n = int(m.group(1))
        if n < 1:
            raise ToolError(f"{m.group(0)}: BCC's trace numbers arguments from arg1",
                            hint="arg1 is the first argument")
        return f"arg{n - 1}"

    return _ARGN.sub(sub, expr)


def _balanced(text: str, i: int) -> int:
    """Index just past the ``)`` that closes the ``(`` at ``text[i]``."""
    depth = 0
    quote = False
    for j in range(i, len(text)):
        ch = text[j]
        if quote:
            quote = not (ch == '"' and text[j - 1] != "\\")
        elif ch == '"':
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    raise ToolError(f"unbalanced parentheses in {text!r}", hint="close the (filter)")


def trace_probe(spec: str) -> str:
    """One BCC ``trace`` spec -> one probe: ``'[p::|r::|t:S:E|u:LIB:]FUNC[(FILTER)] ["FMT"[, ARGS]]'``."""
    s = spec.strip()
    m = re.match(r"^[^\s(\"]+", s)
    if not m:
        raise ToolError(f"trace spec {spec!r} names no function",
                        hint="'do_sys_openat2 \"%s\", arg2'")
    head = m.group(0)
    rest = s[m.end():].lstrip()
    attach, _ = probe_target(head, ret=True, what="probe")
    kprobe = attach.startswith(("kprobe:", "uprobe:"))
    pred = ""
    if rest.startswith("("):
        end = _balanced(rest, 0)
        pred = _bcc_args(rest[1:end - 1].strip(), kprobe)
        rest = rest[end:].lstrip()
    fmt, args = "", []
    if rest:
        if not rest.startswith('"'):
            raise ToolError(f"trace spec {spec!r}: expected \"FORMAT\" after the function",
                            hint="'do_sys_openat2 \"%s\", arg2'")
        j = 1
        while j < len(rest) and not (rest[j] == '"' and rest[j - 1] != "\\"):
            j += 1
        if j >= len(rest):
            raise ToolError(f"trace spec {spec!r}: the format string is not closed")
        fmt = rest[1:j]
        tail = rest[j + 1:].strip()
        if tail:
            if not tail.startswith(","):
                raise ToolError(f"trace spec {spec!r}: expected , between the format and its arguments")
            args = [_bcc_args(a, kprobe) for a in _split_top(tail[1:])]
            if any(not a for a in args):
                raise ToolError(f"trace spec {spec!r}: an empty argument")
    convs = re.findall(r"%[-+ 0#]*\d*(?:\.\d+)?(?:ll|l|h|hh|z)?([a-zA-Z%])", fmt)
    convs = [c for c in convs if c != "%"]
    if len(convs) != len(args):
        raise ToolError(f"trace spec {spec!r}: {len(convs)} conversions for {len(args)} arguments",
                        hint="one argument per % conversion")
    fixed = []
    for c, a in zip(convs, args):
        if c == "s" and not re.match(r"^(str|ksym|usym)\(|^(comm|probe|func)$|^\"", a):
            a = f"str({a})"
        fixed.append(a)
    func = attach.rsplit(":", 1)[1]
    name = "func" if any(ch in func for ch in "*?[") and kprobe else f'"{func}"'
    pieces = ["pid", "tid", "comm", name] + fixed
    body = f'\tprintf("%-7d %-7d %-16s %-16s {fmt}\\n", {", ".join(pieces)});\n'
    predicate = f"/{pred}/\n" if pred else ""
    return f"{attach}\n{predicate}{{\n{body}}}\n"


def _b_trace(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    specs = o.get("target") or []
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise ToolError("trace needs at least one probe spec",
                        hint="kprobes tools trace 'do_sys_openat2 \"%s\", arg2'")
    header = ('BEGIN\n{\n\tprintf("%-7s %-7s %-16s %-16s %s\\n", "PID", "TID", "COMM", "FUNC", "-");\n}\n')
    probes = [trace_probe(s) for s in specs]
    text = "// made by kprobes tools trace from: " + " ".join(repr(s) for s in specs) + "\n\n"
    text += header + "\n" + "\n".join(probes)
    attaches = [p.split("\n", 1)[0] for p in probes]
    return _comm_filter(text, o.get("comm"), attaches)


def argdist_probe(spec: str, kind: str, mapname: str) -> str:
    """``PROBE:EXPR[:FILTER]`` -> a probe adding EXPR to a histogram (H) or a count (C)."""
    s = spec.strip()
    parts = s.split(":")
    if parts[0] in ("p", "r", "k", "kprobe", "kretprobe") and len(parts) >= 4 and parts[1] == "":
        head, rest = ":".join(parts[:3]), parts[3:]
    elif parts[0] in ("t", "tracepoint", "u", "uprobe", "uretprobe") and len(parts) >= 4:
        head, rest = ":".join(parts[:3]), parts[3:]
    elif len(parts) >= 2:
        head, rest = parts[0], parts[1:]
    else:
        raise ToolError(f"argdist spec {spec!r} has no expression",
                        hint="FUNC:EXPR[:FILTER], e.g. 'vfs_read:arg2' or 'r::vfs_read:retval'")
    if len(rest) > 2 or not rest[0].strip():
        raise ToolError(f"argdist spec {spec!r}: expected PROBE:EXPR[:FILTER]",
                        hint="'vfs_read:arg2', 'r::vfs_read:retval:retval > 0'")
    entry, _ = probe_target(head, ret=True, what="probe")
    expr = rest[0].strip()
    pred = f"/{rest[1].strip()}/\n" if len(rest) == 2 and rest[1].strip() else ""
    action = f"{mapname} = hist({expr});" if kind == "H" else f"{mapname}[{expr}] = count();"
    return f"{entry}\n{pred}{{\n\t{action}\n}}\n"


def _b_argdist(tool: Tool, o: Mapping[str, Any], kernel: Optional["Kernel"]) -> str:
    hists = list(o.get("hist") or [])
    counts = list(o.get("count") or [])
    if not hists and not counts:
        raise ToolError("argdist needs -H SPEC (histogram) or -C SPEC (frequency count)",
                        hint="kprobes tools argdist -H 'vfs_read:arg2'")
    probes = []
    for i, s in enumerate(hists):
        probes.append(argdist_probe(s, "H", "@hist" if i == 0 else f"@hist{i + 1}"))
    for i, s in enumerate(counts):
        probes.append(argdist_probe(s, "C", "@count" if i == 0 else f"@count{i + 1}"))
    given = " ".join([f"-H {s!r}" for s in hists] + [f"-C {s!r}" for s in counts])
    text = f"// made by kprobes tools argdist {given}\n\n" + "\n".join(probes)
    attaches = sorted({p.split("\n", 1)[0] for p in probes})
    text = _comm_filter(text, o.get("comm"), attaches)
    if o.get("interval"):
        names = [("@hist" if i == 0 else f"@hist{i + 1}") for i in range(len(hists))]
        names += [("@count" if i == 0 else f"@count{i + 1}") for i in range(len(counts))]
        text = _interval(text, o.get("interval"), "".join(_print_body(n, o.get("top")) for n in names))
    for n in [f"@count{'' if i == 0 else i + 1}" for i in range(len(counts))]:
        text = _top(text, o.get("top"), n)
    return text


# -- the registry ------------------------------------------------------------------------
_COMMON_NOTE = ("-c CMD runs CMD and ends when it exits; as in bpftrace, it does not filter "
                "events to CMD (use -n COMM or -p PID).")

TOOLS: Dict[str, Tool] = {}


def _add(t: Tool) -> None:
    TOOLS[t.name] = t


_add(Tool(
    "opensnoop", "files opened: pid, comm, flags, path, result (do_sys_openat2)", "opensnoop.bt",
    (("kprobes tools opensnoop", "every open on the system"),
     ("kprobes tools opensnoop -n cat -c 'cat /etc/hostname'", "what cat opens"),
     ("kprobes tools opensnoop -x -p 1234", "failed opens of process 1234"),
     ("kprobes tools opensnoop -f json --duration 5", "5 seconds, one JSON object per line")),
    _b_opensnoop, failed=True))
_add(Tool(
    "vfsreadlat", "vfs_read latency as a log2 histogram (funclatency vfs_read)", "funclatency.bt",
    (("kprobes tools vfsreadlat", "until Ctrl-C"),
     ("kprobes tools vfsreadlat -n dd -c 'dd if=/dev/zero of=/dev/null count=1000'", "dd's reads"),
     ("kprobes tools vfsreadlat -i 1 --unit ns", "a nanosecond histogram every second")),
    _b_funclatency, interval=True,
    options=(Option(("--unit",), "unit", "histogram unit (default us)", choices=("ns", "us", "ms"),
                    default="us"),)))
_add(Tool(
    "killsnoop", "signals sent: sender pid/comm, target pid, signal, result (kill, tgkill)",
    "killsnoop.bt",
    (("kprobes tools killsnoop", "every kill(2)/tgkill(2)"),
     ("kprobes tools killsnoop -x", "only the ones that failed"),
     ("kprobes tools killsnoop -f json --duration 60", "a minute of signals as JSON")),
    _b_killsnoop, failed=True))
_add(Tool(
    "bigalloc", "large page allocations (order >= 9, 2 MiB) by process; follows __alloc_pages' rename",
    "bigalloc.bt",
    (("kprobes tools bigalloc", "allocations of 2 MiB and more"),
     ("kprobes tools bigalloc --order 4", "64 KiB and more"),
     ("kprobes tools bigalloc -c 'echo 8 > /proc/sys/vm/nr_hugepages'", "hugepage reservations")),
    _b_bigalloc,
    options=(Option(("--order",), "order", "smallest order reported (default 9)", kind="int",
                    metavar="N", default=9),)))
_add(Tool(
    "dnssnoop", "UDP and TCP sends to port 53 (DNS) by process, with the destination address",
    "dnssnoop.bt",
    (("kprobes tools dnssnoop", "every DNS query sent over IPv4"),
     ("kprobes tools dnssnoop -c 'getent hosts example.com'", "what a lookup sends"),
     ("kprobes tools dnssnoop --port 853", "DNS over TLS instead")),
    _b_dnssnoop,
    options=(Option(("--port",), "port", "destination port (default 53)", kind="int",
                    metavar="N", default=53),)))
_add(Tool(
    "funccount", "count calls of functions matching a pattern; top N, per interval",
    "funccount.bt",
    (("kprobes tools funccount 'vfs_*'", "vfs functions, counted until Ctrl-C"),
     ("kprobes tools funccount 'tcp_*' -i 5 --top 10", "the 10 busiest tcp_ functions every 5 s"),
     ("kprobes tools funccount 't:syscalls:sys_enter_*' --top 5", "the 5 busiest system calls"),
     ("kprobes tools funccount --unsafe '*' -i 5 --top 10", "the seed's kprobe:* one-liner")),
    _b_funccount, interval=True,
    positional=Option(("target",), "target", "function pattern (k:, t:SYS:EV, u:/path:FN)",
                      metavar="PATTERN"),
    options=(Option(("--top",), "top", "print only the N largest counts", kind="int",
                    metavar="N"),)))
_add(Tool(
    "funclatency", "latency of a function as a log2 histogram; pairs calls by thread and depth",
    "funclatency.bt",
    (("kprobes tools funclatency vfs_read", "vfs_read latency in microseconds"),
     ("kprobes tools funclatency do_sys_openat2 --unit ns -i 1", "every second, in ns"),
     ("kprobes tools funclatency /usr/lib/x86_64-linux-gnu/libc.so.6:malloc", "a user function")),
    _b_funclatency, interval=True,
    positional=Option(("target",), "target", "kernel function, or /path/to/binary:func",
                      metavar="FUNC"),
    options=(Option(("--unit",), "unit", "histogram unit (default us)", choices=("ns", "us", "ms"),
                    default="us"),)))
_add(Tool(
    "argdist", "histogram (-H) or frequency count (-C) of an argument or expression",
    "argdist.bt",
    (("kprobes tools argdist -H 'vfs_read:arg2'", "sizes asked of vfs_read"),
     ("kprobes tools argdist -C 'r::vfs_read:retval'", "how often each result comes back"),
     ("kprobes tools argdist -C 't:syscalls:sys_enter_openat:args->flags' -i 5", "open flags")),
    _b_argdist, interval=True,
    options=(Option(("-H",), "hist", "PROBE:EXPR[:FILTER]: a log2 histogram of EXPR", kind="list",
                    metavar="SPEC"),
             Option(("-C",), "count", "PROBE:EXPR[:FILTER]: a count per value of EXPR",
                    kind="list", metavar="SPEC"),
             Option(("--top",), "top", "print only the N largest counts", kind="int",
                    metavar="N")),
    notes=("PROBE is FUNC, p::FUNC, r::FUNC (EXPR may use retval), t:SYSTEM:EVENT (args->FIELD) "
           "or u:/path:FUNC; EXPR and FILTER are bpftrace expressions (arg0 is the first "
           "argument).",)))
_add(Tool(
    "stackcount", "kernel stacks leading to a function, counted (BPF engine)", "stackcount.bt",
    (("kprobes tools stackcount vfs_read", "who calls vfs_read, by stack"),
     ("kprobes tools stackcount t:sched:sched_switch --top 5", "the 5 commonest switch stacks")),
    _b_stackcount, interval=True, bpf_only=True,
    positional=Option(("target",), "target", "function or pattern (k:, t:SYS:EV)",
                      metavar="FUNC"),
    options=(Option(("--top",), "top", "print only the N commonest stacks", kind="int",
                    metavar="N"),)))
_add(Tool(
    "execsnoop", "new programs (execve): pid, comm, result, file and first arguments",
    "execsnoop.bt",
    (("kprobes tools execsnoop", "every exec on the system"),
     ("kprobes tools execsnoop -x", "execs that failed")),
    _b_execsnoop, failed=True,
    notes=("Arguments after the third are not shown (join() is not in the language yet).",)))
_add(Tool(
    "tcpconnect", "active TCP connections (tcp_connect): pid, comm, addresses, port",
    "tcpconnect.bt",
    (("kprobes tools tcpconnect", "every outgoing IPv4 connection"),
     ("kprobes tools tcpconnect --port 443", "connections to port 443")),
    _b_tcpconnect,
    options=(Option(("--port",), "port", "only this destination port", kind="int",
                    metavar="N"),)))
_add(Tool(
    "trace", "print a line per call, BCC style: 'do_sys_openat2 \"%s\", arg2'", "trace.bt",
    (("kprobes tools trace 'do_sys_openat2 \"%s\", arg2'", "files opened (arg1 is the first "
      "argument, as in BCC)"),
     ("kprobes tools trace 'r::do_sys_openat2 \"ret=%d\", retval'", "what opens return"),
     ("kprobes tools trace 'vfs_read (arg3 > 4096) \"%d bytes\", arg3'", "big reads only"),
     ("kprobes tools trace 't:syscalls:sys_enter_kill \"sig %d\", args->sig'", "a tracepoint")),
    _b_trace,
    positional=Option(("target",), "target", "PROBE [(FILTER)] [\"FORMAT\"[, ARG...]]",
                      kind="list", metavar="SPEC"),
    notes=("As in BCC, arg1 is the first argument; %s arguments are read as strings.",)))


def tool_names() -> List[str]:
    return list(TOOLS)


def get_tool(name: str) -> Tool:
    t = TOOLS.get(name)
    if t is None:
        import difflib

        close = difflib.get_close_matches(name, TOOLS, n=1)
        raise ToolError(f"no tool {name!r}",
                        hint=(f"did you mean {close[0]}? " if close else "") + "see: kprobes tools")
    return t


def build(tool: Tool, options: Mapping[str, Any], kernel: Optional["Kernel"] = None) -> str:
    """The program ``tool`` runs with ``options`` (dest -> value; None: the default)."""
    return tool.builder(tool, options, kernel)
