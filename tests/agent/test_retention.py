"""The retention policy alone: plain values in, the next drop (or none) out."""
from __future__ import annotations

from agent.retention import HARD_LIMIT_FACTOR, Drop, acked_drop, forced_drop, gap_body

BUDGET = 1_000


def test_under_budget_nothing_goes() -> None:
    assert acked_drop(size_bytes=BUDGET, budget_bytes=BUDGET, acked_seq=50, head_seq=100) is None


def test_over_budget_drops_only_acked_entries() -> None:
    assert acked_drop(size_bytes=BUDGET + 300, budget_bytes=BUDGET, acked_seq=50, head_seq=100) == \
        Drop(excess_bytes=300, max_seq=50, forced=False)


def test_nothing_acked_means_no_acked_drop() -> None:
    assert acked_drop(size_bytes=5 * BUDGET, budget_bytes=BUDGET, acked_seq=0, head_seq=100) is None


def test_the_head_row_is_never_dropped_even_when_acked() -> None:
    drop = acked_drop(size_bytes=2 * BUDGET, budget_bytes=BUDGET, acked_seq=100, head_seq=100)
    assert drop is not None and drop.max_seq == 99
    assert acked_drop(size_bytes=2 * BUDGET, budget_bytes=BUDGET, acked_seq=1, head_seq=1) is None


def test_unacked_entries_go_only_above_the_hard_limit() -> None:
    at_limit = HARD_LIMIT_FACTOR * BUDGET
    assert forced_drop(size_bytes=at_limit, budget_bytes=BUDGET, head_seq=100) is None
    assert forced_drop(size_bytes=at_limit + 1, budget_bytes=BUDGET, head_seq=100) == \
        Drop(excess_bytes=at_limit + 1 - BUDGET, max_seq=99, forced=True)


def test_a_forced_drop_keeps_the_head() -> None:
    assert forced_drop(size_bytes=10 * BUDGET, budget_bytes=BUDGET, head_seq=1) is None


def test_the_gap_body_names_the_range_and_the_limit() -> None:
    assert gap_body(21, 340, BUDGET) == {
        "dropped_from": 21, "dropped_to": 340,
        "reason": f"journal over hard limit {HARD_LIMIT_FACTOR * BUDGET} bytes"}
