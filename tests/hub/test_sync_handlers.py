"""HubSync's message handlers driven directly (no broker): state bookkeeping edge cases."""
from __future__ import annotations

import time
from pathlib import Path

from contracts.engine import Engine
from contracts.loader import check_mapping
from contracts.topics import Channel, topic
from contracts.wire import Telemetry
from transport.mqtt import MqttLink
from hub.app import HubRuntime
from contracts.schema_serialize import to_mapping
from hub.states import ContractStatus, DeviceState
from hub.store import ContractRecord, contract_id
from hub.sync import HubSync
from tests.agent.conftest import tank_document
from tests.hub.sync_helpers import SITE, birth, hub_config


def telemetry(contract_doc: dict, ts_ms: int) -> bytes:
    c = check_mapping(contract_doc)
    state = Engine(c).initial_state()
    return Telemetry(ts_ms=ts_ms, values=(("level", 1.5),), mode="running", step="fill", seq=1,
                     contract=c.contract, version=c.version, state=state.to_mapping()).to_bytes()


async def test_live_values_flushed_while_catching_up_do_not_erase_the_projection(tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))
    try:
        doc = tank_document(version=3)
        dead = MqttLink("mqtt://127.0.0.1:9", client_id="never-connected")
        sync = HubSync(hub.store, hub.offline, dead, silence_timeout_ms=30_000)
        c = check_mapping(doc)
        now = time.time_ns() // 1_000_000
        hub.store.contracts.insert(ContractRecord(  # as submitted; pushing needs no broker here
            id=contract_id(c.contract, c.version), contract=c.contract, version=c.version,
            device="d1", site=SITE, status=ContractStatus.SUBMITTED, document=to_mapping(c),
            signed=b"signed", content_hash="h", created_ms=now, updated_ms=now))
        st = topic(SITE, "d1", Channel.STATUS)
        tm = topic(SITE, "d1", Channel.TELEMETRY)
        await sync.on_message(st, birth("d1", 0))
        await sync.on_message(tm, telemetry(doc, now))
        await sync.on_message(st, b"offline")
        assert hub.store.devices.get("d1").state is DeviceState.PROJECTED
        await sync.on_message(st, birth("d1", 500))  # back, with 500 entries to catch up
        await sync.on_message(tm, telemetry(doc, now + 1000))
        sync.flush_live()
        device = hub.store.devices.get("d1")
    finally:
        hub.close()
    assert device.state is DeviceState.RECONCILING
    assert device.projection["source"] == "projection"  # still there for the reconciliation
