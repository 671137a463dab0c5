"""A wave's gate from its devices' verdicts — pure rules (hub/rollout_gate.py)."""
from __future__ import annotations

from dataclasses import replace

from contracts.rollout_strategy import Abort
from hub.rollout_gate import decide
from hub.states import ExecutionState
from hub.store.deployments import ExecutionRecord

_X = ExecutionState


def _rows(*states: ExecutionState, wave: int = 1, reason: str | None = None) -> list[ExecutionRecord]:
    return [ExecutionRecord(deployment="dep-000001", device=f"d{wave}-{i}", wave=wave, state=s,
                            contract="c", updated_ms=0,
                            reason=reason if s is _X.FAILED else None)
            for i, s in enumerate(states)]


def test_the_canary_gate_fails_at_its_first_failed_device_before_the_others_settle() -> None:
    canary = _rows(_X.FAILED, _X.PUSHED, wave=0)
    result = decide("canary", canary, canary, Abort(failure_pct=100, min_executed=50))
    assert result.status == "failed" and [d.device for d in result.failed] == ["d0-0"]


def test_a_wave_passes_under_the_abort_threshold_and_fails_once_it_is_crossed() -> None:
    done = _rows(*[_X.HEALTHY] * 9, wave=0) + _rows(_X.FAILED, wave=1)
    wave = [d for d in done if d.wave == 1]
    assert decide("wave", wave, done, Abort(failure_pct=20, min_executed=1)).status == "passed"
    assert decide("wave", wave, done, Abort(failure_pct=10, min_executed=1)).status == "failed"
    # Too few executed yet to judge by a percentage: the expansion goes on.
    assert decide("wave", wave, wave, Abort(failure_pct=10, min_executed=5)).status == "passed"


def test_unreachable_devices_are_counted_apart_never_as_executed() -> None:
    wave = _rows(_X.HEALTHY, _X.UNREACHABLE, _X.UNREACHABLE, _X.FAILED)
    result = decide("wave", wave, wave, Abort(failure_pct=60, min_executed=1))
    assert result.status == "passed"  # 1 of 2 executed failed (50 %), not 1 of 4 (25 %)
    assert result.counts == {"healthy": 1, "failed": 1, "unreachable": 2, "skipped": 0}
    assert decide("wave", wave, wave, Abort(failure_pct=50, min_executed=1)).status == "failed"
    assert decide("wave", wave, wave, Abort(failure_pct=10, min_executed=3)).status == "passed"


def test_a_device_that_fell_back_by_itself_fails_the_gate_whatever_the_threshold() -> None:
    wave = _rows(*[_X.HEALTHY] * 3, _X.FAILED, reason="rollout_fallback")
    assert decide("wave", wave, wave, Abort(failure_pct=100, min_executed=100)).status == "failed"


def test_a_gate_waits_while_a_device_is_unsettled() -> None:
    wave = _rows(_X.HEALTHY, _X.ACCEPTED, _X.RUNNING)
    assert decide("wave", wave, wave, Abort()).status == "pending"


def test_a_device_rolled_back_alone_still_counts_as_failed_in_later_gates() -> None:
    alone = [replace(d, state=_X.ROLLED_BACK, rollback={"scope": "device", "result": "restored"})
             for d in _rows(_X.FAILED, wave=1)]
    done = _rows(*[_X.HEALTHY] * 4, wave=0) + alone + _rows(_X.FAILED, wave=2)
    wave2 = [d for d in done if d.wave == 2]
    result = decide("wave", wave2, done, Abort(failure_pct=30, min_executed=1))
    assert result.status == "failed"  # 2 of 6 executed (33 %), not 1 of 5 (20 %)
    wave1 = [d for d in done if d.wave == 1]
    passed = decide("wave", wave1, done[:5], Abort(failure_pct=30, min_executed=1))
    assert passed.status == "passed" and passed.counts["failed"] == 1
    assert [d.device for d in passed.failed] == ["d1-0"]
    # A device rolled back with the whole deployment (no reason of its own) is no failure.
    back = [replace(d, state=_X.ROLLED_BACK) for d in _rows(_X.HEALTHY, wave=1)]
    assert decide("wave", back, back, Abort()).counts["failed"] == 0
