"""Validation of points and of the values written to them (safe_state and each step's `do`).

Rules (contracts/validate.py says where the others are):
- Point names are unique. Points on one unit and table may not share an address.
- Coil and discrete tables hold bools; input and discrete tables are read-only (Modbus Application
  Protocol v1.1b3, section 4.3), so a write point must live in a coil or holding table.
- A write point has an `owner`; only points this contract owns may be set by `do` or `safe_state`
  (single writer, invariant 2), and `safe_state` sets every one of them (invariant 3).
- `limits` (write points only) and `range` fit inside what the type can carry after
  engineering = raw * scale + offset; values set by `do`/`safe_state` fit the kind and the limits.
- Staleness and frozen timers are at least two scan periods: one late read must not trip a guard.
"""
from __future__ import annotations

from contracts.limits import clip, quote
from contracts.schema import Contract, DataType, Point
from contracts.types import PointName, Value
from contracts.validate_run import Ctx, Issues, fmt, issue

MIN_TIMER_SCANS = 2
"""A stale/frozen timer shorter than two scan periods trips whenever a single read is late."""


def point_issues(v: Ctx, i: int, p: Point) -> Issues:
    at = v.point_at(i)
    yield from _duplicate_point(v, i, p, at)
    yield from _overlap(v, i, p, at)
    yield from _table_fit(p, at)
    yield from _bounds(p, at)
    if not v.broken("scan_period_ms"):
        yield from _timers(v.c, p, at)
    if p.type is DataType.BOOL:
        if p.max_rate_per_s is not None:
            yield issue(f"{at}.max_rate_per_s", "does not apply to a bool point")
        if p.deadband:
            yield issue(f"{at}.deadband", "does not apply to a bool point")


def _duplicate_point(v: Ctx, i: int, p: Point, at: str) -> Issues:
    first = v.first_point[p.name]
    if first < i:
        yield issue(f"{at}.name",
                     f"duplicate point name {quote(p.name)} (first at {v.point_at(first)})")


def _overlap(v: Ctx, i: int, p: Point, at: str) -> Issues:
    """The first earlier point sharing an address with `p` on the same endpoint (document order).
    Points are checked in order and each registers its addresses (at most 4), so the whole check is
    linear. Two endpoints are two devices: the same address on each is no overlap."""
    cells = [(p.endpoint or "", p.unit_id, p.table.value, a) for a in range(p.address, p.last_address + 1)]
    earlier = [v.occupant[cell] for cell in cells if cell in v.occupant]
    for cell in cells:
        v.occupant.setdefault(cell, i)
    if earlier:
        q = v.c.points[min(earlier)]
        yield issue(f"{at}.address", (
            f"{quote(p.name)} ({p.table} {p.address}..{p.last_address}, unit {p.unit_id}) overlaps "
            f"{quote(q.name)} ({v.point_at(min(earlier))}, {q.table} {q.address}..{q.last_address})"))


def _table_fit(p: Point, at: str) -> Issues:
    if p.table.is_bit and p.type is not DataType.BOOL:
        yield issue(f"{at}.type", f"must be bool in the {p.table} table, got {p.type}")
    if p.writes and not p.table.writable:
        yield issue(f"{at}.direction", f"cannot be write: the {p.table} table is read-only")
    if p.writes and p.owner is None:
        yield issue(f"{at}.owner", "is required for a write point (single writer)")


def engineering_range(p: Point) -> tuple[float, float]:
    """Smallest and largest engineering value `p` can carry (a negative scale flips the range)."""
    lo, hi = p.type.raw_range
    a, b = lo * p.scale + p.offset, hi * p.scale + p.offset
    return (min(a, b), max(a, b))


def _bounds(p: Point, at: str) -> Issues:
    if p.limits is not None and not p.writes:
        yield issue(f"{at}.limits", "apply only to write points (use range for reads)")
    for field, pair in (("range", p.range), ("limits", p.limits)):
        if pair is None:
            continue
        if p.type is DataType.BOOL:
            yield issue(f"{at}.{field}", "does not apply to a bool point")
        elif not _fits(p, pair):
            yield issue(f"{at}.{field}", f"[{fmt(pair[0])}, {fmt(pair[1])}] {_capacity(p)}")


def _fits(p: Point, pair: tuple[float, float]) -> bool:
    lo, hi = engineering_range(p)
    return lo <= pair[0] and pair[1] <= hi


def _capacity(p: Point) -> str:
    lo, hi = engineering_range(p)
    return (f"is outside what {p.type} with scale {fmt(p.scale)} and offset {fmt(p.offset)} "
            f"can carry ({fmt(lo)}..{fmt(hi)})")


def _timers(c: Contract, p: Point, at: str) -> Issues:
    floor = MIN_TIMER_SCANS * c.scan_period_ms
    for field, ms in (("stale_after_ms", p.stale_after_ms), ("frozen_after_ms", p.frozen_after_ms)):
        if ms is not None and ms < floor:
            yield issue(f"{at}.{field}", (
                f"{ms} ms is shorter than {MIN_TIMER_SCANS} scan periods ({floor} ms): "
                "it would trip on one late read"))


# --------------------------------------------------------------------------------------------
# Outputs: safe_state and each step's `do`

def output_issues(v: Ctx, at: str, pairs: tuple[tuple[PointName, Value], ...]) -> Issues:
    for name, value in pairs:
        reason = _output_problem(v, name, value)
        if reason:
            yield issue(f"{at}.{clip(name)}", reason)


def _output_problem(v: Ctx, name: PointName, value: Value) -> str | None:
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
    return str(v).lower() if isinstance(v, bool) else fmt(v)


def _value_bounds(p: Point, value: float) -> str | None:
    if p.limits is not None and not p.limits[0] <= value <= p.limits[1]:
        return f"{fmt(value)} is outside limits [{fmt(p.limits[0])}, {fmt(p.limits[1])}]"
    if p.limits is None and not _fits(p, (value, value)):
        return f"{fmt(value)} {_capacity(p)}"
    return None


def safe_state_issues(c: Contract) -> Issues:
    named = {n for n, _ in c.safe_state}
    for p in c.write_points:
        if p.owner == c.contract and p.name not in named:
            yield issue(f"safe_state.{p.name}",
                         "is missing: safe_state must set every write point this contract owns")

