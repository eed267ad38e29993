"""Recursive-descent parser: tokens -> :class:`~kprobes.lang.ast.Program`.

Expressions follow C precedence (see :data:`~kprobes.lang.ast.BINARY_OPS`),
with casts ``(uint32)x`` / ``(struct sock *)arg0``, postfix ``[]``, ``.``,
``->``, ``++``/``--`` and the ternary operator; ``while``/``unroll`` loops
with ``break``/``continue``.  The first syntax error stops parsing (as bison
does); constructs bpftrace has but this front end does not support
(``config = {...}``, ``offsetof``) are refused with a clean error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from . import ast
from .attach import AttachError, parse_attach_point
from .builtins import C_TYPE_ALIASES, INT_TYPES, is_builtin_name
from .diagnostics import ERROR, WARNING, Diagnostic, LangError
from .lexer import Token, describe, tokenize
from .params import PARAM_IN_ATTACH, PARAM_PROVIDER
from .source import Source, Span

__all__ = ["parse_program", "MAX_EXPR_HEIGHT", "MAX_BLOCK_DEPTH"]

#: Deepest expression tree accepted (keeps every later pass far from Python's recursion limit).
MAX_EXPR_HEIGHT = 64
#: Deepest nesting of ``if`` blocks accepted.
MAX_BLOCK_DEPTH = 32

_KEYWORDS = frozenset(
    ["if", "else", "return", "unroll", "while", "for", "break", "continue", "struct",
     "union", "enum", "let", "config", "import", "macro", "fn", "sizeof", "offsetof"]
)  # fmt: skip
_EXPR_START = frozenset(
    ["INT", "STRING", "MAP", "VAR", "PARAM", "IDENT", "(", "-", "+", "!", "~", "*", "&", "++", "--"]
)


class _Fatal(Exception):
    """Internal: stop parsing (the diagnostics are already recorded)."""


class _Parser:
    def __init__(self, source: Source, tokens: list[Token]) -> None:
        self.src = source
        self.toks = tokens
        self.pos = 0
        self.diags: list[Diagnostic] = []
        self.includes: list[str] = []
        self.block_depth = 0
        self.loop_depth = 0
        self.heights: dict[int, tuple[int, object]] = {}
        self.nesting = 0

    # -- token helpers -------------------------------------------------------
    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        tok = self.toks[self.pos]
        if tok.kind != "EOF":
            self.pos += 1
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        tok = self.peek()
        return tok.kind == kind and (text is None or tok.text == text)

    def at_keyword(self, word: str) -> bool:
        return self.at("IDENT", word)

    def error(self, message: str, span: Span, hints: Sequence[str] = ()) -> None:
        self.diags.append(Diagnostic(ERROR, message, span, tuple(hints)))

    def fatal(self, message: str, span: Span, hints: Sequence[str] = ()) -> NoReturn:
        self.error(message, span, hints)
        raise _Fatal()

    def describe(self, tok: Token) -> str:
        if tok.kind == "IDENT":
            if tok.text in _KEYWORDS:
                return tok.text
            if is_builtin_name(tok.text):
                return "builtin"
        return describe(tok)

    def unexpected(self, expecting: str | None = None) -> NoReturn:
        tok = self.peek()
        msg = f"syntax error, unexpected {self.describe(tok)}"
        if expecting:
            msg += f", expecting {expecting}"
        self.fatal(msg, tok.span)

    def expect(self, kind: str, expecting: str | None = None) -> Token:
        if self.peek().kind != kind:
            self.unexpected(expecting or kind)
        return self.advance()

    def grow(self, node: ast.Expr, *children: ast.Expr) -> ast.Expr:
        """Record the height of a new compound node; refuse absurdly deep expressions."""
        height = 1 + max((self.heights.get(id(c), (1, c))[0] for c in children), default=0)
        if height > MAX_EXPR_HEIGHT:
            self.fatal("expression is nested too deeply", node.span)
        self.heights[id(node)] = (height, node)
        return node

    # -- program and probes ------------------------------------------------
    def program(self) -> ast.Program:
        probes: list[ast.Probe] = []
        while not self.at("EOF"):
            tok = self.peek()
            if tok.kind == "PREPROC":
                self.preproc(self.advance())
            elif tok.kind == "ATTACH" and tok.text.split("=")[0] == "config":
                self.fatal("config blocks are not supported yet", tok.span)
            elif tok.kind == "ATTACH" and tok.text in ("struct", "union"):
                self.fatal(f"{tok.text} declarations are not supported: kernel types come from "
                           f"BTF (cast to ({tok.text} NAME *) with a type the kernel has)", tok.span)
            elif tok.kind == "ATTACH":
                probes.append(self.probe())
            else:
                self.unexpected("attach point")
        return ast.Program(
            probes=tuple(probes),
            filename=self.src.filename,
            text=self.src.text,
            includes=tuple(self.includes),
            warnings=tuple(d for d in self.diags if d.severity == WARNING),
        )

    def preproc(self, tok: Token) -> None:
        text = tok.text.strip()
        if text.startswith("#include"):
            self.includes.append(text[len("#include") :].strip())
            self.diags.append(
                Diagnostic(
                    WARNING,
                    "#include is ignored: kernel types come from BTF",
                    tok.span,
                )
            )
        else:
            self.error(f"preprocessor directive not supported: {text.split()[0]}", tok.span)

    def probe(self) -> ast.Probe:
        aps = [self.attach_point()]
        while self.at(","):
            self.advance()
            aps.append(self.attach_point())
        pred: ast.Expr | None = None
        if self.at("PRED_START"):
            self.advance()
            if self.at("PRED_END"):
                self.unexpected("expression")
            pred = self.expr()
            self.expect("PRED_END", "/")
        if not self.at("{"):
            self.unexpected("{" if pred is not None else ", or {")
        body = self.block()
        return ast.Probe(tuple(aps), pred, body, aps[0].span.to(body.span))

    def attach_point(self) -> ast.AttachPoint:
        tok = self.expect("ATTACH", "attach point")
        if "$" in tok.text and PARAM_IN_ATTACH.search(tok.text):
            # uprobe:$1:main: parsed once the parameters are known (lang.params)
            return ast.AttachPoint(PARAM_PROVIDER, tok.text, tok.span)
        try:
            return parse_attach_point(tok.text, tok.span)
        except AttachError as exc:
            self.error(exc.message, tok.span, exc.hints)
            return ast.AttachPoint("invalid", tok.text, tok.span)

    # -- statements ----------------------------------------------------------
    def block(self) -> ast.Block:
        start = self.expect("{", "{")
        self.block_depth += 1
        if self.block_depth > MAX_BLOCK_DEPTH:
            self.fatal("blocks are nested too deeply", start.span)
        stmts: list[ast.Stmt] = []
        while not self.at("}"):
            if self.at(";"):
                self.advance()
                continue
            if self.at("EOF"):
                self.unexpected("}")
            stmt, is_block = self.statement()
            if stmt is not None:
                stmts.append(stmt)
            if not is_block and not self.at("}"):
                self.expect(";", "; or }")
        end = self.advance()
        self.block_depth -= 1
        return ast.Block(tuple(stmts), start.span.to(end.span))

    def statement(self) -> tuple[ast.Stmt | None, bool]:
        """One statement and whether it ended with a block (no ``;`` needed)."""
        tok = self.peek()
        if tok.kind == "IDENT":
            word = tok.text
            if word == "if":
                return self.if_stmt(), True
            if word == "while":
                return self.while_stmt(), True
            if word == "unroll":
                return self.unroll_stmt(), True
            if word == "return":
                self.advance()
                if self.peek().kind in _EXPR_START:
                    value = self.expr()
                    self.error("return with a value is not supported in probes", value.span)
                return ast.Return(tok.span), False
            if word in ("break", "continue"):
                self.advance()
                if not self.loop_depth:
                    self.error(f"{word} used outside of a loop", tok.span)
                return ast.Jump(word, tok.span), False
            if word in ("for", "let"):
                what = "for loops" if word == "for" else "variable declarations (let)"
                self.fatal(f"{what} are not supported yet", tok.span)
        if tok.kind == "{":
            self.unexpected()
        e = self.expr()
        op = self.peek()
        if op.kind == "=" or op.kind in ast.COMPOUND_OPS:
            if isinstance(e, ast.Var):
                self.advance()
                value = self.expr()
                return ast.AssignVar(e, op.kind, value, e.span.to(value.span)), False
            if isinstance(e, ast.Map):
                self.advance()
                value = self.expr()
                return ast.AssignMap(e, op.kind, value, e.span.to(value.span)), False
            self.unexpected()
        return ast.ExprStmt(e, e.span), False

    def while_stmt(self) -> ast.While:
        tok = self.advance()
        self.expect("(", "(")
        cond = self.expr()
        self.expect(")", ")")
        self.loop_depth += 1
        body = self.block()
        self.loop_depth -= 1
        return ast.While(cond, body, tok.span.to(body.span))

    def unroll_stmt(self) -> ast.Unroll:
        tok = self.advance()
        self.expect("(", "(")
        count = self.expr()
        end = self.expect(")", ")")
        body = self.block()  # break/continue in it leave an enclosing while, as in bpftrace
        return ast.Unroll(count, body, tok.span.to(end.span))

    def if_stmt(self) -> ast.If:
        start = self.advance()
        self.expect("(", "(")
        cond = self.expr()
        self.expect(")", ")")
        then = self.block()
        orelse: ast.Block | ast.If | None = None
        end = then.span
        if self.at_keyword("else"):
            self.advance()
            if self.at_keyword("if"):
                self.block_depth += 1
                if self.block_depth > MAX_BLOCK_DEPTH:
                    self.fatal("blocks are nested too deeply", self.peek().span)
                orelse = self.if_stmt()
                self.block_depth -= 1
            else:
                orelse = self.block()
            end = orelse.span
        return ast.If(cond, then, orelse, start.span.to(end))

    # -- expressions ---------------------------------------------------------
    def expr(self) -> ast.Expr:
        self.nesting += 1
        if self.nesting > MAX_EXPR_HEIGHT:
            self.fatal("expression is nested too deeply", self.peek().span)
        try:
            return self.ternary()
        finally:
            self.nesting -= 1

    def ternary(self) -> ast.Expr:
        cond = self.binary(1)
        if not self.at("?"):
            return cond
        self.advance()
        then = self.expr()
        self.expect(":", ":")
        orelse = self.expr()
        return self.grow(
            ast.Ternary(cond, then, orelse, cond.span.to(orelse.span)), cond, then, orelse
        )

    def binary(self, min_prec: int) -> ast.Expr:
        left = self.unary()
        while True:
            op = self.peek().kind
            prec = ast.BINARY_OPS.get(op)
            if prec is None or prec < min_prec:
                return left
            self.advance()
            right = self.binary(prec + 1)
            left = self.grow(ast.Binary(op, left, right, left.span.to(right.span)), left, right)

    def unary(self) -> ast.Expr:
        tok = self.peek()
        if tok.kind not in ("-", "+", "!", "~", "*", "&", "++", "--", "("):
            return self.postfix()
        self.nesting += 1
        if self.nesting > MAX_EXPR_HEIGHT:
            self.fatal("expression is nested too deeply", tok.span)
        try:
            return self.prefixed(tok)
        finally:
            self.nesting -= 1

    def prefixed(self, tok: Token) -> ast.Expr:
        if tok.kind in ("-", "+", "!", "~", "*", "&"):
            self.advance()
            operand = self.unary()
            return self.grow(ast.Unary(tok.kind, operand, tok.span.to(operand.span)), operand)
        if tok.kind in ("++", "--"):
            self.advance()
            target = self.unary()
            node = ast.IncDec(tok.kind, True, target, tok.span.to(target.span))
            return self.grow(node, target)
        if tok.kind == "(" and self.cast_ahead():
            type_name = self.cast_type()
            operand = self.unary()
            cast = ast.Cast(type_name, operand, tok.span.to(operand.span))
            return self.grow(cast, operand)
        return self.postfix()

    def cast_ahead(self) -> bool:
        first = self.peek(1)
        if first.kind != "IDENT":
            return False
        k = 2
        if first.text in ("struct", "union"):
            if self.peek(2).kind != "IDENT":
                return False
            k = 3
        elif first.text not in INT_TYPES and first.text not in C_TYPE_ALIASES:
            return False
        while self.peek(k).kind == "*":
            k += 1
        return self.peek(k).kind == ")"

    def cast_type(self) -> ast.TypeName:
        open_tok = self.advance()
        first = self.advance()
        kind, name = "int", first.text
        if first.text in ("struct", "union"):
            kind, name = first.text, self.advance().text
        stars = 0
        while self.at("*"):
            self.advance()
            stars += 1
        close = self.advance()
        span = open_tok.span.to(close.span)
        if kind != "int":
            return ast.TypeName(kind, name, stars, span)
        if name in C_TYPE_ALIASES:
            alias = C_TYPE_ALIASES[name]
            hints = (f'Did you mean "{alias}"?',) if alias else ()
            self.error(f'Cannot cast to "{name}"', span, hints)
            name = alias or "int64"
        bits, signed = INT_TYPES[name]
        return ast.TypeName("int", name, stars, span, bits=bits, signed=signed)

    def postfix(self) -> ast.Expr:
        e = self.primary()
        while True:
            tok = self.peek()
            if tok.kind == "[":
                self.advance()
                if isinstance(e, ast.Map) and not e.indexed:
                    keys = [self.expr()]
                    while self.at(","):
                        self.advance()
                        keys.append(self.expr())
                    end = self.expect("]", "]")
                    node: ast.Expr = ast.Map(e.name, tuple(keys), e.span.to(end.span), True)
                    e = self.grow(node, *keys)
                else:
                    index = self.expr()
                    end = self.expect("]", "]")
                    e = self.grow(ast.Index(e, index, e.span.to(end.span)), e, index)
            elif tok.kind in (".", "->"):
                self.advance()
                name = self.peek()
                if name.kind == "INT" and tok.kind == ".":
                    self.advance()
                    nth = name.value if isinstance(name.value, int) else 0
                    e = self.grow(ast.TupleIndex(e, nth, e.span.to(name.span)), e)
                    continue
                name = self.expect("IDENT", "identifier")
                access = ast.FieldAccess(
                    e, name.text, tok.kind == "->", e.span.to(name.span), name.span
                )
                e = self.grow(access, e)
            elif tok.kind in ("++", "--"):
                self.advance()
                e = self.grow(ast.IncDec(tok.kind, False, e, e.span.to(tok.span)), e)
            else:
                return e

    def primary(self) -> ast.Expr:
        tok = self.peek()
        kind = tok.kind
        if kind == "INT":
            self.advance()
            return ast.IntLit(tok.value if isinstance(tok.value, int) else 0, tok.span)
        if kind == "STRING":
            self.advance()
            return ast.StrLit(str(tok.value), tok.span)
        if kind == "MAP":
            self.advance()
            return ast.Map(str(tok.value), (), tok.span)
        if kind == "VAR":
            self.advance()
            return ast.Var(str(tok.value), tok.span)
        if kind == "PARAM":
            self.advance()
            return ast.Param(str(tok.value), tok.span)
        if kind == "(":
            self.advance()
            inner = self.expr()
            if self.at(","):
                elems = [inner]
                while self.at(","):
                    self.advance()
                    elems.append(self.expr())
                end = self.expect(")", ")")
                return self.grow(ast.Tuple(tuple(elems), tok.span.to(end.span)), *elems)
            self.expect(")", ")")
            return inner
        if kind == "IDENT" and tok.text not in _KEYWORDS:
            self.advance()
            if self.at("("):
                return self.call(tok)
            if is_builtin_name(tok.text):
                return ast.Builtin(tok.text, tok.span)
            return ast.Ident(tok.text, tok.span)
        if kind == "IDENT" and tok.text == "sizeof" and self.peek(1).kind == "(":
            return self.sizeof()
        if kind == "IDENT" and tok.text == "offsetof":
            self.fatal(f"{tok.text}() is not supported yet", tok.span)
        self.unexpected()

    def sizeof(self) -> ast.Expr:
        """``sizeof(TYPE)`` or ``sizeof(expr)``."""
        start = self.advance()
        if self.cast_ahead():
            type_name = self.cast_type()
            return ast.Sizeof(type_name, None, start.span.to(type_name.span))
        self.advance()
        inner = self.expr()
        end = self.expect(")", ")")
        return self.grow(ast.Sizeof(None, inner, start.span.to(end.span)), inner)

    def call(self, name: Token) -> ast.Expr:
        self.advance()
        args: list[ast.Expr] = []
        if not self.at(")"):
            args.append(self.expr())
            while self.at(","):
                self.advance()
                args.append(self.expr())
        end = self.expect(")", ")")
        node = ast.Call(name.text, tuple(args), name.span.to(end.span), name.span)
        return self.grow(node, *args)


def parse_program(text: str, filename: str = "stdin") -> ast.Program:
    """Parse a bpftrace program.

    ``filename`` is what error messages start with; bpftrace uses ``stdin``
    for ``-e`` programs.  Raises :class:`~kprobes.lang.diagnostics.LangError`
    on lexical or syntax errors, invalid attach points and refused constructs.
    ``#include`` lines are recorded in ``Program.includes`` with a warning.
    """
    source = Source(text, filename)
    tokens = tokenize(source)
    parser = _Parser(source, tokens)
    try:
        program = parser.program()
    except _Fatal:
        raise LangError(parser.diags, source) from None
    if any(d.severity == ERROR for d in parser.diags):
        raise LangError(parser.diags, source)
    if not program.probes:
        raise LangError([Diagnostic(ERROR, "No probes defined", None)], source)
    return program
