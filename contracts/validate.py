"""Semantic validation of a parsed contract: the cross-field rules a controls engineer gets wrong.

Structure (types, required fields, enums) is already checked by `schema.parse_contract`; this module
assumes a well-formed `Contract` and returns every remaining problem as an `Issue`, in document
order (validity window, points, safe_state, steps, expect, tolerance). Rules:
- Point and step names are unique. Points on one unit and table may not share an address.
- Coil and discrete tables hold bools; input and discrete tables are read-only (Modbus Application
  Protocol v1.1b3, section 4.3), so a write point must live in a coil or holding table.
- A write point has an `owner`; only points this contract owns may be set by `do` or `safe_state`
  (single writer, invariant 2), and `safe_state` sets every one of them (invariant 3).
- `limits` (write points only) and `range` fit inside what the type can carry after
  engineering = raw * scale + offset; values set by `do`/`safe_state` fit the kind and the limits.
- Staleness and frozen timers are at least two scan periods: one late read must not trip a guard.
- Expressions parse, name known points, and are conditions; `step_time` exists only in `until`.
- Every step can finish; a step after one that can never finish is unreachable.
"""
from __future__ import annotations

from collections.abc import Generator, Iterator
from itertools import chain

from contracts.errors import ExprEvalError, ExprSyntaxError, Issue
from contracts.expr import STEP_TIME, Expr, Kind, infer_kind, names_in_order, parse
from contracts.schema import Contract, DataType, OnTimeout, Point, Step, format_time
from contracts.types import PointName, Value

MIN_TIMER_SCANS = 2
"""A stale/frozen timer shorter than two scan periods trips whenever a single read is late."""

Issues = Iterator[Issue]


def validate(contract: Contract) -> list[Issue]:
    """Every cross-field problem in `contract`, in document order. Empty means valid. Never raises
    for a contract that `parse_contract` accepted."""
    c = contract
    return list(chain(
        _validity(c),
        chain.from_iterable(_point(c, i, p) for i, p in enumerate(c.points)),
        _outputs(c, "safe_state", c.safe_state),
        _safe_state_complete(c),
        _steps(c),
        chain.from_iterable(_expectation(c, e.point, e.rate_per_s, e.when) for e in c.expect),
        (_issue(f"tolerance.values.{n}", f"unknown point {n!r}")
         for n, _ in c.tolerance.values if not c.has_point(n)),
    ))


def _issue(path: str, reason: str) -> Issue:
    return Issue(path=path, reason=reason)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _validity(c: Contract) -> Issues:
    if c.valid_until <= c.valid_from:
        yield _issue("valid_until", f"must be after valid_from ({format_time(c.valid_from)})")


# --------------------------------------------------------------------------------------------
# Points

def _point(c: Contract, i: int, p: Point) -> Issues:
    at = f"points[{i}]"
    yield from _duplicate_point(c, i, p, at)
    yield from _overlap(c, i, p, at)
    yield from _table_fit(p, at)
    yield from _bounds(p, at)
    yield from _timers(c, p, at)
    if p.type is DataType.BOOL:
        if p.max_rate_per_s is not None:
            yield _issue(f"{at}.max_rate_per_s", "does not apply to a bool point")
        if p.deadband:
            yield _issue(f"{at}.deadband", "does not apply to a bool point")


def _duplicate_point(c: Contract, i: int, p: Point, at: str) -> Issues:
    first = next(j for j, q in enumerate(c.points) if q.name == p.name)
    if first < i:
        yield _issue(f"{at}.name", f"duplicate point name {p.name!r} (first at points[{first}])")


def _overlap(c: Contract, i: int, p: Point, at: str) -> Issues:
    for j, q in enumerate(c.points[:i]):
        if (q.unit_id, q.table) == (p.unit_id, p.table) \
                and p.address <= q.last_address and q.address <= p.last_address:
            yield _issue(f"{at}.address", (
                f"{p.name!r} ({p.table} {p.address}..{p.last_address}, unit {p.unit_id}) overlaps "
                f"{q.name!r} (points[{j}], {q.table} {q.address}..{q.last_address})"))


def _table_fit(p: Point, at: str) -> Issues:
    if p.table.is_bit and p.type is not DataType.BOOL:
        yield _issue(f"{at}.type", f"must be bool in the {p.table} table, got {p.type}")
    if p.writes and not p.table.writable:
        yield _issue(f"{at}.direction", f"cannot be write: the {p.table} table is read-only")
    if p.writes and p.owner is None:
        yield _issue(f"{at}.owner", "is required for a write point (single writer)")


def engineering_range(p: Point) -> tuple[float, float]:
    """Smallest and largest engineering value `p` can carry (a negative scale flips the range)."""
    lo, hi = p.type.raw_range
    a, b = lo * p.scale + p.offset, hi * p.scale + p.offset
    return (min(a, b), max(a, b))


def _bounds(p: Point, at: str) -> Issues:
    if p.limits is not None and not p.writes:
        yield _issue(f"{at}.limits", "apply only to write points (use range for reads)")
    for field, pair in (("range", p.range), ("limits", p.limits)):
        if pair is None:
            continue
        if p.type is DataType.BOOL:
            yield _issue(f"{at}.{field}", "does not apply to a bool point")
        elif not _fits(p, pair):
            yield _issue(f"{at}.{field}", f"[{_fmt(pair[0])}, {_fmt(pair[1])}] {_capacity(p)}")


def _fits(p: Point, pair: tuple[float, float]) -> bool:
    lo, hi = engineering_range(p)
    return lo <= pair[0] and pair[1] <= hi


def _capacity(p: Point) -> str:
    lo, hi = engineering_range(p)
    return (f"is outside what {p.type} with scale {_fmt(p.scale)} and offset {_fmt(p.offset)} "
            f"can carry ({_fmt(lo)}..{_fmt(hi)})")


def _timers(c: Contract, p: Point, at: str) -> Issues:
    floor = MIN_TIMER_SCANS * c.scan_period_ms
    for field, ms in (("stale_after_ms", p.stale_after_ms), ("frozen_after_ms", p.frozen_after_ms)):
        if ms is not None and ms < floor:
            yield _issue(f"{at}.{field}", (
                f"{ms} ms is shorter than {MIN_TIMER_SCANS} scan periods ({floor} ms): "
                "it would trip on one late read"))


# --------------------------------------------------------------------------------------------
# Outputs: safe_state and each step's `do`

def _outputs(c: Contract, at: str, pairs: tuple[tuple[PointName, Value], ...]) -> Issues:
    for name, value in pairs:
        reason = _output_problem(c, name, value)
        if reason:
            yield _issue(f"{at}.{name}", reason)


def _output_problem(c: Contract, name: PointName, value: Value) -> str | None:
    if not c.has_point(name):
        return f"unknown point {name!r}"
    p = c.point(name)
    if not p.writes:
        return f"{name!r} is a read point; only write points can be set"
    if p.owner is not None and p.owner != c.contract:
        return f"{name!r} is owned by {p.owner!r}, not {c.contract!r} (single writer)"
    if (p.type is DataType.BOOL) != isinstance(value, bool):
        wanted = "true or false" if p.type is DataType.BOOL else "a number"
        return f"{p.type} point {name!r} needs {wanted}, got {_value_text(value)}"
    return None if isinstance(value, bool) else _value_bounds(p, value)


def _value_text(v: Value) -> str:
    return str(v).lower() if isinstance(v, bool) else _fmt(v)


def _value_bounds(p: Point, value: float) -> str | None:
    if p.limits is not None and not p.limits[0] <= value <= p.limits[1]:
        return f"{_fmt(value)} is outside limits [{_fmt(p.limits[0])}, {_fmt(p.limits[1])}]"
    if p.limits is None and not _fits(p, (value, value)):
        return f"{_fmt(value)} {_capacity(p)}"
    return None


def _safe_state_complete(c: Contract) -> Issues:
    named = {n for n, _ in c.safe_state}
    for p in c.write_points:
        if p.owner == c.contract and p.name not in named:
            yield _issue(f"safe_state.{p.name}",
                         "is missing: safe_state must set every write point this contract owns")


# --------------------------------------------------------------------------------------------
# Steps and expressions

def _steps(c: Contract) -> Issues:
    if not c.steps:
        yield _issue("steps", "is empty: the contract has nothing to do")
    blocker: str | None = None
    for i, s in enumerate(c.steps):
        at = f"steps[{i}]"
        yield from _duplicate_step(c, i, s, at)
        if blocker is not None:
            yield _issue(at, f"is unreachable: {blocker}")
        yield from _outputs(c, f"{at}.do", s.do)
        until = yield from _expression(c, f"{at}.until", s.until, in_step=True)
        never = _never_ends(s, until)
        if never is not None:
            yield _issue(f"{at}.until" if s.until is not None else at, never)
        if blocker is None:
            blocker = _blocks(at, s, never)


def _duplicate_step(c: Contract, i: int, s: Step, at: str) -> Issues:
    first = next(j for j, t in enumerate(c.steps) if t.name == s.name)
    if first < i:
        yield _issue(f"{at}.name", f"duplicate step name {s.name!r} (first at steps[{first}])")


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
        return f"{at} {s.name!r} can never finish"
    return f"{at} {s.name!r} always times out into {s.on_timeout}"


def _expression(c: Contract, at: str, text: str | None, *,
                in_step: bool) -> Generator[Issue, None, Expr | None]:
    """Issues of one expression; returns (as the generator's value) the parsed Expr, if any."""
    if text is None:
        return None
    try:
        expr = parse(text)
    except ExprSyntaxError as exc:
        yield _issue(at, f"does not parse: column {exc.column}: {exc.reason}")
        return None
    unknown = [n for n in names_in_order(expr) if not _known(c, n, in_step)]
    for n in unknown:
        yield _issue(at, "step_time exists only in a step's until" if n == STEP_TIME
                     else f"names unknown point {n!r}")
    if not unknown:
        yield from _condition(c, at, expr)
    return expr


def _known(c: Contract, name: str, in_step: bool) -> bool:
    return c.has_point(name) or (in_step and name == STEP_TIME)


def _condition(c: Contract, at: str, expr: Expr) -> Issues:
    kinds = {p.name: Kind.BOOL if p.type is DataType.BOOL else Kind.NUMBER for p in c.points}
    kinds[STEP_TIME] = Kind.NUMBER
    try:
        kind = infer_kind(expr, kinds)
    except ExprEvalError as exc:
        yield _issue(at, f"can never be evaluated: {exc}")
        return
    if kind is not Kind.BOOL:
        yield _issue(at, "is a number, not a condition (compare it, e.g. 'level >= 4')")
    elif not expr.names:
        try:
            expr.evaluate({})
        except ExprEvalError as exc:  # e.g. a constant division by zero: fails every cycle
            yield _issue(at, f"can never be evaluated: {exc}")


def _expectation(c: Contract, name: PointName, rate: float, when: str | None) -> Issues:
    at = f"expect.{name}"
    if not c.has_point(name):
        yield _issue(at, f"unknown point {name!r}")
    elif c.point(name).type is DataType.BOOL:
        yield _issue(f"{at}.rate_per_s", "does not apply to a bool point")
    yield from _expression(c, f"{at}.when", when, in_step=False)
