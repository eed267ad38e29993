"""What every program of one bpftrace program shares: maps, output records, targets.

:class:`Unit` is filled while the probes are compiled (:mod:`.codegen`) and
read by the runtime (:mod:`.lifecycle`) and by ``--dry-run``:

* ``maps``: one :class:`MapPlan` per ``@map`` (key and value layouts, the
  ``MapSpec`` to create);
* ``records``: what each output record id means (printf with its format and
  argument parts, print/clear/zero of a map, time, exit, print of a value);
* ``names``: the global table of attach targets, ``(probe name, func)``; the
  ``probe``/``func`` builtins of a probe with several targets are indices in it;
* the auxiliary maps: the output ring (``RINGBUF``, or a ``PERF_EVENT_ARRAY``
  before Linux 5.8), the per-CPU drop counter of failed outputs, ``globals``
  (u64 slot 0: the start time for ``elapsed``), and a zero-filled ``zeros``
  value used to create big per-CPU values (hist/lhist).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ..._record import dataclass, field
from ...bpf.maps import MapSpec, MapType
from ...errors import KprobesError
from ...lang import ast
from ...lang.checked import CheckedProgram
from ...lang.typesys import (
    AggType,
    FmtType,
    IntType,
    PointerType,
    StackType,
    StringType,
    SymType,
    TupleType,
    Type,
)
from ..runtime import lhist_params
from .layout import KeyLayout, KeyPart, ValueLayout

__all__ = ["Caps", "MapPlan", "Record", "Unit", "round8", "stack_depth", "MAX_ENTRIES", "RING_SIZE",
           "STACK_ENTRIES"]

MAX_ENTRIES = 4096
RING_SIZE = 1 << 22
#: Stacks a STACK_TRACE map holds (bpftrace's default map size); the kernel's
#: ``perf_event_max_stack`` (127 unless raised) bounds one stack's depth.
STACK_ENTRIES = 4096
_MAX_DEPTH = 127


def stack_depth(limit: int) -> int:
    """Frames stored for a ``kstack(limit)``: the kernel refuses maps deeper than
    ``kernel.perf_event_max_stack`` (default 127)."""
    return max(1, min(limit, _MAX_DEPTH))


def round8(n: int) -> int:
    return (n + 7) // 8 * 8


@dataclass(frozen=True)
class Caps:
    """What the target kernel's BPF offers the code generator (from backends.bpf.features)."""

    ringbuf: bool = True
    cookie: bool = True
    probe_read_kernel: bool = True

    @classmethod
    def from_features(cls, feats: object) -> "Caps":
        maps = getattr(feats, "map_types", {}) or {}
        helpers = getattr(feats, "helpers", {}) or {}
        return cls(
            ringbuf=bool(maps.get("RINGBUF", False)),
            cookie=bool(helpers.get("get_attach_cookie", False)) and bool(getattr(feats, "perf_link", False)),
            probe_read_kernel=bool(helpers.get("probe_read_kernel", True)),
        )


@dataclass(frozen=True)
class MapPlan:
    """One ``@map``: its layouts and the kernel map to create."""

    name: str
    key: KeyLayout
    value: ValueLayout
    spec: MapSpec

    @property
    def display(self) -> str:
        return "@" + self.name


@dataclass(frozen=True)
class Record:
    """One kind of output record: ``kind`` is printf, print_map, print_value, time, exit,
    clear or zero; ``parts`` the packed arguments after the u64 id; ``text`` the printf/time
    format; ``map`` the map name; ``top``/``div`` for print."""

    id: int
    kind: str
    parts: Tuple[KeyPart, ...] = ()
    text: Optional[str] = None
    map: str = ""
    top: int = 0
    div: int = 1
    source: str = ""

    @property
    def size(self) -> int:
        return 8 + sum(p.size for p in self.parts)


def _is_target(e: ast.Expr) -> Optional[str]:
    if isinstance(e, ast.Builtin) and e.name == "probe":
        return "name"
    if isinstance(e, ast.Builtin) and e.name == "func":
        return "func"
    return None


def part_of(checked: CheckedProgram, e: ast.Expr, t: Optional[Type] = None) -> KeyPart:
    """How the value of ``e`` is packed into a key or record (``t``: the slot's type)."""
    target = _is_target(e)
    if target is not None:
        return KeyPart("target", 8, field=target)
    if isinstance(e, ast.Call) and e.name == "ksym":
        return KeyPart("ksym", 8)
    if isinstance(e, ast.Call) and e.name == "usym":
        return KeyPart("usym", 16)
    return part_of_type(t if t is not None else checked.type_of(e))


def part_of_type(t: Type) -> KeyPart:
    """How a value of type ``t`` is packed."""
    if isinstance(t, StringType):
        return KeyPart("str", round8(t.size), field=str(t.size))
    if isinstance(t, IntType):
        return KeyPart("int", 8, signed=t.signed)
    if isinstance(t, (PointerType, AggType)):
        return KeyPart("int", 8, signed=isinstance(t, AggType) and t.signed)
    if isinstance(t, SymType):
        return KeyPart("ksym", 8) if t.kernel else KeyPart("usym", 16)
    if isinstance(t, StackType):
        return KeyPart("stack", 8, field=stack_field(t))
    if isinstance(t, FmtType):
        from .functions import fmt_part

        return fmt_part(t)
    if isinstance(t, TupleType):
        return KeyPart("tuple", t.size, field=tuple_field(t))
    raise KprobesError(f"a value of type {t} cannot be stored or printed by the BPF engine yet")


def tuple_field(t: TupleType) -> str:
    """The ``field`` of a tuple part (see :func:`.layout.tuple_parts`)."""
    return ",".join(f"s{e.size}" if isinstance(e, StringType)
                    else f"i{int(isinstance(e, IntType) and e.signed)}" for e in t.elems)


def stack_field(t: StackType) -> str:
    """``u:perf:5``: user/kernel, mode and frame limit of a ``stack`` part."""
    return f"{'u' if t.user else 'k'}:{t.mode}:{t.limit}"


def str_size(part: KeyPart) -> int:
    """The string size (terminator included) of a ``str`` part."""
    return int(part.field) if part.field else part.size


@dataclass
class Unit:
    """Shared state of one program's compilation (see the module docstring)."""

    checked: CheckedProgram
    caps: Caps = field(default_factory=Caps)
    maps: Dict[str, MapPlan] = field(default_factory=dict)
    records: List[Record] = field(default_factory=list)
    names: List[Tuple[str, str]] = field(default_factory=list)
    ring: Optional[MapSpec] = None
    drops: Optional[MapSpec] = None
    globals: Optional[MapSpec] = None
    zeros: Optional[MapSpec] = None
    zeros_size: int = 0
    #: STACK_TRACE maps by depth (``kstack(5)`` and ``ustack(5)`` share one).
    stacks: Dict[int, MapSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._plan_maps()

    # -- maps ----------------------------------------------------------------
    def _key_exprs(self) -> Dict[str, List[Tuple[ast.Expr, ...]]]:
        """Every key tuple each map is used with (in assignments, reads, delete)."""
        found: Dict[str, List[Tuple[ast.Expr, ...]]] = {}

        for p in self.checked.program.probes:
            for node in ast.walk((p.predicate, p.body)):
                if isinstance(node, ast.Map) and node.keys:
                    found.setdefault(node.name, []).append(node.keys)
                if isinstance(node, ast.Call) and node.name == "delete" and len(node.args) == 2:
                    m = node.args[0]
                    if isinstance(m, ast.Map):
                        found.setdefault(m.name, []).append((node.args[1],))
        return found

    def _plan_maps(self) -> None:
        uses = self._key_exprs()
        lh = lhist_params(self.checked.program)
        for name, info in self.checked.maps.items():
            parts: List[KeyPart] = []
            for i, kt in enumerate(info.key_types):
                kinds = {part_of(self.checked, keys[i], kt) for keys in uses.get(name, ())
                         if i < len(keys)}
                base = part_of_type(kt)
                special = {k for k in kinds if k.kind in ("target", "ksym", "usym")}
                if special and len(special) != len(kinds):
                    raise KprobesError(
                        f"@{name}: key {i + 1} mixes probe/func/ksym values with other values, "
                        "which the BPF engine cannot pack into one key yet")
                parts.append(next(iter(special)) if len(special) == 1 else base)
            key = KeyLayout(tuple(parts))
            vt = info.value_type
            if isinstance(vt, AggType):
                value = ValueLayout(vt.kind, vt.signed, lh.get(name))
            elif isinstance(vt, IntType):
                value = ValueLayout("int", vt.signed)
            elif isinstance(vt, PointerType):
                value = ValueLayout("int", False)
            elif isinstance(vt, StringType):
                value = ValueLayout("str", str_size=round8(vt.size))
            elif isinstance(vt, TupleType):
                value = ValueLayout("tuple", str_size=vt.size, tuple_field=tuple_field(vt))
            else:
                raise KprobesError(f"@{name} holds {vt} values, which the BPF engine cannot store yet")
            mtype = MapType.PERCPU_HASH if value.percpu else MapType.HASH
            spec = MapSpec("@" + name, mtype, key.size, value.size, MAX_ENTRIES)
            self.maps[name] = MapPlan(name, key, value, spec)
            if value.size > 128:
                self.zeros_size = max(self.zeros_size, value.size)

    def size_target_maps(self, targets: int) -> None:
        """Maps keyed by ``probe``/``func`` get room for every target (``kprobe:*``)."""
        for name, mp in list(self.maps.items()):
            if targets > MAX_ENTRIES and any(p.kind == "target" for p in mp.key.parts):
                s = mp.spec
                spec = MapSpec(s.label, s.type, s.key_size, s.value_size, targets + 64)
                self.maps[name] = MapPlan(name, mp.key, mp.value, spec)

    # -- auxiliary maps --------------------------------------------------------
    def ring_map(self) -> MapSpec:
        if self.ring is None:
            if self.caps.ringbuf:
                self.ring = MapSpec("kp_ring", MapType.RINGBUF, 0, 0, RING_SIZE)
            else:
                self.ring = MapSpec("kp_perf", MapType.PERF_EVENT_ARRAY, 4, 4, _ncpus())
        return self.ring

    def drops_map(self) -> MapSpec:
        if self.drops is None:
            self.drops = MapSpec("kp_drops", MapType.PERCPU_ARRAY, 4, 8, 1)
        return self.drops

    def globals_map(self) -> MapSpec:
        if self.globals is None:
            self.globals = MapSpec("kp_globals", MapType.ARRAY, 4, 16, 1)
        return self.globals

    def zeros_map(self) -> MapSpec:
        if self.zeros is None:
            self.zeros = MapSpec("kp_zeros", MapType.ARRAY, 4, round8(max(self.zeros_size, 8)), 1)
        return self.zeros

    def stack_map(self, limit: int) -> MapSpec:
        """The STACK_TRACE map of ``kstack(limit)``/``ustack(limit)``."""
        depth = stack_depth(limit)
        spec = self.stacks.get(depth)
        if spec is None:
            spec = MapSpec(f"kp_stack{depth}", MapType.STACK_TRACE, 4, 8 * depth, STACK_ENTRIES)
            self.stacks[depth] = spec
        return spec

    def all_specs(self) -> List[MapSpec]:
        out = [m.spec for m in self.maps.values()]
        out += [s for s in (self.ring, self.drops, self.globals, self.zeros) if s is not None]
        out += list(self.stacks.values())
        return out

    # -- records and targets ----------------------------------------------------
    def record(self, kind: str, parts: Tuple[KeyPart, ...] = (), **kw: object) -> Record:
        rec = Record(len(self.records), kind, parts, **kw)  # type: ignore[arg-type]
        self.records.append(rec)
        return rec

    def add_targets(self, targets: List[Tuple[str, str]]) -> int:
        """Append targets to the global table; returns the index of the first."""
        base = len(self.names)
        self.names.extend(targets)
        return base


def _ncpus() -> int:
    try:
        from ...backends.bpf.sys import possible_cpus

        return max(1, max(possible_cpus()) + 1)
    except Exception:  # noqa: BLE001 - offline planning: any count will do for a listing
        return 1
