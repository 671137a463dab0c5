"""The expression language of `until` and `when`: parsed by us, never by eval.

Rules:
- Grammar, loosest first:  or  <  and  <  not  <  comparison (non-associative: `a < b < c` is a
  syntax error)  <  + -  <  * /  <  unary minus  <  atom. Atoms: numbers (`4`, `4.0`, `.5`, `1e-3`),
  `true`, `false`, identifiers `[A-Za-z_][A-Za-z0-9_]*`, parenthesised expressions.
- Two kinds of value: bool and number. Arithmetic and ordering need numbers; `and`/`or`/`not`
  need bools; `==`/`!=` need both sides of one kind. Anything else is an ExprEvalError at
  evaluation (never a silent Python coercion such as `True + 1 == 2`). `/` is true division.
- `and`/`or` short-circuit, left to right, so evaluation is deterministic (invariant 1).
- `step_time` is an ordinary name here; the engine supplies it in the environment.
- Text and nesting are bounded so that neither parsing nor evaluation can exhaust the stack.
- `parse` builds a small tree, then compiles it into nested closures once; `Expr.evaluate` is the
  engine's hot path and only calls closures.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contracts.errors import ExprEvalError, ExprSyntaxError
from contracts.limits import quote
from contracts.types import Value

MAX_LENGTH = 1000
"""Longest expression text accepted; a condition longer than a line is a design smell."""
MAX_DEPTH = 48
"""Deepest tree accepted: keeps parser recursion and evaluation far below Python's stack limit."""

KEYWORDS = frozenset({"and", "or", "not", "true", "false"})
STEP_TIME = "step_time"
"""Reserved name: seconds since the current step began, supplied by the engine."""

Env = Mapping[str, Value]
Fn = Callable[[Env], Value]

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|[<>+\-*/()])
""", re.VERBOSE)
_COMPARE = frozenset({"<", "<=", ">", ">=", "==", "!="})
_ADD = frozenset({"+", "-"})
_MUL = frozenset({"*", "/"})
_END = "end of expression"


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str   # "num", "name", "op", "kw" or "end"
    text: str
    col: int    # 1-based


# Tree nodes: frozen, so a parsed expression can be folded and compiled without copying.
@dataclass(frozen=True, slots=True)
class Const:
    value: Value


@dataclass(frozen=True, slots=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "not" or "-"
    arg: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # "and", "or", a comparison or an arithmetic operator
    left: Node
    right: Node


Node = Const | Name | Unary | Binary


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


def _depth(node: Node) -> int:
    if isinstance(node, Binary):
        return 1 + max(_depth(node.left), _depth(node.right))
    return 1 + _depth(node.arg) if isinstance(node, Unary) else 1


class _Parser:
    """Recursive descent over the token list; one method per precedence level."""

    def __init__(self, text: str) -> None:
        self.text, self.toks, self.i, self.nesting = text, _tokenize(text), 0, 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def fail(self, tok: _Tok, expected: str) -> ExprSyntaxError:
        got = tok.text if tok.kind == "end" else repr(tok.text)
        return ExprSyntaxError(self.text, tok.col, f"expected {expected}, got {got}")

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def binary(self, op: _Tok, left: Node, right: Node) -> Node:
        node = Binary(op.text, left, right)
        if max(_depth(left), _depth(right)) + 1 > MAX_DEPTH:
            raise ExprSyntaxError(self.text, op.col, f"expression nests deeper than {MAX_DEPTH}")
        return node

    def enter(self, tok: _Tok) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise ExprSyntaxError(self.text, tok.col, f"expression nests deeper than {MAX_DEPTH}")

    def whole(self) -> Node:
        node = self.or_()
        if self.tok.kind != "end":
            raise self.fail(self.tok, "an operator or end of expression")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.tok.text == "or" and self.tok.kind == "kw":
            op = self.take()
            node = self.binary(op, node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.tok.text == "and" and self.tok.kind == "kw":
            op = self.take()
            node = self.binary(op, node, self.not_())
        return node

    def not_(self) -> Node:
        if self.tok.text == "not" and self.tok.kind == "kw":
            self.enter(self.take())
            node = Unary("not", self.not_())
            self.nesting -= 1
            return node
        return self.compare()

    def compare(self) -> Node:
        node = self.arith(_ADD, self.term)
        if self.tok.kind == "op" and self.tok.text in _COMPARE:
            op = self.take()
            node = self.binary(op, node, self.arith(_ADD, self.term))
            if self.tok.kind == "op" and self.tok.text in _COMPARE:
                raise ExprSyntaxError(self.text, self.tok.col,
                                      "comparisons do not chain; join them with 'and'")
        return node

    def term(self) -> Node:
        return self.arith(_MUL, self.unary)

    def arith(self, ops: frozenset[str], operand: Callable[[], Node]) -> Node:
        node = operand()
        while self.tok.kind == "op" and self.tok.text in ops:
            op = self.take()
            node = self.binary(op, node, operand())
        return node

    def unary(self) -> Node:
        if self.tok.kind == "op" and self.tok.text == "-":
            self.enter(self.take())
            node = Unary("-", self.unary())
            self.nesting -= 1
            return node
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            return Const(float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text))
        if tok.kind == "name":
            return Name(tok.text)
        if tok.kind == "kw" and tok.text in ("true", "false"):
            return Const(tok.text == "true")
        if tok.kind == "op" and tok.text == "(":
            self.enter(tok)
            node = self.or_()
            self.nesting -= 1
            if self.tok.text != ")":
                raise self.fail(self.tok, "')'")
            self.take()
            return node
        raise self.fail(tok, "an operand")


# --------------------------------------------------------------------------------------------
# Compilation to closures. Kind checks use `__class__ in _NUMBERS` because bool subclasses int and
# must not pass as a number; the check is also the fastest one CPython offers.

_NUMBERS = frozenset({int, float})
_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}
_ORDER: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _kind(v: object) -> str:
    if v is True or v is False:
        return "bool"
    return "number" if v.__class__ in _NUMBERS else type(v).__name__


def _mismatch(op: str, *vals: object) -> ExprEvalError:
    kinds = " and ".join(_kind(v) for v in vals)
    return ExprEvalError(f"'{op}' cannot take {kinds}")


def _compile(node: Node) -> Fn:
    if isinstance(node, Const):
        value = node.value
        return lambda env: value
    if isinstance(node, Name):
        return _compile_name(node.name)
    if isinstance(node, Unary):
        return _compile_not(_compile(node.arg)) if node.op == "not" else _compile_neg(_compile(node.arg))
    left, right = _compile(node.left), _compile(node.right)
    if node.op in ("and", "or"):
        return _compile_logic(node.op == "or", left, right)
    if node.op in _ORDER:
        return _compile_order(node, left, right)
    if node.op in ("==", "!="):
        return _compile_equal(node.op == "==", left, right)
    return _compile_arith(node.op, left, right)


def _compile_name(name: str) -> Fn:
    def load(env: Env) -> Value:
        try:
            return env[name]
        except KeyError:
            raise ExprEvalError(f"unknown name {name!r}") from None
    return load


def _compile_not(arg: Fn) -> Fn:
    def not_(env: Env) -> Value:
        a = arg(env)
        if a is True or a is False:
            return not a
        raise _mismatch("not", a)
    return not_


def _compile_neg(arg: Fn) -> Fn:
    def neg(env: Env) -> Value:
        a = arg(env)
        if a.__class__ in _NUMBERS:
            return -a
        raise _mismatch("-", a)
    return neg


def _compile_logic(is_or: bool, left: Fn, right: Fn) -> Fn:
    op, decisive = ("or", True) if is_or else ("and", False)

    def logic(env: Env) -> Value:
        a = left(env)
        if a is decisive:
            return a
        if a is not (not decisive):
            raise _mismatch(op, a)
        b = right(env)
        if b is True or b is False:
            return b
        raise _mismatch(op, a, b)
    return logic


def _compile_order(node: Binary, left: Fn, right: Fn) -> Fn:
    cmp, op = _ORDER[node.op], node.op
    if isinstance(node.left, Name) and isinstance(node.right, Const) \
            and node.right.value.__class__ in _NUMBERS:
        return _compile_name_order(node.left.name, node.right.value, cmp, op)

    def order(env: Env) -> Value:
        a, b = left(env), right(env)
        if a.__class__ in _NUMBERS and b.__class__ in _NUMBERS:
            return cmp(a, b)
        raise _mismatch(op, a, b)
    return order


def _compile_name_order(name: str, c: Value, cmp: Callable[[float, float], bool], op: str) -> Fn:
    """The hot case `level >= 4.0`: one lookup, one kind check, one comparison."""
    def order(env: Env) -> Value:
        try:
            a = env[name]
        except KeyError:
            raise ExprEvalError(f"unknown name {name!r}") from None
        if a.__class__ in _NUMBERS:
            return cmp(a, c)
        raise _mismatch(op, a, c)
    return order


def _compile_equal(is_eq: bool, left: Fn, right: Fn) -> Fn:
    def equal(env: Env) -> Value:
        a, b = left(env), right(env)
        if (a.__class__ is bool) is not (b.__class__ is bool):
            raise _mismatch("==" if is_eq else "!=", a, b)
        return (a == b) is is_eq
    return equal


def _compile_arith(op: str, left: Fn, right: Fn) -> Fn:
    fn = _ARITH[op]

    def arith(env: Env) -> Value:
        a, b = left(env), right(env)
        if a.__class__ not in _NUMBERS or b.__class__ not in _NUMBERS:
            raise _mismatch(op, a, b)
        try:
            return fn(a, b)
        except ZeroDivisionError:
            raise ExprEvalError(f"division by zero ({a!r} / {b!r})") from None
        except OverflowError:
            raise ExprEvalError(f"'{op}' overflows with {a!r} and {b!r}") from None
    return arith


def _fold(node: Node) -> Value | None:
    """The node's value if it does not depend on any name (`false and x` is false), else None."""
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Name):
        return None
    if isinstance(node, Unary):
        arg = _fold(node.arg)
        return None if arg is None else _try_const(Unary(node.op, Const(arg)))
    left, right = _fold(node.left), _fold(node.right)
    if node.op in ("and", "or"):
        decisive = node.op == "or"
        if left is decisive or right is decisive:
            return decisive
    if left is None or right is None:
        return None
    return _try_const(Binary(node.op, Const(left), Const(right)))


def _try_const(node: Node) -> Value | None:
    try:
        return _compile(node)({})
    except ExprEvalError:
        return None


def _names(node: Node) -> frozenset[str]:
    if isinstance(node, Name):
        return frozenset({node.name})
    if isinstance(node, Unary):
        return _names(node.arg)
    if isinstance(node, Binary):
        return _names(node.left) | _names(node.right)
    return frozenset()


class Expr:
    """A parsed, compiled expression. Immutable; build with `parse`.

    `names` is every identifier it reads; `constant` is its value when it reads none that matter
    after folding (`false and level > 3` is constant false), else None."""

    __slots__ = ("text", "tree", "names", "constant", "_fn")
    text: str
    tree: Node
    names: frozenset[str]
    constant: Value | None
    _fn: Fn

    def __init__(self, text: str, tree: Node) -> None:
        for attr, value in (("text", text), ("tree", tree), ("names", _names(tree)),
                            ("constant", _fold(tree)), ("_fn", _compile(tree))):
            object.__setattr__(self, attr, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Expr is immutable; cannot set {name}")

    def __repr__(self) -> str:
        return f"Expr({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expr) and other.tree == self.tree

    def __hash__(self) -> int:
        return hash(self.tree)

    def evaluate(self, env: Env) -> Value:
        """The value under `env`. Raises ExprEvalError for an unknown name, a division by zero,
        an overflow, or operands of the wrong kind (arithmetic on a bool, `1 < true`, `not 3`)."""
        try:
            return self._fn(env)
        except ExprEvalError as exc:
            raise ExprEvalError(f"{exc} in {quote(self.text)}") from None


class Kind(enum.StrEnum):
    """The two kinds of value an expression handles."""

    BOOL = "bool"
    NUMBER = "number"


def infer_kind(expr: Expr, kinds: Mapping[str, Kind]) -> Kind:
    """The kind `expr` yields when its names have `kinds`, checked without evaluating. Raises
    ExprEvalError (with the message evaluation would give) for an unknown name or operands of the
    wrong kind, which would make every evaluation fail."""
    return _infer(expr.tree, kinds)


def _infer(node: Node, kinds: Mapping[str, Kind]) -> Kind:
    if isinstance(node, Const):
        return Kind.BOOL if isinstance(node.value, bool) else Kind.NUMBER
    if isinstance(node, Name):
        if node.name not in kinds:
            raise ExprEvalError(f"unknown name {node.name!r}")
        return kinds[node.name]
    if isinstance(node, Unary):
        return _expect_kinds(node.op, (_infer(node.arg, kinds),),
                             Kind.BOOL if node.op == "not" else Kind.NUMBER)
    args = (_infer(node.left, kinds), _infer(node.right, kinds))
    if node.op in ("and", "or"):
        return _expect_kinds(node.op, args, Kind.BOOL)
    if node.op in ("==", "!="):
        if args[0] is not args[1]:
            raise ExprEvalError(f"'{node.op}' cannot take {args[0]} and {args[1]}")
        return Kind.BOOL
    _expect_kinds(node.op, args, Kind.NUMBER)
    return Kind.BOOL if node.op in _ORDER else Kind.NUMBER


def _expect_kinds(op: str, args: tuple[Kind, ...], wanted: Kind) -> Kind:
    if any(a is not wanted for a in args):
        raise ExprEvalError(f"'{op}' cannot take {' and '.join(args)}")
    return wanted


def names_in_order(expr: Expr) -> tuple[str, ...]:
    """The distinct names `expr` reads, in order of first appearance (for stable messages)."""
    seen: dict[str, None] = {}
    _walk_names(expr.tree, seen)
    return tuple(seen)


def _walk_names(node: Node, seen: dict[str, None]) -> None:
    if isinstance(node, Name):
        seen.setdefault(node.name, None)
    elif isinstance(node, Unary):
        _walk_names(node.arg, seen)
    elif isinstance(node, Binary):
        _walk_names(node.left, seen)
        _walk_names(node.right, seen)


def parse(text: str) -> Expr:
    """Parse and compile `text`. Raises ExprSyntaxError with the 1-based column and what was
    expected, e.g. "column 9: expected an operand, got ')'"."""
    if len(text) > MAX_LENGTH:
        raise ExprSyntaxError(text, MAX_LENGTH + 1, f"expression is longer than {MAX_LENGTH}")
    return Expr(text, _Parser(text).whole())
