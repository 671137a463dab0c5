"""Health from proof, pure (contracts/rollout_health.py): journal records in, a verdict out.

The records are built from the journal's own body records (contracts/journal_events.py), as the
agent writes them: a BOOT at t0, cycle entries on the t0 + k*period grid, tagged with the contract.
"""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.engine_state import EngineState, EventKind, Mode
from contracts.errors import ContractInvalid
from contracts.journal_events import (AdapterFaultBody, AgentEvent, BootBody, ContractBody,
                                      ContractChange, EventBody, GapBody, InputBody, KeyframeBody,
                                      OverrunBody, StepBody, TripBody)
from contracts.rollout_health import (Evidence, Gate, Health, HealthSpec, TelemetryView, judge,
                                      parse_health)

NAME, HASH, OTHER = "tank-fill", "a" * 64, "b" * 64
T0, PERIOD = 1_000_000, 100
SPEC = HealthSpec(window_ms=10_000, min_cycles=50)


class Journal:
    """Records as an agent journals them: seqs in order, cycle entries at t0 + k*period."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int, Any]] = []

    def add(self, ts: int, body: Any) -> int:
        seq = len(self.records) + 1
        self.records.append((seq, ts, body))
        return seq

    def start(self, digest: str = HASH, t0: int = T0, version: int = 4) -> None:
        self.add(t0 - 50, ContractBody(event=ContractChange.ACCEPTED, contract=NAME,
                                       version=version, hash=digest))
        self.boot(digest, t0, version)

    def boot(self, digest: str, t0: int, version: int = 4) -> None:
        self.add(t0, BootBody(boot_id="b", t0_ms=t0, period_ms=PERIOD, contract=NAME,
                              version=version, hash=digest, state=EngineState(mode=Mode.PENDING),
                              resumed=False))
        self.add(t0, EventBody(event=AgentEvent.OUTPUT_SYNC, fields={"writes": {}}, contract=NAME))

    def level(self, k: int, value: float, *, t0: int = T0) -> int:
        return self.add(t0 + k * PERIOD, InputBody(values={"level": [value, "good", None]},
                                                   contract=NAME))

    def keyframe(self, k: int, value: float, step: str = "fill") -> int:
        return self.add(T0 + k * PERIOD, KeyframeBody(
            values={"level": [value, "good", None]}, outputs={}, mode=Mode.RUNNING, step=step,
            contract=NAME))

    def run(self, cycles: range, value: float = 2.0) -> None:
        for k in cycles:
            self.level(k, value + k / 1000)


def verdict(j: Journal, spec: HealthSpec = SPEC, **kw: Any) -> Any:
    kw.setdefault("now_ms", T0 + 10 ** 6)
    return judge(j.records, contract=NAME, content_hash=HASH, spec=spec, pushed_ms=T0 - 100, **kw)


def test_a_device_is_pending_until_its_journal_shows_the_accept_then_the_window_passed() -> None:
    j = Journal()
    assert verdict(j).gate == Gate.ACCEPTED and verdict(j).health is Health.PENDING
    j.start()
    j.keyframe(0, 2.0)
    j.run(range(1, 100))  # cycles 0..99: 10 s of a 10 s window, the last at t0 + 9.9 s
    pending = verdict(j)
    j.level(100, 2.5)  # at t0 + 10 s: proof that the window passed
    healthy = verdict(j)
    assert pending.health is Health.PENDING and pending.gate is None
    assert healthy.health is Health.HEALTHY
    shown = {e.what: e for e in healthy.evidence}
    assert shown["accepted"].seq == 1 and shown["boot"].seq == 2
    assert shown["cycles"].value == 100 and shown["window"].seq == j.records[-1][0]


def test_the_hub_clock_also_holds_the_verdict_until_the_push_plus_the_window() -> None:
    j = Journal()
    j.start()
    j.run(range(0, 101))
    assert verdict(j, now_ms=T0 + 5_000).health is Health.PENDING
    assert verdict(j, now_ms=T0 + 10_000).health is Health.HEALTHY


def test_a_guard_trip_inside_the_window_fails_at_once_with_its_seq_and_fields() -> None:
    j = Journal()
    j.start()
    j.run(range(0, 30))
    trip = j.add(T0 + 30 * PERIOD, TripBody(event=EventKind.GUARD_TRIP,
                                            fields={"reason": "out_of_range", "point": "level"},
                                            contract=NAME))
    v = verdict(j, now_ms=T0 + 3_000)
    assert v.health is Health.FAILED and v.gate == Gate.GUARD_TRIP
    assert v.evidence == (Evidence(what="guard_trip", seq=trip, ts_ms=T0 + 3_000,
                                   value={"reason": "out_of_range", "point": "level"}),)


def test_a_trip_after_the_window_and_another_contracts_trip_do_not_count() -> None:
    j = Journal()
    j.start()
    j.run(range(0, 101))
    j.add(T0 + 50 * PERIOD, TripBody(event=EventKind.GUARD_TRIP, fields={}, contract="other"))
    j.add(T0 + 101 * PERIOD, TripBody(event=EventKind.GUARD_TRIP, fields={}, contract=NAME))
    assert verdict(j).health is Health.HEALTHY


@pytest.mark.parametrize(("body", "gate"), [
    (EventBody(event=AgentEvent.SECOND_WRITER, fields={"point": "pump_speed"}, contract=NAME),
     Gate.SECOND_WRITER),
    (EventBody(event=AgentEvent.SAFE_UNCONFIRMED, fields={}, contract=NAME), Gate.SAFE_UNCONFIRMED),
    (EventBody(event=AgentEvent.MODEL_DIVERGENCE, fields={}, contract=NAME), Gate.MODEL_DIVERGENCE),
    (AdapterFaultBody(what="read", reason="timeout", point="level", contract=NAME),
     Gate.ADAPTER_FAULT),
    (TripBody(event=EventKind.AUTONOMY_EXHAUSTED, fields={"then": "safe_state"}, contract=NAME),
     Gate.GUARD_TRIP),
])
def test_each_bad_occurrence_fails_its_own_gate(body: Any, gate: Gate) -> None:
    j = Journal()
    j.start()
    j.run(range(0, 10))
    j.add(T0 + 10 * PERIOD, body)
    assert verdict(j).gate == gate and verdict(j).health is Health.FAILED


def test_a_recovered_read_is_no_fault() -> None:
    j = Journal()
    j.start()
    j.run(range(0, 10))
    j.add(T0 + 10 * PERIOD, AdapterFaultBody(what="read_recovered", reason="ok", point="level",
                                             contract=NAME))
    j.run(range(11, 101))
    assert verdict(j).health is Health.HEALTHY


def test_a_rollout_fallback_fails_with_the_fallback_and_the_trip_that_caused_it() -> None:
    j = Journal()
    j.start()
    j.run(range(0, 10))
    trip = j.add(T0 + 10 * PERIOD, TripBody(event=EventKind.GUARD_TRIP, fields={}, contract=NAME))
    j.boot(OTHER, T0 + 1_200, version=3)  # the known-good runs again
    fields = {"deployment": "dep-000001", "known_good": OTHER, "fallback": f"{NAME}@3",
              "cause": "guard_trip", "cause_seq": trip}
    fell = j.add(T0 + 1_200, EventBody(event="rollout_fallback", fields=fields, contract=NAME))
    v = verdict(j)
    assert v.health is Health.FAILED and v.gate == Gate.ROLLOUT_FALLBACK
    assert [e.seq for e in v.evidence] == [fell, trip] and v.evidence[0].value == fields


def test_the_fallback_of_a_later_version_to_this_one_is_not_this_ones_failure() -> None:
    j = Journal()
    j.start()
    j.run(range(0, 101))
    j.start(OTHER, T0 + 20_000, version=5)
    j.add(T0 + 21_000, EventBody(event="rollout_fallback", contract=NAME, fields={
        "deployment": "d", "known_good": HASH, "fallback": f"{NAME}@4", "cause": "guard_trip",
        "cause_seq": 1}))
    assert verdict(j).health is Health.HEALTHY


def test_too_few_cycles_in_the_window_fail_once_the_window_is_proven() -> None:
    j = Journal()
    j.start()
    j.run(range(0, 20))
    j.add(T0 + 20 * PERIOD, OverrunBody(late_ms=6_000, skipped=60, resume_ms=T0 + 80 * PERIOD,
                                        contract=NAME))
    j.run(range(80, 101))
    v = verdict(j)
    assert v.health is Health.FAILED and v.gate == Gate.CYCLES
    assert v.evidence[0] == Evidence(what="cycles", value=40)  # 100 on the grid, 60 skipped


def test_a_named_step_must_be_entered_inside_the_window() -> None:
    spec = HealthSpec(window_ms=10_000, step="hold")
    j = Journal()
    j.start()
    j.run(range(0, 101))
    assert verdict(j, spec).gate == Gate.STEP and verdict(j, spec).health is Health.FAILED
    j2 = Journal()
    j2.start()
    j2.run(range(0, 40))
    entered = j2.add(T0 + 40 * PERIOD, StepBody(event=EventKind.STEP_ENTERED,
                                                fields={"step": "hold", "index": 1}, contract=NAME))
    j2.run(range(41, 101))
    v = verdict(j2, spec)
    assert v.health is Health.HEALTHY and Evidence(what="step", seq=entered, ts_ms=T0 + 4_000,
                                                   value="hold") in v.evidence


def test_telemetry_is_judged_over_the_journaled_values_at_the_windows_end() -> None:
    spec = HealthSpec(window_ms=10_000, telemetry="level >= 1 and level <= 5")
    j = Journal()
    j.start()
    j.level(0, 0.5)        # below 1 at the start: the condition is about the window's end
    j.run(range(1, 90), value=2.0)
    seq = j.level(90, 7.5)
    j.level(101, 7.5)      # the window's proof
    v = verdict(j, spec)
    assert v.health is Health.FAILED and v.gate == Gate.TELEMETRY
    assert v.evidence[0] == Evidence(what="level", seq=seq, ts_ms=T0 + 9_000, value=7.5)


def test_live_telemetry_newer_than_the_window_can_still_fail_the_condition() -> None:
    spec = HealthSpec(window_ms=10_000, telemetry="level <= 5")
    j = Journal()
    j.start()
    j.run(range(0, 101), value=2.0)
    assert verdict(j, spec).health is Health.HEALTHY
    live = TelemetryView(values={"level": 6.0}, ts_ms=T0 + 20_000)
    v = verdict(j, spec, telemetry=live)
    assert v.gate == Gate.TELEMETRY and v.evidence[0] == Evidence(what="level", ts_ms=T0 + 20_000,
                                                                  value=6.0)


def test_another_version_taking_over_inside_the_window_fails_the_cycles_gate() -> None:
    j = Journal()
    j.start()
    j.run(range(0, 10))
    j.start(OTHER, T0 + 2_000, version=5)
    j.run(range(0, 200))
    v = verdict(j)
    assert v.gate == Gate.CYCLES and v.evidence[0].what == "replaced"


def test_an_agent_restart_inside_the_window_counts_the_cycles_of_both_segments() -> None:
    j = Journal()
    j.start()
    j.run(range(0, 30))  # 30 cycles, then the agent dies; it restarts 2 s later
    j.boot(HASH, T0 + 5_000)
    for k in range(0, 51):  # its cycle 50 is at the window's end: the proof, not inside it
        j.level(k, 2.0, t0=T0 + 5_000)
    v = verdict(j, HealthSpec(window_ms=10_000, min_cycles=79))
    assert v.health is Health.HEALTHY
    assert Evidence(what="cycles", value=30 + 50) in v.evidence


def test_entries_dropped_inside_the_window_keep_the_verdict_pending_with_the_gap() -> None:
    j = Journal()
    j.start()
    j.run(range(0, 50))
    gap = j.add(T0 + 50 * PERIOD, GapBody(dropped_from=60, dropped_to=70, reason="retention"))
    j.run(range(51, 101))
    v = verdict(j)
    assert v.health is Health.PENDING
    assert v.evidence[-1] == Evidence(what="journal_gap", seq=gap, ts_ms=T0 + 5_000, value=[60, 70])


def test_a_refusal_of_the_pushed_hash_fails_refused() -> None:
    j = Journal()
    j.add(T0, ContractBody(event=ContractChange.REFUSED, contract=NAME, version=4, hash=HASH,
                           detail="write conflict"))
    assert verdict(j).gate == Gate.REFUSED and verdict(j).health is Health.FAILED


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 150), st.integers(1, 20)), max_size=6))
def test_the_cycle_count_equals_the_cycles_that_ran_whatever_the_overruns(
        overruns: list[tuple[int, int]]) -> None:
    """A loop that journals every cycle it runs and an OVERRUN for each skip, as agent/scan.py
    does: the proven count inside the window is exactly the cycles it ran there."""
    j, k, ran, skips = Journal(), 0, 0, dict(overruns)
    j.start()
    while k <= 120:
        if k in skips:
            n = skips.pop(k)
            j.add(T0 + k * PERIOD, OverrunBody(late_ms=n * PERIOD, skipped=n,
                                               resume_ms=T0 + (k + n) * PERIOD, contract=NAME))
            k += n
            continue
        j.level(k, 2.0)
        ran += k < 100
        k += 1
    v = verdict(j, HealthSpec(window_ms=10_000))
    assert Evidence(what="cycles", value=ran) in v.evidence


def test_parse_health_reads_the_deployment_form_and_round_trips() -> None:
    doc = {"window_s": 30, "min_cycles": 10, "step": None,
           "telemetry": "level >= 1 and level <= 5", "commissioning": True}
    spec = parse_health(doc)
    assert spec == HealthSpec(window_ms=30_000, min_cycles=10, telemetry=doc["telemetry"],
                              commissioning=True)
    assert parse_health(spec.to_mapping()) == spec
    assert parse_health({"window_s": 0.5 + 1}).window_ms == 1_500


def test_parse_health_names_every_bad_field() -> None:
    with pytest.raises(ContractInvalid) as err:
        parse_health({"window_s": True, "min_cycles": -1, "step": "", "telemetry": "level >=",
                      "commissioning": "yes", "windows": 3})
    paths = [i.path for i in err.value.issues]
    assert paths == ["health.windows", "health.window_s", "health.min_cycles", "health.step",
                     "health.telemetry", "health.commissioning"]
    assert "column" in str(err.value.issues[4])
    with pytest.raises(ContractInvalid, match="health.window_s"):
        parse_health({"window_s": None})
    assert parse_health({}) == HealthSpec(window_ms=300_000)  # five minutes when none is named
    with pytest.raises(ContractInvalid, match="health: must be a mapping"):
        parse_health([])  # type: ignore[arg-type]
