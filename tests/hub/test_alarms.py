"""Which device facts raise and clear which alarms — the pure tables of hub/alarms.py."""
from __future__ import annotations

import pytest

from hub.alarms import AlarmKind as K
from contracts.limits import QUOTE_CHARS
from hub.alarms import detail_of, journal_alarm, telemetry_changes


@pytest.mark.parametrize(("body", "raised", "cleared"), [
    ({"event": "guard_trip", "reason": "stale", "point": "level"}, K.GUARD_TRIP, ()),
    ({"event": "autonomy_exhausted", "then": "safe_state"}, K.GUARD_TRIP, ()),
    ({"event": "safe_unconfirmed", "points": ["pump_speed"], "attempts": 3}, K.SAFE_UNCONFIRMED, ()),
    ({"event": "safe_confirmed", "elapsed_ms": 120}, None, (K.SAFE_UNCONFIRMED,)),
    ({"event": "second_writer", "point": "pump_speed"}, K.SECOND_WRITER, ()),
    ({"event": "second_writer_cleared", "point": "pump_speed"}, None, (K.SECOND_WRITER,)),
    ({"event": "resume_refused", "command": "resume:x", "cause": "stale:level"}, K.RESUME_REFUSED, ()),
    ({"event": "command_refused", "kind": "resume", "reason": "stale"}, K.RESUME_REFUSED, ()),
    ({"event": "command_refused", "kind": "hold", "reason": "mode"}, None, ()),
    ({"event": "step_entered", "step": "fill"}, None, ()),
    ({"event": "rollout_fallback", "fallback": "tank-fill@2", "cause": "guard_trip",
      "cause_seq": 41}, K.ROLLOUT_FALLBACK, ()),
    ({"event": "rollout_fallback_failed", "reason": "not stored"}, K.ROLLOUT_FALLBACK, ()),
])
def test_journal_events_raise_and_clear_alarms(body: dict[str, object], raised: K | None,
                                               cleared: tuple[K, ...]) -> None:
    assert journal_alarm(body) == (raised, cleared)


def test_an_accepted_resume_clears_the_trip_its_refusals_and_escalations() -> None:
    _, cleared = journal_alarm({"event": "resumed", "reason": "safe", "command": "resume:x"})
    assert {K.GUARD_TRIP, K.RESUME_REFUSED, K.ESCALATED, K.SAFE_UNCONFIRMED,
            K.ROLLOUT_FALLBACK} <= set(cleared)


def test_an_alarm_detail_quotes_device_input_only_in_bounded_pieces() -> None:
    detail = detail_of("guard_trip", {"reason": "x" * 10_000, "point": "level", "value": 6e35})
    assert len(detail) < 3 * QUOTE_CHARS and "point=level" in detail and "value=6e+35" in detail


def test_telemetry_raises_a_trip_once_when_it_appears_and_clears_it_when_running_again() -> None:
    first = telemetry_changes(None, "unconfirmed", "stale:level", "safe")
    same = telemetry_changes({"safe": "unconfirmed", "trip": "stale:level"}, "unconfirmed",
                             "stale:level", "safe")
    confirmed = telemetry_changes({"safe": "unconfirmed", "trip": "stale:level"}, "confirmed",
                                  "stale:level", "safe")
    resumed = telemetry_changes({"safe": "confirmed", "trip": "stale:level"}, None, None, "running")
    assert [k for k, _ in first.raise_] == [K.GUARD_TRIP, K.SAFE_UNCONFIRMED]
    assert same.raise_ == () and same.clear == ()
    assert confirmed.clear == (K.SAFE_UNCONFIRMED,) and confirmed.raise_ == ()
    assert K.GUARD_TRIP in resumed.clear


def test_telemetry_from_an_older_agent_without_safe_or_trip_changes_no_alarm() -> None:
    assert telemetry_changes(None, None, None, "running") == telemetry_changes(
        {"safe": None, "trip": None}, None, None, "safe")


def test_a_trip_alarm_names_the_adapter_fault_in_words() -> None:
    words = "exception 2 (illegal data address) at holding 63"
    body = {"event": "guard_trip", "point": "level", "reason": "bad_quality", "detail": words}
    assert journal_alarm(body)[0] == "guard_trip"
    assert detail_of("guard_trip", body) == f"guard_trip reason=bad_quality point=level detail={words}"


def test_a_trip_alarm_says_a_device_exception_in_words_not_its_code() -> None:
    body = {"event": "guard_trip", "point": "flow", "reason": "bad_quality", "detail": "exception:2"}
    assert detail_of("guard_trip", body) == (
        "guard_trip reason=bad_quality point=flow detail=exception 2 (illegal data address)")
    assert detail_of("guard_trip", {**body, "detail": "timeout"}).endswith("detail=timeout")


def test_a_telemetry_trip_alarm_names_its_points_fault_in_words() -> None:
    words = "exception 2 (illegal data address) at input 70"
    changes = telemetry_changes(None, None, "bad_quality:flow", "safe", {"flow": words})
    assert changes.raise_ == ((K.GUARD_TRIP, f"trip bad_quality:flow (telemetry): flow {words}"),)
    assert telemetry_changes(None, None, "stale:level", "safe", {"flow": words}).raise_ == (
        (K.GUARD_TRIP, "trip stale:level (telemetry)"),)


def test_model_divergence_raises_its_alarm_and_the_cleared_event_or_a_new_contract_clears_it() -> None:
    assert journal_alarm({"event": "model_divergence", "point": "level"}) == ("model_divergence", ())
    assert "model_divergence" in journal_alarm({"event": "model_divergence_cleared"})[1]
    assert "model_divergence" in journal_alarm({"event": "started"})[1]
