"""The sync side's pure decisions (hub/sync/decisions.py), each tested alone: no store, no broker."""
from __future__ import annotations

from dataclasses import replace

from contracts.wire import Birth, Telemetry
from hub.states import DeviceEvent, DeviceState
from hub.store import DeviceRecord
from hub.sync.decisions import (CLAIM_REPEAT_MS, MAX_REFUSALS_TRACKED, RefusalLog, caught_up,
                                replayed, silent, stalled, telemetry_plan)

REC = DeviceRecord(id="d1", site="s1", state=DeviceState.LIVE, state_since_ms=0,
                   contract="tank-fill", version=3, boot_id="b1", last_seq=7)


def _telemetry(mode: str = "running", contract: str | None = "tank-fill",
               version: int | None = 3) -> Telemetry:
    return Telemetry(ts_ms=1, values=(), mode=mode, step=None, seq=9, contract=contract,
                     version=version)


def test_telemetry_of_the_recorded_contract_running_starts_it_once_and_is_a_self_loop_when_live() -> None:
    first = telemetry_plan(_telemetry(), REC, set(), fault=False)
    again = telemetry_plan(_telemetry(), REC, {"tank-fill@3"}, fault=False)
    assert (first.check_claim, first.record_contract, first.start, first.event) == (
        True, False, "tank-fill@3", None)
    assert (again.check_claim, again.start) == (False, None)


def test_telemetry_naming_another_contract_is_checked_and_recorded_unless_the_device_is_in_fault() -> None:
    other = _telemetry(version=4)
    ok = telemetry_plan(other, REC, {"tank-fill@3"}, fault=False)
    fault = telemetry_plan(other, replace(REC, state=DeviceState.FAULT), set(), fault=True)
    assert (ok.check_claim, ok.record_contract, ok.start) == (True, True, "tank-fill@4")
    assert (fault.check_claim, fault.record_contract, fault.start, fault.event) == (
        True, False, None, None)


def test_telemetry_moves_an_unknown_or_projected_device_and_starts_nothing_when_idle() -> None:
    for state in (DeviceState.UNKNOWN, DeviceState.PROJECTED):
        plan = telemetry_plan(_telemetry(mode="idle"), replace(REC, state=state), set(), fault=False)
        assert (plan.event, plan.start) == (DeviceEvent.TELEMETRY, None)
    nameless = telemetry_plan(_telemetry(contract=None, version=None), REC, set(), fault=False)
    assert nameless.start is None and nameless.record_contract


def test_a_birth_identical_to_the_stored_one_is_a_replay_only_while_the_device_is_not_offline() -> None:
    birth = Birth(device="d1", site="s1", boot_id="b1", contract=None, version=None, last_seq=7)
    assert replayed(REC, birth)
    assert not replayed(REC, replace(birth, last_seq=8))
    assert not replayed(replace(REC, state=DeviceState.PROJECTED), birth)
    assert not replayed(replace(REC, state=DeviceState.UNKNOWN), birth)
    assert not replayed(None, birth)


def test_caught_up_needs_reconciling_a_target_and_the_cursor_at_it() -> None:
    assert caught_up(DeviceState.RECONCILING, 10, 10)
    assert not caught_up(DeviceState.RECONCILING, 10, 9)
    assert not caught_up(DeviceState.RECONCILING, None, 99)  # it has not spoken since
    assert not caught_up(DeviceState.LIVE, 10, 10)


def test_silence_counts_only_in_watched_states_and_only_past_the_timeout() -> None:
    assert silent(DeviceState.LIVE, 0, 30_001, 30_000)
    assert not silent(DeviceState.LIVE, 0, 30_000, 30_000)
    assert silent(DeviceState.RECONCILED, 0, 40_000, 30_000)
    for state in (DeviceState.PROJECTED, DeviceState.UNKNOWN, DeviceState.FAULT):
        assert not silent(state, 0, 10**9, 30_000)


def test_a_stall_is_journal_beyond_the_cursor_with_the_cursor_still_for_the_timeout() -> None:
    assert stalled(25, 20, 0, 30_001, 30_000)
    assert not stalled(25, 20, 0, 30_000, 30_000)
    assert not stalled(20, 20, 0, 10**9, 30_000)


def test_a_repeated_refusal_is_due_once_a_minute_and_the_log_stays_bounded() -> None:
    log, key = RefusalLog(), ("d1", "claim_mismatch", "x@1")
    assert log.due(key, 0) and not log.due(key, CLAIM_REPEAT_MS - 1)
    assert log.due(key, CLAIM_REPEAT_MS)
    for i in range(MAX_REFUSALS_TRACKED + 1):
        log.due((f"d{i}", None, ""), 0)
    assert len(log) <= MAX_REFUSALS_TRACKED
