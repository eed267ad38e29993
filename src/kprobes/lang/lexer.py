"""Tokenizer for the bpftrace language.

The lexer is context sensitive in the same places bpftrace's flex lexer is:

* Outside action blocks and predicates ("header" position) it reads whole
  attach points as one ``ATTACH`` token (``uprobe:/bin/bash:readline``,
  ``kprobe:vfs_*``, ``interval:s:1``), plus ``,``, ``{`` and the ``/`` that
  opens a predicate (``PRED_START``).  ``#...`` lines there become ``PREPROC``,
  except a ``#!`` first line (skipped) and ``#ifdef``/``#ifndef``/``#else``/``#endif``
  (evaluated here, with only ``BPFTRACE_HAVE_BTF`` defined).
* Inside a predicate a ``/`` followed (after blanks) by ``{`` closes it
  (``PRED_END``); any other ``/`` is division.

Token kinds are strings: ``IDENT INT STRING MAP VAR PARAM ATTACH PRED_START
PRED_END PREPROC EOF``, and for operators and punctuation the operator text
itself (``"+="``, ``"{"``...).
"""

from __future__ import annotations

from .._record import dataclass
from .diagnostics import ERROR, Diagnostic, LangError
from .source import Source, Span

__all__ = ["Token", "tokenize", "MAX_UINT64"]

MAX_UINT64 = (1 << 64) - 1

_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_BLANKS = frozenset(" \t\r\n\f\v")
# Longest first: the lexer takes the first operator that matches.
_OPERATORS = (
    "<<=", ">>=",
    "==", "!=", "<=", ">=", "&&", "||", "<<", ">>", "->", "++", "--",
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=",
    "+", "-", "*", "/", "%", "&", "|", "^", "!", "~", "<", ">", "=", "?", ":",
    ";", ",", ".", "(", ")", "[", "]", "{", "}",
)  # fmt: skip
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
# Characters an attach point may contain besides letters, digits and quotes.
_ATTACH_STOP = frozenset(" \t\r\n\f\v,{}")
# Macros that #ifdef/#ifndef see as defined (bpftrace's tools test BPFTRACE_HAVE_BTF).
_DEFINED = frozenset({"BPFTRACE_HAVE_BTF"})


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` (see module docstring), source ``text``, decoded ``value``."""

    kind: str
    text: str
    span: Span
    value: int | str | None = None


class _Lexer:
    def __init__(self, source: Source) -> None:
        self.src = source
        self.text = source.text
        self.pos = 0
        self.tokens: list[Token] = []
        self.errors: list[Diagnostic] = []
        self.depth = 0
        self.in_pred = False
        self.conds: list[int] = []  # start offsets of the open #ifdef/#ifndef (true branch)

    # -- helpers -----------------------------------------------------------
    def error(self, message: str, start: int, end: int) -> None:
        self.errors.append(Diagnostic(ERROR, message, self.src.span(start, end)))

    def add(self, kind: str, start: int, end: int, value: int | str | None = None) -> None:
        self.tokens.append(Token(kind, self.text[start:end], self.src.span(start, end), value))

    def peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.text[i] if i < len(self.text) else ""

    # -- main loop ---------------------------------------------------------
    def run(self) -> list[Token]:
        n = len(self.text)
        while True:
            self.skip_blanks_and_comments()
            if self.pos >= n:
                break
            if self.depth == 0 and not self.in_pred:
                self.header_token()
            else:
                self.expr_token()
        for start in self.conds:
            self.error("unterminated conditional directive", start, start + 1)
        self.tokens.append(Token("EOF", "", self.src.span(n, n + 1)))
        return self.tokens

    def skip_blanks_and_comments(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch in _BLANKS:
                self.pos += 1
            elif text.startswith("//", self.pos):
                stop = text.find("\n", self.pos)
                self.pos = n if stop < 0 else stop
            elif text.startswith("/*", self.pos):
                stop = text.find("*/", self.pos + 2)
                if stop < 0:
                    self.error("unterminated comment", self.pos, self.pos + 2)
                    self.pos = n
                else:
                    self.pos = stop + 2
            else:
                return

    def header_token(self) -> None:
        text, start = self.text, self.pos
        ch = text[start]
        if ch == "#":
            stop = text.find("\n", start)
            self.pos = len(text) if stop < 0 else stop
            words = text[start + 1 : self.pos].split()
            directive = words[0] if words else ""
            # A "#!" line starting in column 1 (a script's shebang) is skipped, as bpftrace does.
            if text.startswith("#!", start) and (start == 0 or text[start - 1] == "\n"):
                pass
            elif directive in ("ifdef", "ifndef", "else", "endif"):
                self.conditional(directive, words[1:], start)
            else:
                self.add("PREPROC", start, self.pos, text[start : self.pos])
        elif ch == "/":
            self.pos += 1
            self.in_pred = True
            self.add("PRED_START", start, self.pos)
        elif ch in ",{}":
            self.pos += 1
            if ch == "{":
                self.depth += 1
            self.add(ch, start, self.pos)
        elif ch in _IDENT_START or ch in "*?[":
            self.attach_point()
        else:
            self.expr_token()

    def conditional(self, directive: str, names: list[str], start: int) -> None:
        """``#ifdef NAME`` / ``#ifndef NAME`` / ``#else`` / ``#endif`` at top level, with only
        ``BPFTRACE_HAVE_BTF`` defined (kprobes always takes types from BTF; bpftrace 0.17
        defines it when the kernel has BTF): the lines of a false branch are skipped."""
        if directive in ("ifdef", "ifndef"):
            if len(names) != 1:
                self.error(f"#{directive} needs one macro name", start, self.pos)
                return
            if (names[0] in _DEFINED) == (directive == "ifdef"):
                self.conds.append(start)
            elif self.skip_branch(start, to_endif=False) == "else":
                self.conds.append(start)
        elif not self.conds:
            self.error(f"#{directive} without #ifdef", start, self.pos)
        elif directive == "endif":
            self.conds.pop()
        else:  # "#else" after a true branch
            self.skip_branch(start, to_endif=True)
            self.conds.pop()

    def skip_branch(self, start: int, to_endif: bool) -> str:
        """Move past the lines of a false branch; returns the directive that ended it."""
        text, n = self.text, len(self.text)
        depth = 0
        while self.pos < n:
            line_start = self.pos + 1
            stop = text.find("\n", line_start)
            self.pos = n if stop < 0 else stop
            line = text[line_start : self.pos].strip()
            if not line.startswith("#"):
                continue
            words = line[1:].split()
            word = words[0] if words else ""
            if word in ("if", "ifdef", "ifndef"):
                depth += 1
            elif word == "endif":
                if depth == 0:
                    return "endif"
                depth -= 1
            elif word == "else" and depth == 0 and not to_endif:
                return "else"
        self.error("unterminated conditional directive", start, start + 1)
        return ""

    def attach_point(self) -> None:
        text, n, start = self.text, len(self.text), self.pos
        while self.pos < n and text[self.pos] not in _ATTACH_STOP:
            if text[self.pos] == '"':
                close = text.find('"', self.pos + 1)
                nl = text.find("\n", self.pos + 1)
                if close < 0 or (0 <= nl < close):
                    stop = n if nl < 0 else nl
                    self.error("unterminated string", self.pos, stop)
                    self.pos = stop
                    break
                self.pos = close + 1
            else:
                self.pos += 1
        self.add("ATTACH", start, self.pos, text[start : self.pos])

    def expr_token(self) -> None:
        text, start = self.text, self.pos
        ch = text[start]
        if ch in _IDENT_START:
            self.pos = self.scan_ident(start)
            self.add("IDENT", start, self.pos, text[start : self.pos])
        elif ch in _DIGITS:
            self.number()
        elif ch == '"':
            self.string()
        elif ch == "@":
            end = self.scan_ident(start + 1) if self.peek(1) in _IDENT_START else start + 1
            self.pos = end
            self.add("MAP", start, end, text[start + 1 : end])
        elif ch == "$":
            self.dollar()
        elif ch == "/" and self.in_pred and self.closes_predicate():
            self.pos += 1
            self.in_pred = False
            self.add("PRED_END", start, self.pos)
        else:
            for op in _OPERATORS:
                if text.startswith(op, start):
                    self.pos = start + len(op)
                    if op == "{":
                        self.depth += 1
                        self.in_pred = False
                    elif op == "}":
                        self.depth = max(0, self.depth - 1)
                    self.add(op, start, self.pos)
                    return
            self.pos += 1
            self.error(f"invalid character '{ch}'", start, self.pos)

    def closes_predicate(self) -> bool:
        i = self.pos + 1
        while i < len(self.text) and self.text[i] in _BLANKS:
            i += 1
        return i >= len(self.text) or self.text[i] == "{"

    def scan_ident(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in _IDENT_CHARS:
            i += 1
        return i

    def dollar(self) -> None:
        start = self.pos
        nxt = self.peek(1)
        if nxt in _IDENT_START:
            self.pos = self.scan_ident(start + 1)
            self.add("VAR", start, self.pos, self.text[start + 1 : self.pos])
        elif nxt in _DIGITS or nxt == "#":
            i = start + 2
            while nxt != "#" and i < len(self.text) and self.text[i] in _DIGITS:
                i += 1
            self.pos = i
            self.add("PARAM", start, i, self.text[start + 1 : i])
        else:
            self.pos += 1
            self.error("invalid character '$'", start, self.pos)

    def number(self) -> None:
        text, start = self.text, self.pos
        i = start
        if text.startswith(("0x", "0X"), i):
            i += 2
            while i < len(text) and (text[i] in _HEX or text[i] == "_"):
                i += 1
            digits, base = text[start + 2 : i], 16
        else:
            while i < len(text) and (text[i] in _DIGITS or text[i] == "_"):
                i += 1
            digits = text[start:i]
            base = 8 if len(digits) > 1 and digits[0] == "0" else 10
            k = i + 1
            while k < len(text) and text[k] in _DIGITS:
                k += 1
            if i < len(text) and text[i] == "e" and k > i + 1 and "_" not in digits:
                self.scientific(start, i, k)
                return
        # C integer suffixes (bpftrace >= 0.14): u, l, ul, lu, ll, ull, llu.
        j = i
        while j < len(text) and j - i < 3 and text[j] in "uUlL":
            j += 1
        suffix = text[i:j].lower()
        if suffix not in ("", "u", "l", "ul", "lu", "ll", "ull", "llu"):
            j = i
        while j < len(text) and text[j] in _IDENT_CHARS:
            j += 1
        self.pos = j
        literal = text[start:j]
        if j > i + len(suffix) or not self.valid_digits(digits, base):
            self.error(f"invalid integer literal '{literal}'", start, j)
            self.add("INT", start, j, 0)
            return
        if len(digits) > 40:
            value = MAX_UINT64 + 1
        else:
            value = int(digits.replace("_", ""), base)
        if value > MAX_UINT64:
            self.error(f"integer literal '{literal}' is out of range", start, j)
            value = 0
        self.add("INT", start, j, value)

    def scientific(self, start: int, e: int, end: int) -> None:
        """``MeN`` (bpftrace >= 0.16): M*10^N, M one digit, an integer below 2^63."""
        text = self.text
        j = end
        while j < len(text) and j - end < 3 and text[j] in "uUlL":
            j += 1
        self.pos = j
        coeff, exp = int(text[start:e]), int(text[e + 1 : end])
        if coeff > 9:
            self.error(f"Coefficient part of scientific literal must be in range (0,9), got: {coeff}",
                       start, end)
            coeff = 0
        elif exp > 18:
            self.error(f"Exponent will overflow integer range: {exp}", start, end)
            exp = 0
        self.add("INT", start, j, coeff * 10**exp)

    @staticmethod
    def valid_digits(digits: str, base: int) -> bool:
        if not digits or digits.startswith("_") or digits.endswith("_"):
            return False
        allowed = {16: _HEX, 8: frozenset("01234567"), 10: _DIGITS}[base]
        return all(c in allowed or c == "_" for c in digits)

    def string(self) -> None:
        text, n, start = self.text, len(self.text), self.pos
        out = bytearray()
        i = start + 1
        while True:
            if i >= n or text[i] == "\n":
                self.error("unterminated string", start, i)
                self.pos = i
                self.add("STRING", start, i, out.decode("utf-8", "surrogateescape"))
                return
            ch = text[i]
            if ch == '"':
                i += 1
                break
            if ch != "\\":
                out += ch.encode("utf-8", "surrogatepass")
                i += 1
                continue
            esc = text[i + 1] if i + 1 < n else ""
            if esc in _SIMPLE_ESCAPES:
                out += _SIMPLE_ESCAPES[esc].encode()
                i += 2
            elif esc in "01234567" and esc:
                j = i + 1
                while j < n and j < i + 4 and text[j] in "01234567":
                    j += 1
                out.append(int(text[i + 1 : j], 8) & 0xFF)
                i = j
            elif esc == "x" and i + 2 < n and text[i + 2] in _HEX:
                j = i + 2
                while j < n and j < i + 4 and text[j] in _HEX:
                    j += 1
                out.append(int(text[i + 2 : j], 16))
                i = j
            else:
                width = 2 if esc and esc != "\n" else 1
                self.error(f"invalid escape character '\\{esc}'", i, i + width)
                i += width
        self.pos = i
        self.add("STRING", start, i, out.decode("utf-8", "surrogateescape"))


def tokenize(source: Source) -> list[Token]:
    """All tokens of ``source`` ending with an ``EOF`` token.

    Raises :class:`LangError` listing every lexical error (invalid characters,
    unterminated strings or comments, bad escapes, malformed integers).
    """
    lexer = _Lexer(source)
    tokens = lexer.run()
    if lexer.errors:
        raise LangError(lexer.errors, source)
    return tokens


def describe(token: Token | None) -> str:
    """How a syntax error names ``token`` (bison-style: "identifier", "integer", "{"...)."""
    if token is None or token.kind == "EOF":
        return "end of file"
    names = {
        "IDENT": "identifier",
        "INT": "integer",
        "STRING": "string",
        "MAP": "map",
        "VAR": "variable",
        "PARAM": "positional parameter",
        "ATTACH": "attach point",
        "PRED_START": "/",
        "PRED_END": "/",
        "PREPROC": "preprocessor directive",
    }
    return names.get(token.kind, token.kind)
