"""Expression tree to nested closures, and constant folding — the evaluator.

Rules:
- Arithmetic and ordering need numbers; `and`/`or`/`not` need bools; `==`/`!=` need both sides of
  one kind. Anything else is an ExprEvalError at evaluation (never a silent Python coercion such
  as `True + 1 == 2`). `/` is true division.
- `and`/`or` short-circuit, left to right, so evaluation is deterministic (invariant 1).
- A tree is compiled once; evaluation (the engine's hot path) only calls closures. Kind checks use
  `__class__ in _NUMBERS` because bool subclasses int and must not pass as a number; the check is
  also the fastest one CPython offers.
- `fold` gives the value of a tree that does not depend on any name that matters
  (`false and x` is false), by compiling and evaluating its constant parts.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from contracts.errors import ExprEvalError
from contracts.expr_tree import EQUALITY, LOGIC, Binary, Const, Name, Node, Unary
from contracts.types import Value

Env = Mapping[str, Value]
Fn = Callable[[Env], Value]

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


def compile_tree(node: Node) -> Fn:
    """The closure that evaluates `node` under an environment. Raises nothing itself; the
    closure raises ExprEvalError."""
    if isinstance(node, Const):
        value = node.value
        return lambda env: value
    if isinstance(node, Name):
        return _compile_name(node.name)
    if isinstance(node, Unary):
        arg = compile_tree(node.arg)
        return _compile_not(arg) if node.op == "not" else _compile_neg(arg)
    left, right = compile_tree(node.left), compile_tree(node.right)
    if node.op in LOGIC:
        return _compile_logic(node.op == "or", left, right)
    if node.op in _ORDER:
        return _compile_order(node, left, right)
    if node.op in EQUALITY:
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


def fold(node: Node) -> Value | None:
    """The node's value if it does not depend on any name (`false and x` is false), else None."""
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Name):
        return None
    if isinstance(node, Unary):
        arg = fold(node.arg)
        return None if arg is None else _try_const(Unary(node.op, Const(arg)))
    left, right = fold(node.left), fold(node.right)
    if node.op in LOGIC:
        decisive = node.op == "or"
        if left is decisive or right is decisive:
            return decisive
    if left is None or right is None:
        return None
    return _try_const(Binary(node.op, Const(left), Const(right)))


def _try_const(node: Node) -> Value | None:
    try:
        return compile_tree(node)({})
    except ExprEvalError:
        return None
