"""Expression text to tree: a tokenizer and a recursive-descent parser, one method per level.

Rules:
- Grammar, loosest first:  or  <  and  <  not  <  comparison (non-associative: `a < b < c` is a
  syntax error)  <  + -  <  * /  <  unary minus  <  atom. Atoms: numbers (`4`, `4.0`, `.5`, `1e-3`),
  `true`, `false`, identifiers `[A-Za-z_][A-Za-z0-9_]*`, parenthesised expressions.
- Text and nesting are bounded (MAX_LENGTH, MAX_DEPTH) so that neither parsing nor evaluation
  can exhaust the stack.
- Every error is an ExprSyntaxError with the 1-based column and what was expected.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from contracts.errors import ExprSyntaxError
from contracts.expr_tree import Binary, Const, Name, Node, Unary, depth

MAX_LENGTH = 1000
"""Longest expression text accepted; a condition longer than a line is a design smell."""
MAX_DEPTH = 48
"""Deepest tree accepted: keeps parser recursion and evaluation far below Python's stack limit."""

KEYWORDS = frozenset({"and", "or", "not", "true", "false"})

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|[<>+\-*/()])
""", re.VERBOSE)
_COMPARE = frozenset({"<", "<=", ">", ">=", "==", "!="})
_OR, _AND = frozenset({"or"}), frozenset({"and"})
_ADD = frozenset({"+", "-"})
_MUL = frozenset({"*", "/"})
_END = "end of expression"


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str   # "num", "name", "op", "kw" or "end"
    text: str
    col: int    # 1-based


def _tokenize(text: str) -> list[_Tok]:
    toks, pos = [], 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            hint = " (did you mean '==')" if ch == "=" else ""
            raise ExprSyntaxError(text, pos + 1, f"unexpected character {ch!r}{hint}")
        kind = m.lastgroup or ""
        if kind != "ws":
            word = m.group()
            toks.append(_Tok("kw" if word in KEYWORDS else kind, word, pos + 1))
        pos = m.end()
    toks.append(_Tok("end", _END, len(text) + 1))
    return toks


def parse_tree(text: str) -> Node:
    """The tree of `text`. Raises ExprSyntaxError."""
    if len(text) > MAX_LENGTH:
        raise ExprSyntaxError(text, MAX_LENGTH + 1, f"expression is longer than {MAX_LENGTH}")
    return _Parser(text).whole()


class _Parser:
    """Recursive descent over the token list; one method per precedence level."""

    def __init__(self, text: str) -> None:
        self.text, self.toks, self.i, self.nesting = text, _tokenize(text), 0, 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def at(self, kind: str, text: str) -> bool:
        return self.tok.kind == kind and self.tok.text == text

    def fail(self, tok: _Tok, expected: str) -> ExprSyntaxError:
        got = tok.text if tok.kind == "end" else repr(tok.text)
        return ExprSyntaxError(self.text, tok.col, f"expected {expected}, got {got}")

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def binary(self, op: _Tok, left: Node, right: Node) -> Node:
        node = Binary(op.text, left, right)
        if max(depth(left), depth(right)) + 1 > MAX_DEPTH:
            raise ExprSyntaxError(self.text, op.col, f"expression nests deeper than {MAX_DEPTH}")
        return node

    def nested(self, tok: _Tok, inner: Callable[[], Node]) -> Node:
        """`inner()` one nesting level deeper (after a prefix operator or an opening paren)."""
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise ExprSyntaxError(self.text, tok.col, f"expression nests deeper than {MAX_DEPTH}")
        node = inner()
        self.nesting -= 1
        return node

    def prefix(self, kind: str, op: str, operand: Callable[[], Node],
               otherwise: Callable[[], Node]) -> Node:
        """`op operand` (`not x`, `-x`, nesting), else the next level down."""
        if not self.at(kind, op):
            return otherwise()
        return self.nested(self.take(), lambda: Unary(op, operand()))

    def whole(self) -> Node:
        node = self.or_()
        if self.tok.kind != "end":
            raise self.fail(self.tok, "an operator or end of expression")
        return node

    def or_(self) -> Node:
        return self.infix("kw", _OR, self.and_)

    def and_(self) -> Node:
        return self.infix("kw", _AND, self.not_)

    def infix(self, kind: str, ops: frozenset[str], operand: Callable[[], Node]) -> Node:
        """`operand (op operand)*` for the left-associative operators `ops`."""
        node = operand()
        while self.tok.kind == kind and self.tok.text in ops:
            op = self.take()
            node = self.binary(op, node, operand())
        return node

    def not_(self) -> Node:
        return self.prefix("kw", "not", self.not_, self.compare)

    def compare(self) -> Node:
        node = self.infix("op", _ADD, self.term)
        if self.tok.kind == "op" and self.tok.text in _COMPARE:
            op = self.take()
            node = self.binary(op, node, self.infix("op", _ADD, self.term))
            if self.tok.kind == "op" and self.tok.text in _COMPARE:
                raise ExprSyntaxError(self.text, self.tok.col,
                                      "comparisons do not chain; join them with 'and'")
        return node

    def term(self) -> Node:
        return self.infix("op", _MUL, self.unary)

    def unary(self) -> Node:
        return self.prefix("op", "-", self.unary, self.atom)

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            return Const(float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text))
        if tok.kind == "name":
            return Name(tok.text)
        if tok.kind == "kw" and tok.text in ("true", "false"):
            return Const(tok.text == "true")
        if tok.kind == "op" and tok.text == "(":
            node = self.nested(tok, self.or_)
            if self.tok.text != ")":
                raise self.fail(self.tok, "')'")
            self.take()
            return node
        raise self.fail(tok, "an operand")
