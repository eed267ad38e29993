"""Kernel line probes from a debug vmlinux, resolved the way ``perf probe`` resolves them.

Two parts:

* :func:`find_kernel_vmlinux` looks for the running kernel's debug vmlinux where
  perf and the distributions put it (``-k`` first, then
  ``/usr/lib/debug/boot/vmlinux-R``, ``/usr/lib/debug/lib/modules/R/vmlinux``,
  the build-id tree, ``/boot/vmlinux-R``, ``/lib/modules/R/build/vmlinux``, and
  the project's cache ``$KPROBES_VM_CACHE/dbg/R/``) and checks its build id
  against ``/sys/kernel/notes``.
* :class:`KernelDebug` turns a perf-probe point (``FUNC``, ``FUNC:RLN``,
  ``FUNC+OFF``, ``FUNC%return``, ``FUNC@FILE...``) and its arguments into
  kprobe_events definitions, with :mod:`.kdwarf` reading only the compilation
  unit that holds the function.  The rules are perf's (tools/perf/util/
  probe-finder.c, dwarf-aux.c): a relative line is searched in the whole unit's
  line table; an address whose reverse lookup gives another line of the same
  file is refused ("This line is sharing the address with other lines");
  variables are searched depth-first in the scopes that contain the address;
  only the first operation of a location expression is used; types are
  ``s<bits>`` for signed base types and ``x<bits>`` otherwise.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from .._record import dataclass, field
from ..errors import FeatureMissing, KprobesError
from . import kdwarf as K
from . import ksource as S
from .dwarf import DwarfError, debug_package_hint

__all__ = [
    "KernelDebug",
    "KernelPoint",
    "KernelProbe",
    "ProbeArg",
    "find_kernel_vmlinux",
    "kernel_vmlinux_candidates",
    "parse_kernel_point",
    "running_build_id",
    "vmlinux_build_id",
]

VM_CACHE = "/var/cache/kprobes-vm"

_X86_REGS = ("%ax", "%dx", "%cx", "%bx", "%si", "%di", "%bp", "%sp",
             "%r8", "%r9", "%r10", "%r11", "%r12", "%r13", "%r14", "%r15")  # fmt: skip
_ARM64_REGS = tuple(f"%x{i}" for i in range(31)) + ("%sp",)
_SKIP_TYPES = (K.TAG_const, K.TAG_restrict, K.TAG_volatile, K.TAG_typedef, 0x40)  # 0x40: shared_type


# ---------------------------------------------------------------------- finding the vmlinux


def _notes_build_id(data: bytes) -> Optional[str]:
    off = 0
    while off + 12 <= len(data):
        namesz, descsz, ntype = (int.from_bytes(data[off + i : off + i + 4], "little") for i in (0, 4, 8))
        name_off = off + 12
        desc_off = name_off + ((namesz + 3) & ~3)
        if ntype == 3 and data[name_off : name_off + namesz] == b"GNU\0":
            return data[desc_off : desc_off + descsz].hex()
        off = desc_off + ((descsz + 3) & ~3)
    return None


def running_build_id(notes: str = "/sys/kernel/notes") -> Optional[str]:
    """The running kernel's build id (``NT_GNU_BUILD_ID`` in /sys/kernel/notes), or None."""
    try:
        with open(notes, "rb") as f:
            return _notes_build_id(f.read())
    except OSError:
        return None


def vmlinux_build_id(path: str) -> Optional[str]:
    """The build id of a vmlinux file."""
    from .symbols.elf import ELFFile

    with ELFFile(path) as elf:
        return elf.build_id()


def kernel_vmlinux_candidates(release: str, root: str = "/", build_id: Optional[str] = None,
                              cache: Optional[str] = None) -> List[str]:  # fmt: skip
    """Where perf, the distributions and this project put the debug vmlinux of ``release``."""
    rels = [f"usr/lib/debug/boot/vmlinux-{release}", f"usr/lib/debug/lib/modules/{release}/vmlinux"]
    if build_id:
        rels.append(f"usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug")
    rels += [f"boot/vmlinux-{release}", f"lib/modules/{release}/build/vmlinux"]
    out = [os.path.join(root, r) for r in rels]
    cache = cache if cache is not None else os.environ.get("KPROBES_VM_CACHE", VM_CACHE)
    out.append(os.path.join(cache, "dbg", release, f"vmlinux-{release}"))
    return out


def find_kernel_vmlinux(explicit: Optional[str] = None, *, release: Optional[str] = None, root: str = "/",
                        notes: str = "/sys/kernel/notes", check_running: bool = True,
                        cache: Optional[str] = None) -> str:  # fmt: skip
    """The debug vmlinux to use: ``explicit`` (``-k``), else the first candidate whose build id matches.

    With ``check_running`` a file whose build id differs from the running kernel's
    is refused (an explicit one with an error, found ones are skipped); without
    it (offline ``-D``/``-L``/``-V`` on another kernel's vmlinux) any file with
    DWARF is taken.
    """
    rel = release or os.uname().release
    want = running_build_id(notes) if check_running else None
    if explicit:
        if not os.path.isfile(explicit):
            raise FeatureMissing(f"{explicit}: no such file", hint="give the path of a vmlinux with debug info")
        if want:
            have = vmlinux_build_id(explicit)
            if have and have != want:
                raise KprobesError(
                    f"{explicit} is not the running kernel's vmlinux: build id {have}, running kernel {want}",
                    hint="use the debug vmlinux of this kernel build, or -D/--definition to only print definitions",
                )
        return explicit
    cands = kernel_vmlinux_candidates(rel, root, want, cache)
    wrong: List[str] = []
    for c in cands:
        if not os.path.isfile(c):
            continue
        if want:
            have = vmlinux_build_id(c)
            if have and have != want:
                wrong.append(f"{c} (build id {have})")
                continue
        return c
    text = ""
    for p in (os.path.join(root, "etc/os-release"), os.path.join(root, "usr/lib/os-release")):
        try:
            with open(p) as f:
                text = f.read()
            break
        except OSError:
            continue
    if wrong:
        raise FeatureMissing(
            f"no debug vmlinux matches the running kernel {rel} (build id {want}): "
            + "; ".join(wrong) + " belong to other builds",
            hint=debug_package_hint(rel, text) + " (the same version as the running kernel)",
        )
    raise FeatureMissing(
        f"no kernel debug info for {rel}: line probes and local variables need a vmlinux with DWARF "
        "(looked in " + ", ".join(cands) + ")",
        hint=debug_package_hint(rel, text) + "; or pass one with -k VMLINUX "
        "(scripts/install-kernel-debug fetches the VM kernels' into " + VM_CACHE + "/dbg)",
    )


def find_module_debug(module: str, release: Optional[str] = None, root: str = "/") -> Optional[str]:
    """The debug file of kernel module ``module`` (``-`` and ``_`` alike) where Debian's
    linux-image-R-dbg puts it (``/usr/lib/debug/lib/modules/R/kernel/.../MODULE.ko``), or None."""
    rel = release or os.uname().release
    want = module.replace("-", "_")
    for base in (os.path.join(root, "usr/lib/debug/lib/modules", rel),):
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                stem = f.split(".ko", 1)[0]
                if f.endswith((".ko", ".ko.debug")) and stem.replace("-", "_") == want:
                    return os.path.join(dirpath, f)
    return None


def module_not_supported(module: str, release: Optional[str] = None, root: str = "/") -> KprobesError:
    """The error for ``-m MODULE``: module DWARF (relocatable .ko) is not read yet; says where it is."""
    rel = release or os.uname().release
    path = find_module_debug(module, rel, root)
    if path is None:
        return FeatureMissing(
            f"no debug info for module {module} of {rel}",
            hint=f"Debian's linux-image-{rel}-dbg carries it under /usr/lib/debug/lib/modules/{rel}/ "
            "(scripts/install-kernel-debug keeps only the vmlinux); module line probes are not supported "
            f"yet in any case: use perf probe -m {module}, or probe the module's functions by name "
            "(kprobes probe --add 'FUNC %di')",
        )
    return FeatureMissing(
        f"line probes and variables in modules are not supported yet ({module}: {path})",
        hint=f"module DWARF is relocatable and kprobes reads only the vmlinux's; use perf probe -m {module}, "
        "or probe the module's functions by name with registers or BTF arguments "
        "(kprobes probe --add 'FUNC %di' / 'FUNC arg:type')",
    )


def module_of_symbol(name: str, kallsyms: str = "/proc/kallsyms") -> Optional[str]:
    """The module that defines ``name`` on the running kernel (``[mod]`` in kallsyms), or None."""
    key = f" {name}\t"
    try:
        with open(kallsyms, encoding="utf-8", errors="replace") as f:
            for line in f:
                if key in line and line.rstrip().endswith("]"):
                    return line.rstrip().rsplit("[", 1)[1][:-1]
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------- perf-probe points


@dataclass(frozen=True)
class ProbeArg:
    """One perf-probe argument: ``[NAME=]VAR[->f|.f...][:TYPE]`` or a raw fetcharg."""

    text: str
    name: Optional[str]
    var: str
    fields: Tuple[Tuple[bool, str], ...]  # (is '->', member)
    type: Optional[str]

    @property
    def is_c_var(self) -> bool:
        return bool(self.var) and (self.var[0].isalpha() or self.var[0] == "_")


@dataclass(frozen=True)
class KernelPoint:
    """A perf-probe definition for the kernel: ``[[GRP:]EV=]FUNC[@SRC][:RLN|+OFF|%return|;PTN] ARG...``."""

    text: str
    function: Optional[str]
    file: Optional[str] = None
    line: int = 0
    offset: int = 0
    is_return: bool = False
    lazy: Optional[str] = None
    group: Optional[str] = None
    event: Optional[str] = None
    args: Tuple[ProbeArg, ...] = ()
    has_line: bool = False


_HEAD = re.compile(r"^(?:(?:(?P<grp>[A-Za-z_]\w*):)?(?P<ev>[A-Za-z_]\w*)=)?(?P<pt>.+)$")
_FUNC_PT = re.compile(
    r"^(?P<func>[A-Za-z_][\w.]*)(?:@(?P<src>[^:+%;]+))?"
    r"(?::(?P<line>\d+)|\+(?P<off>0[xX][0-9a-fA-F]+|\d+)|(?P<ret>%return)|;(?P<lazy>.+))?$"
)
_FILE_PT = re.compile(r"^(?P<src>[^:;@+%]+\.[A-Za-z]+)(?::(?P<line>\d+)|;(?P<lazy>.+))$")
_ARG = re.compile(r"^(?:(?P<name>[A-Za-z_]\w*)=)?(?P<expr>[^:]+?)(?::(?P<type>[\w@/%]+))?$")


def _parse_arg(text: str) -> ProbeArg:
    m = _ARG.match(text)
    if m is None:
        raise KprobesError(f"cannot parse probe argument {text!r}", hint="[NAME=]VAR[->member|.member][:TYPE]")
    expr = m.group("expr")
    if not (expr[0].isalpha() or expr[0] == "_"):
        return ProbeArg(text, m.group("name"), expr, (), m.group("type"))
    parts = re.split(r"(->|\.)", expr)
    var = parts[0]
    fields: List[Tuple[bool, str]] = []
    for i in range(1, len(parts) - 1, 2):
        member = parts[i + 1]
        if not re.match(r"^[A-Za-z_]\w*$", member):
            raise KprobesError(f"{text!r}: {member!r} is not a member name")
        fields.append((parts[i] == "->", member))
    if not re.match(r"^[A-Za-z_]\w*$", var):
        raise KprobesError(f"{text!r}: {var!r} is not a variable name")
    return ProbeArg(text, m.group("name"), var, tuple(fields), m.group("type"))


def parse_kernel_point(text: str) -> KernelPoint:
    """Parse perf's probe syntax (kernel forms) into a :class:`KernelPoint`."""
    words = text.split()
    if not words:
        raise KprobesError("empty probe definition")
    m = _HEAD.match(words[0])
    assert m is not None  # .+ always matches a non-empty word
    pt = m.group("pt")
    args = tuple(_parse_arg(w) for w in words[1:])
    f = _FUNC_PT.match(pt)
    if f is not None and not _FILE_PT.match(pt):
        off = f.group("off")
        point = KernelPoint(
            text, f.group("func"), file=f.group("src"), line=int(f.group("line") or 0),
            offset=int(off, 0) if off else 0, is_return=bool(f.group("ret")), lazy=f.group("lazy"),
            group=m.group("grp"), event=m.group("ev"), args=args, has_line=f.group("line") is not None,
        )  # fmt: skip
    else:
        g = _FILE_PT.match(pt)
        if g is None:
            raise KprobesError(
                f"cannot parse probe point {pt!r}",
                hint="FUNC[@SRC][:RLN|+OFF|%return|;PTN] or SRC:ALN or SRC;PTN",
            )
        point = KernelPoint(text, None, file=g.group("src"), line=int(g.group("line") or 0),
                            lazy=g.group("lazy"), group=m.group("grp"), event=m.group("ev"), args=args,
                            has_line=g.group("line") is not None)  # fmt: skip
    if point.is_return and any(a.is_c_var for a in args):
        raise KprobesError("you can't specify local variables for a kretprobe (FUNC%return)",
                           hint="read $retval, or probe a line before the return: FUNC:RLN VAR")  # fmt: skip
    return point


def needs_dwarf(text: str) -> bool:
    """True when a kernel probe definition needs DWARF (a line, a file, a pattern or a variable)."""
    try:
        p = parse_kernel_point(text)
    except KprobesError:
        return False
    if p.has_line or p.lazy or p.file or p.function is None:
        return True
    return any(a.is_c_var or a.var in ("$vars", "$params") for a in p.args)


@dataclass(frozen=True)
class LineRange:
    """``-L``: a function's (or a file's) probeable lines: absolute line -> offsets from the function entry."""

    function: Optional[str]
    file: str
    comp_dir: str
    offset: int  # the function's declaration line (0 for a file range)
    start: int  # absolute first line shown
    end: Optional[int]  # absolute last line, None: two lines after the last probeable one
    lines: Dict[int, List[int]]


@dataclass(frozen=True)
class _RangeDesc:
    function: Optional[str]
    file: Optional[str]
    start: int
    end: Optional[int]


def parse_line_range(desc: str) -> _RangeDesc:
    """perf's ``parse_line_range_desc``: ``FUNC[@SRC][:START[-END|+N]]`` or ``SRC[:START[-END|+N]]``."""
    name, sep, rng = desc.partition(":")
    start, end = 0, None
    if sep:
        m = re.match(r"^(\d+)(?:([-+])(\d+))?$", rng)
        if m is None:
            raise KprobesError(f"-L {desc!r}: {rng!r} is not a line range", hint="START, START-END or START+LINES")
        start = int(m.group(1))
        if m.group(2):
            end = int(m.group(3)) + (start - 1 if m.group(2) == "+" else 0)
            if start > end:
                raise KprobesError(f"-L {desc!r}: Start line must be smaller than end line.")
    func, at, src = name.partition("@")
    if at:
        if not re.match(r"^[A-Za-z_]\w*$", func):
            raise KprobesError(f"-L {desc!r}: {func!r} is not a valid function name.")
        return _RangeDesc(func, src, start, end)
    if "/" in name or "." in name:
        return _RangeDesc(None, name, start, end)
    if not re.match(r"^[A-Za-z_]\w*$", name):
        raise KprobesError(f"-L {desc!r}: {name!r} is not a valid function name.",
                           hint="FUNC[@SRC][:START[-END|+N]] or SRC[:START[-END|+N]]")  # fmt: skip
    return _RangeDesc(name, None, start, end)


def format_line_range(lr: LineRange, src: Optional[S.SourceText]) -> str:
    """``-L`` output: perf's with the source text; without it the line table (relative line,
    FILE:LINE, offsets from the function entry), which perf does not show at all."""
    rel = lr.start - lr.offset
    if src is not None:
        head = f"<{lr.function}@{src.path}:{rel}>" if lr.function else f"<{src.path}:{lr.start}>"
        return S.format_source_range(head, src, lr.start, lr.end, list(lr.lines), lr.offset)
    head = f"<{lr.function}@{lr.file}:{rel}>" if lr.function else f"<{lr.file}:{lr.start}>"
    out = [head]
    for ln, offs in lr.lines.items():
        where = " ".join(f"+{o}" for o in offs) if lr.function else " ".join(f"0x{o:x}" for o in offs)
        out.append(f"{ln - lr.offset:7d}  {lr.file}:{ln}  {where}")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class KernelProbe:
    """One resolved probe point: ``SYMBOL+OFFSET`` and its rendered fetchargs."""

    symbol: str
    offset: int
    address: int
    is_return: bool
    args: Tuple[str, ...]
    scope: str = ""

    def definition(self, group: str, event: str) -> str:
        head = f"{'r' if self.is_return else 'p'}:{group}/{event}"
        return " ".join([head, f"{self.symbol}+{self.offset}"] + list(self.args))


@dataclass
class _Var:
    """A fetcharg being built: base value (``%reg`` or ``@sym``), deref offsets (innermost first), type."""

    value: str
    refs: List[int] = field(default_factory=list)
    type: Optional[str] = None

    def render(self) -> str:
        refs = list(self.refs)
        base = self.value
        if base.startswith("@") and refs:
            base = f"{base}{refs.pop(0):+d}"
        for r in refs:
            base = f"{r:+d}({base})"
        return base + (f":{self.type}" if self.type else "")


def _strtail_eq(a: str, b: str) -> bool:
    n = min(len(a), len(b))
    return n == 0 or a[-n:] == b[-n:]


class KernelDebug:
    """perf-probe resolution on one debug vmlinux.  Use as a context manager."""

    def __init__(self, path: str, source_dirs: Sequence[str] = ()) -> None:
        self.path = path
        self.dw = K.DwarfFile(path)
        self._memo: Dict[Tuple[str, int], List[K.Die]] = {}
        self._lazy_memo: Dict[Tuple[str, str], List[int]] = {}
        self.source_dirs: Tuple[str, ...] = tuple(source_dirs)
        self.regs = _X86_REGS if self.dw.machine == 62 else _ARM64_REGS if self.dw.machine == 183 else ()

    def __enter__(self) -> KernelDebug:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.dw.close()

    # -- DIE helpers ------------------------------------------------------------------

    def _origin(self, die: K.Die) -> Optional[K.Die]:
        for a in (K.AT_abstract_origin, K.AT_specification):
            off = die.attrs.get(a)
            if off is not None:
                return self.dw.die_at(off)
        return None

    def _integrate(self, die: K.Die, attr: int) -> object:
        d: Optional[K.Die] = die
        for _ in range(4):
            if d is None:
                return None
            v = d.attrs.get(attr)
            if v is not None:
                return v
            d = self._origin(d)
        return None

    def name(self, die: K.Die) -> Optional[str]:
        v = self._integrate(die, K.AT_name)
        return v if isinstance(v, str) else None

    def _decl_file(self, die: K.Die) -> str:
        idx = self._integrate(die, K.AT_decl_file)
        lt = self.dw.line_table(die.cu)
        return lt.file(idx) if isinstance(idx, int) else ""

    def _decl_line(self, die: K.Die) -> int:
        v = self._integrate(die, K.AT_decl_line)
        return v if isinstance(v, int) else 0

    def _entry(self, die: K.Die) -> Optional[int]:
        e = die.attrs.get(K.AT_entry_pc)
        if isinstance(e, int) and die.forms.get(K.AT_entry_pc) == 0x01:
            return e
        lo = die.attrs.get(K.AT_low_pc)
        if isinstance(lo, int):
            return lo
        rs = self.dw.ranges(die)
        return rs[0][0] if rs else None

    def _haspc(self, die: K.Die, addr: int) -> bool:
        return any(lo <= addr < hi for lo, hi in self.dw.ranges(die))

    def _type(self, die: Optional[K.Die]) -> Optional[K.Die]:
        if die is None:
            return None
        off = self._integrate(die, K.AT_type)
        return self.dw.die_at(off) if isinstance(off, int) else None

    def _real_type(self, die: K.Die) -> Optional[K.Die]:
        t = self._type(die)
        while t is not None and t.tag in _SKIP_TYPES:
            t = self._type(t)
        return t

    def type_name(self, t: Optional[K.Die]) -> str:
        if t is None:
            return "void"
        if t.tag == K.TAG_pointer:
            return self.type_name(self._type(t)) + " *"
        if t.tag == K.TAG_const:
            return "const " + self.type_name(self._type(t))
        if t.tag == K.TAG_volatile:
            return "volatile " + self.type_name(self._type(t))
        if t.tag in (K.TAG_restrict, K.TAG_atomic):
            return self.type_name(self._type(t))
        if t.tag == K.TAG_array:
            return self.type_name(self._type(t)) + "[]"
        if t.tag == K.TAG_subroutine_type:
            return "(function_type)"
        prefix = {K.TAG_structure: "struct ", K.TAG_union: "union ", K.TAG_enumeration: "enum "}.get(t.tag, "")
        return prefix + (self.name(t) or "(unknown)")

    # -- finding functions --------------------------------------------------------------

    def functions(self, name: str) -> List[K.Die]:
        """Out-of-line definitions of ``name`` (one per unit), in .debug_info order."""
        found: Dict[int, K.Die] = {}
        for value, _size, info in self.dw.symbols_named(name):
            if info & 0xF != 2:
                continue
            cu_off = self.dw.cu_offset_at(value)
            if cu_off is None or cu_off in found:
                continue
            cu = self.dw.unit(cu_off)
            for d in self.dw.iter_top(cu):
                if d.tag == K.TAG_subprogram and self._entry(d) == value and self.name(d) == name:
                    found[cu_off] = d
                    break
        return [found[k] for k in sorted(found)]

    def _realfunc(self, cu: K.CompUnit, addr: int) -> Optional[K.Die]:
        for d in self._cu_funcs(cu):
            if self._haspc(d, addr):
                return d
        return None

    def _cu_funcs(self, cu: K.CompUnit) -> List[K.Die]:
        key = ("funcs", cu.offset)
        got = self._memo.get(key)
        if got is None:
            got = [d for d in self.dw.iter_top(cu) if d.tag == K.TAG_subprogram
                   and (K.AT_low_pc in d.attrs or K.AT_ranges in d.attrs)]  # fmt: skip
            self._memo[key] = got
        return got

    def _funcs_at(self, cu: K.CompUnit, addr: int) -> List[K.Die]:
        """perf's ``cu_walk_functions_at``: the real function at ``addr``, then the inlined ones inside."""
        out: List[K.Die] = []
        f = self._realfunc(cu, addr)
        while f is not None:
            out.append(f)
            self.dw.subtree(f)
            f = self._find_inline(f, addr)
        return out

    def _find_inline(self, die: K.Die, addr: int) -> Optional[K.Die]:
        for c in die.children:
            if c.tag == K.TAG_inlined_subroutine and self._haspc(c, addr):
                return c
            if c.tag == K.TAG_lexical_block and self._haspc(c, addr):
                r = self._find_inline(c, addr)
                if r is not None:
                    return r
        return None

    def _best_scope(self, cu: K.CompUnit, addr: int, function: Optional[str], fname: Optional[str],
                    line: int) -> Optional[K.Die]:  # fmt: skip
        """perf's ``find_best_scope``: the named function (or the nearest declared one) at ``addr``."""
        chain = self._funcs_at(cu, addr)
        best: Optional[K.Die] = None
        diff = 1 << 62
        for fn in chain:
            if fname is not None and self._decl_file(fn) != fname:
                continue
            if function is not None:
                if self.name(fn) == function:
                    return fn
            else:
                lno = self._decl_line(fn)
                if lno < line and diff > line - lno:
                    diff = line - lno
                    best = fn
        if best is not None:
            return best
        return chain[0] if chain else None

    # -- resolving -------------------------------------------------------------------------

    def resolve(self, point: KernelPoint) -> List[KernelProbe]:
        """All probe points of ``point`` with their arguments (perf's ``-D`` result)."""
        if point.function is None:
            if point.lazy is not None:
                return self._resolve_file_lazy(point)
            return self._resolve_file_line(point)
        funcs = self.functions(point.function)
        if point.file:
            funcs = [f for f in funcs if _strtail_eq(point.file, self._decl_file(f))]
        if not funcs:
            mod = module_of_symbol(point.function)
            raise DwarfError(
                f"Probe point '{point.function}' not found.",
                hint=f"{point.function} is in module {mod}, and module debug info is not supported yet "
                f"(perf probe -m {mod})" if mod else
                "an inline-only or renamed (.isra/.constprop) function has no out-of-line definition "
                f"of that name in {self.path}",
            )  # fmt: skip
        out: List[KernelProbe] = []
        for sp in funcs:
            if point.lazy is not None:
                out += self._lazy_probes(sp, point)
            elif point.has_line:
                addrs = self._line_addrs(sp, point)
                for addr, scope in addrs:
                    out.append(self._probe(sp.cu, scope, addr, point))
            else:
                entry = self._entry(sp)
                assert entry is not None
                addr = entry + point.offset
                if not self._haspc(sp, addr):
                    size = sum(hi - lo for lo, hi in self.dw.ranges(sp))
                    raise DwarfError(f"Specified offset is out of {point.function}",
                                     hint=f"offset {point.offset} is bigger than the size of "
                                     f"{point.function} ({size} bytes)")  # fmt: skip
                if point.is_return and point.offset:
                    raise DwarfError(f"{point.function}%return must be at the function's entry")
                out.append(self._probe(sp.cu, sp, addr, point))
        seen = set()
        uniq = []
        for p in out:
            if p.address not in seen:
                seen.add(p.address)
                uniq.append(p)
        return uniq

    # -- perf's die_walk_lines, line ranges (-L) and lazy lines (;PATTERN) --------------------

    def _innermost_inline(self, die: K.Die, addr: int) -> Optional[K.Die]:
        """perf's ``die_find_inlinefunc``: the innermost inlined subroutine below ``die`` holding ``addr``."""
        found: Optional[K.Die] = None
        cur: Optional[K.Die] = die
        while cur is not None:
            nxt = self._first_inline(cur, addr)
            if nxt is not None:
                found = nxt
            cur = nxt
        return found

    def _first_inline(self, die: K.Die, addr: int) -> Optional[K.Die]:
        for c in die.children:  # pre-order, like die_find_child
            if c.tag == K.TAG_inlined_subroutine and self._haspc(c, addr):
                return c
            if c.children:
                r = self._first_inline(c, addr)
                if r is not None:
                    return r
        return None

    def _call_file(self, die: K.Die, lt: K.LineTable) -> Optional[str]:
        cf = die.attrs.get(K.AT_call_file)
        return lt.file(cf) if isinstance(cf, int) else None

    def walk_lines(self, sp: K.Die) -> List[Tuple[str, int, int]]:
        """perf's ``die_walk_lines`` on a function: (file, line, address) in line-table order, then the
        declaration line at the entry and the call sites of directly inlined functions."""
        cu = sp.cu
        lt = self.dw.line_table(cu)
        self.dw.subtree(sp)
        decf = self._decl_file(sp)
        decl = self._decl_line(sp)
        out: List[Tuple[str, int, int]] = []
        ranges = self.dw.ranges(sp)
        for r in lt.rows:
            if r.end_sequence or not r.is_stmt:
                continue
            if not any(lo <= r.address < hi for lo, hi in ranges):
                continue
            inl = self._innermost_inline(sp, r.address)
            if inl is not None:
                if not (self._call_file(inl, lt) == decf and inl.attrs.get(K.AT_call_line) == r.line):
                    if self._decl_line(inl) != decl or self._decl_file(inl) != decf:
                        continue
            out.append((lt.file(r.file), r.line, r.address))
        entry = self._entry(sp)
        if decf and decl and entry is not None:
            out.append((decf, decl, entry))

        def funclines(d: K.Die) -> None:
            for c in d.children:
                if c.tag == K.TAG_inlined_subroutine:
                    cf = self._call_file(c, lt)
                    cl = c.attrs.get(K.AT_call_line)
                    e = self._entry(c)
                    if cf and isinstance(cl, int) and cl > 0 and e:
                        out.append((cf, cl, e))
                    continue  # not recursive: inner inlines hold no line of this function
                if c.children:
                    funclines(c)

        funclines(sp)
        return out

    def _walk_cu_lines(self, cu: K.CompUnit) -> List[Tuple[str, int, int]]:
        """``die_walk_lines`` on a whole unit: every statement row, then every function's declaration
        line and (recursively) its inlined call sites and their declaration lines."""
        lt = self.dw.line_table(cu)
        out = [(lt.file(r.file), r.line, r.address) for r in lt.rows if r.is_stmt and not r.end_sequence]

        def funclines(d: K.Die) -> None:
            for c in d.children:
                if c.tag == K.TAG_inlined_subroutine:
                    cf = self._call_file(c, lt)
                    cl = c.attrs.get(K.AT_call_line)
                    e = self._entry(c)
                    if cf and isinstance(cl, int) and cl > 0 and e:
                        out.append((cf, cl, e))
                        df, dl = self._decl_file(c), self._decl_line(c)
                        if df and dl:
                            out.append((df, dl, e))
                if c.children:
                    funclines(c)

        for sp in self._cu_funcs(cu):
            e = self._entry(sp)
            df, dl = self._decl_file(sp), self._decl_line(sp)
            if df and dl and e is not None:
                out.append((df, dl, e))
            self.dw.subtree(sp)
            funclines(sp)
        return out

    def _reversible(self, cu: K.CompUnit, lt: K.LineTable, fname: str, line: int, addr: int) -> bool:
        """perf's ``cu_find_lineinfo`` check in ``line_range_walk_cb``: the address maps back to the line."""
        rf = self._realfunc(cu, addr)
        if rf is not None and self._entry(rf) == addr:
            rfile, rline = self._decl_file(rf), self._decl_line(rf)
        else:
            row = lt.stmt_at(addr)
            if row is None:
                return True
            rfile, rline = lt.file(row.file), row.line
        return rline == line and rfile == fname

    def line_range(self, desc: str) -> LineRange:
        """``-L FUNC[@SRC][:START[-END|+N]]`` or ``-L SRC[:START[-END|+N]]``: perf's probeable lines."""
        lr = parse_line_range(desc)
        if lr.function is not None:
            funcs = self.functions(lr.function)
            if lr.file:
                funcs = [f for f in funcs if _strtail_eq(lr.file, self._decl_file(f))]
            if not funcs:
                mod = module_of_symbol(lr.function)
                raise DwarfError("Specified source line is not found.",
                                 hint=f"{lr.function} is in module {mod}, and module debug info is not supported "
                                 f"yet (perf probe -m {mod} -L {desc})" if mod else
                                 f"no out-of-line definition of {lr.function} in {self.path}")  # fmt: skip
            sp = funcs[0]
            cu = sp.cu
            lt = self.dw.line_table(cu)
            fname = self._decl_file(sp)
            decl = self._decl_line(sp)
            lo = decl + lr.start
            hi = None if lr.end is None else decl + lr.end
            walked = self.walk_lines(sp)
            cus = [cu]
            entry = self._entry(sp) or 0
        else:
            assert lr.file is not None
            cus = self._units_of_file(lr.file)
            if not cus:
                raise DwarfError("Specified source line is not found.",
                                 hint=f"no unit of {self.path} is built from {lr.file}")  # fmt: skip
            cu = cus[0]
            lt = self.dw.line_table(cu)
            fname = next((f for f in lt.files if _strtail_eq(f, lr.file)), lr.file)
            decl, lo, hi = 0, lr.start, lr.end
            walked = self._walk_cu_lines(cu)
            entry = 0
        lines: Dict[int, List[int]] = {}
        for f, ln, addr in walked:
            if not _strtail_eq(f, fname) or ln < lo or (hi is not None and ln > hi):
                continue
            if not self._reversible(cu, lt, f, ln, addr):
                continue
            got = lines.setdefault(ln, [])
            if addr - entry not in got:
                got.append(addr - entry)
        if not lines:
            raise DwarfError("Specified source line is not found.",
                             hint=f"no code in {desc} (see kprobes probe -L {lr.function or lr.file})")  # fmt: skip
        return LineRange(lr.function, fname, cu.comp_dir, decl, lo, hi,
                         {k: sorted(v) for k, v in sorted(lines.items())})  # fmt: skip

    def banner(self) -> Optional[str]:
        """The kernel's ``linux_banner`` string ("Linux version ... Debian 6.1.192-3 ...")."""
        for value, size, _info in self.dw.symbols_named("linux_banner"):
            data = self.dw.read_addr(value, min(max(size, 1), 512))
            if data:
                return data.split(b"\0", 1)[0].decode("utf-8", "replace")
        return None

    def source(self, raw: str, comp_dir: str, source_dirs: Sequence[str] = ()) -> Optional[S.SourceText]:
        """The text of a unit's source file (:func:`.ksource.find_source`)."""
        return S.find_source(raw, comp_dir, source_dirs, self.banner())

    def _lazy_lines(self, fname: str, comp_dir: str, point: KernelPoint) -> List[int]:
        assert point.lazy is not None
        key = (fname, point.lazy)
        got = self._lazy_memo.get(key)
        if got is not None:
            return got
        src = self.source(fname, comp_dir, self.source_dirs)
        if src is None:
            ver = S.banner_version(self.banner() or "")
            raise FeatureMissing(
                f"Failed to find source file path: lazy line pattern {point.lazy!r} needs the source of {fname}",
                hint=S.source_hint(ver[1] if ver else None),
            )
        got = S.lazy_lines(src, point.lazy)
        if not got:
            raise DwarfError(f"No matched lines found in {src.path}: no line matches {point.lazy!r}",
                             hint="the pattern is a glob over the whole line, whitespace ignored "
                             "(e.g. 'ret=*', '*release_sock*'); see kprobes probe -L")  # fmt: skip
        self._lazy_memo[key] = got
        return got

    def _lazy_probes(self, sp: K.Die, point: KernelPoint) -> List[KernelProbe]:
        """``FUNC;PTN``: every line-walk address of the matching lines (perf's probe_point_lazy_walker)."""
        fname = self._decl_file(sp)
        wanted = set(self._lazy_lines(fname, sp.cu.comp_dir, point))
        out = []
        for f, ln, addr in self.walk_lines(sp):
            if ln in wanted and _strtail_eq(f, fname):
                scope = self._best_scope(sp.cu, addr, point.function, fname, ln)
                if scope is None:
                    raise DwarfError("Failed to find scope of probe point.")
                out.append(self._probe(sp.cu, scope, addr, point))
        return out

    def _resolve_file_lazy(self, point: KernelPoint) -> List[KernelProbe]:
        """``SRC;PTN``: the matching lines in every unit built from SRC."""
        assert point.file is not None and point.lazy is not None
        out: List[KernelProbe] = []
        seen = set()
        units = self._units_of_file(point.file)
        for cu in units:
            lt = self.dw.line_table(cu)
            fname = next((f for f in lt.files if _strtail_eq(f, point.file)), None)
            if fname is None:
                continue
            wanted = set(self._lazy_lines(fname, cu.comp_dir, point))
            for f, ln, addr in self._walk_cu_lines(cu):
                if ln in wanted and _strtail_eq(f, fname) and addr not in seen:  # perf's overlap check
                    seen.add(addr)
                    scope = self._best_scope(cu, addr, None, fname, ln)
                    if scope is None:
                        raise DwarfError("Failed to find scope of probe point.")
                    out.append(self._probe(cu, scope, addr, point))
        if not units:
            raise DwarfError(f"Probe point '{point.file};{point.lazy}' not found.",
                             hint=f"no unit of {self.path} is built from {point.file}")  # fmt: skip
        return out

    def _units_of_file(self, file: str) -> List[K.CompUnit]:
        return [self.dw.unit(off) for off, name in self.unit_names() if name and _strtail_eq(name, file)]

    def unit_names(self) -> List[Tuple[int, str]]:
        """(offset, name) of every unit; cached on disk next to the vmlinux (or in the cache dir), by build id."""
        from ..btf.cache import cache_dir

        bid = vmlinux_build_id(self.path) or "nobuildid"
        places = [os.path.join(os.path.dirname(os.path.abspath(self.path)), f".kprobes-units-{bid}")]
        cdir = cache_dir()
        if cdir:
            places.append(os.path.join(cdir, f"kdebug-units-{bid}"))
        for pl in places:
            try:
                with open(pl, encoding="utf-8") as f:
                    rows = [line.rstrip("\n").split("\t", 1) for line in f]
                return [(int(a), b) for a, b in rows]
            except (OSError, ValueError):
                continue
        units = list(self.dw.unit_names())
        body = "".join(f"{off}\t{name}\n" for off, name in units)
        for pl in places:
            try:
                os.makedirs(os.path.dirname(pl), exist_ok=True)
                tmp = f"{pl}.{os.getpid()}.tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(body)
                os.replace(tmp, pl)
                break
            except OSError:
                continue
        return units

    def _resolve_file_line(self, point: KernelPoint) -> List[KernelProbe]:
        """``SRC:ALN``: every address of that absolute line in the units built from SRC."""
        assert point.file is not None
        out: List[KernelProbe] = []
        seen = set()
        for cu in self._units_of_file(point.file):
            lt = self.dw.line_table(cu)
            fname = next((f for f in lt.files if _strtail_eq(f, point.file)), None)
            if fname is None:
                continue
            for r in lt.rows:
                if r.line != point.line or r.end_sequence or not r.is_stmt:
                    continue
                f = lt.file(r.file)
                if not _strtail_eq(f, fname) or r.address in seen:
                    continue
                self._verify_line(cu, lt, f, point.line, r.address, None, 0)
                seen.add(r.address)
                scope = self._best_scope(cu, r.address, None, fname, point.line)
                if scope is None:
                    raise DwarfError("Failed to find scope of probe point.")
                out.append(self._probe(cu, scope, r.address, point))
        if not out:
            raise DwarfError(f"Probe point '{point.file}:{point.line}' not found.",
                             hint="no code at that line (or no unit built from that file)")  # fmt: skip
        return out

    def _line_addrs(self, sp: K.Die, point: KernelPoint) -> List[Tuple[int, K.Die]]:
        cu = sp.cu
        lt = self.dw.line_table(cu)
        fname = self._decl_file(sp)
        decl = self._decl_line(sp)
        lno = decl + point.line
        found: List[Tuple[int, K.Die]] = []
        seen = set()
        cands: List[Tuple[str, int]] = []
        for r in lt.rows:
            if r.line == lno and not r.end_sequence and r.is_stmt:
                f = lt.file(r.file)
                if _strtail_eq(f, fname):
                    cands.append((f, r.address))
        # function entry (declaration line) and inlined call sites, as perf's CU walk adds them
        self.dw.subtree(sp)
        extra: List[Tuple[str, int]] = []
        entry = self._entry(sp)
        if decl == lno and entry is not None:
            extra.append((fname, entry))
        stack = list(sp.children)
        while stack:
            d = stack.pop(0)
            if d.tag == K.TAG_inlined_subroutine:
                cf = d.attrs.get(K.AT_call_file)
                cl = d.attrs.get(K.AT_call_line)
                e = self._entry(d)
                if isinstance(cf, int) and cl == lno and e and _strtail_eq(lt.file(cf), fname):
                    extra.append((lt.file(cf), e))
            stack[0:0] = d.children
        for f, addr in cands + extra:
            self._verify_line(cu, lt, f, lno, addr, point.function, decl)
            if addr in seen:
                continue
            seen.add(addr)
            scope = self._best_scope(cu, addr, point.function, fname, lno)
            if scope is None:
                raise DwarfError("Failed to find scope of probe point.")
            found.append((addr, scope))
        if not found:
            near = sorted({r.line - decl for r in lt.rows if r.is_stmt and not r.end_sequence
                           and r.line >= decl and _strtail_eq(lt.file(r.file), fname)
                           and self._haspc(sp, r.address)})  # fmt: skip
            raise DwarfError(
                f"line {point.line} of {point.function} ({fname}:{lno}) has no code: no probe point found",
                hint="probeable lines (relative): " + " ".join(str(n) for n in near[:60])
                + f"; see: kprobes probe -L {point.function}",
            )
        return found

    def _verify_line(self, cu: K.CompUnit, lt: K.LineTable, fname: str, lineno: int, addr: int,
                     function: Optional[str], decl: int) -> None:  # fmt: skip
        """perf's ``verify_representive_line``: refuse an address the line table gives to another line."""
        rf = self._realfunc(cu, addr)
        rfile: Optional[str] = None
        rline = 0
        if rf is not None and self._entry(rf) == addr:
            rfile, rline = self._decl_file(rf), self._decl_line(rf)
        else:
            row = lt.stmt_at(addr)
            if row is not None:
                rfile, rline = lt.file(row.file), row.line
        if rfile is None or rfile != fname or rline == lineno:
            return
        where = f"{rfile}:{rline}"
        if function is not None:
            sc = self._best_scope(cu, addr, function, fname, lineno)
            if sc is not None and self.name(sc) == function:
                where = f"{function}:{rline - self._decl_line(sc)}"
        raise DwarfError(
            "This line is sharing the address with other lines.",
            hint=f"Please try to probe at {where} instead.",
        )

    # -- probe points and variables ----------------------------------------------------------

    def _probe(self, cu: K.CompUnit, scope: K.Die, addr: int, point: KernelPoint) -> KernelProbe:
        sp = scope
        if scope.tag != K.TAG_subprogram:
            rf = self._realfunc(cu, addr)
            if rf is None:
                raise DwarfError("Failed to find probe point in any functions.")
            sp = rf
        self.dw.subtree(sp)
        self.dw.subtree(scope)
        fb = self._frame_base(sp, addr)
        entry = self._entry(sp)
        symbol = self.name(sp)
        if entry is None or symbol is None:
            raise DwarfError(f"Failed to find symbol at 0x{addr:x}")
        if point.is_return and entry != addr:
            raise DwarfError(f'Failed to find "{point.function}%return", because {point.function} is an '
                             "inlined function and has no return point.")  # fmt: skip
        args: List[str] = []
        for a in point.args:
            if a.var in ("$vars", "$params"):
                for name, var in self._expand(scope, sp, addr, fb, a.var == "$vars"):
                    args.append(f"{name}={var.render()}")
                continue
            if not a.is_c_var:
                args.append(a.text if a.name is None else f"{a.name}={a.var}" + (f":{a.type}" if a.type else ""))
                continue
            var = self._variable(scope, sp, addr, fb, a)
            args.append(f"{self._arg_name(a)}={var.render()}")
        return KernelProbe(symbol, addr - entry, addr, point.is_return, tuple(args), self.name(scope) or "")

    @staticmethod
    def _arg_name(a: ProbeArg) -> str:
        if a.name:
            return a.name
        if a.fields:
            return a.fields[-1][1]
        return a.var + (f"_{a.type}" if a.type else "")

    def _frame_base(self, sp: K.Die, addr: int) -> Optional[Tuple[int, int]]:
        expr = self.dw.location(sp, K.AT_frame_base, addr)
        if not expr:
            return None
        ops = K.decode_ops(expr)
        if len(ops) == 1 and ops[0].code == 0x9C:
            cfa = self.dw.cfa_at(addr)
            if cfa is None:
                raise DwarfError(f"Failed to get call frame on 0x{addr:x}")
            return cfa
        op = ops[0]
        if 0x70 <= op.code <= 0x8F:
            return op.code - 0x70, int(op.args[0])
        if op.code == 0x92:
            return int(op.args[0]), int(op.args[1])
        return None

    def _reg(self, n: int) -> str:
        if n >= len(self.regs):
            raise DwarfError(f"Mapping for the register number {n} missing on this architecture.")
        return self.regs[n]

    def _find_var(self, scope: K.Die, name: str, addr: int) -> Optional[K.Die]:
        """perf's ``die_find_variable_at``: depth-first through the scopes that contain ``addr``."""
        for c in scope.children:
            if c.tag in (K.TAG_formal_parameter, K.TAG_variable) and self.name(c) == name and (
                K.AT_external in c.attrs or K.AT_location in c.attrs or K.AT_const_value in c.attrs
            ):
                return c
            if c.children and self._haspc(c, addr):
                r = self._find_var(c, name, addr)
                if r is not None:
                    return r
        return None

    def _global_var(self, cu: K.CompUnit, name: str) -> Optional[K.Die]:
        for d in self.dw.iter_top(cu):
            if d.tag in (K.TAG_formal_parameter, K.TAG_variable) and self.name(d) == name and (
                K.AT_external in d.attrs or K.AT_location in d.attrs or K.AT_const_value in d.attrs
            ):
                return d
        return None

    def _location(self, vr: K.Die, addr: int, fb: Optional[Tuple[int, int]], sp: K.Die) -> _Var:
        """perf's ``convert_variable_location``; DwarfError(ENOENT-like) when there is no location."""
        if K.AT_external in vr.attrs:
            return _Var("@" + (self.name(vr) or "?"), [0])
        cv = vr.attrs.get(K.AT_const_value)
        if cv is not None and isinstance(cv, int):
            return _Var(f"\\{cv}")
        if K.AT_location not in vr.attrs:
            raise _NoLocation()
        expr = self.dw.location(vr, K.AT_location, addr)
        if expr is None:
            if self._entry(sp) != addr or vr.tag != K.TAG_formal_parameter:
                raise _NoLocation()
            # fuzzed by the fentry call: the parameter's first location after the entry
            entries = self.dw.location_entries(vr, K.AT_location)
            hi = max((h for _lo, h in self.dw.ranges(sp)), default=addr)
            later = [(lo, e) for lo, h, e in entries if addr < lo <= hi]
            if not later:
                raise _NoLocation()
            expr = min(later)[1]
        ops = K.decode_ops(expr)
        if not ops:
            raise _NoLocation()
        op = ops[0]
        c = op.code
        if c == 0x03:
            return _Var("@" + (self.name(vr) or "?"), [0])
        offs = 0
        ref = False
        if c == 0x91:
            if fb is None:
                raise _NotSupported()
            ref = True
            offs = int(op.args[0])
            regn, boff = fb
            return _Var(self._reg(regn), [offs + boff])
        if 0x70 <= c <= 0x8F:
            return _Var(self._reg(c - 0x70), [offs + int(op.args[0])])
        if 0x50 <= c <= 0x6F:
            return _Var(self._reg(c - 0x50))
        if c == 0x92:
            return _Var(self._reg(int(op.args[0])), [offs + int(op.args[1])])
        if c == 0x90:
            return _Var(self._reg(int(op.args[0])))
        _ = ref
        raise _NotSupported()

    def _variable(self, scope: K.Die, sp: K.Die, addr: int, fb: Optional[Tuple[int, int]], a: ProbeArg) -> _Var:
        vr = self._find_var(scope, a.var, addr) or self._global_var(sp.cu, a.var)
        if vr is None:
            raise _not_found(a.var)
        try:
            var = self._location(vr, addr, fb, sp)
        except _NoLocation:
            raise _not_found(a.var) from None
        except _NotSupported:
            raise DwarfError(f"Sorry, we don't support this variable location yet ({a.var}).") from None
        tdie: K.Die = vr
        name = a.var
        for arrow, member in a.fields:
            tdie, name = self._field(tdie, name, arrow, member, var)
        var.type = self._var_type(tdie, a.type, var)
        return var

    def _field(self, vr: K.Die, varname: str, arrow: bool, member: str, var: _Var) -> Tuple[K.Die, str]:
        t = self._real_type(vr)
        if t is None:
            raise DwarfError(f"Failed to get the type of {varname}.")
        if t.tag == K.TAG_pointer:
            if not arrow:
                raise DwarfError(f"Semantic error: {member} must be referred by '->'")
            t = self._real_type(t)
            if t is None or t.tag not in (K.TAG_structure, K.TAG_union):
                raise DwarfError(f"{varname} is not a data structure nor a union.")
            var.refs.append(0)
        else:
            if t.tag not in (K.TAG_structure, K.TAG_union):
                raise DwarfError(f"{varname} is not a data structure nor a union.")
            if arrow:
                raise DwarfError(f"Semantic error: {member} must be referred by '.'")
            if not var.refs:
                raise DwarfError("Structure on a register is not supported yet.")
        found = self._member(t, member)
        if found is None:
            raise DwarfError(f"{varname}(type:{self.name(t)}) has no member {member}.")
        off, mdie = found
        var.refs[-1] += off
        return mdie, member

    def _member(self, t: K.Die, member: str) -> Optional[Tuple[int, K.Die]]:
        self.dw.subtree(t)
        for m in t.children:
            if m.tag != K.TAG_member:
                continue
            off = 0
            if t.tag != K.TAG_union:
                loc = m.attrs.get(K.AT_data_member_location, 0)
                if isinstance(loc, bytes):
                    ops = K.decode_ops(loc)
                    loc = int(ops[0].args[0]) if ops and ops[0].code == 0x23 else 0
                off = int(loc)
            n = self.name(m)
            if n == member:
                return off, m
            if n is None:
                inner_t = self._real_type(m)
                if inner_t is not None and inner_t.tag in (K.TAG_structure, K.TAG_union):
                    r = self._member(inner_t, member)
                    if r is not None:
                        return off + r[0], r[1]
        return None

    def _var_type(self, vr: K.Die, cast: Optional[str], var: _Var) -> Optional[str]:
        """perf's ``convert_variable_type``."""
        if cast and cast not in ("string", "ustring", "x", "s", "u"):
            return cast
        bits = vr.attrs.get(K.AT_bit_size)
        if isinstance(bits, int) and bits > 0:
            total = self._integrate(self._type(vr) or vr, K.AT_byte_size)
            dbo = vr.attrs.get(K.AT_data_bit_offset)
            boff = 0
            if isinstance(dbo, int) and isinstance(total, int):
                var.refs[-1] += (dbo // (8 * total)) * total
                boff = dbo % (8 * total)
            return f"b{bits}@{boff}/{8 * (total if isinstance(total, int) else 8)}"
        t = self._real_type(vr)
        if t is None:
            raise DwarfError(f"Failed to get a type information of {self.name(vr)}.")
        if cast in ("string", "ustring"):
            if t.tag not in (K.TAG_pointer, K.TAG_array):
                raise DwarfError(f"Failed to cast into string: {self.name(vr)}({self.name(t)}) "
                                 "is not a pointer nor array.")  # fmt: skip
            elem = self._real_type(t)
            if t.tag == K.TAG_pointer:
                var.refs.append(0)
            if elem is None or self.name(elem) not in ("char", "unsigned char"):
                raise DwarfError(f"Failed to cast into string: {self.name(vr)} is not (unsigned) char *.")
            return cast
        if cast in ("u", "s", "x"):
            prefix = cast
        else:
            enc = self._integrate(t, K.AT_encoding)
            prefix = "s" if enc in (5, 6, 0x0D) else "x"
        size = self._integrate(t, K.AT_byte_size)
        if not isinstance(size, int) or size <= 0:
            return None
        return f"{prefix}{min(size * 8, 64)}"

    def _expand(self, scope: K.Die, sp: K.Die, addr: int, fb: Optional[Tuple[int, int]],
                with_vars: bool) -> List[Tuple[str, _Var]]:  # fmt: skip
        out: List[Tuple[str, _Var]] = []

        def walk(d: K.Die) -> None:
            for c in d.children:
                if c.tag == K.TAG_formal_parameter or (c.tag == K.TAG_variable and with_vars):
                    n = self.name(c)
                    try:
                        v = self._location(c, addr, fb, sp)
                        v.type = self._var_type(c, None, v)
                    except (_NoLocation, _NotSupported, DwarfError):
                        v = None
                    if n and v is not None:
                        out.append((n, v))
                if c.children and self._haspc(c, addr):
                    walk(c)

        walk(scope)
        return out

    def variables(self, point: KernelPoint) -> List[Tuple[KernelProbe, List[Tuple[str, str, Optional[str]]]]]:
        """``-V``: for each probe point, (type, name, fetcharg or None) of the variables in scope."""
        bare = KernelPoint(point.text, point.function, point.file, point.line, point.offset, point.is_return,
                           point.lazy, has_line=point.has_line)  # fmt: skip
        out = []
        probes = self.resolve(bare)
        for p in probes:
            cu_off = self.dw.cu_offset_at(p.address)
            assert cu_off is not None
            cu = self.dw.unit(cu_off)
            chain = self._funcs_at(cu, p.address)
            scope = next((f for f in chain if self.name(f) == p.scope), chain[0])
            sp = chain[0]
            fb = self._frame_base(sp, p.address)
            rows: List[Tuple[str, str, Optional[str]]] = []

            def walk(d: K.Die, addr: int = p.address, rows: List[Tuple[str, str, Optional[str]]] = rows,
                     sp: K.Die = sp, fb: Optional[Tuple[int, int]] = fb) -> None:  # fmt: skip
                for c in d.children:
                    if c.tag in (K.TAG_formal_parameter, K.TAG_variable):
                        n = self.name(c)
                        try:
                            v: Optional[_Var] = self._location(c, addr, fb, sp)
                            assert v is not None
                            v.type = self._var_type(c, None, v)
                        except (_NoLocation, _NotSupported, DwarfError):
                            v = None
                        if n:
                            rows.append((self.type_name(self._type(c)), n, v.render() if v else None))
                    if c.children and self._haspc(c, addr):
                        walk(c)

            walk(scope)
            out.append((p, rows))
        return out

    def line_table(self, function: str) -> Tuple[str, int, List[Tuple[int, int, List[int]]]]:
        """``-L`` without source: (file, decl line, [(relative line, absolute line, addresses)])."""
        funcs = self.functions(function)
        if not funcs:
            raise DwarfError(f"Probe point '{function}' not found.")
        sp = funcs[0]
        lt = self.dw.line_table(sp.cu)
        fname = self._decl_file(sp)
        decl = self._decl_line(sp)
        by_line: Dict[int, List[int]] = {}
        for r in lt.rows:
            if r.is_stmt and not r.end_sequence and self._haspc(sp, r.address) and lt.file(r.file) == fname:
                by_line.setdefault(r.line, [])
                if r.address not in by_line[r.line]:
                    by_line[r.line].append(r.address)
        entry = self._entry(sp) or 0
        rows = [(ln - decl, ln, [a - entry for a in sorted(addrs)]) for ln, addrs in sorted(by_line.items())
                if ln >= decl]  # fmt: skip
        return fname, decl, rows


class _NoLocation(Exception):
    pass


class _NotSupported(Exception):
    pass


def _not_found(var: str) -> DwarfError:
    return DwarfError(
        f"Failed to find the location of the '{var}' variable at this address.",
        hint="Perhaps it has been optimized out; kprobes probe -V FUNC:RLN lists what can be read there",
    )


def perf_event_name(point: KernelPoint) -> str:
    """perf's default event name: ``FUNC``, ``FUNC_L<RLN>``, ``FUNC__return``."""
    base = point.function or re.sub(r"\W", "_", os.path.basename(point.file or "probe").split(".")[0])
    if point.is_return:
        return f"{base}__return"
    if point.line:
        return f"{base}_L{point.line}"
    return base


def definitions(dbg: KernelDebug, text: str, group: str = "probe", *, unique: bool = True) -> List[str]:
    """The kprobe_events lines perf would write for ``text``.

    With ``unique`` (for adding) the second and later points are named EVENT_1,
    EVENT_2...; without it (``-D``) every line keeps perf's name, as ``perf probe -D`` prints them.
    """
    point = parse_kernel_point(text)
    probes = dbg.resolve(point)
    grp = point.group or group
    out = []
    seen: Dict[str, int] = {}
    for p in probes:
        if point.event:
            ev = point.event
        elif point.function:
            ev = perf_event_name(point)
        elif point.lazy is not None:
            ev = p.scope or p.symbol
        else:
            ev = probes[0].symbol
        n = seen.get(ev, 0)
        seen[ev] = n + 1
        out.append(p.definition(grp, f"{ev}_{n}" if unique and n else ev))
    return out


def format_line_table(function: str, fname: str, decl: int, rows: Sequence[Tuple[int, int, List[int]]],
                      source: Optional[List[str]] = None) -> str:  # fmt: skip
    """``-L`` output: perf's layout with source text, else relative line, absolute line and offsets."""
    out = [f"<{function}@{fname}:0>"]
    if source is not None:
        probeable = {ln for _r, ln, _a in rows}
        last = max(probeable, default=decl)
        for n in range(decl, last + 1):
            text = source[n - 1] if n - 1 < len(source) else ""
            prefix = f"{n - decl:7d}  " if n in probeable else " " * 9
            out.append((prefix + text).rstrip())
        return "\n".join(out) + "\n"
    for rel, ln, offs in rows:
        out.append(f"{rel:7d}  {fname}:{ln}  " + " ".join(f"+{o}" for o in offs))
    return "\n".join(out) + "\n"


def open_kernel_debug(vmlinux: Optional[str], *, root: str = "/", check_running: bool = True,
                      source_dirs: Sequence[str] = ()) -> KernelDebug:  # fmt: skip
    """Find (:func:`find_kernel_vmlinux`) and open the kernel's debug vmlinux."""
    return KernelDebug(find_kernel_vmlinux(vmlinux, root=root, check_running=check_running), source_dirs)


def format_variables(point_text: str, found: Sequence[Tuple[KernelProbe, List[Tuple[str, str, Optional[str]]]]]) -> str:
    """perf's ``-V`` layout; variables without a location at that address are listed in parentheses."""
    out: List[str] = []
    for p, rows in found:
        out.append(f"Available variables at {point_text}")
        out.append(f"        @<{p.symbol}+{p.offset}>")
        for tname, name, fetch in sorted(rows, key=lambda r: r[1]):
            if fetch is not None:
                out.append(f"                {tname}\t{name}")
        for tname, name, fetch in sorted(rows, key=lambda r: r[1]):
            if fetch is None:
                out.append(f"                ({tname}\t{name}: no location here, optimized out)")
    return "\n".join(out) + "\n"
