"""Retry budgets per lineage, backoff, settle time and the re-issue source — the pure decisions."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.loader import load_contract
from contracts.schema import Contract
from hub.config import ConfigError, parse_config
from hub.lineage import Budget, after_retry, backoff_ms, inputs_healthy, source_version
from hub.planner import decide
from hub.policy import DEFAULT_POLICIES, FailureCategory, Policy, PolicyAction, RetryConfig

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
CFG = RetryConfig(backoff_ms=30_000, backoff_max_ms=3_600_000, settle_ms=30_000)


@cache
def tank() -> Contract:
    return load_contract(EXAMPLES / "tank-fill.yaml")


NOW = tank().valid_from + 3_600_000


def _decide(category: FailureCategory, budget: Budget, *, healthy_since: int | None = None,
            action: PolicyAction = PolicyAction.RETRY, max_retries: int = 3) -> PolicyAction:
    policies = {category: Policy(action=action, max_retries=max_retries)}
    return decide(contract=tank(), category=category, reason="r", policies=policies,
                  budget=budget, next_version=4, actual_step=0, now_ms=NOW, retry=CFG,
                  healthy_since_ms=healthy_since).action


def test_the_backoff_doubles_with_each_reissue_and_is_capped() -> None:
    assert [backoff_ms(n, CFG) for n in range(5)] == [0, 30_000, 60_000, 120_000, 240_000]
    assert backoff_ms(40, CFG) == CFG.backoff_max_ms


def test_after_a_reissue_the_next_is_allowed_only_after_the_backoff() -> None:
    b = after_retry(Budget(lineage="tank-fill@3"), NOW, CFG)
    assert (b.retries, b.last_retry_ms, b.next_allowed_ms) == (1, NOW, NOW + 30_000)
    b2 = after_retry(b, NOW + 30_000, CFG)
    assert b2.next_allowed_ms == NOW + 30_000 + 60_000


def test_a_retry_inside_the_backoff_waits_and_one_after_it_goes() -> None:
    inside = Budget(lineage="l", retries=1, next_allowed_ms=NOW + 1)
    after = Budget(lineage="l", retries=1, next_allowed_ms=NOW)
    assert _decide(FailureCategory.RUNTIME, inside) is PolicyAction.WAIT
    assert _decide(FailureCategory.RUNTIME, after) is PolicyAction.RETRY


def test_max_retries_counts_the_lineage_whatever_the_trigger() -> None:
    spent = Budget(lineage="l", retries=3)
    for category in FailureCategory:
        assert _decide(category, spent) is PolicyAction.ESCALATE


def test_the_default_policy_after_a_trip_is_hold_not_a_reissue() -> None:
    d = decide(contract=tank(), category=FailureCategory.TRIP, reason="guard trip: stale",
               policies=DEFAULT_POLICIES, budget=Budget(lineage="l"), next_version=4,
               actual_step=0, now_ms=NOW, healthy_since_ms=NOW - 10 * CFG.settle_ms)
    assert d.action is PolicyAction.HOLD and d.document is None


def test_an_explicit_retry_after_a_trip_waits_for_healthy_inputs_over_the_settle_time() -> None:
    b = Budget(lineage="l")
    assert _decide(FailureCategory.TRIP, b, healthy_since=None) is PolicyAction.WAIT
    assert _decide(FailureCategory.TRIP, b, healthy_since=NOW - CFG.settle_ms + 1) is PolicyAction.WAIT
    assert _decide(FailureCategory.TRIP, b, healthy_since=NOW - CFG.settle_ms) is PolicyAction.RETRY


def test_settle_time_applies_only_to_trips() -> None:
    assert _decide(FailureCategory.RUNTIME, Budget(lineage="l"), healthy_since=None) \
        is PolicyAction.RETRY


@pytest.mark.parametrize(("record", "running", "active", "expected"), [
    (3, 3, 3, 3),        # the ordinary case
    (93, 300, 300, 300),  # a stale record: re-issue from what the device runs, never from v93
    (3, None, 3, 3),     # device reports another contract: the record, if it is the newest
    (3, None, 4, None),  # v4 is active but the device runs neither: do not guess
    (3, 3, 4, None),     # v4 pushed, not yet running: a re-issue from v3 would roll it back
    (4, 3, 4, None),     # the record is newer than what runs, but the device has not taken it
])
def test_the_reissue_source_is_never_older_than_the_active_version(
        record: int, running: int | None, active: int | None, expected: int | None) -> None:
    assert source_version(record=record, running=running, active=active) == expected


@given(record=st.integers(1, 500), running=st.none() | st.integers(1, 500),
       active=st.none() | st.integers(1, 500))
def test_a_chosen_source_is_the_newest_version_known(record: int, running: int | None,
                                                       active: int | None) -> None:
    chosen = source_version(record=record, running=running, active=active)
    if chosen is not None:
        assert chosen >= max(v for v in (record, running, active) if v is not None)


def test_inputs_are_healthy_only_when_every_read_point_is_good_in_range_and_fresh() -> None:
    good = {"level": 2.0, "high_level": False}
    assert inputs_healthy(tank(), good, {}, NOW)
    assert not inputs_healthy(tank(), {"level": 2.0}, {}, NOW)  # high_level missing (bad)
    assert not inputs_healthy(tank(), {**good, "level": 6.0e35}, {}, NOW)  # word order wrong
    assert not inputs_healthy(tank(), good, {"level": NOW - 2001}, NOW)  # stale_after_ms 2000
    assert inputs_healthy(tank(), good, {"level": NOW - 2000}, NOW)


def test_policies_config_reads_backoff_settle_and_a_trip_policy() -> None:
    cfg = parse_config({"db": "h.db", "key": "k", "policies": {
        "backoff_s": 5, "backoff_max_s": 60, "settle_s": 2.5,
        "trip": {"action": "retry", "max_retries": 1}}})
    assert cfg.retry == RetryConfig(backoff_ms=5000, backoff_max_ms=60_000, settle_ms=2500)
    assert cfg.policies[FailureCategory.TRIP] == Policy(action=PolicyAction.RETRY, max_retries=1)
    assert parse_config({"db": "h.db", "key": "k"}).policies[FailureCategory.TRIP].action \
        is PolicyAction.HOLD


@pytest.mark.parametrize(("policies", "key"), [
    ({"backoff_s": -1}, "policies.backoff_s"),
    ({"settle_s": "soon"}, "policies.settle_s"),
    ({"trip": {"action": "wait"}}, "policies.trip.action"),
])
def test_bad_policies_keys_are_refused_naming_the_key(policies: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"db": "h.db", "key": "k", "policies": policies})
    assert err.value.key == key
