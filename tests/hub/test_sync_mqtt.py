"""The hub's journal ingestion over a real broker: idempotent, reordered, chain-checked, acked."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from contracts.topics import Channel
from hub.app import HubRuntime
from hub.states import DeviceState
from tests.agent.helpers import eventually
from tests.hub.sync_helpers import batch, birth, chain, device_client, hub_config, publish, wait_ack


async def test_duplicate_and_reordered_batches_are_stored_once_and_acked_in_order(tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))
    entries = chain(300)
    try:
        async with hub.running():
            assert hub.broker is not None and hub.sync is not None
            async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
                await publish(dev, "d1", Channel.STATUS, birth("d1", 300), retain=True)
                await eventually(lambda: hub.store.devices.find(), 5, "device registered on birth")
                b1, b2, b3 = entries[:100], entries[100:200], entries[200:]
                for part in (b2, b3, b1, b2, b1, b3, b3):  # reordered, then duplicated
                    await publish(dev, "d1", Channel.JOURNAL, batch("d1", part))
                acked = await wait_ack(dev, 300)
            rows = hub.store.journal.rows("d1", 0, 1000)
            state = hub.store.devices.get("d1").state
            ingested = hub.sync.entries_ingested
    finally:
        hub.close()
    assert acked == 300
    assert [r.seq for r in rows] == list(range(1, 301))
    assert [r.hash for r in rows] == [e.hash for e in entries]
    assert ingested == 300  # each entry stored exactly once
    assert state is DeviceState.LIVE  # birth -> reconciling -> caught up -> reconciled -> live


async def test_tampered_entry_breaks_the_chain_is_alarmed_and_nothing_after_it_is_stored(
        tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))
    entries = chain(50)
    forged = list(entries)
    forged[30] = replace(forged[30], body={"values": {"level": [9.9, "good", None]}})
    try:
        async with hub.running():
            assert hub.broker is not None
            async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
                await publish(dev, "d1", Channel.STATUS, birth("d1", 50), retain=True)
                await eventually(lambda: hub.store.devices.find(), 5, "device registered")
                await publish(dev, "d1", Channel.JOURNAL, batch("d1", forged))
                acked = await wait_ack(dev, 30)
                alarms = await eventually(lambda: hub.store.alarms.find(kind="chain_break"), 5,
                                          "a chain alarm")
            rows = hub.store.journal.rows("d1", 0, 1000)
            state = hub.store.devices.get("d1").state
    finally:
        hub.close()
    assert acked == 30
    assert [r.seq for r in rows] == list(range(1, 31))
    assert alarms[0].kind == "chain_break" and "seq 31" in alarms[0].detail
    assert state is DeviceState.FAULT


async def test_batch_claiming_another_device_in_its_body_is_not_ingested(tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))
    try:
        async with hub.running():
            assert hub.broker is not None
            async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
                await publish(dev, "d1", Channel.STATUS, birth("d1", 0), retain=True)
                await eventually(lambda: hub.store.devices.find(), 5, "device registered")
                await publish(dev, "d1", Channel.JOURNAL, batch("d2", chain(10)))
                await publish(dev, "d1", Channel.JOURNAL, batch("d1", chain(5)))
                await wait_ack(dev, 5)
            stored = {d: len(hub.store.journal.rows(d, 0, 100)) for d in ("d1", "d2")}
    finally:
        hub.close()
    assert stored == {"d1": 5, "d2": 0}
