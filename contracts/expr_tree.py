"""The expression tree, and what is known of it without evaluating: its names and its kind.

Rules:
- Nodes are frozen (a parsed expression is folded and compiled without copying) and compare by
  value, so two expressions are equal when their trees are.
- Two kinds of value: bool and number. `infer` applies the same kind rules as evaluation
  (contracts/expr_compile.py) to the kinds of the names, so a condition that would fail at every
  evaluation is refused when the contract is validated, with the message evaluation would give.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from contracts.errors import ExprEvalError
from contracts.types import Value

LOGIC = frozenset({"and", "or"})
EQUALITY = frozenset({"==", "!="})
ORDERING = frozenset({"<", "<=", ">", ">="})


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


def depth(node: Node) -> int:
    """Levels of the tree below and including `node`."""
    if isinstance(node, Binary):
        return 1 + max(depth(node.left), depth(node.right))
    return 1 + depth(node.arg) if isinstance(node, Unary) else 1


def names_in_order(node: Node) -> tuple[str, ...]:
    """The distinct names the tree reads, in order of first appearance (for stable messages)."""
    seen: dict[str, None] = {}
    _walk_names(node, seen)
    return tuple(seen)


def _walk_names(node: Node, seen: dict[str, None]) -> None:
    if isinstance(node, Name):
        seen.setdefault(node.name, None)
    elif isinstance(node, Unary):
        _walk_names(node.arg, seen)
    elif isinstance(node, Binary):
        _walk_names(node.left, seen)
        _walk_names(node.right, seen)


class Kind(enum.StrEnum):
    """The two kinds of value an expression handles."""

    BOOL = "bool"
    NUMBER = "number"


def infer(node: Node, kinds: Mapping[str, Kind]) -> Kind:
    """The kind the tree yields when its names have `kinds`. Raises ExprEvalError for an unknown
    name or operands of the wrong kind."""
    if isinstance(node, Const):
        return Kind.BOOL if isinstance(node.value, bool) else Kind.NUMBER
    if isinstance(node, Name):
        if node.name not in kinds:
            raise ExprEvalError(f"unknown name {node.name!r}")
        return kinds[node.name]
    if isinstance(node, Unary):
        return _expect_kinds(node.op, (infer(node.arg, kinds),),
                             Kind.BOOL if node.op == "not" else Kind.NUMBER)
    args = (infer(node.left, kinds), infer(node.right, kinds))
    if node.op in LOGIC:
        return _expect_kinds(node.op, args, Kind.BOOL)
    if node.op in EQUALITY:
        if args[0] is not args[1]:
            raise ExprEvalError(f"'{node.op}' cannot take {args[0]} and {args[1]}")
        return Kind.BOOL
    _expect_kinds(node.op, args, Kind.NUMBER)
    return Kind.BOOL if node.op in ORDERING else Kind.NUMBER


def _expect_kinds(op: str, args: tuple[Kind, ...], wanted: Kind) -> Kind:
    if any(a is not wanted for a in args):
        raise ExprEvalError(f"'{op}' cannot take {' and '.join(args)}")
    return wanted
