"""HealthJudge over a real hub store (SQLite): judged incrementally it says what the pure judge says
over the whole journal; the hub's own refusal record; which commissioning report counts."""
from __future__ import annotations

from typing import Any

import pytest

from contracts.chain import GENESIS, Entry, make_entry
from contracts.chain_rows import row_of
from contracts.commission_report import CommissionReport
from contracts.engine_state import EventKind
from contracts.journal_events import TripBody, decode_entry, encode
from contracts.rollout_health import Gate, Health, HealthSpec, judge
from hub.health import HealthJudge
from hub.service import HubService
from hub.states import ContractEvent
from hub.store import HubStore
from hub.store.commissioning import CommissioningRecord
from tests.contracts.test_rollout_health import HASH, NAME, PERIOD, T0, Journal

DEVICE, CID = "pump-station-7", f"{NAME}@4"
SPEC = HealthSpec(window_ms=10_000, min_cycles=50, telemetry="level >= 1")


def _store_all(store: HubStore, j: Journal, entries: list[Entry]) -> list[Entry]:
    """Chain and store `j`'s records not stored yet; returns every stored entry."""
    prev = entries[-1].hash if entries else GENESIS
    new = []
    for seq, ts, body in j.records[len(entries):]:
        e = make_entry(prev, seq, ts, body.KIND, encode(body))
        new.append(e)
        prev = e.hash
    store.journal.insert_rows(DEVICE, [row_of(e) for e in new])
    return entries + new


@pytest.mark.parametrize(("trip_at", "expected"), [
    (None, [Health.PENDING, Health.PENDING, Health.HEALTHY]),
    (40, [Health.PENDING, Health.FAILED, Health.FAILED]),  # the first entry of the second batch
])
def test_judged_batch_by_batch_it_agrees_with_the_pure_judge_over_the_whole_journal(
        store: HubStore, trip_at: int | None, expected: list[Health]) -> None:
    hub, j, entries = HealthJudge(store, {}), Journal(), []
    for k in range(3):  # the device's past, before the push
        j.level(k - 100, 0.5, t0=T0)
    j.start()
    verdicts = []
    for chunk in (range(0, 40), range(40, 80), range(80, 101)):
        if chunk.start == trip_at:
            j.add(T0 + trip_at * PERIOD, TripBody(event=EventKind.GUARD_TRIP, fields={},
                                                  contract=NAME))
        j.run(chunk)
        entries = _store_all(store, j, entries)
        now = T0 + 20_000
        incremental = hub.judge(DEVICE, CID, HASH, T0 - 100, SPEC, now, canary=False)
        whole = judge([(e.seq, e.ts_ms, decode_entry(e)) for e in entries], contract=NAME,
                      content_hash=HASH, spec=SPEC, pushed_ms=T0 - 100, now_ms=now)
        assert incremental == whole
        verdicts.append(incremental.health)
    assert verdicts == expected
    hub.forget(DEVICE)
    assert hub.judge(DEVICE, CID, HASH, T0 - 100, SPEC, T0 + 20_000, canary=False).health \
        is expected[-1]  # folded again from the store


async def test_a_push_the_device_refused_on_its_result_topic_fails_refused(
        store: HubStore, service: HubService, tank_fill: dict[str, Any]) -> None:
    record = await service.submit_contract(tank_fill, "test")
    store.contracts.apply_event(record.id, ContractEvent.REFUSE, 1, "older_version: have 9")
    verdict = HealthJudge(store, {}).judge(record.device, record.id, record.content_hash, 0,
                                           SPEC, 1, canary=False)
    assert verdict.health is Health.FAILED and verdict.gate == Gate.REFUSED
    assert verdict.evidence[0].value == "older_version: have 9"


def _report(version: int, ok: bool) -> dict[str, Any]:
    point = {"name": "level", "endpoint": "main", "where": "unit 1 input 0", "type": "float32",
             "direction": "read", "unit": "m", "value": 2.0, "reads": 10, "good": 10,
             "range": "ok", "motion": "moving", "readback": None,
             "verdict": "ok" if ok else "fail", "hints": [] if ok else ["out of range"],
             "error": None}
    return CommissionReport.from_mapping({
        "v": 1, "contract": NAME, "version": version, "device": DEVICE, "started_ms": T0,
        "seconds": 1.0, "ok": ok, "points": [point], "endpoints": []}).to_mapping()


def _answered(store: HubStore, rid: str, received_ms: int, report: dict[str, Any]) -> None:
    store.commissioning.add(CommissioningRecord(id=rid, device=DEVICE, requested_ms=received_ms - 1,
                                                seconds=1.0, actor="test"))
    store.commissioning.answer(rid, DEVICE, received_ms, report=report, ok=report["ok"], refused=None)


def test_only_a_report_of_the_pushed_version_received_after_the_push_counts(store: HubStore) -> None:
    spec = HealthSpec(window_ms=10_000, commissioning=True)
    j, hub = Journal(), HealthJudge(store, {})
    j.start()
    j.run(range(0, 101))
    _store_all(store, j, [])

    def verdict() -> Any:
        return hub.judge(DEVICE, CID, HASH, T0 - 100, spec, T0 + 20_000, canary=True)
    _answered(store, "before", T0 - 500, _report(4, ok=True))  # before the push
    before = verdict()
    _answered(store, "other", T0 + 100, _report(3, ok=True))   # another version's
    other = verdict()
    _answered(store, "failing", T0 + 200, _report(4, ok=False))
    failing = verdict()
    _answered(store, "passing", T0 + 300, _report(4, ok=True))
    passing = verdict()
    assert before.gate == other.gate == Gate.COMMISSIONING
    assert before.health is other.health is Health.PENDING
    assert failing.health is Health.FAILED and failing.gate == Gate.COMMISSIONING
    assert failing.evidence[0].what == "commissioning:level"
    assert failing.evidence[0].value == "out of range"
    assert passing.health is Health.HEALTHY
