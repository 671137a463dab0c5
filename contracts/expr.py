"""The expression language of `until` and `when`: parsed by us, never by eval.

The language in three parts, one module each:
- contracts/expr_parse.py: text to tree — the grammar, its bounds, syntax errors with columns;
- contracts/expr_tree.py: the tree, its names, and its kind inferred without evaluating;
- contracts/expr_compile.py: tree to closures — the kind rules of evaluation, and folding.
This module joins them: `parse` builds the tree, then compiles it into nested closures once;
`Expr.evaluate` is the engine's hot path and only calls closures. `step_time` is an ordinary name
here; the engine supplies it in the environment.
"""
from __future__ import annotations

from collections.abc import Mapping

from contracts.errors import ExprEvalError
from contracts.expr_compile import Env, Fn, compile_tree, fold
from contracts.expr_parse import parse_tree
from contracts.expr_tree import Kind, Node, infer
from contracts.expr_tree import names_in_order as tree_names
from contracts.limits import quote
from contracts.types import Value

STEP_TIME = "step_time"
"""Reserved name: seconds since the current step began, supplied by the engine."""


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
        for attr, value in (("text", text), ("tree", tree), ("names", frozenset(tree_names(tree))),
                            ("constant", fold(tree)), ("_fn", compile_tree(tree))):
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


def parse(text: str) -> Expr:
    """Parse and compile `text`. Raises ExprSyntaxError with the 1-based column and what was
    expected, e.g. "column 9: expected an operand, got ')'"."""
    return Expr(text, parse_tree(text))


def infer_kind(expr: Expr, kinds: Mapping[str, Kind]) -> Kind:
    """The kind `expr` yields when its names have `kinds`, checked without evaluating. Raises
    ExprEvalError (with the message evaluation would give) for an unknown name or operands of the
    wrong kind, which would make every evaluation fail."""
    return infer(expr.tree, kinds)


def names_in_order(expr: Expr) -> tuple[str, ...]:
    """The distinct names `expr` reads, in order of first appearance (for stable messages)."""
    return tree_names(expr.tree)
