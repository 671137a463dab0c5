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


def test_a_contract_beside_others_ticks_in_the_widest_gap_between_their_phases() -> None:
    from agent.timing import free_phase

    assert free_phase(10, []) == 0
    assert free_phase(10, [1_000_000]) == 5           # one at phase 0: the other at half a period
    assert free_phase(100, [1_000, 2_050]) == 75       # phases 0 and 50: 75 (or 25)
    a = make_anchor(10, wall_ms=1_000_002, mono_s=0.0, phase_ms=5)
    assert a.wall_ms == 1_000_005 and a.mono_s == 0.003
