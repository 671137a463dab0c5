"""A deployment's strategy and its waves: pure, property-tested (contracts/rollout_strategy.py)."""
from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ContractInvalid
from contracts.rollout_strategy import (Abort, aborts, parse_strategy, plan_waves,
                                        push_offsets_ms)

_IDS = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=1, max_size=60,
                unique=True)
_CANARY = st.one_of(st.builds(lambda n: {"count": n}, st.integers(1, 80)),
                    st.builds(lambda p: {"percent": p}, st.floats(0.5, 100)))
_WAVES = st.one_of(st.builds(lambda n: {"size": n}, st.integers(1, 30)),
                   st.builds(lambda r, g: {"rate_per_min": r, "growth": g},
                             st.floats(0.5, 40), st.floats(1, 3)))


@settings(max_examples=300, deadline=None)
@given(_IDS, _CANARY, _WAVES)
def test_every_device_is_in_exactly_one_wave_canary_first_in_id_order(
        ids: list[str], canary: dict[str, Any], waves: dict[str, Any]) -> None:
    plan = plan_waves(parse_strategy({"canary": canary, "waves": waves}), ids)
    flat = [d for w in plan for d in w.devices]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
    assert [w.index for w in plan] == list(range(len(plan)))
    assert plan[0].kind == "canary" and all(w.kind == "wave" for w in plan[1:])
    assert all(w.devices for w in plan)
    rest = [d for w in plan[1:] for d in w.devices]
    assert rest == sorted(rest)  # the waves take the devices in id order
    if "count" in canary:
        assert len(plan[0].devices) == min(canary["count"], len(ids))
    else:
        assert len(plan[0].devices) == max(1, min(len(ids), math.ceil(canary["percent"] * len(ids) / 100)))


@settings(max_examples=200, deadline=None)
@given(_IDS, _CANARY, _WAVES, st.randoms())
def test_the_plan_does_not_depend_on_the_order_the_target_lists_its_devices(
        ids: list[str], canary: dict[str, Any], waves: dict[str, Any], rnd: Any) -> None:
    strategy = parse_strategy({"canary": canary, "waves": waves})
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    assert plan_waves(strategy, ids) == plan_waves(strategy, shuffled)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 500), st.floats(0.5, 20), st.floats(1, 3))
def test_rate_waves_grow_by_the_factor_and_are_paced_at_their_rate(
        n: int, rate: float, growth: float) -> None:
    ids = [f"d{i:04d}" for i in range(n)]
    plan = plan_waves(parse_strategy({"waves": {"rate_per_min": rate, "growth": growth}}), ids)
    for w in plan[1:-1]:  # the last one holds what is left
        assert len(w.devices) == max(1, math.floor(rate * growth ** (w.index - 1)))
    for w in plan[1:]:
        offsets = push_offsets_ms(w)
        assert offsets[0] == 0 and list(offsets) == sorted(offsets)
        assert w.rate_per_min is not None
        if len(offsets) > 1:
            assert offsets[1] == int(60_000 / w.rate_per_min)


def test_named_canaries_must_be_in_the_target_and_come_first() -> None:
    plan = plan_waves(parse_strategy({"canary": {"devices": ["d3"]}, "waves": {"size": 2}}),
                      ["d1", "d2", "d3"])
    assert [w.devices for w in plan] == [("d3",), ("d1", "d2")]
    with pytest.raises(ContractInvalid, match=r"strategy.canary.devices: 'd9' is not in the target"):
        plan_waves(parse_strategy({"canary": {"devices": ["d9"]}}), ["d1"])


def test_a_bad_strategy_names_every_field() -> None:
    with pytest.raises(ContractInvalid) as info:
        parse_strategy({"canary": {"count": 0}, "waves": {"size": 2, "rate_per_min": 3},
                        "approval": "maybe", "reach_deadline_s": 0, "verify_margin_s": -1,
                        "abort": {"failure_pct": 200}, "colour": 1})
    paths = [i.path for i in info.value.issues]
    assert paths == ["strategy.colour", "strategy.canary.count", "strategy.waves",
                     "strategy.approval", "strategy.reach_deadline_s", "strategy.verify_margin_s",
                     "strategy.abort.failure_pct"]


def test_the_strategy_round_trips_through_its_mapping() -> None:
    doc = {"canary": {"percent": 10}, "waves": {"rate_per_min": 20, "growth": 2.0},
           "approval": "manual", "pause_s": 5, "reach_deadline_s": 30, "verify_margin_s": 15,
           "abort": {"failure_pct": 25, "min_executed": 4}}
    s = parse_strategy(doc)
    assert parse_strategy(s.to_mapping()) == s and s.to_mapping() == doc


@given(st.integers(0, 200), st.integers(0, 200), st.floats(1, 100), st.integers(1, 50))
def test_the_abort_threshold_needs_enough_executed_devices(
        healthy: int, failed: int, pct: float, least: int) -> None:
    stop = aborts(Abort(failure_pct=pct, min_executed=least), healthy, failed)
    executed = healthy + failed
    assert stop == (executed >= least and 100 * failed / executed >= pct - 1e-9
                    if executed else False)
