"""Persistent probes (``kprobes probe --add/--del/--list``), the way ``perf probe`` makes them.

A persistent probe is a dynamic event in a group of its own — ``probe`` for
kprobes and ``probe_<binary>`` for uprobes, as perf names them, or a group the
user chooses — that stays defined after kprobes exits, so that ``kprobes record
-e probe:NAME`` (or perf, or bpftrace) can use it later.  Group names of the
session shape (``kp<pid>_...``) are refused: ``kprobes gc`` reaps those.

Two spellings are accepted by :meth:`ProbeManager.add`:

* perf-probe's: ``[[GROUP:]EVENT=]FUNC[+OFFS|:RLN|%return] [ARG...]`` with
  ``ARG`` = ``[NAME=]FETCHARG[:TYPE]``, a variable (``size``, ``sk->sk_state``,
  ``buf.len``) or ``$params``/``$vars``.  Variables and ``:RLN`` line numbers come
  from DWARF (:mod:`.dwarf`): the binary's own for ``-x PATH``, the kernel's debug
  vmlinux otherwise; without kernel DWARF, variable names that are parameters
  still work at function entry through BTF.
* tracefs's own (``p:NAME FUNC ARGS``, ``r:GRP/NAME ...``), with kprobes'
  friendly and BTF argument forms (see :mod:`.prepare`).

Event names follow perf: ``FUNC`` for an entry, ``FUNC_L<RLN>`` for a line,
``FUNC_<OFFS>`` for an offset, ``FUNC__return`` for a return probe; an existing
name is refused unless ``force``, which appends ``_1``, ``_2``...
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

from .._record import dataclass
from .._record import replace as replace_fields
from ..errors import FeatureMissing, KprobesError
from .tracefs.fs import TraceFS
from .tracefs.owner import parse_owner
from .tracefs.reaper import list_dynamic_events

if TYPE_CHECKING:
    from .dwarf import DebugInfo

__all__ = [
    "DEFAULT_GROUP",
    "PerfProbeSpec",
    "PersistentProbe",
    "ProbeManager",
    "parse_perf_probe",
    "perf_event_name",
    "is_tracefs_definition",
    "uprobe_group",
    "resolve_binary",
]

DEFAULT_GROUP = "probe"

_TRACEFS_HEAD = re.compile(r"^[pr]\d*(?::\S*)?$")
_PREFIX = re.compile(r"^(?:([A-Za-z_][\w.-]*):)?([A-Za-z_]\w*)=")
_PLACE = re.compile(
    r"^(?P<func>[A-Za-z_][\w.]*)(?:@(?P<src>[^:+%]+))?"
    r"(?:(?P<ret>%return)|\+(?P<off>0[xX][0-9a-fA-F]+|\d+)|:(?P<line>\d+))?$"
)
_TYPE_SUFFIX = re.compile(
    r":((?:[usx](?:8|16|32|64)|char|string|ustring|symbol|symstr|%pd|%pD|b\d+@\d+/\d+)(?:\[\d+\])?)$"
)
_VAR = re.compile(r"^[A-Za-z_]\w*(?:(?:->|\.)[A-Za-z_]\w*)*$")
_FRIENDLY = re.compile(r"^(?:arg\d+|retval|comm)$")


@dataclass(frozen=True)
class PerfProbeSpec:
    """A perf-probe definition: ``[[GROUP:]EVENT=]FUNC[+OFFS|:RLN|%return] [ARG...]``."""

    text: str
    function: str
    group: Optional[str] = None
    event: Optional[str] = None
    offset: int = 0
    line: Optional[int] = None
    is_return: bool = False
    args: Tuple[str, ...] = ()


def is_tracefs_definition(text: str) -> bool:
    """True for tracefs syntax (``p:NAME FUNC...``, ``r FUNC``), False for perf-probe syntax."""
    words = text.split()
    return bool(words) and bool(_TRACEFS_HEAD.match(words[0])) and not words[0][2:].isdigit()


def parse_perf_probe(text: str) -> PerfProbeSpec:
    """Parse perf-probe syntax; raises :class:`KprobesError` pointing at what is wrong."""
    words = text.split()
    if not words:
        raise KprobesError("empty probe definition", hint="e.g. kprobes probe --add 'do_sys_openat2 filename=+0(%si):string'")
    place = words[0]
    group = event = None
    m = _PREFIX.match(place)
    if m:
        group, event = m.group(1), m.group(2)
        place = place[m.end():]
    pm = _PLACE.match(place)
    if pm is None:
        raise KprobesError(
            f"cannot understand the probe place {place!r}",
            hint="perf-probe places: FUNC, FUNC+OFFS, FUNC:RLN (line relative to the function), FUNC%return",
        )
    if pm.group("src"):
        raise KprobesError(f"{place!r}: FUNC@SOURCE is not supported", hint="name the function alone: FUNC or FUNC:RLN")
    off = pm.group("off")
    line = pm.group("line")
    return PerfProbeSpec(
        text=text, function=pm.group("func"), group=group, event=event,
        offset=int(off, 0) if off else 0, line=int(line) if line is not None else None,
        is_return=bool(pm.group("ret")), args=tuple(words[1:]),
    )  # fmt: skip


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def perf_event_name(spec: PerfProbeSpec) -> str:
    """perf's default event name: FUNC, FUNC_L<RLN>, FUNC_<OFFS>, FUNC__return."""
    base = _sanitize(spec.function)
    if spec.line is not None:
        return f"{base}_L{spec.line}"
    if spec.offset:
        return f"{base}_{spec.offset}"
    if spec.is_return:
        return f"{base}__return"
    return base


def uprobe_group(binary: str) -> str:
    """``probe_<basename>`` (perf's group for uprobes on ``binary``)."""
    return "probe_" + _sanitize(os.path.basename(binary).split(".so")[0])[:48]


@dataclass(frozen=True)
class PersistentProbe:
    """One dynamic event outside kprobes sessions, as ``kprobe_events``/``uprobe_events`` list it."""

    group: str
    event: str
    kind: str  # "kprobe" | "uprobe"
    definition: str

    @property
    def name(self) -> str:
        return f"{self.group}:{self.event}"

    def describe(self) -> str:
        """perf --list style: ``probe:NAME (on PLACE with ARG ARG)``."""
        words = self.definition.split()
        place = words[1] if len(words) > 1 else "?"
        place = re.sub(r":0x0+(?=[0-9a-fA-F])", ":0x", place)
        if place.endswith("+0"):
            place = place[:-2]
        args = [w.split("=", 1)[0] for w in words[2:]]
        tail = f" with {' '.join(args)}" if args else ""
        ret = "%return" if words and words[0].startswith("r") else ""
        return f"{self.name:<32} (on {place}{ret}{tail})"


class ProbeManager:
    """Adds, lists and deletes persistent probes in one tracefs.

    ``group`` overrides the default groups (``probe``, ``probe_<binary>``).
    ``debug_root`` is where distribution debug files are looked for (tests
    point it at an empty tree).
    """

    def __init__(self, fs: TraceFS, *, group: Optional[str] = None, arch: Optional[str] = None,
                 debug_root: str = "/") -> None:  # fmt: skip
        self.fs = fs
        self.group = group
        self.arch = arch
        self.debug_root = debug_root
        if group is not None:
            _check_group(group)

    # -- listing ---------------------------------------------------------------

    def list(self, pattern: str = "*") -> List[PersistentProbe]:
        """Persistent probes (every dynamic event not in a kprobes session group) matching ``pattern``.

        ``pattern`` is a glob over ``EVENT`` or ``GROUP:EVENT``.
        """
        out: List[PersistentProbe] = []
        defs = self._definitions()
        for src, _typ, grp, ev in list_dynamic_events(self.fs):
            if parse_owner(grp) is not None:
                continue
            if self.group is not None and grp != self.group:
                continue
            if not (fnmatch.fnmatchcase(ev, pattern) or fnmatch.fnmatchcase(f"{grp}:{ev}", pattern)):
                continue
            definition = defs.get((grp, ev), "")
            kind = "uprobe" if src == "uprobe_events" or _is_uprobe_line(definition) else "kprobe"
            out.append(PersistentProbe(grp, ev, kind, definition))
        return sorted(out, key=lambda p: p.name)

    def _definitions(self) -> dict[Tuple[str, str], str]:
        defs: dict[Tuple[str, str], str] = {}
        for rel in ("kprobe_events", "uprobe_events", "dynamic_events"):
            if not self.fs.exists(rel):
                continue
            for line in self.fs.iter_lines(rel):
                head = line.split(None, 1)[0]
                grp, _, ev = head.partition(":")[2].partition("/")
                defs.setdefault((grp, ev), line)
        return defs

    # -- deleting ----------------------------------------------------------------

    def delete(self, pattern: str) -> List[PersistentProbe]:
        """Delete the persistent probes matching ``pattern``; raises when none matches."""
        victims = self.list(pattern)
        if not victims:
            raise KprobesError(
                f"no persistent probe matches {pattern!r}",
                hint="list them with: kprobes probe --list",
            )
        for p in victims:
            target = "dynamic_events" if self.fs.exists("dynamic_events") else (
                "uprobe_events" if p.kind == "uprobe" else "kprobe_events")  # fmt: skip
            try:
                self.fs.write(target, f"-:{p.group}/{p.event}\n", append=True)
            except OSError as e:
                if e.errno == errno.EBUSY:
                    raise KprobesError(
                        f"cannot delete {p.name}: it is enabled (a recording or another tracer uses it)",
                        hint="stop that recording first; 'kprobes gc' removes dead kprobes sessions",
                    ) from None
                raise KprobesError(f"cannot delete {p.name}: {os.strerror(e.errno or 0)}") from None
        return victims

    # -- adding ------------------------------------------------------------------

    def add(self, text: str, *, binary: Optional[str] = None, vmlinux: Optional[str] = None,
            force: bool = False, unsafe: bool = False) -> PersistentProbe:  # fmt: skip
        """Define a persistent probe from perf-probe or tracefs syntax (see the module docstring).

        ``unsafe`` places a uprobe even at an offset not proven to start an instruction.
        """
        from .prepare import prepare_definition

        definition, explicit_group = self.build(text, binary=binary, vmlinux=vmlinux)
        prepared = prepare_definition(definition, arch=self.arch, features_source=self.fs, unsafe=unsafe)
        spec = prepared.spec
        group = explicit_group or self.group or (
            uprobe_group(spec.place.path) if spec.kind == "uprobe" else DEFAULT_GROUP)  # type: ignore[union-attr]
        _check_group(group)
        event = spec.event_name
        if event is None:
            raise KprobesError(f"{text!r}: name the probe (EVENT=... or p:EVENT ...)")
        base, n = event, 0
        while self.fs.exists(f"events/{group}/{event}"):
            if not force:
                raise KprobesError(
                    f"event {group}:{event} already exists",
                    hint=f"delete it with 'kprobes probe --del {group}:{event}', choose another name "
                    "(NAME=FUNC ...), or add --force to make it as a duplicate",
                )
            n += 1
            event = f"{base}_{n}"
        spec = replace_fields(spec, group=group, event=event)
        line = spec.render()
        target = "kprobe_events" if spec.kind == "kprobe" else "uprobe_events"
        if not self.fs.exists(target):
            target = "dynamic_events"
        if not self.fs.exists(target):
            raise FeatureMissing(
                f"this kernel has no {spec.kind}_events (CONFIG_{spec.kind.upper()}_EVENTS is off)",
                hint="kprobes doctor lists what this kernel supports",
            )
        try:
            self.fs.write_definition(target, line)
        except KprobesError as e:
            from .livecheck import explain_write_refusal

            raise explain_write_refusal(e, line, spec.kind, self.fs.root) from None
        return PersistentProbe(group, event, spec.kind, line)

    def build(self, text: str, *, binary: Optional[str] = None,
              vmlinux: Optional[str] = None) -> Tuple[str, Optional[str]]:  # fmt: skip
        """The tracefs definition for ``text`` and the group it names explicitly (None: default).

        Reads DWARF (line numbers, variables) and ELF symbols as needed; does not
        touch tracefs.
        """
        if is_tracefs_definition(text):
            head = text.split()[0]
            explicit = head.partition(":")[2].partition("/")[0] if "/" in head else None
            return text, explicit or None
        spec = parse_perf_probe(text)
        event = spec.event or perf_event_name(spec)
        placeholder = "grp"
        path = resolve_binary(binary) if binary else None
        args = list(spec.args)
        var_args = [a for a in args if _is_variable_arg(a)]
        dbg = self._debuginfo(spec, path, vmlinux, bool(var_args))
        head = f"{'r' if spec.is_return else 'p'}:{placeholder}/{event}"
        try:
            if dbg is None:
                if path is not None:
                    off = f"+{spec.offset}" if spec.offset else ""
                    place = f"{path}:{spec.function}{off}"
                else:
                    place = f"{spec.function}+{spec.offset}" if spec.offset else spec.function
                words = [head, place] + args
            else:
                words = [head] + self._dwarf_words(dbg, spec, path, args)
        finally:
            if dbg is not None:
                dbg.close()
        return " ".join(words).replace(f":{placeholder}/", f":{spec.group}/" if spec.group else ":", 1), spec.group

    def _debuginfo(self, spec: PerfProbeSpec, path: Optional[str], vmlinux: Optional[str],
                   has_vars: bool) -> Optional["DebugInfo"]:  # fmt: skip
        from .dwarf import DebugInfo, find_debug_vmlinux

        if spec.line is None and not has_vars:
            return None
        if spec.is_return and has_vars:
            raise KprobesError(
                "local variables cannot be read at a return probe (the frame is gone)",
                hint="read $retval, or probe a line before the return: FUNC:RLN VAR",
            )
        if path is not None:
            return DebugInfo(path)
        try:
            found = find_debug_vmlinux(vmlinux, root=self.debug_root)
        except FeatureMissing:
            if spec.line is not None:
                raise
            return None  # parameters at entry: BTF can name them (prepare_definition)
        return DebugInfo(found, kernel=True)

    def _dwarf_words(self, dbg: "DebugInfo", spec: PerfProbeSpec, path: Optional[str],
                     args: List[str]) -> List[str]:  # fmt: skip
        has_vars = any(_is_variable_arg(a) for a in args)
        pt = dbg.point(spec.function, spec.line, offset=spec.offset,
                       skip_prologue=has_vars and not spec.is_return)  # fmt: skip
        static: Optional[Callable[[int], str]] = None
        if path is None:
            static = _kernel_static(dbg.path)
        if path is not None:
            from .symbols.elf import ELFFile

            with ELFFile(path) as elf:
                place = f"{path}:0x{elf.vaddr_to_offset(pt.address):x}"
            if spec.is_return:
                place = f"{path}:{spec.function}"
        else:
            place = f"{spec.function}+{pt.offset}" if pt.offset else spec.function
        words = [place]
        for arg in args:
            if arg in ("$vars", "$params"):
                for v in dbg.variables(pt, static):
                    if v.fetcharg is not None and v.fetch_type is not None and (v.is_param or arg == "$vars"):
                        words.append(f"{v.name}={v.fetcharg}:{v.fetch_type}")
                continue
            if not _is_variable_arg(arg):
                words.append(arg)
                continue
            name, expr, typ = _split_arg(arg)
            field, fetch = dbg.fetcharg(pt, expr, typ, static)
            words.append(f"{name or field}={fetch}")
        return words


def _check_group(group: str) -> None:
    if parse_owner(group) is not None:
        raise KprobesError(
            f"group {group!r} has the shape of a kprobes session group: 'kprobes gc' would remove it",
            hint="choose another group name for persistent probes (default: probe)",
        )
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", group):
        raise KprobesError(f"invalid group name {group!r}", hint="letters, digits and _ only")


def _is_uprobe_line(line: str) -> bool:
    words = line.split()
    return len(words) > 1 and "/" in words[1].split(":", 1)[0]


def _split_arg(arg: str) -> Tuple[Optional[str], str, Optional[str]]:
    """``NAME=EXPR:TYPE`` → (NAME, EXPR, TYPE), each part optional."""
    name = None
    m = re.match(r"^([A-Za-z_]\w*)=(?!=)", arg)
    if m:
        name, arg = m.group(1), arg[m.end():]
    typ = None
    t = _TYPE_SUFFIX.search(arg)
    if t:
        typ, arg = t.group(1), arg[: t.start()]
    return name, arg, typ


def _is_variable_arg(arg: str) -> bool:
    if arg in ("$vars", "$params"):
        return True
    _name, expr, _typ = _split_arg(arg)
    return bool(_VAR.match(expr)) and not _FRIENDLY.match(expr)


def resolve_binary(binary: str) -> str:
    if "/" in binary:
        return os.path.abspath(binary)
    from .symbols.ldcache import resolve_library

    return resolve_library(binary)


def _kernel_static(vmlinux: str) -> Callable[[int], str]:
    """Static kernel variables as ``@SYMBOL+OFF`` (addresses move with KASLR, names do not)."""
    from .symbols.elf import ELFFile

    def render(addr: int) -> str:
        with ELFFile(vmlinux) as elf:
            best = None
            for s in elf.symbols():
                if s.value <= addr < s.value + max(s.size, 1) and s.name:
                    best = s
                    break
        if best is None:
            raise KprobesError(f"no kernel symbol holds address 0x{addr:x}")
        off = addr - best.value
        return f"@{best.name}" + (f"+{off}" if off else "")

    return render
