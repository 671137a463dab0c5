"""Reconciliation: the agent's journal (as the agent writes it: contracts/journal_events.py) against a real tank projection."""
from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any


from contracts.journal_events import encode, engine_event_body
from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.projection import Projection, project
from contracts.loader import load_contract
from contracts.schema import Contract
from contracts.types import EpochMs
from hub.policy import FailureCategory
from hub.reconcile import Report, reconcile

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
S = 1000
Item = tuple[EpochMs, EntryKind, dict[str, Any]]


@cache
def tank() -> Contract:
    return load_contract(EXAMPLES / "tank-fill.yaml")


T0 = tank().valid_from
END = T0 + 1000 * S  # the projection fills to 4 m by ~500 s, then holds (level 4.0, pump off)


@cache
def projection() -> Projection:
    return project(tank(), None, T0, END)


def journal(items: Iterable[Item]) -> list[Entry]:
    """Chain `items` into journal entries, seq 1.., the way the agent's journal does."""
    out: list[Entry] = []
    prev = GENESIS
    for seq, (ts, kind, body) in enumerate(items, start=1):
        out.append(make_entry(prev, seq, ts, kind, body))
        prev = out[-1].hash
    return out


def events(*, shift_ms: int = 0, until_ms: EpochMs = END) -> list[Item]:
    """The projected engine events as the agent journals them; from the first step_done on,
    `shift_ms` later."""
    out: list[Item] = []
    done = False
    for e in projection().transitions:
        done = done or e.kind.value == "step_done"
        ts = e.ts_ms + (shift_ms if done else 0)
        if ts <= until_ms:
            out.append((ts, engine_event_body(e).KIND, encode(engine_event_body(e))))
    return out


def inputs(ts: EpochMs, level: float, high: bool = False) -> Item:
    return (ts, EntryKind.INPUT, {"values": {"level": [level, "good", None],
                                             "high_level": [high, "good", None]}})


def outputs(ts: EpochMs, pump: int, valve: bool) -> Item:
    return (ts, EntryKind.OUTPUT, {"writes": {"pump_speed": pump, "valve_open": valve}})


def trip(ts: EpochMs, event: str, **fields: Any) -> Item:
    return (ts, EntryKind.TRIP, {"event": event, **fields})


def check(items: Iterable[Item]) -> Report:
    return reconcile(tank(), projection(), journal(sorted(items, key=lambda i: i[0])), T0, END - 1)


def follows(**kw: Any) -> list[Item]:
    return [*events(**kw), outputs(END - 2 * S, 0, False), inputs(END - 2 * S, 4.0)]


# -- within tolerance -------------------------------------------------------------------------

def test_a_journal_that_follows_the_projection_does_not_diverge() -> None:
    report = check(follows())
    assert not report.divergent and report.reasons == () and report.category is None
    assert (report.step_projected, report.step_actual) == ("hold", "hold")
    assert (report.outcome_projected, report.outcome_actual) == ("running", "running")
    assert report.actual_step_index == 1
    assert [t["step"] for t in report.timing] == ["fill", "hold"]
    assert all(t["delta_s"] == 0 for t in report.timing)


def test_a_step_entered_late_within_tolerance_timing_s_is_not_divergent() -> None:
    report = check(follows(shift_ms=299 * S))
    assert not report.divergent
    assert report.timing[-1]["delta_s"] == 299.0


def test_a_level_off_by_less_than_its_tolerance_is_not_divergent() -> None:
    report = check([*events(), outputs(END - 2 * S, 0, False), inputs(END - 2 * S, 4.45)])
    assert not report.divergent and report.values == ()


# -- divergence, by axis ----------------------------------------------------------------------

def test_a_device_still_filling_when_the_projection_holds_is_a_step_divergence() -> None:
    fill_only = events(until_ms=T0 + 400 * S)
    report = check([*fill_only, outputs(END - 2 * S, 1200, True), inputs(END - 2 * S, 3.9)])
    assert report.divergent and "step: projected hold, actual fill" in report.reasons
    assert report.actual_step_index == 0 and report.category is FailureCategory.RUNTIME
    assert {o["point"] for o in report.outputs} == {"pump_speed", "valve_open"}


def test_a_keyframe_tells_the_step_when_no_step_was_entered_during_the_outage() -> None:
    keyframe = (END - 2 * S, EntryKind.KEYFRAME, {
        "values": {"level": [3.9, "good", None], "high_level": [False, "good", None]},
        "outputs": {"pump_speed": 1200, "valve_open": True}, "mode": "running", "step": "fill"})
    report = check([keyframe])
    assert report.step_actual == "fill" and report.actual_step_index == 0
    assert "step: projected hold, actual fill" in report.reasons


def test_a_keyframe_tells_the_mode_a_device_was_put_in() -> None:
    keyframe = (END - 2 * S, EntryKind.KEYFRAME, {
        "values": {"level": [4.0, "good", None]}, "outputs": {"pump_speed": 0, "valve_open": False},
        "mode": "held", "step": "hold"})
    report = check([*events(), keyframe])
    assert report.outcome_actual == "held"
    assert "outcome: projected running, actual held" in report.reasons


def test_a_step_entered_later_than_tolerance_timing_s_is_a_timing_divergence() -> None:
    report = check(follows(shift_ms=301 * S))
    assert report.divergent and report.category is FailureCategory.RUNTIME
    assert any(r.startswith("timing: step hold off by 301.0 s (tolerance 300 s)") for r in report.reasons)


def test_a_step_entered_early_beyond_tolerance_is_a_timing_divergence_too() -> None:
    report = check(follows(shift_ms=-400 * S))
    assert any(r.startswith("timing: step hold off by -400.0 s") for r in report.reasons)


def test_a_level_beyond_its_tolerance_is_a_value_divergence() -> None:
    report = check([*events(), outputs(END - 2 * S, 0, False), inputs(END - 2 * S, 4.6)])
    assert report.divergent
    assert report.values == ({"point": "level", "projected": 4.0, "actual": 4.6, "tolerance": 0.5},)
    assert any(r.startswith("value: level projected 4, actual 4.6") for r in report.reasons)


def test_a_bad_quality_reading_is_not_taken_as_the_actual_value() -> None:
    bad = (END - S, EntryKind.INPUT, {"values": {"level": [5.9, "bad", "timeout"]}})
    report = check([*follows(), bad])
    assert report.values == ()


def test_a_guard_trip_still_latched_is_divergent_with_category_trip() -> None:
    report = check([*follows(), trip(END - S, "guard_trip", point="level", reason="stale",
                                      value=2500, limit=2000, detail=None),
                    trip(END - S, "safe_state", reason="stale")])
    assert report.divergent and report.category is FailureCategory.TRIP
    assert "trip: stale" in report.reasons and report.outcome_actual == "safe"
    assert report.faults == ({"ts_ms": END - S, "kind": "guard_trip", "reason": "stale"},)


def test_an_exhausted_autonomy_budget_into_safe_state_is_a_latched_trip() -> None:
    report = check([*follows(), trip(END - S, "autonomy_exhausted", autonomy_s=14400, then="safe_state"),
                    trip(END - S, "safe_state", reason="autonomy")])
    assert report.divergent and report.category is FailureCategory.TRIP
    assert report.outcome_actual == "safe"


def test_an_autonomy_budget_ending_in_hold_leaves_the_device_in_offline_hold() -> None:
    report = check([*follows(), trip(END - S, "autonomy_exhausted", autonomy_s=14400, then="hold")])
    assert report.outcome_actual == "offline_hold" and report.category is FailureCategory.NETWORK


def test_an_engine_error_into_safe_state_is_a_latched_trip() -> None:
    report = check([*follows(), trip(END - S, "engine_error", error="boom"),
                    trip(END - S, "safe_state", reason="engine_error")])
    assert report.category is FailureCategory.TRIP and "trip: engine_error" in report.reasons


def test_an_adapter_fault_without_a_trip_makes_a_divergence_category_adapters() -> None:
    fault = (END - S, EntryKind.ADAPTER_FAULT, {"category": "adapters", "what": "read",
                                                 "reason": "timeout", "point": "level"})
    report = check([*events(), fault, outputs(END - 2 * S, 0, False), inputs(END - 2 * S, 4.6)])
    assert report.category is FailureCategory.ADAPTERS
    assert report.faults == ({"ts_ms": END - S, "kind": "adapter_fault", "reason": "timeout"},)


def test_a_contract_that_failed_while_projected_running_is_an_outcome_divergence() -> None:
    failed = (T0 + 300 * S, EntryKind.STEP, {"event": "failed", "step": "fill", "reason": "timeout"})
    report = check([*events(until_ms=T0 + 100 * S), failed])
    assert report.divergent and report.outcome_actual == "failed"
    assert "outcome: projected running, actual failed" in report.reasons
    assert report.category is FailureCategory.RUNTIME


# -- the report -------------------------------------------------------------------------------

def test_report_to_json_survives_a_json_round_trip() -> None:
    report = check([*follows(shift_ms=400 * S), trip(END - S, "guard_trip", point="level",
                                                      reason="out_of_range", value=7.0, limit=6.0,
                                                      detail=None)])
    doc = report.to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert type(doc["category"]) is str and doc["category"] == "trip"  # plain, not the enum
    assert doc["divergent"] is True
    assert doc["confidence"] == projection().confidence
