"""A reconciliation reuses the projection made when the device went offline only when its inputs
are exactly the stored ones, and it is the projection a fresh engine run gives."""
from __future__ import annotations

import time
from pathlib import Path

from contracts.topics import Channel, topic
from fieldpact.mqtt import MqttLink
from hub.app import HubRuntime
from hub.offline import ProjectionInputs
from hub.states import DeviceState
from hub.sync import HubSync
from tests.hub.sync_helpers import SITE, birth, hub_config
from contracts.loader import check_mapping
from contracts.schema import to_mapping
from hub.states import ContractStatus
from hub.store import ContractRecord, contract_id
from tests.agent.conftest import tank_document
from tests.hub.test_sync_handlers import _telemetry


def _store_contract(hub: HubRuntime, doc: dict) -> ContractRecord:  # type: ignore[type-arg]
    c, now = check_mapping(doc), time.time_ns() // 1_000_000
    return hub.store.insert_contract(ContractRecord(
        id=contract_id(c.contract, c.version), contract=c.contract, version=c.version,
        device="d1", site=SITE, status=ContractStatus.SUBMITTED, document=to_mapping(c),
        signed=b"signed", content_hash="h", created_ms=now, updated_ms=now))


async def test_reconcile_reuses_the_offline_projection_only_for_identical_inputs(tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))
    try:
        doc = tank_document(version=3)
        record = _store_contract(hub, doc)
        sync = HubSync(hub.store, hub.offline, MqttLink("mqtt://127.0.0.1:9", client_id="x"),
                       silence_timeout_ms=30_000)
        now = time.time_ns() // 1_000_000
        await sync.on_message(topic(SITE, "d1", Channel.STATUS), birth("d1", 0))
        await sync.on_message(topic(SITE, "d1", Channel.TELEMETRY), _telemetry(doc, now))
        await sync.on_message(topic(SITE, "d1", Channel.STATUS), b"offline")
        device = hub.store.device("d1")
        stored = ProjectionInputs(**device.projection["inputs"])  # through CBOR and SQLite
        made_offline = hub.offline._projections["d1"][1]
        reused = hub.offline._project(record, stored, "d1")
        fresh = hub.offline._run_projection(record, stored)
        other = ProjectionInputs(**{**stored.to_json(), "start_ms": stored.start_ms + 1})
        not_reused = hub.offline._project(record, other, "d1")
    finally:
        hub.close()
    assert device.state is DeviceState.PROJECTED
    assert reused is made_offline  # not run again
    assert reused == fresh  # what the engine gives for those inputs, point for point
    assert not_reused is not reused and not_reused != fresh
