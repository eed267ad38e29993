"""What one probe must fetch in the kernel: walking the checked AST for kernel values.

A bpftrace expression is evaluated in Python, except its *leaves* that only
the kernel can read at the moment the probe fires.  :class:`FetchFinder`
walks a probe's predicate and body and turns every such leaf into one named
fetcharg (a :class:`Fetch`), each distinct expression once:

===================================  =============================================
bpftrace                             fetcharg (x86_64, kprobe)
===================================  =============================================
``arg1``                             ``arg1=%si:u64``
``retval``                           ``retval=$retval:u64``
``comm``                             ``comm=$comm:string``
``str(arg1)``                        ``str_arg1=+0(%si):string`` (uprobe: ustring)
``((struct task_struct *)arg2)->pid``  ``pid=+OFF(%dx):s32`` (through BTF)
``$sk->__sk_common.skc_dport``       ``skc_dport=+OFF(%di):u16`` (``$sk`` assigned once)
``*(uint32 *)arg0``                  ``deref=+0(%di):u32`` (no BTF needed)
``args.flags`` (tracepoint)          ``flags=$flags:s64`` (event probe) / the field
``str(args.filename)``               ``str_filename=+0($filename):ustring``
===================================  =============================================

Tracepoints are read through an *event probe* (``e:`` in ``dynamic_events``,
Linux 5.15+, CONFIG_EPROBE_EVENTS) when the kernel has them: its fields are
exactly the fetchargs above whatever the tracepoint's print format.  Without
event probes the tracepoint itself is enabled and its fields are read as the
event prints them (exact for syscalls; ``str()`` of a pointer field is then
impossible and refused).

``field_of`` maps ``id(node)`` of each leaf node to its field name; the
evaluator reads ``event.fields[name]`` there instead of evaluating the node.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from .._record import dataclass
from ..errors import BTFError, KprobesError
from ..lang import ast
from ..lang.checked import CheckedProgram
from ..lang.diagnostics import LangError
from ..lang.source import Span
from ..lang.typesys import IntType, RecordType, StringType
from ..probes.arch import Arch
from .variant import plan_error

if TYPE_CHECKING:
    from .provider import KernelTypeProvider

__all__ = ["Fetch", "FetchFinder", "FAMILY", "plan_error"]

#: Attach-point provider -> fetch family (probes of one family share fetch rules).
FAMILY = {
    "kprobe": "kprobe", "kretprobe": "kprobe", "uprobe": "uprobe", "uretprobe": "uprobe",
    "usdt": "usdt", "tracepoint": "tracepoint", "BEGIN": "BEGIN", "END": "END", "interval": "interval",
}  # fmt: skip
_STRING_TYPES = ("string", "ustring")
#: C spelling of bpftrace's integer cast types, as vmlinux BTF names them.
_C_INTS = {
    (8, True): "signed char", (8, False): "unsigned char",
    (16, True): "short", (16, False): "unsigned short",
    (32, True): "int", (32, False): "unsigned int",
    (64, True): "long long", (64, False): "unsigned long long",
}  # fmt: skip
_NAME_CLEAN = re.compile(r"[^A-Za-z0-9_]+")
_RESERVED = frozenset(["common_pid", "common_type", "common_flags", "common_preempt_count",
                       "__probe_ip", "__probe_func", "__probe_ret_ip", "CPU", "COMM", "cpu"])


@dataclass(frozen=True)
class Fetch:
    """One fetcharg: ``NAME=EXPR:TYPE`` (for a plain tracepoint, ``expr`` is the field's name)."""

    name: str
    expr: str
    type: str

    @property
    def is_string(self) -> bool:
        return self.type in _STRING_TYPES

    def render(self) -> str:
        return f"{self.name}={self.expr}:{self.type}"


@dataclass(frozen=True)
class _K:
    """An expression the kernel can evaluate: a base fetch, a C type, a member path."""

    base: str
    ctype: Optional[str]
    path: str
    int_pointee: Optional[Tuple[int, bool]] = None  # (bits, signed) for (intN *) casts


class FetchFinder:
    """Finds the kernel leaves of one probe for one fetch family (see module docstring).

    ``eprobe`` says whether tracepoints are read through an event probe;
    ``tracepoints`` lists the probe's (system, event) pairs (for field types).
    """

    def __init__(
        self,
        checked: CheckedProgram,
        probe: ast.Probe,
        family: str,
        arch: Arch,
        provider: Optional[KernelTypeProvider],
        *,
        eprobe: bool = True,
        tracepoints: Tuple[Tuple[str, str], ...] = (),
    ) -> None:
        self.checked = checked
        self.program = checked.program
        self.probe = probe
        self.family = family
        self.arch = arch
        self.provider = provider
        self.eprobe = eprobe
        self.tracepoints = tracepoints
        self.fetches: Dict[Tuple[str, str], Fetch] = {}
        self.names: set[str] = set()
        self.field_of: Dict[int, str] = {}
        #: Every value assigned to each $variable (a single one lets the kernel use it).
        self.assigns: Dict[str, List[ast.Expr]] = {}
        self._collect_assigns(probe.body)

    # -- driver ------------------------------------------------------------
    def run(self) -> "FetchFinder":
        if self.probe.predicate is not None:
            self.expr(self.probe.predicate)
        self.block(self.probe.body)
        return self

    @property
    def fetch_list(self) -> Tuple[Fetch, ...]:
        return tuple(self.fetches.values())

    def error(self, message: str, span: Optional[Span]) -> LangError:
        return plan_error(self.program, message, span)

    def _collect_assigns(self, block: ast.Block) -> None:
        for st in block.stmts:
            if isinstance(st, ast.AssignVar):
                self.assigns.setdefault(st.target.name, []).append(
                    st.value if st.op == "=" else st.target
                )
            elif isinstance(st, ast.If):
                self._collect_if(st)
            elif isinstance(st, ast.Block):
                self._collect_assigns(st)
            elif isinstance(st, (ast.While, ast.Unroll)):
                self._collect_assigns(st.body)

    def _collect_if(self, st: ast.If) -> None:
        self._collect_assigns(st.then)
        if isinstance(st.orelse, ast.If):
            self._collect_if(st.orelse)
        elif st.orelse is not None:
            self._collect_assigns(st.orelse)

    def add(self, hint: str, expr: str, typ: str) -> str:
        key = (expr, typ)
        found = self.fetches.get(key)
        if found is not None:
            return found.name
        base = _NAME_CLEAN.sub("_", hint).strip("_") or "v"
        if base[0].isdigit():
            base = "v" + base
        name, n = base, 1
        while name in self.names or name in _RESERVED:
            n += 1
            name = f"{base}_{n}"
        self.names.add(name)
        self.fetches[key] = Fetch(name, expr, typ)
        return name

    # -- statements ----------------------------------------------------------
    def block(self, block: ast.Block) -> None:
        for st in block.stmts:
            self.stmt(st)

    def stmt(self, st: ast.Stmt) -> None:
        if isinstance(st, ast.ExprStmt):
            self.expr(st.expr)
        elif isinstance(st, ast.AssignVar):
            self.expr(st.value)
        elif isinstance(st, ast.AssignMap):
            for k in st.target.keys:
                self.expr(k)
            self.expr(st.value)
        elif isinstance(st, ast.If):
            self.if_stmt(st)
        elif isinstance(st, ast.Block):
            self.block(st)
        elif isinstance(st, ast.While):
            self.expr(st.cond)
            self.block(st.body)
        elif isinstance(st, ast.Unroll):
            self.block(st.body)

    def if_stmt(self, st: ast.If) -> None:
        self.expr(st.cond)
        self.block(st.then)
        if isinstance(st.orelse, ast.If):
            self.if_stmt(st.orelse)
        elif st.orelse is not None:
            self.block(st.orelse)

    # -- expressions -----------------------------------------------------------
    def expr(self, e: ast.Expr) -> None:
        if isinstance(e, ast.Builtin):
            self.builtin(e)
        elif isinstance(e, ast.FieldAccess):
            if _is_args(e.expr):
                self.tracepoint_field(e)
            else:
                self.leaf(e)
        elif isinstance(e, ast.Index):
            self.leaf(e)
        elif isinstance(e, ast.Unary):
            if e.op == "*":
                self.leaf(e)
            else:
                self.expr(e.operand)
        elif isinstance(e, ast.Call):
            self.call(e)
        elif isinstance(e, ast.Map):
            for k in e.keys:
                self.expr(k)
        elif isinstance(e, ast.Binary):
            self.expr(e.left)
            self.expr(e.right)
        elif isinstance(e, ast.Ternary):
            self.expr(e.cond)
            self.expr(e.then)
            self.expr(e.orelse)
        elif isinstance(e, ast.Cast):
            self.expr(e.expr)
        elif isinstance(e, ast.IncDec):
            self.expr(e.target)
        elif isinstance(e, ast.Tuple):
            for x in e.elems:
                self.expr(x)
        elif isinstance(e, ast.TupleIndex):
            self.expr(e.expr)

    def builtin(self, e: ast.Builtin) -> None:
        n = e.arg_index
        if n is not None and self.family == "usdt":  # the site's own location (.usdt)
            self.field_of[id(e)] = self.add(e.name, usdt_slot(n), usdt_slot(n))
        elif n is not None:
            reg = self.arch.arg_register(n + 1)
            if reg is None:  # pragma: no cover - the checker bounds argN
                raise self.error(f"{self.arch.name} doesn't support {e.name}", e.span)
            self.field_of[id(e)] = self.add(e.name, f"%{reg}", "u64")
        elif e.name == "retval":
            self.field_of[id(e)] = self.add("retval", "$retval", "u64")
        elif e.name.startswith("sarg") and self.family in ("kprobe", "uprobe"):
            # the Nth stack slot above the return address (x86_64: sarg0 = *(sp + 8))
            slot = (int(e.name[4:]) + 1) * 8
            self.field_of[id(e)] = self.add(e.name, f"+{slot}(%{self._sp()})", "u64")
        elif e.name == "comm" and (self.family != "tracepoint" or self.eprobe):
            if self.family in ("kprobe", "uprobe", "usdt", "tracepoint"):
                self.field_of[id(e)] = self.add("comm", "$comm", "string")

    def tracepoint_field(self, e: ast.FieldAccess) -> None:
        name = e.field
        if not self.eprobe:
            self.field_of[id(e)] = name
            return
        self.field_of[id(e)] = self.add(name, f"${name}", self._tp_type(name))

    def _tp_type(self, name: str) -> str:
        from .provider import field_fetch_type

        if self.provider is not None:
            for sys_, ev in self.tracepoints:
                f = self.provider.tracepoint_field(sys_, ev, name)
                if f is not None:
                    return field_fetch_type(f)
        return "u64"

    def _sp(self) -> str:
        return "sp"

    def call(self, e: ast.Call) -> None:
        if e.name == "str":
            self.str_call(e)
            return
        if e.name == "join":
            self.join_call(e)
            return
        if e.name in ("buf", "macaddr"):
            self.bytes_call(e)
            return
        last = e.args[-1] if e.args else None
        if e.name == "ntop" and isinstance(last, ast.FieldAccess) and _is_args(last.expr) and \
                not isinstance(self.checked.type_of(last), IntType):
            for extra in e.args[:-1]:
                self.expr(extra)
            self.tp_bytes(last)
            return
        if e.name == "reg" and isinstance(e.args[0], ast.StrLit):
            if self.family not in ("kprobe", "uprobe"):
                raise self.error(f'reg can not be used with "{self.family}" probes', e.span)
            name = e.args[0].value
            self.field_of[id(e)] = self.add(f"reg_{name}", f"%{name}", "u64")
            return
        for a in e.args:
            self.expr(a)

    def str_call(self, e: ast.Call) -> None:
        arg = e.args[0]
        for extra in e.args[1:]:
            self.expr(extra)
        t = self.checked.type_of(arg)
        if isinstance(t, StringType):
            self.expr(arg)  # already a string: truncated in Python
            return
        if self.family == "tracepoint" and not self.eprobe:
            raise self.error(
                "str() of a tracepoint pointer field needs kernel event probes "
                "(CONFIG_EPROBE_EVENTS, Linux 5.15+), which this kernel lacks",
                e.span,
            )
        k = self.kexpr(arg)
        if k is None:
            raise self.error(
                "str() needs a value the kernel can read when the probe fires (argN, retval, "
                "a struct member, a tracepoint field); this one is computed in Python",
                arg.span,
            )
        hint = "str_" + _hint_of(arg)
        if not k.path:
            typ = "ustring" if self._user_memory() else "string"
            self.field_of[id(e)] = self.add(hint, f"+0({k.base})", typ)
            return
        expr, typ = self.btf_fetch(k, e.span, override="string")
        self.field_of[id(e)] = self.add(hint, expr, typ)

    def tp_bytes(self, e: ast.FieldAccess) -> None:
        """A tracepoint array field (``args->saddr``) as its bytes: an event probe reads a field
        of 1..8 bytes as its value (longer ones are refused); a plain tracepoint gives the
        record's bytes."""
        name = e.field
        if not self.eprobe:
            self.field_of[id(e)] = name
            return
        size = 0
        if self.provider is not None:
            for sys_, ev in self.tracepoints:
                f = self.provider.tracepoint_field(sys_, ev, name)
                if f is not None:
                    size = f.size
                    break
        if size not in (1, 2, 4, 8):
            # an event probe's $FIELD is the value of a 1..8-byte field; of a longer array it
            # is no address (6.1: +0($daddr_v6) reads garbage), so its bytes are out of reach
            raise self.error(f"ntop() of the {size}-byte array args.{name} needs --engine bpf "
                             "(the tracefs engine's event probes read fields of at most 8 bytes)",
                             e.span)
        self.field_of[id(e)] = self.add(name, f"${name}", f"u{8 * size}")

    def bytes_call(self, e: ast.Call) -> None:
        """``buf(p, n)`` / ``macaddr(p)``: ``n`` (6) bytes at ``p`` as one ``u8[n]`` fetch
        (a computed ``n``: BPFTRACE_MAX_STRLEN bytes, cut in Python)."""
        from ..lang.typesys import FmtType, IntType, PointerType

        arg = e.args[0]
        for extra in e.args[1:]:
            self.expr(extra)
        t = self.checked.type_of(arg)
        ft = self.checked.type_of(e)
        if not isinstance(t, (IntType, PointerType)):
            raise self.error(f"{e.name}() of a {t} needs --engine bpf (the tracefs engine reads "
                             "bytes only through a pointer)", e.span)
        if self.family == "tracepoint" and not self.eprobe:
            raise self.error(f"{e.name}() of a tracepoint field needs kernel event probes "
                             "(CONFIG_EPROBE_EVENTS, Linux 5.15+), which this kernel lacks; "
                             "--engine bpf can", e.span)
        k = self.kexpr(arg)
        if k is None:
            raise self.error(f"{e.name}() needs a pointer the kernel can read when the probe "
                             "fires (argN, retval, a tracepoint field)", arg.span)
        base = self.materialize(k, e.span)
        n = ft.size - 8 if isinstance(ft, FmtType) and ft.kind == "buf" else 6
        if n <= 0:
            return
        user = self._user_memory() and self.family != "uprobe"
        self.field_of[id(e)] = self.add(f"{e.name}_{_hint_of(arg)}",
                                        f"+{'u' if user else ''}0({base})", f"u8[{n}]")

    def join_call(self, e: ast.Call) -> None:
        """``join(argv)``: each of the first JOIN_ARGS pointers and the string it points to
        (the evaluator stops at the first NULL pointer)."""
        from .functions import JOIN_ARGS

        arg = e.args[0]
        if self.family == "tracepoint" and not self.eprobe:
            raise self.error(
                "join() of a tracepoint field needs kernel event probes (CONFIG_EPROBE_EVENTS, "
                "Linux 5.15+), which this kernel lacks; --engine bpf can", e.span)
        k = self.kexpr(arg)
        if k is None:
            raise self.error(
                "join() needs a value the kernel can read when the probe fires (argN, a "
                "tracepoint field); this one is computed in Python", arg.span)
        base = self.materialize(k, e.span)
        typ = "ustring" if self._user_memory() else "string"
        self.field_of[id(e)] = JOIN_MARK + base  # where the evaluator finds its fetches
        for i in range(JOIN_ARGS):
            self.add(f"join_p{i}", f"+{8 * i}({base})", "u64")
            self.add(f"join_s{i}", f"+0(+{8 * i}({base}))", typ)

    def _user_memory(self) -> bool:
        if self.family in ("uprobe", "usdt"):
            return True
        return self.family == "tracepoint" and any(s == "syscalls" for s, _ in self.tracepoints)

    def leaf(self, e: ast.Expr) -> None:
        t = self.checked.type_of(e)
        if isinstance(t, RecordType):
            raise self.error(
                f"a whole {t} cannot be fetched; name one of its members", e.span
            )
        k = self.kexpr(e)
        if k is None:
            raise self.error(
                "this dereference cannot run in the kernel: its base must come from argN, "
                "retval, a tracepoint field or a $variable assigned once from them",
                e.span,
            )
        expr, typ = self.btf_fetch(k, e.span)
        self.field_of[id(e)] = self.add(_hint_of(e), expr, typ)

    # -- kernel expressions --------------------------------------------------
    def kexpr(self, e: ast.Expr, depth: int = 0) -> Optional[_K]:
        """The kernel-side form of ``e``, or None when only Python can compute it."""
        if depth > 16:
            return None
        if isinstance(e, ast.Builtin):
            n = e.arg_index
            if n is not None and self.family == "usdt":
                return _K(usdt_slot(n), None, "")
            if n is not None and self.family in ("kprobe", "uprobe"):
                reg = self.arch.arg_register(n + 1)
                return _K(f"%{reg}", None, "") if reg else None
            if e.name == "retval" and self.family in ("kprobe", "uprobe"):
                return _K("$retval", None, "")
            return None
        if isinstance(e, ast.FieldAccess) and _is_args(e.expr):
            if self.family == "tracepoint" and self.eprobe:
                return _K(f"${e.field}", None, "")
            return None
        if isinstance(e, ast.Var):
            values = self.assigns.get(e.name, [])
            if len(values) != 1 or values[0] is e:
                return None
            return self.kexpr(values[0], depth + 1)
        if isinstance(e, ast.Cast):
            inner = self.kexpr(e.expr, depth + 1)
            if inner is None:
                return None
            tn = e.type
            if tn.pointer == 0:
                return inner if inner.ctype is None and not inner.path else None
            base = self.materialize(inner, e.span)
            if tn.kind == "int":
                c = _C_INTS[(tn.bits, tn.signed)] + " " + "*" * tn.pointer
                pointee = (tn.bits, tn.signed) if tn.pointer == 1 else None
                return _K(base, c, "", pointee)
            return _K(base, tn.c_name, "")
        if isinstance(e, ast.FieldAccess):
            b = self.kexpr(e.expr, depth + 1)
            if b is None or b.ctype is None:
                return None
            return _K(b.base, b.ctype, b.path + ("->" if e.arrow else ".") + e.field)
        if isinstance(e, ast.Index):
            b = self.kexpr(e.expr, depth + 1)
            if b is None or b.ctype is None or not isinstance(e.index, ast.IntLit):
                return None
            return _K(b.base, b.ctype, b.path + f"[{e.index.value}]", b.int_pointee)
        if isinstance(e, ast.Unary) and e.op == "*":
            b = self.kexpr(e.operand, depth + 1)
            if b is None or b.ctype is None:
                return None
            return _K(b.base, b.ctype, b.path + "[0]", b.int_pointee)
        return None

    def materialize(self, k: _K, span: Span) -> str:
        """An untyped fetch expression for the value ``k`` names (a loaded pointer)."""
        if not k.path:
            return k.base
        expr, _typ = self.btf_fetch(k, span)
        return expr

    def btf_fetch(self, k: _K, span: Span, override: Optional[str] = None) -> Tuple[str, str]:
        """``(EXPR, TYPE)`` reading ``k``: manual for ``(intN *)`` casts, else through BTF."""
        if k.ctype is None:
            return k.base, "u64"
        m = re.fullmatch(r"\[(\d+)\]", k.path)
        if k.int_pointee is not None and m and override is None:
            bits, signed = k.int_pointee
            off = int(m.group(1)) * bits // 8
            return f"+{off}({k.base})", f"{'s' if signed else 'u'}{bits}"
        if self.family in ("uprobe", "usdt"):
            raise self.error(
                "struct members in uprobes need the program's own type information, "
                "which the tracefs engine does not read (only kernel BTF)",
                span,
            )
        btf = self.provider.btf if self.provider is not None else None
        if btf is None:
            raise self.error("struct access needs kernel BTF (/sys/kernel/btf/vmlinux)", span)
        from ..btf import fetcharg_for_path

        try:
            text = fetcharg_for_path(btf, k.base, k.ctype, k.path, type_override=override)
        except BTFError as exc:
            raise self.error(exc.message.split("\n")[0], span) from None
        expr, _, typ = text.rpartition(":")
        if override in _STRING_TYPES and self._user_memory():
            typ = "ustring"
        if not expr:  # pragma: no cover - fetcharg_for_path always types its result
            raise KprobesError(f"unexpected fetcharg {text!r}")
        return expr, typ


#: ``field_of`` of a ``join()`` call: this mark, then the fetch expression of its argv.
JOIN_MARK = "\0join:"


def usdt_slot(n: int) -> str:
    """The placeholder of USDT argument ``n`` in a fetch's expression and type: each
    site's location replaces it (:func:`kprobes.engines.usdt.usdt_fetches`)."""
    return "{usdt" + str(n) + "}"


def _is_args(e: ast.Expr) -> bool:
    return isinstance(e, ast.Builtin) and e.name == "args"


def _hint_of(e: ast.Expr) -> str:
    """A readable field name for a leaf: the last member name, argN, retval..."""
    if isinstance(e, ast.Builtin):
        return e.name
    if isinstance(e, ast.FieldAccess):
        return e.field
    if isinstance(e, ast.Var):
        return e.name
    if isinstance(e, ast.Cast):
        return _hint_of(e.expr)
    if isinstance(e, ast.Index):
        return _hint_of(e.expr) + f"_{e.index.value}" if isinstance(e.index, ast.IntLit) else "v"
    if isinstance(e, ast.Unary):
        return "deref"
    return "v"
