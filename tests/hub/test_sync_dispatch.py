"""HubSync's dispatcher with its store, no broker: a peer's out-of-order or unreadable message is
logged and counted, never raised; an illegal move of the hub's own raises (h11's split)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.topics import Channel, topic
from contracts.wire import ContractResult
from hub.app import HubRuntime
from hub.errors import LocalProtocolError, PeerFault
from hub.metrics import HubMetrics
from hub.states import ContractStatus, DeviceEvent, DeviceState
from hub.store import ContractRecord
from hub.sync import HubSync
from transport.mqtt import MqttLink
from tests.hub.sync_helpers import SITE, birth, hub_config

ST, TM, RS = (topic(SITE, "d1", c) for c in (Channel.STATUS, Channel.TELEMETRY,
                                                Channel.CONTRACT_RESULT))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubRuntime]:
    runtime = HubRuntime(hub_config(tmp_path))
    yield runtime
    runtime.close()


def _sync(hub: HubRuntime) -> HubSync:
    dead = MqttLink("mqtt://127.0.0.1:9", client_id="never-connected")
    return HubSync(hub.store, hub.offline, dead, silence_timeout_ms=30_000)


def _submitted(hub: HubRuntime) -> str:
    hub.store.contracts.insert(ContractRecord(
        id="tank-fill@3", contract="tank-fill", version=3, device="d1", site=SITE,
        status=ContractStatus.SUBMITTED, document={}, signed=b"s", content_hash="h",
        created_ms=1, updated_ms=1))
    return "tank-fill@3"


async def test_an_unreadable_payload_is_counted_and_changes_nothing(hub: HubRuntime) -> None:
    sync = _sync(hub)
    await sync.on_message(ST, birth("d1", 0))
    before = hub.store.devices.get("d1")
    await sync.on_message(TM, b"\xa1\x01\x02")  # CBOR, but no telemetry
    assert sync.remote_errors[PeerFault.UNREADABLE] == 1
    assert hub.store.devices.get("d1") == before and "d1" not in sync.live


async def test_a_result_out_of_order_is_counted_and_the_contract_stays(hub: HubRuntime) -> None:
    sync = _sync(hub)
    cid = _submitted(hub)
    await sync.on_message(ST, birth("d1", 0))
    accepted = ContractResult(contract="tank-fill", version=3, accepted=True, refusal=None,
                              detail="ok")
    await sync.on_message(RS, accepted.to_bytes())  # never pushed: accept is out of order
    assert sync.remote_errors[PeerFault.OUT_OF_ORDER] == 1
    assert hub.store.contracts.get(cid).status is ContractStatus.SUBMITTED
    assert hub.offline.service.remote_errors is sync.remote_errors  # what its metrics read
    scraped = HubMetrics(hub.store, lambda: hub.offline.service.remote_errors).render().decode()
    assert 'fieldpact_hub_remote_protocol_errors_total{fault="out_of_order"} 1.0' in scraped


async def test_an_illegal_move_of_the_hubs_own_is_a_bug_and_raises(hub: HubRuntime) -> None:
    sync = _sync(hub)
    await sync.on_message(ST, birth("d1", 5))  # reconciling: not yet reconciled
    assert hub.store.devices.get("d1").state is DeviceState.RECONCILING
    with pytest.raises(LocalProtocolError, match="reconcile_done"):
        sync._event("d1", DeviceEvent.RECONCILE_DONE)
    assert sync.remote_errors.snapshot() == {"out_of_order": 0, "unreadable": 0,
                                             "unknown_record": 0}
