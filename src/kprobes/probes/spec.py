"""Dynamic-event definitions as frozen dataclasses, with ``parse()`` and ``render()``.

The text forms are the ones ``kprobe_events`` and ``uprobe_events`` accept
(Documentation/trace/kprobetrace.rst, uprobetracer.rst)::

    p[:[GRP/][EVENT]] [MOD:]SYM[+OFFS]|ADDR [FETCHARGS]            kprobe
    r[MAXACTIVE][:[GRP/][EVENT]] [MOD:]SYM[+0] [FETCHARGS]         kretprobe
    p|r[:[GRP/][EVENT]] PATH:OFFSET[%return][(REF_CTR_OFFSET)] ... uprobe / uretprobe
    -:[GRP/][EVENT]                                                delete

A fetcharg is ``[NAME=]FETCHARG[:TYPE]``; ``FETCHARG`` becomes a small tree of
the expression classes below (``Deref`` nests).  ``parse()`` checks the
grammar only (any register name, every type any kernel knows); use
:func:`kprobes.probes.validate.validate` for the verdict of one kernel.

``render()`` writes the normalized text: ``p ...%return`` becomes ``r ...``,
numbers are written in one canonical base, ``$COMM`` becomes ``$comm``.
``parse(render(spec)) == spec`` for every spec ``parse`` can return.
"""

from __future__ import annotations

import posixpath
from typing import Union

from .._record import dataclass

__all__ = [
    "Register",
    "MemAddr",
    "SymbolAddr",
    "FileOffset",
    "StackVar",
    "Retval",
    "Comm",
    "ArgVar",
    "AllArgs",
    "Deref",
    "Imm",
    "ImmString",
    "BtfRef",
    "Expr",
    "FetchArg",
    "KprobePlace",
    "UprobePlace",
    "Place",
    "ProbeSpec",
    "DeleteSpec",
    "parse",
    "render",
    "render_expr",
    "sanitize_event_name",
    "KIND_KPROBE",
    "KIND_UPROBE",
]

KIND_KPROBE = "kprobe"
KIND_UPROBE = "uprobe"
_MAX_EVENT_NAME_LEN = 64  # MAX_EVENT_NAME_LEN, kernel/trace/trace.h


# --------------------------------------------------------------------------
# Fetch-argument expressions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Register:
    """``%REG``: a register of the probed context (``name`` without the ``%``)."""

    name: str

    def render(self) -> str:
        return f"%{self.name}"


@dataclass(frozen=True)
class MemAddr:
    """``@ADDR``: the word at an absolute address."""

    addr: int

    def render(self) -> str:
        return f"@0x{self.addr:x}"


@dataclass(frozen=True)
class SymbolAddr:
    """``@SYM[+|-OFFS]``: the word at a kernel data symbol (kprobes only)."""

    symbol: str
    offset: int = 0

    def render(self) -> str:
        if self.offset > 0:
            return f"@{self.symbol}+{self.offset}"
        if self.offset < 0:
            return f"@{self.symbol}{self.offset}"
        return f"@{self.symbol}"


@dataclass(frozen=True)
class FileOffset:
    """``@+OFFS``: the word at a file offset of the probed binary (uprobes only)."""

    offset: int

    def render(self) -> str:
        return f"@+{self.offset}"


@dataclass(frozen=True)
class StackVar:
    """``$stack`` (the stack pointer, ``index`` None) or ``$stackN``."""

    index: int | None = None

    def render(self) -> str:
        return "$stack" if self.index is None else f"$stack{self.index}"


@dataclass(frozen=True)
class Retval:
    """``$retval``: the return value (return probes only)."""

    def render(self) -> str:
        return "$retval"


@dataclass(frozen=True)
class Comm:
    """``$comm``: the current task's comm (always a string)."""

    def render(self) -> str:
        return "$comm"


@dataclass(frozen=True)
class ArgVar:
    """``$argN``: the N-th (1-based) function argument (function entry/exit)."""

    index: int

    def render(self) -> str:
        return f"$arg{self.index}"


@dataclass(frozen=True)
class AllArgs:
    """``$arg*``: every parameter of the function, expanded by the kernel from BTF."""

    def render(self) -> str:
        return "$arg*"


@dataclass(frozen=True)
class Deref:
    """``+|-[u]OFFS(FETCHARG)``: the word at ``inner + offset``.

    ``user`` is the ``u`` flag (read user memory from a kernel probe).
    """

    offset: int
    inner: Expr
    user: bool = False

    def render(self) -> str:
        sign = "-" if self.offset < 0 else "+"
        u = "u" if self.user else ""
        return f"{sign}{u}{abs(self.offset)}({self.inner.render()})"


@dataclass(frozen=True)
class Imm:
    """``\\IMM``: an immediate number."""

    value: int

    def render(self) -> str:
        return f"\\{self.value}"


@dataclass(frozen=True)
class ImmString:
    """``\\"STRING"``: an immediate string (type ``string``)."""

    value: str

    def render(self) -> str:
        return f'\\"{self.value}"'


@dataclass(frozen=True)
class BtfRef:
    """A BTF-resolved name (kernel 6.5+ with CONFIG_PROBE_EVENTS_BTF_ARGS).

    ``text`` is kept as written: a parameter name with optional ``->field``/
    ``.field`` chain (``skb->dev->name``), ``$retval->field``, or a typecast.
    """

    text: str

    def render(self) -> str:
        return self.text


Expr = Union[
    Register,
    MemAddr,
    SymbolAddr,
    FileOffset,
    StackVar,
    Retval,
    Comm,
    ArgVar,
    AllArgs,
    Deref,
    Imm,
    ImmString,
    BtfRef,
]


def render_expr(expr: Expr) -> str:
    """The tracefs text of one fetcharg expression."""
    return expr.render()


@dataclass(frozen=True)
class FetchArg:
    """``[NAME=]FETCHARG[:TYPE]``.

    ``name`` is None when omitted (the kernel then calls it ``argN``, N the
    1-based position).  ``type`` is the tracefs type text (``u32``,
    ``string``, ``b4@2/8``, ``x8[16]``, ``%pd``...) or None for the default
    (``x64`` on 64-bit kernels).
    """

    name: str | None
    expr: Expr
    type: str | None = None

    def render(self) -> str:
        out = self.expr.render()
        if self.type is not None:
            out += f":{self.type}"
        if self.name is not None:
            out = f"{self.name}={out}"
        return out


# --------------------------------------------------------------------------
# Probe places
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class KprobePlace:
    """``[MOD:]SYM[+OFFS]`` (``symbol`` set) or ``ADDR`` (``address`` set)."""

    symbol: str | None = None
    offset: int = 0
    module: str | None = None
    address: int | None = None

    def render(self) -> str:
        if self.address is not None:
            return f"0x{self.address:x}"
        out = f"{self.module}:{self.symbol}" if self.module else f"{self.symbol}"
        if self.offset:
            out += f"+{self.offset}"
        return out


@dataclass(frozen=True)
class UprobePlace:
    """``PATH:OFFSET[(REF_CTR_OFFSET)]``; the offset is a file offset in ``path``."""

    path: str
    offset: int
    ref_ctr_offset: int | None = None

    def render(self) -> str:
        out = f"{self.path}:0x{self.offset:x}"
        if self.ref_ctr_offset is not None:
            out += f"(0x{self.ref_ctr_offset:x})"
        return out


Place = Union[KprobePlace, UprobePlace]


def sanitize_event_name(name: str) -> str:
    """The kernel's sanitize_event_name(): ``:``, ``.`` and ``*`` become ``_``."""
    return name.replace(":", "_").replace(".", "_").replace("*", "_")


@dataclass(frozen=True)
class ProbeSpec:
    """One kprobe/kretprobe/uprobe/uretprobe definition.

    ``group``/``event`` are None when omitted; :attr:`group_name` and
    :attr:`event_name` give what the kernel would use.  ``maxactive`` is
    the kretprobe ``rN`` count.
    """

    kind: str
    is_return: bool
    place: Place
    args: tuple[FetchArg, ...] = ()
    group: str | None = None
    event: str | None = None
    maxactive: int | None = None

    @property
    def default_group(self) -> str:
        """``kprobes`` or ``uprobes`` (KPROBE_EVENT_SYSTEM / UPROBE_EVENT_SYSTEM)."""
        return "uprobes" if self.kind == KIND_UPROBE else "kprobes"

    @property
    def default_event(self) -> str | None:
        """The name the kernel makes up when EVENT is omitted.

        kprobes (trace_kprobe.c): ``p_SYM_OFFS`` / ``r_SYM_OFFS`` with ``:``
        and ``.`` replaced by ``_``.  Address probes get ``p_0x%p`` with a
        hashed pointer, which cannot be predicted: None.  uprobes
        (trace_uprobe.c): ``p_BASENAME_0xOFFSET`` where BASENAME stops at
        the first ``.``, ``-`` or ``_``; the prefix is ``p`` even for
        uretprobes.  Truncated to 63 characters like the kernel's buffer.
        """
        place = self.place
        if isinstance(place, UprobePlace):
            tail = posixpath.basename(place.path)
            for i, c in enumerate(tail):
                if c in ".-_":
                    tail = tail[:i]
                    break
            name = f"p_{tail}_0x{place.offset:x}"
        else:
            if place.symbol is None:
                return None
            sym = f"{place.module}:{place.symbol}" if place.module else place.symbol
            c = "r" if self.is_return else "p"
            name = sanitize_event_name(f"{c}_{sym}_{place.offset}")
        return name[: _MAX_EVENT_NAME_LEN - 1]

    @property
    def group_name(self) -> str:
        """The group the kernel files the event under."""
        return self.group if self.group is not None else self.default_group

    @property
    def event_name(self) -> str | None:
        """The event name the kernel uses (None only for unnamed address kprobes)."""
        return self.event if self.event is not None else self.default_event

    def render(self) -> str:
        return render(self)


@dataclass(frozen=True)
class DeleteSpec:
    """``-:[GRP/][EVENT] [ARGS...]``: remove matching events.

    An empty ``event`` with a group removes the whole group's events of
    this kind.  ``match`` holds optional trailing words the kernel compares
    with the probe's place and arguments.
    """

    kind: str
    group: str | None
    event: str
    match: tuple[str, ...] = ()

    def render(self) -> str:
        return render(self)


# --------------------------------------------------------------------------
# render / parse
# --------------------------------------------------------------------------


def _render_header(spec: ProbeSpec) -> str:
    out = "r" if spec.is_return else "p"
    if spec.maxactive is not None:
        out += str(spec.maxactive)
    if spec.group is not None:
        out += f":{spec.group}/{spec.event or ''}"
    elif spec.event is not None:
        out += f":{spec.event}"
    return out


def render(spec: ProbeSpec | DeleteSpec) -> str:
    """The normalized tracefs text of a definition (one line, no newline)."""
    if isinstance(spec, DeleteSpec):
        out = "-:" + (f"{spec.group}/" if spec.group is not None else "") + spec.event
        return " ".join((out,) + spec.match)
    words = [_render_header(spec), spec.place.render()]
    words.extend(a.render() for a in spec.args)
    return " ".join(words)


def parse(text: str, kind: str = KIND_KPROBE) -> ProbeSpec | DeleteSpec:
    """Parse one definition line of ``kind`` (``kprobe`` or ``uprobe``).

    Checks the grammar the kernel's parser applies, without the limits and
    the per-kernel rules of :func:`~kprobes.probes.validate.validate`.
    Raises :class:`kprobes.errors.ProbeSyntaxError` with the kernel's message
    and error_log position.
    """
    from ._parser import parse_definition  # late: _parser builds these classes

    return parse_definition(text, kind, None, None, strict=False)
