"""A reconciliation reuses the projection made when the device went offline only when its inputs
are exactly the stored ones, and it is the projection a fresh engine run gives."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from contracts.topics import Channel, topic
from transport.mqtt import MqttLink
from hub.app import HubRuntime
from hub.projector import ProjectionInputs
from hub.states import DeviceState
from hub.sync import HubSync
from tests.hub.sync_helpers import SITE, birth, hub_config
from contracts.loader import check_mapping
from contracts.schema_serialize import to_mapping
from hub.states import ContractStatus
from hub.store import ContractRecord, contract_id
from tests.agent.conftest import tank_document
from tests.hub.test_sync_handlers import telemetry


def _store_contract(hub: HubRuntime, doc: dict) -> ContractRecord:  # type: ignore[type-arg]
    c, now = check_mapping(doc), time.time_ns() // 1_000_000
    return hub.store.contracts.insert(ContractRecord(
        id=contract_id(c.contract, c.version), contract=c.contract, version=c.version,
        device="d1", site=SITE, status=ContractStatus.SUBMITTED, document=to_mapping(c),
        signed=b"signed", content_hash="h", created_ms=now, updated_ms=now))


async def _gone_offline(hub: HubRuntime, doc: dict[str, Any]) -> tuple[ContractRecord, HubSync, int]:
    """Device d1, running `doc`, born, live for one telemetry message, then offline: projected
    (driven straight through HubSync.on_message, no broker)."""
    record = _store_contract(hub, doc)
    sync = HubSync(hub.store, hub.offline, MqttLink("mqtt://127.0.0.1:9", client_id="x"),
                   silence_timeout_ms=30_000)
    now = time.time_ns() // 1_000_000
    status = topic(SITE, "d1", Channel.STATUS)
    await sync.on_message(status, birth("d1", 0))
    await sync.on_message(topic(SITE, "d1", Channel.TELEMETRY), telemetry(doc, now))
    await sync.on_message(status, b"offline")
    return record, sync, now


async def test_reconcile_reuses_the_offline_projection_only_for_identical_inputs(tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))
    try:
        doc = tank_document(version=3)
        record, sync, now = await _gone_offline(hub, doc)
        device = hub.store.devices.get("d1")
        stored = ProjectionInputs(**device.projection["inputs"])  # through CBOR and SQLite
        made_offline = hub.offline.projector.cache[("d1", "tank-fill")][1]
        reused = hub.offline.projector.project(record, stored, "d1")
        fresh = hub.offline.projector.run(record, stored)
        other = ProjectionInputs(**{**stored.to_json(), "start_ms": stored.start_ms + 1})
        not_reused = hub.offline.projector.project(record, other, "d1")
    finally:
        hub.close()
    assert device.state is DeviceState.PROJECTED
    assert reused is made_offline  # not run again
    assert reused == fresh  # what the engine gives for those inputs, point for point
    assert not_reused is not reused and not_reused != fresh


async def test_the_outage_folded_as_it_arrives_gives_the_report_the_journal_gives(
        tmp_path: Path) -> None:
    from hub.reconcile import reconcile
    from tests.hub.sync_helpers import batch

    hub = HubRuntime(hub_config(tmp_path))
    try:
        doc = tank_document(version=3)
        record, sync, now = await _gone_offline(hub, doc)
        st, jt = topic(SITE, "d1", Channel.STATUS), topic(SITE, "d1", Channel.JOURNAL)
        inputs = ProjectionInputs(**hub.store.devices.get("d1").projection["inputs"])
        folding = "d1" in hub.offline.folds
        entries = _outage(300, now)
        await sync.on_message(st, birth("d1", 300))
        for part in (entries[:120], entries[120:]):
            await sync.on_message(jt, batch("d1", part))
        folded_away = "d1" not in hub.offline.folds
        rec = hub.store.reconciliations.find(device="d1")[0]
        expected = reconcile(check_mapping(doc), hub.offline.projector.run(record, inputs),
                             hub.store.journal.entries("d1", inputs.from_seq + 1),
                             inputs.start_ms, rec.ts_ms).to_json()
    finally:
        hub.close()
    assert folding and folded_away
    assert {k: v for k, v in rec.report.items() if k != "decision"} == expected
    assert expected["step_actual"] == "hold" and expected["faults"]  # the fold had work to do


def _outage(n: int, start_ms: int) -> list:  # type: ignore[type-arg]
    """Level readings, the step `hold` entered at 100 and an adapter fault at 200."""
    from contracts.chain import GENESIS, EntryKind, make_entry
    out, prev = [], GENESIS
    for seq in range(1, n + 1):
        body: dict[str, Any] = {"values": {"level": [1.0 + seq / 100, "good", None]}}
        kind = EntryKind.INPUT
        if seq == 100:
            kind, body = EntryKind.STEP, {"event": "step_entered", "step": "hold"}
        elif seq == 200:
            kind, body = EntryKind.ADAPTER_FAULT, {"category": "adapters", "what": "read",
                                                   "reason": "timeout", "point": "level"}
        e = make_entry(prev, seq, start_ms + seq * 100, kind, body)
        out.append(e)
        prev = e.hash
    return out


async def test_a_batch_that_does_not_follow_drops_the_fold(tmp_path: Path) -> None:
    from tests.hub.sync_helpers import chain

    hub = HubRuntime(hub_config(tmp_path))
    try:
        await _gone_offline(hub, tank_document(version=3))  # its projection folds from seq 1
        folding = "d1" in hub.offline.folds
        from contracts.chain_rows import row_of
        entries = [row_of(e) for e in chain(20)]
        hub.offline.fold("d1", entries[:10])
        kept = hub.offline.folds["d1"]["tank-fill"].next_seq
        hub.offline.fold("d1", entries[12:])  # 11 and 12 missing
        dropped = "d1" not in hub.offline.folds
    finally:
        hub.close()
    assert folding and kept == 11 and dropped
