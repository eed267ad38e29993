"""bpftrace v0.17.0's command line, environment and texts, for ``kprobes`` used as bpftrace.

* :func:`parse_args` reads the arguments as bpftrace's ``getopt_long`` does:
  options and operands may be mixed (``kprobes prog.bt 5 -q``), ``--`` ends
  the options, short options cluster (``-qe PROG``, ``-lv``, ``-dd``, ``-kk``),
  long options take ``--opt=VALUE`` or ``--opt VALUE`` and unambiguous
  prefixes.  The first operand is the program file (``-`` is standard input)
  unless ``-e`` gave the program; the remaining operands are the positional
  parameters ``$1``...
* :func:`read_environment` reads the ``BPFTRACE_*`` variables bpftrace 0.17
  reads, with its checks and error texts; what kprobes cannot honour is
  reported once as ignored.
* Errors bpftrace reports while reading its arguments and environment are
  raised as :class:`BpftraceError` carrying bpftrace's exact text (``ERROR:
  Invalid output format "jsonx"``...); the CLI prints it as is.
* :func:`info_text` (``--info``) and :func:`ast_dump` (``-d``) are the
  kprobes forms of bpftrace's kernel support report and debug dump.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Tuple

from .._record import dataclass, field
from ..errors import KprobesError

if TYPE_CHECKING:
    from ..lang import ast
    from ..lang.checked import CheckedProgram

__all__ = [
    "BPFTRACE_VERSION", "HELP", "BpftraceError", "Options", "Environment", "parse_args",
    "read_environment", "version_line", "info_text", "ast_dump", "types_dump",
]  # fmt: skip

#: The bpftrace release whose language, command line and output kprobes follows.
BPFTRACE_VERSION = "v0.17.0"
#: bpftrace's largest pid (PID_MAX_LIMIT on 64-bit), for its ``-p`` range check.
PID_MAX_LIMIT = 4194304
#: BPFTRACE_STRLEN's ceiling in bpftrace 0.17 (strings live on the 512-byte BPF stack).
STRLEN_MAX = 200

HELP = """\
USAGE:
    kprobes [options] filename
    kprobes [options] - <stdin input>
    kprobes [options] -e 'program'

OPTIONS:
    -B MODE        output buffering mode ('full', 'none')
    -f FORMAT      output format ('text', 'json')
    -o file        redirect bpftrace output to file
    -e 'program'   execute this program
    -h, --help     show this help message
    -I DIR         add the directory to the include search path
    --include FILE add an #include file before preprocessing
    -l [search]    list probes
    -p PID         enable USDT probes on PID
    -c 'CMD'       run CMD and enable USDT probes on resulting process
    --usdt-file-activation
                   activate usdt semaphores based on file path
    --unsafe       allow unsafe builtin functions
    -q             keep messages quiet
    --info         Print information about kernel BPF support
    -k             emit a warning when a bpf helper returns an error (except read functions)
    -kk            check all bpf helper functions
    -V, --version  bpftrace version
    --no-warnings  disable all warning messages

TROUBLESHOOTING OPTIONS:
    -v                      verbose messages
    -d                      (dry run) debug info
    -dd                     (dry run) verbose debug info
    --emit-elf FILE         (dry run) generate ELF file with bpf programs and write to FILE
    --emit-llvm FILE        write LLVM IR to FILE.original.ll and FILE.optimized.ll

KPROBES OPTIONS (not in bpftrace):
    --engine ENGINE         auto (default: bpf where the kernel allows it), bpf or tracefs
    --dry-run               print the plan (engine, maps, programs or kernel events); arm nothing
    --duration SECS         stop after SECS seconds, as if exit() was called
    --wildcard-filter GLOB  keep only functions also matching GLOB in kprobe wildcards
    --buffer-size KB        per-CPU trace buffer of the tracefs engine (default 4096)
    --folded                print stack-keyed maps at exit as folded stacks
    --folded-offsets        --folded with func+offset frames
    --debug                 show the traceback of an internal error

ENVIRONMENT:
    BPFTRACE_STRLEN             [default: 64] bytes on BPF stack per str()
    BPFTRACE_NO_CPP_DEMANGLE    [default: 0] disable C++ symbol demangling
    BPFTRACE_MAP_KEYS_MAX       [default: 4096] max keys in a map
    BPFTRACE_CAT_BYTES_MAX      [default: 10k] maximum bytes read by cat builtin
    BPFTRACE_MAX_PROBES         [default: 512] max number of probes
    BPFTRACE_MAX_BPF_PROGS      [default: 512] max number of generated BPF programs
    BPFTRACE_LOG_SIZE           [default: 1000000] log size in bytes
    BPFTRACE_PERF_RB_PAGES      [default: 64] pages per CPU to allocate for ring buffer
    BPFTRACE_NO_USER_SYMBOLS    [default: 0] disable user symbol resolution
    BPFTRACE_CACHE_USER_SYMBOLS [default: auto] enable user symbol cache
    BPFTRACE_VMLINUX            [default: none] vmlinux path used for kernel symbol resolution
    BPFTRACE_BTF                [default: none] BTF file
  (kprobes honours BPFTRACE_STRLEN, BPFTRACE_MAP_KEYS_MAX, BPFTRACE_MAX_PROBES and
   BPFTRACE_PERF_RB_PAGES, checks the others as bpftrace does and says which it ignores)

EXAMPLES:
kprobes -l '*sleep*'
    list probes containing "sleep"
kprobes -e 'kprobe:do_nanosleep { printf("PID %d sleeping...\\n", pid); }'
    trace processes calling sleep
kprobes -e 'tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }'
    count syscalls by process name

kprobes follows bpftrace v0.17.0's language, options, environment and -f json output;
its own subcommands: kprobes COMMAND --help (kprobes --help lists them).
"""


class BpftraceError(KprobesError):
    """An error bpftrace reports with its own text (printed as is, after ``text``: the usage?)."""

    exit_code = 1

    def __init__(self, text: str, usage: bool = False) -> None:
        super().__init__(text.splitlines()[0] if text else "")
        self.text = text if text.endswith("\n") else text + "\n"
        self.usage = usage

    def format(self) -> str:
        return self.text.rstrip("\n")


@dataclass
class Options:
    """What the arguments asked for (bpftrace's option letters in the comments)."""

    program: Optional[str] = None  # -e
    operands: List[str] = field(default_factory=list)
    buffering: str = "line"  # -B
    fmt: str = "text"  # -f
    output: Optional[str] = None  # -o
    includes: List[str] = field(default_factory=list)  # --include
    include_dirs: List[str] = field(default_factory=list)  # -I
    listing: bool = False  # -l
    pid: Optional[int] = None  # -p
    command: Optional[str] = None  # -c
    usdt_file_activation: bool = False
    unsafe: bool = False
    quiet: bool = False  # -q
    info: bool = False
    helper_check: int = 0  # -k / -kk
    help: bool = False
    version: bool = False
    no_warnings: bool = False
    verbose: int = 0  # -v
    debug: int = 0  # -d / -dd
    emit_elf: Optional[str] = None
    emit_llvm: Optional[str] = None
    # kprobes' own
    engine: str = "auto"
    dry_run: bool = False
    duration: Optional[float] = None
    wildcard_filter: Optional[str] = None
    buffer_size: Optional[int] = None
    folded: bool = False
    folded_offsets: bool = False

    @property
    def source(self) -> Optional[str]:
        """The program file operand (``-`` for stdin), None with ``-e`` or none given."""
        if self.program is not None or not self.operands:
            return None
        return self.operands[0]

    @property
    def params(self) -> List[str]:
        """The positional parameters: operands after the program file (all of them with -e)."""
        return list(self.operands if self.program is not None else self.operands[1:])


#: Short options that take an argument (bpftrace 0.17's getopt string, less ``-b``).
_SHORT_ARG = frozenset("BfeoIpc")
_SHORT_FLAG = frozenset("hlvqdkV")
#: Long options: name -> takes an argument.
_LONG: Dict[str, bool] = {
    "help": False, "version": False, "usdt-file-activation": False, "unsafe": False,
    "include": True, "info": False, "no-warnings": False, "emit-elf": True, "emit-llvm": True,
    # kprobes' own
    "engine": True, "dry-run": False, "duration": True, "wildcard-filter": True,
    "buffer-size": True, "folded": False, "folded-offsets": False,
}  # fmt: skip


def _getopt_error(text: str) -> BpftraceError:
    return BpftraceError(f"kprobes: {text}", usage=True)


def _long_name(word: str) -> str:
    """The long option ``word`` names (exact, or a unique prefix as getopt_long allows)."""
    if word in _LONG:
        return word
    hits = [n for n in _LONG if n.startswith(word)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise _getopt_error(f"unrecognized option '--{word}'")
    shown = " ".join(f"'--{h}'" for h in sorted(hits))
    raise _getopt_error(f"option '--{word}' is ambiguous; possibilities: {shown}")


def parse_args(args: List[str]) -> Options:
    """bpftrace's reading of ``args`` (raises :class:`BpftraceError` with its texts)."""
    o = Options()
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            o.operands.extend(args[i:])
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            name = _long_name(name)
            if _LONG[name]:
                if not eq:
                    if i >= len(args):
                        raise _getopt_error(f"option '--{name}' requires an argument")
                    value = args[i]
                    i += 1
            elif eq:
                raise _getopt_error(f"option '--{name}' doesn't allow an argument")
            _set_long(o, name, value)
        elif a.startswith("-") and a != "-":
            j = 1
            while j < len(a):
                c = a[j]
                j += 1
                if c in _SHORT_ARG:
                    if j < len(a):
                        value, j = a[j:], len(a)
                    elif i < len(args):
                        value = args[i]
                        i += 1
                    else:
                        raise _getopt_error(f"option requires an argument -- '{c}'")
                    _set_short(o, c, value)
                elif c in _SHORT_FLAG:
                    _set_short(o, c, "")
                else:
                    raise _getopt_error(f"invalid option -- '{c}'")
        else:
            o.operands.append(a)
    return o


def _set_short(o: Options, c: str, value: str) -> None:
    if c == "B":
        if value not in ("line", "full", "none"):
            raise BpftraceError("ERROR: USAGE: -B must be either 'line', 'full', or 'none'.")
        o.buffering = value
    elif c == "f":
        if value not in ("text", "json"):
            raise BpftraceError(f'ERROR: Invalid output format "{value}"\n'
                                "Valid formats: 'text', 'json'")  # fmt: skip
        o.fmt = value
    elif c == "e":
        o.program = value
    elif c == "o":
        o.output = value
    elif c == "I":
        o.include_dirs.append(value)
    elif c == "p":
        o.pid = parse_pid(value)
    elif c == "c":
        o.command = value
    elif c == "h":
        o.help = True
    elif c == "l":
        o.listing = True
    elif c == "v":
        o.verbose += 1
    elif c == "q":
        o.quiet = True
    elif c == "d":
        o.debug += 1
    elif c == "k":
        o.helper_check += 1
    elif c == "V":
        o.version = True


def _set_long(o: Options, name: str, value: str) -> None:
    if name == "help":
        o.help = True
    elif name == "version":
        o.version = True
    elif name == "usdt-file-activation":
        o.usdt_file_activation = True
    elif name == "unsafe":
        o.unsafe = True
    elif name == "include":
        o.includes.append(value)
    elif name == "info":
        o.info = True
    elif name == "no-warnings":
        o.no_warnings = True
    elif name == "emit-elf":
        o.emit_elf = value
    elif name == "emit-llvm":
        o.emit_llvm = value
    elif name == "engine":
        if value not in ("auto", "bpf", "tracefs"):
            from .main import UsageError

            raise UsageError(f"--engine: invalid choice: '{value}' (choose from 'auto', 'bpf', 'tracefs')",
                             hint="auto picks bpf where the kernel allows it, else tracefs")
        o.engine = value
    elif name == "dry-run":
        o.dry_run = True
    elif name == "duration":
        o.duration = _number(name, value, float)
    elif name == "wildcard-filter":
        o.wildcard_filter = value
    elif name == "buffer-size":
        o.buffer_size = int(_number(name, value, int))
    elif name == "folded":
        o.folded = True
    elif name == "folded-offsets":
        o.folded_offsets = True


def _number(name: str, value: str, kind: type) -> float:
    try:
        return kind(value)  # type: ignore[no-any-return]
    except ValueError:
        from .main import UsageError

        what = "a number of seconds" if kind is float else "an integer"
        raise UsageError(f"--{name} {value!r}: not {what}", hint=f"e.g. --{name} 5") from None


def parse_pid(text: str) -> int:
    """``-p PID`` as bpftrace 0.17 checks it (decimal digits only, 1..PID_MAX_LIMIT)."""
    body = text[1:] if text[:1] in ("-", "+") else text
    if not body.isdigit() or not body.isascii():
        raise BpftraceError(f"ERROR: pid '{text}' is not a valid decimal number")
    pid = int(text)
    if not 1 <= pid <= PID_MAX_LIMIT:
        raise BpftraceError(f"ERROR: pid '{text}' out of valid pid range [1,{PID_MAX_LIMIT}]")
    return pid


def version_line() -> str:
    from .. import __version__

    return (f"kprobes {__version__} (follows bpftrace {BPFTRACE_VERSION}: its language, command line, "
            "environment and -f json output)\n")  # fmt: skip


# -- environment ---------------------------------------------------------------
@dataclass
class Environment:
    """The ``BPFTRACE_*`` settings kprobes applies (None: not set) and what it ignores."""

    strlen: Optional[int] = None
    map_keys_max: Optional[int] = None
    max_probes: Optional[int] = None
    perf_rb_pages: Optional[int] = None
    cat_bytes_max: Optional[int] = None
    ignored: List[Tuple[str, str]] = field(default_factory=list)

    def ignored_line(self) -> str:
        """One stderr line naming every variable that is set but not honoured ("" if none)."""
        if not self.ignored:
            return ""
        parts = "; ".join(f"{name} ({why})" for name, why in self.ignored)
        return f"kprobes: ignoring {parts}\n"


#: Unsigned numeric variables: name -> (how kprobes uses it: attribute, or why it is ignored).
_NUMERIC: Dict[str, str] = {
    "BPFTRACE_STRLEN": "=strlen",
    "BPFTRACE_MAP_KEYS_MAX": "=map_keys_max",
    "BPFTRACE_MAX_PROBES": "=max_probes",
    "BPFTRACE_PERF_RB_PAGES": "=perf_rb_pages",
    "BPFTRACE_CAT_BYTES_MAX": "=cat_bytes_max",
    "BPFTRACE_MAX_BPF_PROGS": "kprobes makes one BPF program per probe and counts probes, "
                              "see BPFTRACE_MAX_PROBES",
    "BPFTRACE_LOG_SIZE": "kprobes sizes the verifier log itself",
    "BPFTRACE_MAX_TYPE_RES_ITERATIONS": "kprobes resolves types in one pass",
    "BPFTRACE_NODE_MAX": "no limit on program size here",
}  # fmt: skip
#: 0/1 variables: name -> why kprobes ignores a non-default value ("" : nothing to do).
_BOOLEAN: Dict[str, Tuple[str, str]] = {
    "BPFTRACE_NO_USER_SYMBOLS": ("0", "user symbols are always resolved"),
    "BPFTRACE_NO_CPP_DEMANGLE": ("0", "kprobes prints C++ symbols as the ELF file spells them"),
    "BPFTRACE_CACHE_USER_SYMBOLS": ("", ""),
}
#: Path variables: name -> why kprobes ignores them.
_PATHS: Dict[str, str] = {
    "BPFTRACE_VMLINUX": "kernel symbols come from /proc/kallsyms",
    "BPFTRACE_BTF": "kernel types come from /sys/kernel/btf",
}
#: Names of later bpftrace releases, not read by 0.17: name -> the 0.17 name.
_LATER_NAMES: Dict[str, str] = {
    "BPFTRACE_MAX_MAP_KEYS": "BPFTRACE_MAP_KEYS_MAX",
    "BPFTRACE_MAX_STRLEN": "BPFTRACE_STRLEN",
    "BPFTRACE_STACK_MODE": "",
    "BPFTRACE_MAX_CAT_BYTES": "BPFTRACE_CAT_BYTES_MAX",
}


def _uint64(name: str, text: str) -> int:
    """bpftrace's ``std::stoull`` reading: leading blanks and a sign allowed, digits, then
    anything (``12x`` is 12, ``0x10`` is 0); wraps mod 2**64.  0 is accepted, as 0.17 does."""
    import re

    m = re.match(r"\s*([+-]?)(\d+)", text)
    if m is None:
        raise BpftraceError(f"ERROR: Env var '{name}' did not contain a valid uint64_t, or was zero-valued.")
    value = int(m.group(2))
    if value >= 1 << 64:
        raise BpftraceError(f"ERROR: Env var '{name}' did not contain a valid uint64_t, or was zero-valued.")
    if m.group(1) == "-":
        value = (-value) % (1 << 64)
    return value


def read_environment(env: Mapping[str, str]) -> Environment:
    """The ``BPFTRACE_*`` variables of ``env``, checked as bpftrace 0.17 checks them."""
    out = Environment()
    for name, how in _NUMERIC.items():
        text = env.get(name)
        if text is None:
            continue
        value = _uint64(name, text)
        if name == "BPFTRACE_STRLEN":
            if value > STRLEN_MAX:
                raise BpftraceError(
                    f"ERROR: 'BPFTRACE_STRLEN' {value} exceeds the current maximum of {STRLEN_MAX} bytes.\n"
                    "This limitation is because strings are currently stored on the 512 byte BPF stack.\n"
                    "Long strings will be pursued in: https://github.com/iovisor/bpftrace/issues/305")
        if how.startswith("="):
            setattr(out, how[1:], value)
        else:
            out.ignored.append((name, how))
    for name, (default, why) in _BOOLEAN.items():
        text = env.get(name)
        if text is None:
            continue
        if text not in ("0", "1"):
            raise BpftraceError(f"ERROR: Env var '{name}' did not contain a valid value (0 or 1).")
        if why and text != default:
            out.ignored.append((name, why))
    for name, why in _PATHS.items():
        if env.get(name):
            out.ignored.append((name, why))
    for name, old in _LATER_NAMES.items():
        if name in env:
            why = f"bpftrace 0.17 reads {old}" if old else "not a bpftrace 0.17 variable"
            out.ignored.append((name, why))
    return out


# -- --info --------------------------------------------------------------------
def info_text() -> str:
    """``--info``: bpftrace's report of kernel BPF support, from kprobes' own probes."""
    import platform

    from .. import __version__
    from ..backends.bpf.features import probe_features
    from ..backends.kernel import running_kernel

    feats = probe_features()
    kernel = running_kernel()
    root = kernel.tracefs_root

    def yn(ok: bool) -> str:
        return "yes" if ok else "no"

    def tracefs_has(name: str) -> bool:
        import os

        return root is not None and os.path.exists(os.path.join(root, name))

    uname = platform.uname()
    lines = [
        "System",
        f"  OS: {uname.system} {uname.release} {uname.version}",
        f"  Arch: {uname.machine}",
        "",
        "Build",
        f"  version: kprobes {__version__} (bpftrace {BPFTRACE_VERSION} language and command line)",
        "  LLVM: none (BPF instructions are generated in Python)",
        "  unsafe uprobe: no",
        "  bfd: no",
        "  libdw (DWARF support): no (DWARF line tables are read in Python)",
        "",
        "Kernel helpers",
    ]
    h = feats.helpers
    for name in ("probe_read", "probe_read_str", "probe_read_user", "probe_read_user_str",
                 "probe_read_kernel", "probe_read_kernel_str", "get_current_cgroup_id",
                 "send_signal", "override_return", "get_boot_ns"):  # fmt: skip
        known = name in h
        lines.append(f"  {name}: {yn(h.get(name, False)) if known else 'not probed'}")
    btf_ok = kernel.btf_or_none is not None
    lines += [
        "",
        "Kernel features",
        f"  bpf() syscall: {yn(feats.bpf)}" + (f" ({feats.error})" if feats.error else ""),
        f"  btf: {yn(btf_ok)}",
        f"  map batch: {yn(feats.batch_ops)}",
        f"  perf link: {yn(feats.perf_link)}",
        f"  object names: {yn(feats.object_names)}",
        "",
        "Map types",
    ]
    for name, ok in sorted(feats.map_types.items()):
        lines.append(f"  {name.lower().replace('_', ' ')}: {yn(ok)}")
    pt = feats.prog_types
    lines += [
        "",
        "Probe types",
        f"  kprobe: {yn(pt.get('KPROBE', False) and feats.kprobe_pmu)} (BPF); "
        f"{yn(tracefs_has('kprobe_events'))} (tracefs kprobe_events)",
        f"  uprobe: {yn(pt.get('KPROBE', False) and feats.uprobe_pmu)} (BPF); "
        f"{yn(tracefs_has('uprobe_events'))} (tracefs uprobe_events)",
        f"  tracepoint: {yn(pt.get('TRACEPOINT', False))} (BPF); {yn(tracefs_has('events'))} (tracefs)",
        f"  perf_event: {yn(pt.get('PERF_EVENT', False))}",
        f"  kfunc: {yn(feats.fentry)}" + ("" if feats.fentry or not feats.fentry_reason
                                          else f" ({feats.fentry_reason})"),
        f"  kprobe_multi: {yn(feats.kprobe_multi)}",
        "",
        "kprobes doctor explains what is missing and how to enable it.",
    ]
    return "\n".join(lines) + "\n"


# -- -d / -dd ------------------------------------------------------------------
def _is_node(value: object) -> bool:
    from ..lang import ast as _ast

    return type(value).__module__ == _ast.__name__ and hasattr(type(value), "__dataclass_fields__")


def ast_dump(program: "ast.Program", checked: Optional["CheckedProgram"] = None) -> str:
    """The program as a tree, one node a line (``-d``); with ``checked``, expression types."""
    lines: List[str] = []

    def scalar(v: object) -> bool:
        return isinstance(v, (str, int, float, bool)) or v is None

    def visit(node: object, depth: int, label: str = "") -> None:
        pad = " " * depth
        fields = type(node).__dataclass_fields__  # type: ignore[attr-defined]
        attrs = []
        kids: List[Tuple[str, object]] = []
        for name in fields:
            if name in ("span", "text"):
                continue
            v = getattr(node, name)
            if _is_node(v):
                kids.append((name, v))
            elif isinstance(v, tuple) and any(_is_node(x) for x in v):
                kids.extend((name, x) for x in v)
            elif scalar(v) and v not in ("", None, ()) and (name == "value" or v not in (0, False)):
                attrs.append(f"{name}={v!r}")
        head = f"{pad}{label + ': ' if label else ''}{type(node).__name__}"
        if attrs:
            head += " " + " ".join(attrs)
        if checked is not None:
            t = checked.type_of(node)  # type: ignore[arg-type]
            if str(t) not in ("none", "void", ""):
                head += f" :: {t}"
        lines.append(head)
        for name, kid in kids:
            visit(kid, depth + 1, name)

    visit(program, 0)
    return "\n".join(lines) + "\n"


def types_dump(checked: "CheckedProgram") -> str:
    """``-dd``: the maps' key and value types and each probe's variables and kernel reads."""
    lines = ["maps:"]
    for name, info in sorted(checked.maps.items()):
        keys = ", ".join(str(t) for t in info.key_types)
        lines.append(f"  @{name}{'[' + keys + ']' if keys else ''}: {info.value_type}")
    for p in checked.probes:
        names = ", ".join(ap.raw for ap in p.probe.attach_points)
        lines.append(f"probe {p.index + 1}: {names}")
        for label, items in (("builtins", sorted(p.builtins)), ("args", sorted(str(a) for a in p.args)),
                             ("tracepoint fields", sorted(p.tracepoint_fields)),
                             ("calls", sorted(p.calls))):  # fmt: skip
            if items:
                lines.append(f"  {label}: {', '.join(items)}")
        for var, t in sorted(p.variables.items()):
            lines.append(f"  ${var}: {t}")
    return "\n".join(lines) + "\n"


# -- applying the environment ----------------------------------------------------
class applied:
    """``with applied(env):`` the honoured ``BPFTRACE_*`` values are in force (restored after).

    The limits are module constants of the checker and the BPF engine (one
    program per process, as bpftrace's environment is per process).
    """

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._saved: List[Tuple[object, str, object]] = []

    def _set(self, module: object, name: str, value: object) -> None:
        self._saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)

    def __enter__(self) -> "applied":
        env = self.env
        if env.strlen is not None:
            from ..engines import provider
            from ..lang import calls

            size = max(1, env.strlen)
            self._set(calls, "MAX_STRLEN", size)
            self._set(provider, "DYNAMIC_STRING_SIZE", size)
        if env.map_keys_max is not None or env.perf_rb_pages is not None:
            from ..engines.bpf import unit

            if env.map_keys_max is not None:  # 0: bpftrace accepts it; the kernel needs 1
                self._set(unit, "MAX_ENTRIES", max(1, env.map_keys_max))
            if env.perf_rb_pages is not None:
                self._set(unit, "RING_SIZE", ring_size(env.perf_rb_pages))
        if env.cat_bytes_max is not None:
            from ..engines import functions

            if hasattr(functions, "CAT_BYTES_MAX"):
                self._set(functions, "CAT_BYTES_MAX", env.cat_bytes_max)
        return self

    def __exit__(self, *exc: object) -> None:
        for module, name, value in reversed(self._saved):
            setattr(module, name, value)
        self._saved.clear()


def ring_size(pages: int) -> int:
    """The BPF engine's ring buffer for BPFTRACE_PERF_RB_PAGES (pages per CPU, all CPUs):
    a power of two of at least one page, at most 1 GiB."""
    import os

    want = max(1, pages) * 4096 * (os.cpu_count() or 1)
    size = 4096
    while size < want and size < 1 << 30:
        size <<= 1
    return size
