"""The rollout fallback's rules (agent/fallback_rules.py) — pure: which entries are causes, the
window, the state the known-good contract starts in."""
from __future__ import annotations

from typing import Any

import pytest

from agent.fallback_rules import (
    Status, Window, cause_of, expire, fallback_fields, fallback_state, judge, open_window,
)
from contracts.chain import EntryKind
from contracts.engine import Engine, Mode
from contracts.guards import TripReason
from contracts.inputs import Command, CommandKind, Inputs, Quality, Reading
from tests.contracts.test_engine import tank

GOOD = "ab" * 32
ROLLOUT = {"deployment": "dep-1", "health_window_s": 10, "known_good": GOOD}


def _window() -> Window:
    w = open_window(tank(rollout=ROLLOUT), 1_000)
    assert w is not None
    return w


def _body(event: str, **fields: Any) -> dict[str, Any]:
    return {"event": event, "of": "tank-fill", **fields}


def test_a_window_opens_only_for_a_contract_naming_a_known_good() -> None:
    w = _window()
    assert (w.contract, w.label, w.deployment, w.known_good) == ("tank-fill", "tank-fill@3",
                                                                  "dep-1", GOOD)
    assert (w.boot_ms, w.deadline_ms, w.status) == (1_000, 11_000, Status.OPEN)
    assert open_window(tank(), 1_000) is None
    assert open_window(tank(rollout={"deployment": "dep-1", "health_window_s": 10}), 1_000) is None
    assert open_window(tank(rollout=ROLLOUT), 1_000, closed=True).status is Status.CLOSED  # type: ignore[union-attr]
    assert Window.from_mapping(w.to_mapping()) == w


@pytest.mark.parametrize(("kind", "body", "cause"), [
    (EntryKind.TRIP, _body("guard_trip", reason="out_of_range", point="level"), "guard_trip"),
    (EntryKind.TRIP, _body("autonomy_exhausted", then="safe_state"), "autonomy_exhausted"),
    (EntryKind.TRIP, _body("engine_error", reason="engine_error"), "engine_error"),
    (EntryKind.EVENT, _body("second_writer", point="pump_speed"), "second_writer"),
    (EntryKind.EVENT, _body("model_divergence", point="level"), "model_divergence"),
    (EntryKind.EVENT, _body("safe_unconfirmed", attempts=3), "safe_unconfirmed"),
    # The first attempt of every safe-state episode (an ordinary trip or end confirms it at once):
    (EntryKind.EVENT, _body("safe_unconfirmed", attempts=1), None),
    (EntryKind.TRIP, _body("guard_trip", reason="interlock", point="tank-drain"), None),
    (EntryKind.TRIP, _body("safe_state", reason="out_of_range"), None),
    (EntryKind.STEP, _body("completed"), None),
    (EntryKind.EVENT, _body("second_writer_cleared"), None),
    (EntryKind.INPUT, {"values": {}, "of": "tank-fill"}, None),
])
def test_causes_are_the_devices_own_evidence(kind: EntryKind, body: dict[str, Any],
                                              cause: str | None) -> None:
    assert cause_of(kind, body) == cause


def test_a_cause_within_the_window_falls_back_and_names_its_seq() -> None:
    w = judge(_window(), EntryKind.TRIP, _body("guard_trip", reason="stale"), 42, 11_000)
    assert w is not None and (w.status, w.cause, w.cause_seq) == (Status.FALLING, "guard_trip", 42)
    assert fallback_fields(w, "tank-fill@2") == {
        "deployment": "dep-1", "known_good": GOOD, "fallback": "tank-fill@2",
        "cause": "guard_trip", "cause_seq": 42}
    assert judge(w, EntryKind.TRIP, _body("guard_trip"), 43, 11_000) is None  # decided once


def test_after_the_window_nothing_falls_back_and_the_window_closes() -> None:
    w = judge(_window(), EntryKind.TRIP, _body("guard_trip", reason="stale"), 42, 11_001)
    assert w is not None and w.status is Status.CLOSED and w.cause is None
    assert judge(w, EntryKind.TRIP, _body("guard_trip"), 43, 5_000) is None
    assert expire(_window(), 11_000) is None
    assert expire(_window(), 11_001).status is Status.CLOSED  # type: ignore[union-attr]


def test_entries_of_other_contracts_or_of_an_earlier_version_are_not_evidence() -> None:
    w = _window()
    assert judge(w, EntryKind.TRIP, {**_body("guard_trip"), "of": "tank-drain"}, 5, 2_000) is None
    assert judge(w, EntryKind.TRIP, _body("guard_trip"), 5, 999) is None  # before its BOOT
    assert judge(w, EntryKind.EVENT, _body("step_entered"), 5, 2_000) is None


def test_the_known_good_starts_latched_in_its_safe_state_and_only_a_resume_runs_it() -> None:
    good = tank(version=2, safe_state={"pump_speed": 25, "valve_open": False})
    state = fallback_state(good)
    assert state.mode is Mode.SAFE and state.trip is TripReason.ROLLOUT_FALLBACK
    assert dict(state.outputs) == {"pump_speed": 25, "valve_open": False}
    engine, now = Engine(good), good.valid_from + 1000
    readings = {"level": Reading(value=1.0, quality=Quality.GOOD, ts_ms=now),
                "high_level": Reading(value=False, quality=Quality.GOOD, ts_ms=now)}
    idle = engine.step(state, Inputs(readings=readings, online=False, last_contact_ms=now), now)
    assert idle.state.mode is Mode.SAFE and idle.writes == ()  # never leaves by itself
    resume = Command(kind=CommandKind.RESUME, id="op-1")
    run = engine.step(idle.state, Inputs(readings=readings, online=True, commands=(resume,)),
                      now + 100)
    assert run.state.mode is Mode.RUNNING and run.state.trip is None
    assert [e.get("step") for e in run.events if e.kind.value == "step_entered"] == ["fill"]
