"""Semantic validation of a parsed contract: the cross-field rules a controls engineer gets wrong.

Structure (types, required fields, enums) is already checked by `schema_parse.parse_contract`; this module
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
from contracts.expr import STEP_TIME, Expr, infer_kind, names_in_order, parse
from contracts.expr_tree import Kind
from contracts.limits import clip, quote
from contracts.schema import Contract, DataType, OnTimeout, Point, Step
from contracts.schema_parse import Layout
from contracts.schema_serialize import format_time
from contracts.types import PointName, Value

MIN_TIMER_SCANS = 2
"""A stale/frozen timer shorter than two scan periods trips whenever a single read is late."""

Issues = Iterator[Issue]


def validate(contract: Contract, layout: Layout | None = None) -> list[Issue]:
    """Every cross-field problem in `contract`, in document order. Empty means valid. Never raises
    for a contract that `parse_contract` accepted. With the `layout` of a partial parse
    (`schema_parse.parse_partial`), paths name document positions and rules that need a broken field
    are skipped, so the issues add to the structural ones without false alarms. O(n log n) in the
    number of points and steps (name and address lookups are indexed, never rescanned)."""
    v = _Ctx(contract, layout or Layout.whole(contract))
    c = contract
    return list(chain(
        () if v.broken("valid_from", "valid_until") else _validity(c),
        chain.from_iterable(_point(v, i, p) for i, p in enumerate(c.points)),
        _outputs(v, "safe_state", c.safe_state),
        () if v.broken("safe_state", "contract") else _safe_state_complete(c),
        _steps(v),
        chain.from_iterable(_expectation(v, e.point, e.when) for e in c.expect),
        (_issue(f"tolerance.values.{clip(n)}", f"unknown point {quote(n)}")
         for n, _ in c.tolerance.values if v.unknown(n)),
    ))


class _Ctx:
    """One validation run: the contract, its layout, and indexes built once (O(n))."""

    def __init__(self, c: Contract, layout: Layout) -> None:
        self.c, self.layout = c, layout
        self.first_point: dict[str, int] = {}
        for i, p in enumerate(c.points):
            self.first_point.setdefault(p.name, i)
        self.first_step: dict[str, int] = {}
        for i, s in enumerate(c.steps):
            self.first_step.setdefault(s.name, i)
        self.kinds = {p.name: Kind.BOOL if p.type is DataType.BOOL else Kind.NUMBER
                      for p in c.points} | {STEP_TIME: Kind.NUMBER}
        self.occupant: dict[tuple[str, int, str, int], int] = {}  # (endpoint, unit, table, address) -> 1st point

    def broken(self, *fields: str) -> bool:
        return any(f in self.layout.broken for f in fields)

    def unknown(self, name: str) -> bool:
        """A reference to no point (one that exists, or one dropped by a structural issue)."""
        return not self.c.has_point(name) and name not in self.layout.dropped_points \
            and not self.broken("points")

    def point_at(self, i: int) -> str:
        return f"points[{self.layout.point_index[i]}]"

    def step_at(self, i: int) -> str:
        return f"steps[{self.layout.step_index[i]}]"


def _issue(path: str, reason: str) -> Issue:
    return Issue(path=path, reason=reason)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _validity(c: Contract) -> Issues:
    if c.valid_until <= c.valid_from:
        yield _issue("valid_until", f"must be after valid_from ({format_time(c.valid_from)})")


# --------------------------------------------------------------------------------------------
# Points

def _point(v: _Ctx, i: int, p: Point) -> Issues:
    at = v.point_at(i)
    yield from _duplicate_point(v, i, p, at)
    yield from _overlap(v, i, p, at)
    yield from _table_fit(p, at)
    yield from _bounds(p, at)
    if not v.broken("scan_period_ms"):
        yield from _timers(v.c, p, at)
    if p.type is DataType.BOOL:
        if p.max_rate_per_s is not None:
            yield _issue(f"{at}.max_rate_per_s", "does not apply to a bool point")
        if p.deadband:
            yield _issue(f"{at}.deadband", "does not apply to a bool point")


def _duplicate_point(v: _Ctx, i: int, p: Point, at: str) -> Issues:
    first = v.first_point[p.name]
    if first < i:
        yield _issue(f"{at}.name",
                     f"duplicate point name {quote(p.name)} (first at {v.point_at(first)})")


def _overlap(v: _Ctx, i: int, p: Point, at: str) -> Issues:
    """The first earlier point sharing an address with `p` on the same endpoint (document order).
    Points are checked in order and each registers its addresses (at most 4), so the whole check is
    linear. Two endpoints are two devices: the same address on each is no overlap."""
    cells = [(p.endpoint or "", p.unit_id, p.table.value, a) for a in range(p.address, p.last_address + 1)]
    earlier = [v.occupant[cell] for cell in cells if cell in v.occupant]
    for cell in cells:
        v.occupant.setdefault(cell, i)
    if earlier:
        q = v.c.points[min(earlier)]
        yield _issue(f"{at}.address", (
            f"{quote(p.name)} ({p.table} {p.address}..{p.last_address}, unit {p.unit_id}) overlaps "
            f"{quote(q.name)} ({v.point_at(min(earlier))}, {q.table} {q.address}..{q.last_address})"))


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

def _outputs(v: _Ctx, at: str, pairs: tuple[tuple[PointName, Value], ...]) -> Issues:
    for name, value in pairs:
        reason = _output_problem(v, name, value)
        if reason:
            yield _issue(f"{at}.{clip(name)}", reason)


def _output_problem(v: _Ctx, name: PointName, value: Value) -> str | None:
    c = v.c
    if not c.has_point(name):
        return f"unknown point {quote(name)}" if v.unknown(name) else None
    p = c.point(name)
    if not p.writes:
        return f"{quote(name)} is a read point; only write points can be set"
    if p.owner is not None and p.owner != c.contract and not v.broken("contract"):
        return f"{quote(name)} is owned by {quote(p.owner)}, not {quote(c.contract)} (single writer)"
    if (p.type is DataType.BOOL) != isinstance(value, bool):
        wanted = "true or false" if p.type is DataType.BOOL else "a number"
        return f"{p.type} point {quote(name)} needs {wanted}, got {_value_text(value)}"
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

def _steps(v: _Ctx) -> Issues:
    whole = not v.broken("steps")  # with a step unreadable, order-based rules cannot be judged
    if whole and not v.c.steps:
        yield _issue("steps", "is empty: the contract has nothing to do")
    blocker: str | None = None
    for i, s in enumerate(v.c.steps):
        at = v.step_at(i)
        yield from _duplicate_step(v, i, s, at)
        if blocker is not None:
            yield _issue(at, f"is unreachable: {blocker}")
        yield from _outputs(v, f"{at}.do", s.do)
        until = yield from _expression(v, f"{at}.until", s.until, in_step=True)
        never = _never_ends(s, until)
        if never is not None:
            yield _issue(f"{at}.until" if s.until is not None else at, never)
        if blocker is None and whole:
            blocker = _blocks(at, s, never)


def _duplicate_step(v: _Ctx, i: int, s: Step, at: str) -> Issues:
    first = v.first_step[s.name]
    if first < i:
        yield _issue(f"{at}.name", f"duplicate step name {quote(s.name)} (first at {v.step_at(first)})")


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


def _expression(v: _Ctx, at: str, text: str | None, *,
                in_step: bool) -> Generator[Issue, None, Expr | None]:
    """Issues of one expression; returns (as the generator's value) the parsed Expr, if any."""
    if text is None:
        return None
    try:
        expr = parse(text)
    except ExprSyntaxError as exc:
        yield _issue(at, f"does not parse: column {exc.column}: {exc.reason}")
        return None
    missing = [n for n in names_in_order(expr) if not _known(v.c, n, in_step)]
    for n in missing:
        if n == STEP_TIME:
            yield _issue(at, "step_time exists only in a step's until")
        elif v.unknown(n):
            yield _issue(at, f"names unknown point {quote(n)}")
    if not missing:
        yield from _condition(v, at, expr)
    return expr


def _known(c: Contract, name: str, in_step: bool) -> bool:
    return c.has_point(name) or (in_step and name == STEP_TIME)


def _condition(v: _Ctx, at: str, expr: Expr) -> Issues:
    try:
        kind = infer_kind(expr, v.kinds)
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


def _expectation(v: _Ctx, name: PointName, when: str | None) -> Issues:
    at = f"expect.{clip(name)}"
    if not v.c.has_point(name):
        if v.unknown(name):
            yield _issue(at, f"unknown point {quote(name)}")
    elif v.c.point(name).type is DataType.BOOL:
        yield _issue(f"{at}.rate_per_s", "does not apply to a bool point")
    yield from _expression(v, f"{at}.when", when, in_step=False)
