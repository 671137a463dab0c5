"""Semantic validation of a parsed contract: the cross-field rules a controls engineer gets wrong.

Structure (types, required fields, enums) is already checked by `schema_parse.parse_contract`; this module
assumes a well-formed `Contract` and returns every remaining problem as an `Issue`, in document
order (validity window, points, safe_state, steps, expect, tolerance). Rules, each in the module
that checks it:
- contracts/validate_points.py: point names, addresses, tables, owners, limits and ranges, timers,
  and the values `safe_state` and each step's `do` set (single writer; safe_state complete);
- contracts/validate_steps.py: step names, expressions, and whether every step can finish;
- here: the validity window, and that `tolerance.values` names known points.
One run's indexes (built once, O(n)) are contracts/validate_run.py's.
"""
from __future__ import annotations

from itertools import chain

from contracts.errors import Issue
from contracts.limits import clip, quote
from contracts.schema import Contract
from contracts.schema_parse import Layout
from contracts.schema_serialize import format_time
from contracts.validate_points import (
    MIN_TIMER_SCANS, engineering_range, output_issues, point_issues, safe_state_issues,
)
from contracts.validate_run import Ctx, Issues, issue
from contracts.validate_steps import expectation_issues, step_issues

__all__ = ["MIN_TIMER_SCANS", "engineering_range", "validate"]


def validate(contract: Contract, layout: Layout | None = None) -> list[Issue]:
    """Every cross-field problem in `contract`, in document order. Empty means valid. Never raises
    for a contract that `parse_contract` accepted. With the `layout` of a partial parse
    (`schema_parse.parse_partial`), paths name document positions and rules that need a broken field
    are skipped, so the issues add to the structural ones without false alarms. O(n log n) in the
    number of points and steps (name and address lookups are indexed, never rescanned)."""
    v = Ctx(contract, layout or Layout.whole(contract))
    c = contract
    return list(chain(
        () if v.broken("valid_from", "valid_until") else _validity(c),
        chain.from_iterable(point_issues(v, i, p) for i, p in enumerate(c.points)),
        output_issues(v, "safe_state", c.safe_state),
        () if v.broken("safe_state", "contract") else safe_state_issues(c),
        step_issues(v),
        chain.from_iterable(expectation_issues(v, e.point, e.when) for e in c.expect),
        (issue(f"tolerance.values.{clip(n)}", f"unknown point {quote(n)}")
         for n, _ in c.tolerance.values if v.unknown(n)),
    ))


def _validity(c: Contract) -> Issues:
    if c.valid_until <= c.valid_from:
        yield issue("valid_until", f"must be after valid_from ({format_time(c.valid_from)})")

