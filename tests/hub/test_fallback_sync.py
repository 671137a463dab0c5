"""An agent's own fallback (interface I2) as the hub ingests it over a real broker: the tripped
contract fails, the known-good one it runs again is held (superseded → held), an alarm says so
until an operator's resume, the agent's act is audited, and the health gate fails on it.

The journal is the one an agent writes around a fallback (its bodies are the journal's own
records, contracts/journal_events.py): accepted + BOOT of tank-fill@3, cycles, a guard trip, the
BOOT of the known-good tank-fill@2 and the `rollout_fallback` event tagged with the tripped one.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.engine_state import EngineState, EventKind, Mode
from contracts.journal_events import (BootBody, ContractBody, ContractChange, EventBody, InputBody,
                                      TripBody, encode)
from contracts.rollout_health import Gate, Health, HealthSpec
from contracts.topics import Channel
from hub.alarms import AlarmKind
from hub.app import HubRuntime
from hub.audit import AuditAction, Outcome
from hub.health import HealthJudge
from hub.states import ContractStatus
from hub.store import ContractRecord
from tests.agent.conftest import tank_document
from tests.hub.sync_helpers import batch, born_device, publish, running_hub, wait_ack
from tests.waiting import eventually

NAME, PERIOD = "tank-fill", 50


def _journal(bodies: list[tuple[int, Any]]) -> list[Entry]:
    prev, out = GENESIS, []
    for seq, (ts, body) in enumerate(bodies, start=1):
        e = make_entry(prev, seq, ts, body.KIND, encode(body))
        out.append(e)
        prev = e.hash
    return out


def _boot(record: ContractRecord, t0: int) -> BootBody:
    return BootBody(boot_id="b" * 32, t0_ms=t0, period_ms=PERIOD, contract=NAME,
                    version=record.version, hash=record.content_hash,
                    state=EngineState(mode=Mode.PENDING), resumed=False)


def _fallback_journal(v2: ContractRecord, v3: ContractRecord, *, known_good: str | None = None,
                      ) -> tuple[list[Entry], dict[str, Any]]:
    t0 = time.time_ns() // 1_000_000
    level = [(t0 + k * PERIOD, InputBody(values={"level": [1.0 + k / 100, "good", None]},
                                         contract=NAME)) for k in range(5)]
    trip = TripBody(event=EventKind.GUARD_TRIP, fields={"reason": "out_of_range", "point": "level"},
                    contract=NAME)
    fields = {"deployment": "dep-000001", "known_good": known_good or v2.content_hash,
              "fallback": v2.id, "cause": "guard_trip", "cause_seq": 8}
    journal = _journal([
        (t0 - 10, ContractBody(event=ContractChange.ACCEPTED, contract=NAME, version=3,
                               hash=v3.content_hash)),
        (t0, _boot(v3, t0)), *level,
        (t0 + 5 * PERIOD, trip),                                     # seq 8
        (t0 + 6 * PERIOD, _boot(v2, t0 + 6 * PERIOD)),
        (t0 + 6 * PERIOD, EventBody(event="rollout_fallback", fields=fields, contract=NAME)),
    ])
    return journal, fields


async def _issued(hub: HubRuntime) -> tuple[ContractRecord, ContractRecord]:
    v2 = await hub.service.submit_contract(tank_document(version=2), "test")
    v3 = await hub.service.submit_contract(tank_document(version=3), "deployment:dep-000001")
    return hub.store.contracts.get(v2.id), v3


async def test_a_journaled_fallback_fails_the_tripped_contract_and_holds_the_known_good_one(
        tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        v2, v3 = await _issued(hub)
        superseded = v2.status
        journal, fields = _fallback_journal(v2, v3)
        resumed = _journal([(0, EventBody(event=EventKind.RESUMED, contract=NAME,
                                          fields={"reason": "operator", "command": "resume:1"}))])
        async with born_device(hub, "d1", len(journal)) as dev:
            pushed_ms = hub.clock()
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", journal))
            await wait_ack(dev, len(journal))
            after = {c: hub.store.contracts.get(c) for c in (v2.id, v3.id)}
            alarm = hub.store.alarms.find(device="d1", kind=AlarmKind.ROLLOUT_FALLBACK)
            audit = [e for e in hub.store.audit.find(device="d1") if e.action is AuditAction.FALLBACK]
            verdict = HealthJudge(hub.store, {}).judge(
                "d1", v3.id, v3.content_hash, pushed_ms - 60_000, HealthSpec(window_ms=30_000),
                hub.clock(), canary=True)
            tail = make_entry(journal[-1].hash, len(journal) + 1, journal[-1].ts_ms + PERIOD,
                              EntryKind.EVENT, resumed[0].body)
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", [tail]))
            await wait_ack(dev, tail.seq)
            await eventually(lambda: hub.store.contracts.get(v2.id).status is ContractStatus.ACTIVE,
                             5, "the known-good running after the operator's resume")
            cleared = hub.store.alarms.find(device="d1", kind=AlarmKind.ROLLOUT_FALLBACK)
    assert superseded is ContractStatus.SUPERSEDED
    assert after[v3.id].status is ContractStatus.FAILED
    assert after[v3.id].reason == ("rollout_fallback: guard_trip at seq 8; the device runs "
                                   "tank-fill@2 again, held")
    assert after[v2.id].status is ContractStatus.HELD
    assert len(alarm) == 1 and "fallback=tank-fill@2" in alarm[0].detail and "cause_seq=8" in alarm[0].detail
    assert len(audit) == 1 and audit[0].actor == "agent:d1" and audit[0].outcome is Outcome.OK
    assert audit[0].detail == {**fields, "seq": 10, "tripped": v3.id, "reinstated": v2.id}
    assert verdict.health is Health.FAILED and verdict.gate == Gate.ROLLOUT_FALLBACK
    assert [e.seq for e in verdict.evidence] == [10, 8]
    assert cleared == []


async def test_a_fallback_to_a_hash_the_hub_did_not_issue_reinstates_nothing(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        v2, v3 = await _issued(hub)
        journal, _ = _fallback_journal(v2, v3, known_good="f" * 64)
        async with born_device(hub, "d1", len(journal)) as dev:
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", journal))
            await wait_ack(dev, len(journal))
            known_good = hub.store.contracts.get(v2.id).status
            mismatch = hub.store.alarms.find(device="d1", kind=AlarmKind.CLAIM_MISMATCH)
            audit = [e for e in hub.store.audit.find(device="d1") if e.action is AuditAction.FALLBACK]
    assert known_good is ContractStatus.SUPERSEDED
    assert len(mismatch) == 1 and "the hub issued it with" in mismatch[0].detail
    assert audit[0].outcome is Outcome.REFUSED
