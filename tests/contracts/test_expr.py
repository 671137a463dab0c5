"""The expression language: grammar, kinds, errors with columns, folding, and fuzzing."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import EngineError, ExprEvalError, ExprSyntaxError
from contracts.expr import Expr, parse
from contracts.expr_parse import MAX_DEPTH
from contracts.expr_tree import Binary, Const, Name, Node, Unary

ENV = {"level": 3.5, "high_level": False, "n": 2, "zero": 0, "on": True, "step_time": 12.0}


@pytest.mark.parametrize(("text", "value"), [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("10 - 4 - 3", 3),
    ("12 / 4 / 3", 1.0),
    ("-2 * -3", 6),
    ("- n - 1", -3),
    ("7 / 2", 3.5),
    (".5 + 1e1 + 2.5E-1", 10.75),
    ("level >= 4.0 or high_level", False),
    ("level >= 3.5", True),
    ("not high_level and on", True),
    ("true or false and false", True),   # and binds tighter than or
    ("not true == false", True),         # not is looser than comparison
    ("(true or false) and false", False),
    ("n == 2.0", True),
    ("on != high_level", True),
    ("step_time >= 10 and level < 4", True),
])
def test_expressions_follow_the_documented_precedence(text: str, value: object) -> None:
    result = parse(text).evaluate(ENV)
    assert result == value and type(result) is type(value)


def test_names_lists_every_identifier_read() -> None:
    assert parse("level >= 4.0 or (high_level and step_time > n)").names == frozenset(
        {"level", "high_level", "step_time", "n"})
    assert parse("1 < 2 and true").names == frozenset()


@pytest.mark.parametrize(("text", "column", "reason"), [
    ("level >= )", 10, "expected an operand, got ')'"),
    ("(level >= 4", 12, "expected ')', got end of expression"),
    ("level < 2 < 3", 11, "comparisons do not chain; join them with 'and'"),
    ("level = 3", 7, "unexpected character '=' (did you mean '==')"),
    ("level >= 4 $", 12, "unexpected character '$'"),
    ("level high_level", 7, "expected an operator or end of expression, got 'high_level'"),
    ("", 1, "expected an operand, got end of expression"),
    ("not", 4, "expected an operand, got end of expression"),
    ("1 + and", 5, "expected an operand, got 'and'"),
    ("4abc", 2, "expected an operator or end of expression, got 'abc'"),
])
def test_syntax_errors_name_the_column_and_what_was_expected(
        text: str, column: int, reason: str) -> None:
    with pytest.raises(ExprSyntaxError) as info:
        parse(text)
    assert (info.value.column, info.value.reason) == (column, reason)
    assert str(info.value).startswith(f"column {column}: ")


def test_nesting_is_bounded_instead_of_exhausting_the_stack() -> None:
    with pytest.raises(ExprSyntaxError, match="nests deeper"):
        parse("(" * 400 + "1" + ")" * 400)
    with pytest.raises(ExprSyntaxError, match="nests deeper"):
        parse("not " * 100 + "true")
    with pytest.raises(ExprSyntaxError, match="nests deeper"):
        parse(" + ".join(["n"] * 200))
    assert parse("(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1)).evaluate({}) == 1


def test_overlong_text_is_a_syntax_error() -> None:
    with pytest.raises(ExprSyntaxError, match="longer than"):
        parse("1" * 5000)


@pytest.mark.parametrize(("text", "message"), [
    ("missing > 1", "unknown name 'missing'"),
    ("level / zero", "division by zero"),
    ("on + 1", "'+' cannot take bool and number"),
    ("-on", "'-' cannot take bool"),
    ("level < on", "'<' cannot take number and bool"),
    ("on < high_level", "'<' cannot take bool and bool"),
    ("on == 1", "'==' cannot take bool and number"),
    ("not level", "'not' cannot take number"),
    ("level and on", "'and' cannot take number"),
    ("high_level or n", "'or' cannot take bool and number"),
])
def test_evaluation_errors_are_expr_eval_errors_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(ExprEvalError, match=re.escape(message)) as info:
        parse(text).evaluate(ENV)
    assert isinstance(info.value, EngineError)
    assert repr(text) in str(info.value)


def test_and_or_short_circuit_left_to_right() -> None:
    assert parse("on or missing").evaluate(ENV) is True
    assert parse("high_level and missing").evaluate(ENV) is False
    with pytest.raises(ExprEvalError):
        parse("missing or on").evaluate(ENV)


@pytest.mark.parametrize(("text", "constant"), [
    ("false", False),
    ("1 > 2", False),
    ("false and level > 3", False),
    ("level > 3 and false", False),
    ("on or true", True),
    ("not (1 == 1.0)", False),
    ("2 * 3 - 1", 5),
    ("level > 3", None),
    ("true and on", None),
    ("1 / 0 > 1", None),       # does not fold: it fails at run time instead
])
def test_constant_folds_expressions_that_read_no_relevant_name(text: str, constant: object) -> None:
    assert parse(text).constant == constant


def test_expr_is_immutable_and_equal_by_structure() -> None:
    e = parse("level >= 4")
    with pytest.raises(AttributeError):
        e.text = "x"  # type: ignore[misc]
    assert e == parse("(level) >= 4") and hash(e) == hash(parse("level>=4"))


# --------------------------------------------------------------------------------------------
# Fuzzing: trees rendered fully parenthesised must parse back to the same tree, and evaluate
# with nothing but ExprEvalError; garbage must raise ExprSyntaxError and nothing else.

_NAMES = st.sampled_from(["level", "high_level", "n", "zero", "on", "step_time", "absent"])
_CONSTS = st.one_of(
    st.booleans(), st.integers(0, 10**6),
    st.floats(0, 1e12, allow_nan=False, allow_infinity=False))
_BINOPS = st.sampled_from(["and", "or", "<", "<=", ">", ">=", "==", "!=", "+", "-", "*", "/"])


def _trees() -> st.SearchStrategy[Node]:
    leaves = st.one_of(st.builds(Const, _CONSTS), st.builds(Name, _NAMES))
    return st.recursive(leaves, lambda sub: st.one_of(
        st.builds(Unary, st.sampled_from(["not", "-"]), sub),
        st.builds(Binary, _BINOPS, sub, sub)), max_leaves=12)


def _render(node: Node) -> str:
    if isinstance(node, Const):
        return str(node.value).lower() if isinstance(node.value, bool) else repr(node.value)
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Unary):
        return f"{node.op} ({_render(node.arg)})"
    return f"({_render(node.left)}) {node.op} ({_render(node.right)})"


@settings(max_examples=400, deadline=None)
@given(_trees())
def test_well_formed_expressions_round_trip_and_fail_only_with_expr_eval_error(tree: Node) -> None:
    expr = parse(_render(tree))
    assert expr.tree == tree
    try:
        expr.evaluate(ENV)
    except ExprEvalError:
        pass


_GARBAGE = st.text(alphabet=st.sampled_from(list("()<>=!+-*/.eE0123456789 abnotrufls_$&|\t")),
                   max_size=60) | st.text(max_size=40)


@settings(max_examples=600, deadline=None)
@given(_GARBAGE)
def test_garbage_raises_only_expr_syntax_error(text: str) -> None:
    try:
        expr = parse(text)
    except ExprSyntaxError as exc:
        assert 1 <= exc.column <= len(text) + 1
        return
    assert isinstance(expr, Expr)
    try:
        expr.evaluate(ENV)
    except ExprEvalError:
        pass
