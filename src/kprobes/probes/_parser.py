"""A model of the kernel's dynamic-event parser, producing :mod:`.spec` objects.

This follows the steps of trace_kprobe.c / trace_uprobe.c / trace_probe.c in
their order, so that the first error found is the one the kernel logs, with
the position its ``error_log`` caret shows.  Positions work like
``__trace_probe_log_err()``: the command is the argv joined with single
spaces; an error in word ``index`` at ``offset`` is at
``len(" ".join(argv[:index])) + 1 + offset``.

The fetch program of each argument is simulated (``_Code``) because several
errors depend on how many fetch instructions an argument needs
(FETCH_INSN_MAX): deep dereferences, bitfields and arrays.

``strict=False`` is the grammar-only mode of :func:`kprobes.probes.spec.parse`:
every feature on, no limits, no rules that depend on the probe point.
"""

from __future__ import annotations

import re
from typing import Callable, NoReturn, Optional

from ..errors import ProbeSyntaxError
from ._kstrtox import (
    is_good_name,
    isalpha,
    isdigit,
    kstrtol,
    kstrtoull,
    simple_strtoul,
)
from .arch import Arch, get_arch
from .features import KernelFeatures
from .kmsg import HINTS, KERNEL_ERRORS, SILENT_E2BIG, SILENT_EINVAL
from .spec import (
    KIND_KPROBE,
    KIND_UPROBE,
    AllArgs,
    ArgVar,
    BtfRef,
    Comm,
    DeleteSpec,
    Deref,
    Expr,
    FetchArg,
    FileOffset,
    Imm,
    ImmString,
    KprobePlace,
    MemAddr,
    ProbeSpec,
    Register,
    Retval,
    StackVar,
    SymbolAddr,
    UprobePlace,
)

__all__ = ["parse_definition", "FileCheck", "kernel_registers"]

# ``file_check(path)`` returns None when the path is a regular file, else
# "missing" (FILE_NOT_FOUND) or "not_regular" (NO_REGULAR_FILE).
FileCheck = Callable[[str], Optional[str]]

_SPACE = re.compile(r"[ \t\n\v\f\r]+")
_UINT_MAX = (1 << 32) - 1

# Names arch.py lists that regs_query_register_offset() does not know
# (arch/x86/kernel/ptrace.c, arch/arm64/kernel/ptrace.c regoffset_table).
_NOT_KERNEL_REGS = {
    "x86_64": frozenset({"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip"}),
    "arm64": frozenset({"lr", "fp"}),
}

# Fetch-type sizes in bytes (probe_fetch_types[], 64-bit kernel).
_TYPE_SIZE = {"string": 4, "ustring": 4, "symstr": 4, "char": 1, "symbol": 8}
for _k in "usx":
    for _n in (8, 16, 32, 64):
        _TYPE_SIZE[f"{_k}{_n}"] = _n // 8


def kernel_registers(arch: Arch) -> frozenset[str]:
    """Register names the kernel accepts after ``%`` on ``arch``."""
    return frozenset(arch.registers) - _NOT_KERNEL_REGS.get(arch.name, frozenset())


# --------------------------------------------------------------------------
# The fetch program
# --------------------------------------------------------------------------


class _Code:
    """The kernel's fetch_insn array: ``ops[i]`` names the instruction."""

    def __init__(self, size: int) -> None:
        self.ops: list[str] = ["NOP"] * size
        self.ops[size - 1] = "END"
        self.i = 0

    @property
    def op(self) -> str:
        return self.ops[self.i]

    def set(self, op: str) -> None:
        self.ops[self.i] = op

    def next_is_end(self) -> bool:
        """``++code == end``: the step the kernel refuses with TOO_MANY_OPS."""
        self.i += 1
        return self.i == len(self.ops) - 1

    def next_not_nop(self) -> bool:
        """``code++; code->op != FETCH_OP_NOP``."""
        self.i += 1
        return self.i >= len(self.ops) or self.ops[self.i] != "NOP"


class _Fail(Exception):
    """Internal: a kernel verdict (key into KERNEL_ERRORS, or a silent errno)."""

    def __init__(self, key: str, index: int, offset: int) -> None:
        super().__init__(key)
        self.key = key
        self.index = index
        self.offset = offset


# --------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------


class _Parser:
    def __init__(
        self,
        argv: list[str],
        kind: str,
        features: KernelFeatures,
        arch: Arch | None,
        strict: bool,
        file_check: FileCheck | None,
    ) -> None:
        self.argv = argv
        self.kind = kind
        self.f = features
        self.arch = arch
        self.strict = strict
        self.file_check = file_check
        self.index = 0
        self.offset = 0  # ctx->offset
        self.kernel = kind == KIND_KPROBE
        self.is_return = False
        self.fentry = False
        self.regs = kernel_registers(arch) if arch is not None else None
        self.body_offset = 0  # where the current fetcharg's body starts in its word
        self.btf_value = False  # the current value is BTF-typed: a string may add a load

    # -- errors ---------------------------------------------------------

    def fail(self, key: str, offset: int, index: int | None = None) -> NoReturn:
        raise _Fail(key, self.index if index is None else index, offset)

    def silent(self, key: str = "EINVAL") -> NoReturn:
        raise _Fail(key, 0, 0)

    # -- entry points ---------------------------------------------------

    def definition(self) -> ProbeSpec | DeleteSpec:
        head = self.argv[0]
        if head[:1] == "-":
            return self.delete()
        if head[:1] not in ("p", "r") or len(self.argv) < 2:
            self.silent()
        if self.kind == KIND_UPROBE:
            return self.uprobe()
        return self.kprobe()

    def delete(self) -> DeleteSpec:
        head = self.argv[0]
        if head[1:2] != ":":
            self.silent()
        name = head[2:]
        group: str | None = None
        if "/" in name:
            group, name = name.split("/", 1)
        if group is None and name == "":
            self.silent()
        return DeleteSpec(self.kind, group, name, tuple(self.argv[1:]))

    # -- kprobes (trace_kprobe_create_internal) --------------------------

    def kprobe(self) -> ProbeSpec:
        head = self.argv[0]
        self.is_return = head[0] == "r"
        colon = head.find(":", 1)
        event: str | None = head[colon + 1 :] if colon >= 0 else None
        maxactive: int | None = None
        if isdigit(head[1:2]):
            if not self.is_return:
                self.fail("BAD_MAXACT_TYPE", 1)
            digits = head[1:colon] if colon >= 0 else head[1:]
            if len(digits) > self.f.max_event_name_len - 1:
                self.fail("BAD_MAXACT", 1)
            value = kstrtoull(digits, 0)
            if value is None or value > _UINT_MAX or value == 0:
                self.fail("BAD_MAXACT", 1)
            if self.strict and value > self.f.kretprobe_maxactive_max:
                self.fail("MAXACT_TOO_BIG", 1)
            maxactive = value
        place = self.kprobe_place()
        self.index = 0
        group: str | None = None
        if event is not None:
            group, event = self.event_name(event, colon + 1)
        args = self.kprobe_args()
        return ProbeSpec(KIND_KPROBE, self.is_return, place, args, group, event, maxactive)

    def kprobe_place(self) -> KprobePlace:
        word = self.argv[1]
        addr = kstrtoull(word, 0)
        if addr is not None:
            return KprobePlace(address=addr)
        self.index = 1
        if "/" in word and ":" in word:
            self.silent()  # uprobe syntax written to kprobe_events: -ECANCELED
        symbol = word
        pct = symbol.find("%")
        if pct >= 0:
            if symbol[pct:] != "%return":
                self.fail("BAD_ADDR_SUFFIX", pct)
            symbol = symbol[:pct]
            self.is_return = True
        offset = 0
        m = re.search(r"[+-]", symbol)
        if m:
            value = kstrtol(symbol[m.start() :], 0)
            if value is None or value < 0 or value > _UINT_MAX:
                self.fail("BAD_PROBE_ADDR", 0)
            offset = value
            symbol = symbol[: m.start()]
        module: str | None = None
        if ":" in symbol:
            module, symbol = symbol.split(":", 1)
        if not re.fullmatch(r"[A-Za-z_.$][\w.$]*", symbol) or (
            module is not None and not re.fullmatch(r"[\w-]+", module)
        ):
            self.fail("BAD_PROBE_ADDR", 0)  # validate_probe_symbol(): no such symbol
        if self.is_return and offset > self.f.func_entry_offset_max and self.strict:
            self.fail("BAD_RETPROBE", 0)
        if not self.is_return and offset <= self.f.func_entry_offset_max:
            self.fentry = True
        return KprobePlace(symbol=symbol, offset=offset, module=module)

    def kprobe_args(self) -> tuple[FetchArg, ...]:
        words = list(self.argv[2:])
        if self.f.btf_args:
            self.var_args(words)
        if len(words) > self.f.max_args:
            words = self.too_many_args(words)
        dentry: list[str | None] = [None] * len(words)
        if self.f.dentry_types:
            for i, w in enumerate(words):
                if re.search(r":%p[dD]$", w) and len(w) > 4:
                    dentry[i] = w[-3:]
                    words[i] = self.expand_dentry(w)
                    self.argv[i + 2] = words[i]
        return self.fetchargs(words, dentry)

    def too_many_args(self, words: list[str]) -> list[str]:
        """More than MAX_TRACE_ARGS fetchargs: refused, or (before 6.5) the rest ignored."""
        if self.strict and not self.f.rejects_too_many_args:
            return words[: self.f.max_args]  # the parse loop stopped at MAX_TRACE_ARGS
        if self.strict and not self.f.logs_too_many_args:
            self.silent("E2BIG")
        self.fail("TOO_MANY_ARGS", 0, index=2)

    def var_args(self, words: list[str]) -> None:
        """argv_has_var_arg(): the $arg checks done before BTF expansion."""
        seen = False
        for i, w in enumerate(words):
            if not w.startswith("$arg"):
                continue
            self.index = i + 2
            if self.strict and not (self.fentry or self.is_return):
                self.fail("NOFENTRY_ARGS", 0)
            if isdigit(w[4:5]):
                continue
            if w[4:5] != "*":
                self.fail("BAD_VAR", 0)
            if seen:
                self.fail("DOUBLE_ARGS", 0)
            seen = True

    def expand_dentry(self, word: str) -> str:
        """traceprobe_expand_dentry_args(): ``X:%pd`` becomes a string fetch."""
        body = word[:-4]
        name = ""
        if "=" in body:
            name, body = body.split("=", 1)
            name += "="
        inner = f"+0x{self.f.dentry_name_offset:x}({body})"
        if word[-1] == "D":
            inner = f"+0x{self.f.dentry_name_offset:x}(+0x{self.f.file_dentry_offset:x}({body}))"
        return f"{name}+0x0({inner}):string"

    # -- uprobes (__trace_uprobe_create) ---------------------------------

    def uprobe(self) -> ProbeSpec:
        head = self.argv[0]
        self.is_return = head[0] == "r"
        event: str | None = head[2:] if head[1:2] == ":" else None
        words = list(self.argv[2:])
        if len(words) > self.f.max_args:
            words = self.too_many_args(words)
        word = self.argv[1]
        if "/" not in word:
            self.silent()
        colon = word.rfind(":")
        if colon < 0 or not isdigit(word[colon + 1 : colon + 2]):
            self.silent()
        self.index = 1
        path = word[:colon]
        if self.strict and self.file_check is not None:
            verdict = self.file_check(path)
            if verdict == "missing":
                self.fail("FILE_NOT_FOUND", 0)
            if verdict == "not_regular":
                self.fail("NO_REGULAR_FILE", 0)
        start = colon + 1
        rest = word[start:]
        ref: int | None = None
        lp = rest.find("(")
        if lp >= 0:
            rp = rest.find(")", lp)
            if rp < 0:
                self.fail("REFCNT_OPEN_BRACE", start + len(rest))
            if rp + 1 != len(rest):
                self.fail("BAD_REFCNT_SUFFIX", start + rp + 1)
            ref = kstrtoull(rest[lp + 1 : rp], 0)
            if ref is None:
                self.fail("BAD_REFCNT", start + lp + 1)
            rest = rest[:lp]
        pct = rest.find("%")
        if pct >= 0:
            if rest[pct:] != "%return":
                self.fail("BAD_ADDR_SUFFIX", start + pct)
            rest = rest[:pct]
            self.is_return = True
        offset = kstrtoull(rest, 0)
        if offset is None:
            self.fail("BAD_UPROBE_OFFS", start)
        self.index = 0
        group: str | None = None
        if event is not None:
            group, event = self.event_name(event, 2)
        args = self.fetchargs(words, [None] * len(words))
        place = UprobePlace(path=path, offset=offset, ref_ctr_offset=ref)
        return ProbeSpec(KIND_UPROBE, self.is_return, place, args, group, event, None)

    # -- names (traceprobe_parse_event_name) -----------------------------

    def event_name(self, event: str, offset: int) -> tuple[str | None, str | None]:
        group: str | None = None
        slash = event.find("/")
        if slash < 0 and self.f.dot_separator:
            slash = event.find(".")
        if slash >= 0:
            if slash == 0:
                self.fail("NO_GROUP_NAME", offset)
            if self.strict and slash + 1 > self.f.max_event_name_len:
                self.fail("GROUP_TOO_LONG", offset)
            group = event[:slash]
            if not is_good_name(group, hyphen=self.f.group_hyphen):
                self.fail("BAD_GROUP_NAME", offset)
            offset += slash + 1
            event = event[slash + 1 :]
        if event == "":
            if group is not None:
                return group, None
            self.fail("NO_EVENT_NAME", offset)
        if self.strict and len(event) >= self.f.max_event_name_len:
            self.fail("EVENT_TOO_LONG", offset)
        if not is_good_name(event):
            self.fail("BAD_EVENT_NAME", offset)
        return group, event

    # -- fetchargs (traceprobe_parse_probe_arg) --------------------------

    def fetchargs(self, words: list[str], dentry: list[str | None]) -> tuple[FetchArg, ...]:
        out: list[FetchArg] = []
        names: list[str] = []
        size = 0
        pending: tuple[int, str] | None = None
        for i, w in enumerate(words):
            self.index = i + 2
            self.offset = 0
            arg, name, nbytes, bad_sym = self.fetcharg(w, i, names, size)
            size += nbytes
            names.append(name)
            if dentry[i] is not None:
                kind = dentry[i]
                arg = FetchArg(arg.name, self.undo_dentry(arg.expr, kind or ""), kind)
            out.append(arg)
            if bad_sym is not None and pending is None:
                pending = (1, bad_sym)
        if pending is not None:
            # traceprobe_update_arg() runs at registration: the error is
            # logged against the probed place (argv[1]).
            self.fail(pending[1], 0, index=pending[0])
        return tuple(out)

    def undo_dentry(self, expr: Expr, kind: str) -> Expr:
        """The FETCHARG inside the +0x0(+0xNN(...)) that %pd/%pD expanded to."""
        for _ in range(2 if kind == "%pd" else 3):
            if isinstance(expr, Deref):
                expr = expr.inner
        return expr

    def fetcharg(
        self, word: str, i: int, names: list[str], size: int
    ) -> tuple[FetchArg, str, int, str | None]:
        self.btf_value = False
        if self.btf_meta_arg(word) == "*":
            # traceprobe_expand_meta_args(): the whole word becomes one
            # fetcharg per BTF parameter (names unknown here).
            return FetchArg(None, AllArgs(), None), "$arg*", 0, None
        eq = word.find("=")
        name: str | None
        if eq >= 0:
            if self.strict and eq > self.f.max_arg_name_len:
                self.fail("ARG_NAME_TOO_LONG", 0)
            if eq == 0:
                self.fail("NO_ARG_NAME", 0)
            name = word[:eq]
            body = word[eq + 1 :]
            body_at = eq + 1
        else:
            name = None
            body = word
            body_at = 0
        field = name if name is not None else self.auto_name(word, i)
        if self.btf_meta_arg(word) == "N":
            # $argN becomes the N-th BTF parameter's NAME[:TYPE]: its name is
            # not known offline, only that two $argN with one N clash.
            field = word.split(":", 1)[0]
            self.btf_value = True
        elif not is_good_name(field):
            self.fail("BAD_ARG_NAME", 0)
        if self.strict and (field in self.f.reserved_names or field in names):
            self.fail("USED_ARG_NAME", 0)
        self.offset = body_at
        self.body_offset = body_at
        if self.strict and len(body) > self.f.max_arg_len:
            self.fail("ARG_TOO_LONG", self.offset)
        if body == "":
            self.fail("NO_ARG_BODY", self.offset)
        expr, typ, nbytes, bad_sym = self.body(body, size)
        return FetchArg(name, expr, typ), field, nbytes, bad_sym

    def btf_meta_arg(self, word: str) -> str | None:
        """``"*"`` / ``"N"`` when a BTF kernel expands this unnamed ``$arg`` word."""
        if not (self.strict and self.kernel and self.f.btf_args and word.startswith("$arg")):
            return None
        if word[4:5] == "*":
            return "*"
        n, used = simple_strtoul(word[4:])
        if used and n > 0 and word[4 + used : 5 + used] in (":", ""):
            return "N"
        return None

    def auto_name(self, word: str, i: int) -> str:
        if self.f.btf_args:
            cand = word.split(":", 1)[0]
            if is_good_name(cand):
                return cand
        return f"arg{i + 1}"

    def body(self, body: str, size: int) -> tuple[Expr, str | None, int, str | None]:
        """traceprobe_parse_probe_arg_body(): type, expression, size, store."""
        arg = body
        typ: str | None = None
        count = 0
        type_at = 0
        colon = body.find(":")
        if colon >= 0:
            arg = body[:colon]
            typ = body[colon + 1 :]
            type_at = colon + 1
            lb = typ.find("[")
            if lb >= 0:
                if not self.f.arrays and self.strict:
                    self.fail("BAD_TYPE", self.offset + type_at)
                n_at = type_at + lb + 1
                inner = typ[lb + 1 :]
                rb = inner.find("]")
                if rb < 0:
                    self.fail("ARRAY_NO_CLOSE", self.offset + n_at + len(inner))
                if rb + 1 != len(inner):
                    self.fail("BAD_ARRAY_SUFFIX", self.offset + n_at + rb + 1)
                n = kstrtoull(inner[:rb], 0)
                if n is None or n > _UINT_MAX or n == 0:
                    self.fail("BAD_ARRAY_NUM", self.offset + n_at)
                if n > self.f.max_array_len:
                    self.fail("ARRAY_TOO_BIG", self.offset + n_at)
                count = n
                base = typ[:lb]
            else:
                base = typ
        else:
            base = None
        tname = self.find_type(arg, base, count, type_at)
        code = _Code(self.f.fetch_insn_max)
        expr, bad_sym = self.expr(arg, code)
        nbytes = _TYPE_SIZE[tname] * (count or 1)
        if (
            self.strict
            and self.f.max_event_size is not None
            and size + nbytes > self.f.max_event_size
        ):
            self.fail("EVENT_TOO_BIG", self.offset)
        self.finalize(code, tname, base, count, type_at)
        return expr, typ, nbytes, bad_sym

    def find_type(self, arg: str, base: str | None, count: int, type_at: int) -> str:
        """parse_probe_arg_type() after the array part: the fetch type's name."""
        comms = ("$comm", "$COMM") if self.f.logs_need_string_type else ("$comm",)
        if arg in comms or arg.startswith('\\"'):
            if count or (base is not None and base != "string"):
                if self.strict and not self.f.logs_need_string_type:
                    self.silent()
                self.fail("NEED_STRING_TYPE", self.offset + type_at)
            return "string"
        if base is None:
            return "x64"
        known = self.f.types if self.strict else KernelFeatures.permissive().types
        if not self.kernel and base in ("symbol", "symstr"):
            if self.strict:
                self.fail("BAD_TYPE", self.offset + type_at)
        if base[:1] == "b":
            slash = base.find("/")
            bits = kstrtoull(base[slash + 1 :], 0) if slash >= 0 else None
            if bits not in (8, 16, 32, 64):
                self.fail("BAD_TYPE", self.offset + type_at)
            return f"u{bits}"
        if base not in known:
            self.fail("BAD_TYPE", self.offset + type_at)
        return base

    # -- expressions (parse_probe_arg) -----------------------------------

    def expr(self, arg: str, code: _Code) -> tuple[Expr, str | None]:
        c = arg[:1]
        bad_sym: str | None = None
        node: Expr
        if c == "$":
            node = self.var(arg, code)
        elif c == "%":
            name = arg[1:]
            ok = name in self.regs if self.regs is not None else bool(re.fullmatch(r"\w+", name))
            if not ok:
                self.fail("BAD_REG_NAME", self.offset)
            code.set("REG")
            node = Register(name)
        elif c == "@":
            node, bad_sym = self.memory(arg, code)
        elif c in ("+", "-"):
            node, bad_sym = self.deref(arg, code)
        elif c == "\\":
            node = self.immediate(arg, code)
        elif c == "(" and self.f.typecast:
            node = self.btf(arg, code)
        elif isalpha(c) or c == "_":
            if not self.f.btf_errors and self.strict:
                self.fail("BAD_FETCH_ARG", self.offset)
            node = self.btf(arg, code)
        else:
            self.fail("BAD_FETCH_ARG", self.offset)
        return node, bad_sym

    def var(self, arg: str, code: _Code) -> Expr:
        """parse_probe_vars(): ``$retval``, ``$stack[N]``, ``$comm``, ``$argN``."""
        rest = arg[1:]
        if rest == "retval" or (self.f.retval_prefix and rest.startswith("retval")):
            if self.strict and not self.is_return:
                self.fail("RETVAL_ON_PROBE", self.offset)
            if self.kernel and self.f.btf_args:
                return self.btf_retval(arg, code)
            code.set("RETVAL")
            return Retval()
        if rest.startswith("stack"):
            tail = rest[5:]
            if tail == "":
                code.set("STACKP")
                return StackVar(None)
            if isdigit(tail[:1]):
                n = kstrtoull(tail, 10)
                if n is None:
                    self.fail(self.bad_var_key(), self.offset)
                if self.strict and self.kernel and n > self.f.param_max_stack:
                    self.fail("BAD_STACK_NUM", self.offset)
                code.set("STACK")
                return StackVar(n)
            self.fail(self.bad_var_key(), self.offset)
        if rest in ("comm", "COMM") and self.f.comm:
            code.set("COMM")
            return Comm()
        if rest.startswith("arg") and self.f.has_arg_access:
            return self.arg_var(rest[3:], code)
        self.fail(self.bad_var_key(), self.offset)

    def arg_var(self, tail: str, code: _Code) -> Expr:
        if tail == "*" and not self.strict:
            code.set("ARG")
            return AllArgs()
        if self.strict and not self.f.detailed_arg_errors:
            # Before 6.5 $argN exists only at a kprobe's function entry.
            if not self.fentry:
                self.fail(self.bad_var_key(), self.offset)
            n = kstrtoull(tail, 10)
            if n is None:
                self.fail(self.bad_var_key(), self.offset)
            if n == 0 or n > self.f.param_max_stack:
                self.fail("BAD_ARG_NUM", self.offset)
            code.set("ARG")
            return ArgVar(n)
        n = kstrtoull(tail, 10)
        if n is None:
            self.fail(self.bad_var_key(), self.offset)
        if n == 0 or (self.strict and n > self.f.param_max_stack):
            self.fail("BAD_ARG_NUM", self.offset)
        if self.strict:
            entry = self.kernel and self.fentry
            exit_ = self.kernel and self.is_return and self.f.return_args
            if not (entry or exit_):
                self.fail("NOFENTRY_ARGS", self.offset)
        code.set("ARG" if self.fentry or not self.is_return else "EDATA")
        return ArgVar(n)

    def bad_var_key(self) -> str:
        return "BAD_VAR"

    def memory(self, arg: str, code: _Code) -> tuple[Expr, str | None]:
        """``@ADDR``, ``@+FOFFS``, ``@SYM[+|-OFFS]``."""
        bad_sym: str | None = None
        node: Expr
        if isdigit(arg[1:2]):
            addr = kstrtoull(arg[1:], 0)
            if addr is None:
                self.fail("BAD_MEM_ADDR", self.offset)
            code.set("IMM")
            node = MemAddr(addr)
        elif arg[1:2] == "+" and self.f.file_offsets:
            if self.strict and self.kernel:
                self.fail("FILE_ON_KPROBE", self.offset)
            value = kstrtol(arg[2:], 0)
            if value is None:
                self.fail("BAD_FILE_OFFS", self.offset)
            code.set("FOFFS")
            node = FileOffset(value)
        else:
            if self.strict and not self.kernel:
                self.fail("SYM_ON_UPROBE", self.offset)
            code.set("NOP_SYMBOL")
            if code.next_is_end():
                self.fail("TOO_MANY_OPS", self.offset)
            code.set("IMM")
            sym = arg[1:]
            offset = 0
            m = re.search(r"[+-]", sym)
            if m:
                value = kstrtol(sym[m.start() :], 0)
                if value is None:
                    bad_sym = "FAIL_REG_PROBE"
                else:
                    offset = value
                sym = sym[: m.start()]
            if not re.fullmatch(r"[A-Za-z_.$][\w.$]*", sym):
                bad_sym = bad_sym or "BAD_PROBE_ADDR"
            node = SymbolAddr(sym, offset)
        if code.next_is_end():
            self.fail("TOO_MANY_OPS", self.offset)
        code.set("DEREF")
        return node, bad_sym

    def deref(self, arg: str, code: _Code) -> tuple[Expr, str | None]:
        """``+|-[u]OFFS(FETCHARG)``, with the kernel's offset arithmetic."""
        buf = list(arg)
        p = 0
        user = False
        if arg[1:2] == "u" and self.f.user_deref:
            user = True
            buf[1] = buf[0]
            p = 1
        if buf[p] == "+":
            p += 1
        rest = "".join(buf[p:])
        lp = rest.find("(")
        if lp < 0:
            self.fail("DEREF_NEED_BRACE", self.offset)
        offset = kstrtol(rest[:lp], 0)
        if offset is None:
            self.fail("BAD_DEREF_OFFS", self.offset)
        self.offset += (lp + 1) + (1 if rest[:1] != "-" else 0)
        inner_full = rest[lp + 1 :]
        rp = inner_full.rfind(")")
        if rp < 0:
            self.fail("DEREF_OPEN_BRACE", self.offset + len(inner_full))
        cur = self.offset
        inner, bad_sym = self.expr(inner_full[:rp], code)
        self.offset = cur
        if code.op in ("COMM", "DATA"):
            self.fail("COMM_CANT_DEREF", self.offset)
        if code.next_is_end():
            self.fail("TOO_MANY_OPS", self.offset)
        code.set("UDEREF" if user else "DEREF")
        return Deref(offset, inner, user), bad_sym

    def immediate(self, arg: str, code: _Code) -> Expr:
        if arg[1:2] == '"' and self.f.immediate_strings:
            s = arg[2:]
            if not s or s[-1] != '"':
                self.fail("IMMSTR_NO_CLOSE", self.offset + 2 + len(s))
            code.set("DATA")
            return ImmString(s[:-1])
        if not self.f.immediates:
            self.fail("BAD_FETCH_ARG", self.offset)
        s = arg[1:]
        value: int | None
        if isdigit(s[:1]):
            value = kstrtoull(s, 0)
        elif s[:1] == "-":
            value = kstrtol(s, 0)
        elif s[:1] == "+":
            value = kstrtol(s[1:], 0)
        else:
            value = None
        if value is None:
            self.fail("BAD_IMM", self.offset + 1)
        code.set("IMM")
        return Imm(value)

    def btf_retval(self, arg: str, code: _Code) -> Expr:
        """``$retval[->field...]`` with BTF arguments: parse_btf_arg() on ``$retval``."""
        sep = re.search(r"[.-]", arg)
        var = arg[: sep.start()] if sep else arg
        if sep:
            at = sep.start()
            if arg[at] == "-" and arg[at + 1 : at + 2] != ">":
                self.fail("BAD_HYPHEN", self.offset + at)
            if arg[at] == ".":
                self.fail("NOSUP_DAT_ARG", self.offset + at + 1)
        if var != "$retval":
            if self.strict:
                self.fail("NO_BTFARG", self.offset)  # no parameter is named "$..."
            code.set("DEREF")
            return BtfRef(arg)
        if sep:
            code.set("DEREF")  # the fields are BTF's to check
            return BtfRef(arg)
        code.set("RETVAL")
        self.btf_value = True
        return Retval()

    def btf(self, arg: str, code: _Code) -> Expr:
        """A BTF name: checked for syntax only, the types are not known offline."""
        if self.strict:
            entry = self.kernel and (self.fentry or self.is_return)
            if not entry or not self.f.btf_args:
                self.fail("NOSUP_BTFARG", self.offset)
        if arg[:1] != "(" and not arg.startswith("$"):
            m = re.search(r"[.-]", arg)
            if m:
                if arg[m.start() : m.start() + 2] not in ("->",) and arg[m.start()] == "-":
                    self.fail("BAD_HYPHEN", self.offset + m.start())
                if arg[m.start()] == ".":
                    self.fail("NOSUP_DAT_ARG", self.offset + m.start() + 1)
        code.set("DEREF")  # BTF may add loads (char * for strings): stay permissive
        return BtfRef(arg)

    # -- finalize_fetch_insn ---------------------------------------------

    def finalize(self, code: _Code, tname: str, base: str | None, count: int, type_at: int) -> None:
        # Before 6.5 these errors were logged from the body's start; later
        # from ctx->offset, which a dereference leaves moved past '+OFFS('.
        here = self.offset if self.f.shifted_type_errors else self.body_offset
        at = here + type_at
        if self.btf_value and tname in ("string", "ustring") and code.op in ("ARG", "RETVAL"):
            # check_prepare_btf_string_fetch(): a char * gets a load added
            # (another type is refused, but the type is not known here).
            if code.next_is_end():
                self.fail("TOO_MANY_OPS", here)
            code.set("DEREF")
        if tname in ("string", "ustring", "symstr"):
            if tname == "symstr":
                if code.op not in ("REG", "STACK", "RETVAL", "ARG", "DEREF"):
                    self.fail("BAD_SYMSTRING", at)
            elif code.op not in ("DEREF", "UDEREF", "IMM", "COMM", "DATA"):
                self.fail("BAD_STRING", at)
            if tname == "symstr" or code.op in ("IMM", "COMM", "DATA") or count:
                if code.next_not_nop():
                    self.fail("TOO_MANY_OPS", here)
            code.set("ST_SYMSTR" if tname == "symstr" else "ST_STRING")
        elif code.op == "DEREF":
            code.set("ST_MEM")
        elif code.op == "UDEREF":
            code.set("ST_UMEM")
        else:
            if code.next_not_nop():
                self.fail("TOO_MANY_OPS", here)
            code.set("ST_RAW")
        store = code.op
        if base is not None and base[:1] == "b":
            self.bitfield(code, base, _TYPE_SIZE[tname] * 8, at)
        if count:
            if store not in ("ST_MEM", "ST_STRING"):
                self.fail("BAD_STRING", at)
            if code.next_not_nop():
                self.fail("TOO_MANY_OPS", here)
            code.set("LP_ARRAY")

    def bitfield(self, code: _Code, spec: str, bits: int, at: int) -> None:
        """__parse_bitfield_probe_arg(): ``bWIDTH@OFFSET/CONTAINER``."""
        width, used = simple_strtoul(spec[1:])
        tail = spec[1 + used :]
        if width == 0 or tail[:1] != "@":
            self.fail("BAD_BITFIELD", at)
        bo_text = tail[1:]
        bo, used = simple_strtoul(bo_text)
        if used == 0 or bo_text[used : used + 1] != "/":
            self.fail("BAD_BITFIELD", at)
        if code.next_not_nop():
            self.fail("BAD_BITFIELD", at)
        code.set("MOD_BF")
        if bits < width + bo:
            self.fail("BAD_BITFIELD", at)


# --------------------------------------------------------------------------
# Public entry
# --------------------------------------------------------------------------


def _line(text: str) -> str:
    """One command line as trace_parse_run_command() hands it over."""
    lines = [ln for ln in text.split("\n")]
    while lines and lines[-1].strip() == "" and len(lines) > 1:
        lines.pop()
    if len(lines) != 1:
        raise ProbeSyntaxError(
            "Only one definition per call",
            text,
            0,
            hint="split the text into lines and check each one",
        )
    line = lines[0]
    hash_at = line.find("#")
    if hash_at >= 0:
        line = line[:hash_at]
    return line


def parse_definition(
    text: str,
    kind: str,
    features: KernelFeatures | None,
    arch: str | Arch | None,
    *,
    strict: bool,
    file_check: FileCheck | None = None,
) -> ProbeSpec | DeleteSpec:
    """Parse (and with ``strict`` validate) one definition; see module doc."""
    if kind not in (KIND_KPROBE, KIND_UPROBE):
        raise ProbeSyntaxError(
            f"Unknown probe kind {kind!r}", text, 0, hint="kind is 'kprobe' or 'uprobe'"
        )
    line = _line(text)
    argv = [w for w in _SPACE.split(line) if w]
    command = " ".join(argv)
    if not argv:
        raise ProbeSyntaxError(
            "Empty definition", text, 0, hint="write p|r:[GRP/]EVENT PLACE [ARGS]", command=kind
        )
    feats = features if features is not None else KernelFeatures.permissive()
    arch_obj = get_arch(arch) if isinstance(arch, str) else arch
    parser = _Parser(list(argv), kind, feats, arch_obj, strict, file_check)
    try:
        return parser.definition()
    except _Fail as e:
        if e.key in ("EINVAL", "E2BIG"):
            msg = SILENT_EINVAL if e.key == "EINVAL" else SILENT_E2BIG
            raise ProbeSyntaxError(
                msg, command, 0, hint=_silent_hint(argv, kind), command=kind
            ) from None
        logged = parser.argv  # %pd expansion rewrites words, like the kernel
        command = " ".join(logged)
        if e.index >= len(logged):
            pos = len(command) + 1
        else:
            pos = len(" ".join(logged[: e.index])) + (1 if e.index else 0) + e.offset
        message = KERNEL_ERRORS[e.key]
        if e.key == "BAD_VAR":
            message = feats.bad_var_message
        elif e.key == "BAD_MAXACT_TYPE":
            message = feats.maxact_type_message
        raise ProbeSyntaxError(message, command, pos, hint=HINTS.get(e.key), command=kind) from None


def _silent_hint(argv: list[str], kind: str) -> str:
    head = argv[0]
    if head[:1] == "-":
        return "delete with -:[GROUP/]EVENT"
    if head[:1] not in ("p", "r"):
        return "a definition starts with p, r or -"
    if len(argv) < 2:
        return "a probe needs a place after the name"
    if len(argv) - 2 > 128:
        return "at most 128 fetchargs"
    if kind == KIND_UPROBE:
        return "a uprobe place is /ABSOLUTE/PATH:OFFSET (the offset starts with a digit)"
    return "that looks like a uprobe place (PATH:OFFSET); write it to uprobe_events"
