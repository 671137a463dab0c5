"""Validation of steps and expressions (a step's `until`, an expectation's `when`).

Rules (contracts/validate.py says where the others are):
- Step names are unique.
- Expressions parse, name known points, and are conditions; `step_time` exists only in `until`.
- Every step can finish; a step after one that can never finish is unreachable.
"""
from __future__ import annotations

from collections.abc import Generator

from contracts.errors import ExprEvalError, ExprSyntaxError, Issue
from contracts.expr import STEP_TIME, Expr, infer_kind, names_in_order, parse
from contracts.expr_tree import Kind
from contracts.limits import clip, quote
from contracts.schema import Contract, DataType, OnTimeout, Step
from contracts.types import PointName
from contracts.validate_points import output_issues
from contracts.validate_run import Ctx, Issues, issue


def step_issues(v: Ctx) -> Issues:
    whole = not v.broken("steps")  # with a step unreadable, order-based rules cannot be judged
    if whole and not v.c.steps:
        yield issue("steps", "is empty: the contract has nothing to do")
    blocker: str | None = None
    for i, s in enumerate(v.c.steps):
        at = v.step_at(i)
        yield from _duplicate_step(v, i, s, at)
        if blocker is not None:
            yield issue(at, f"is unreachable: {blocker}")
        yield from output_issues(v, f"{at}.do", s.do)
        until = yield from _expression(v, f"{at}.until", s.until, in_step=True)
        never = _never_ends(s, until)
        if never is not None:
            yield issue(f"{at}.until" if s.until is not None else at, never)
        if blocker is None and whole:
            blocker = _blocks(at, s, never)


def _duplicate_step(v: Ctx, i: int, s: Step, at: str) -> Issues:
    first = v.first_step[s.name]
    if first < i:
        yield issue(f"{at}.name", f"duplicate step name {quote(s.name)} (first at {v.step_at(first)})")


def _never_ends(s: Step, until: Expr | None) -> str | None:
    """Why step `s` can never finish (or can finish only by timing out), or None."""
    if s.until is None and s.for_s is None and s.timeout_s is None:
        return "can never finish: give it until, for_s or timeout_s"
    if until is None or until.constant is not False or s.for_s is not None:
        return None
    if s.timeout_s is None:
        return "is always false and the step has no for_s or timeout_s: it can never finish"
    return f"is always false: the step can only time out (on_timeout: {s.on_timeout})"


def _blocks(at: str, s: Step, never: str | None) -> str | None:
    """Why no step after `s` can run, as a phrase naming `s`, or None."""
    if never is None or s.on_timeout is OnTimeout.NEXT and s.timeout_s is not None:
        return None
    if s.timeout_s is None:
        return f"{at} {quote(s.name)} can never finish"
    return f"{at} {quote(s.name)} always times out into {s.on_timeout}"


def _expression(v: Ctx, at: str, text: str | None, *,
                in_step: bool) -> Generator[Issue, None, Expr | None]:
    """Issues of one expression; returns (as the generator's value) the parsed Expr, if any."""
    if text is None:
        return None
    try:
        expr = parse(text)
    except ExprSyntaxError as exc:
        yield issue(at, f"does not parse: column {exc.column}: {exc.reason}")
        return None
    missing = [n for n in names_in_order(expr) if not _known(v.c, n, in_step)]
    for n in missing:
        if n == STEP_TIME:
            yield issue(at, "step_time exists only in a step's until")
        elif v.unknown(n):
            yield issue(at, f"names unknown point {quote(n)}")
    if not missing:
        yield from _condition(v, at, expr)
    return expr


def _known(c: Contract, name: str, in_step: bool) -> bool:
    return c.has_point(name) or (in_step and name == STEP_TIME)


def _condition(v: Ctx, at: str, expr: Expr) -> Issues:
    try:
        kind = infer_kind(expr, v.kinds)
    except ExprEvalError as exc:
        yield issue(at, f"can never be evaluated: {exc}")
        return
    if kind is not Kind.BOOL:
        yield issue(at, "is a number, not a condition (compare it, e.g. 'level >= 4')")
    elif not expr.names:
        try:
            expr.evaluate({})
        except ExprEvalError as exc:  # e.g. a constant division by zero: fails every cycle
            yield issue(at, f"can never be evaluated: {exc}")


def expectation_issues(v: Ctx, name: PointName, when: str | None) -> Issues:
    at = f"expect.{clip(name)}"
    if not v.c.has_point(name):
        if v.unknown(name):
            yield issue(at, f"unknown point {quote(name)}")
    elif v.c.point(name).type is DataType.BOOL:
        yield issue(f"{at}.rate_per_s", "does not apply to a bool point")
    yield from _expression(v, f"{at}.when", when, in_step=False)
