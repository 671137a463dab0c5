"""The hub's journal ingestion over a real broker: idempotent, reordered, chain-checked, acked."""
from __future__ import annotations

from pathlib import Path

from contracts.topics import Channel
from hub.states import DeviceState
from tests.hub.sync_helpers import (batch, born_device, chain, publish, running_hub,
                                    tampered, wait_ack)
from tests.waiting import eventually


async def test_duplicate_and_reordered_batches_are_stored_once_and_acked_in_order(tmp_path: Path) -> None:
    entries = chain(300)
    async with running_hub(tmp_path) as hub:
        assert hub.sync is not None
        async with born_device(hub, "d1", 300) as dev:
            b1, b2, b3 = entries[:100], entries[100:200], entries[200:]
            for part in (b2, b3, b1, b2, b1, b3, b3):  # reordered, then duplicated
                await publish(dev, "d1", Channel.JOURNAL, batch("d1", part))
            acked = await wait_ack(dev, 300)
        rows = hub.store.journal.rows("d1", 0, 1000)
        state = hub.store.devices.get("d1").state
        ingested = hub.sync.entries_ingested
    assert acked == 300
    assert [r.seq for r in rows] == list(range(1, 301))
    assert [r.hash for r in rows] == [e.hash for e in entries]
    assert ingested == 300  # each entry stored exactly once
    assert state is DeviceState.LIVE  # birth -> reconciling -> caught up -> reconciled -> live


async def test_tampered_entry_breaks_the_chain_is_alarmed_and_nothing_after_it_is_stored(
        tmp_path: Path) -> None:
    entries = chain(50)
    forged = tampered(entries, 30)
    async with running_hub(tmp_path) as hub:
        async with born_device(hub, "d1", 50) as dev:
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", forged))
            acked = await wait_ack(dev, 30)
            alarms = await eventually(lambda: hub.store.alarms.find(kind="chain_break"), 5,
                                      "a chain alarm")
        rows = hub.store.journal.rows("d1", 0, 1000)
        state = hub.store.devices.get("d1").state
    assert acked == 30
    assert [r.seq for r in rows] == list(range(1, 31))
    assert alarms[0].kind == "chain_break" and "seq 31" in alarms[0].detail
    assert state is DeviceState.FAULT


async def test_batch_claiming_another_device_in_its_body_is_not_ingested(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        async with born_device(hub, "d1", 0) as dev:
            await publish(dev, "d1", Channel.JOURNAL, batch("d2", chain(10)))
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", chain(5)))
            await wait_ack(dev, 5)
        stored = {d: len(hub.store.journal.rows(d, 0, 100)) for d in ("d1", "d2")}
    assert stored == {"d1": 5, "d2": 0}
