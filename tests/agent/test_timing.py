"""Deadline arithmetic of the scan loop: no drift, skip when more than a period late."""
from __future__ import annotations

from agent.timing import make_anchor, plan_next


def test_anchor_aligns_cycle_zero_to_the_next_period_boundary() -> None:
    a = make_anchor(100, wall_ms=1_000_050, mono_s=10.0)
    assert a.wall_ms == 1_000_100
    assert abs(a.mono_s - 10.05) < 1e-9
    assert a.wall(3) == 1_000_400


def test_deadlines_do_not_drift_with_cycle_count() -> None:
    a = make_anchor(10, wall_ms=0, mono_s=0.0)
    assert abs(a.deadline(360_000) - 3600.0) < 1e-6


def test_plan_runs_the_due_cycle_when_less_than_a_period_late() -> None:
    a = make_anchor(100, wall_ms=0, mono_s=0.0)
    assert plan_next(a, 5, 0.55) == (5, 0)


def test_plan_skips_to_latest_deadline_when_more_than_a_period_late() -> None:
    a = make_anchor(100, wall_ms=0, mono_s=0.0)
    assert plan_next(a, 5, 0.83) == (8, 3)
