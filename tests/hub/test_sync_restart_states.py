"""HubSync's handlers driven directly (no broker): device state across hub restarts and stalls,
replayed retained births, and declared journal gaps (issue 8, interface 7)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts.topics import Channel, topic
from contracts.wire import Birth, JournalBatch, Telemetry
from transport.mqtt import MqttLink
from hub.app import HubRuntime
from hub.states import DeviceState
from hub.sync import HubSync
from tests.hub.sync_helpers import SITE, batch, birth, chain, hub_config

ST, JN, TM = (topic(SITE, "d1", c) for c in (Channel.STATUS, Channel.JOURNAL, Channel.TELEMETRY))
T0 = 1_790_000_000_000
SILENCE_MS = 30_000


@dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubRuntime]:
    runtime = HubRuntime(hub_config(tmp_path))
    yield runtime
    runtime.close()


def new_sync(hub: HubRuntime, clock: Clock) -> HubSync:
    dead = MqttLink("mqtt://127.0.0.1:9", client_id="never-connected")  # acks go nowhere
    return HubSync(hub.store, hub.offline, dead, silence_timeout_ms=SILENCE_MS, clock=clock)


def telemetry(seq: int, ts_ms: int) -> bytes:
    return Telemetry(ts_ms=ts_ms, values=(("level", 1.5),), mode="idle", step=None,
                     seq=seq).to_bytes()


def state(hub: HubRuntime) -> DeviceState:
    return hub.store.devices.get("d1").state


async def live_with(hub: HubRuntime, sync: HubSync, entries: int) -> None:
    await sync.on_message(ST, birth("d1", entries))
    await sync.on_message(JN, batch("d1", chain(entries, start_ms=T0)))
    assert state(hub) is DeviceState.LIVE


async def test_after_a_hub_restart_a_live_device_is_reconciling_until_it_speaks_and_is_caught_up(
        hub: HubRuntime) -> None:
    clock, entries = Clock(), chain(60, start_ms=T0)
    await live_with(hub, new_sync(hub, clock), 40)
    restarted = new_sync(hub, clock)  # a new hub process on the same database
    restarted.announce_restart()
    assert state(hub) is DeviceState.RECONCILING
    await restarted.on_message(ST, birth("d1", 40))  # the broker's retained copy: not news
    assert state(hub) is DeviceState.RECONCILING
    await restarted.on_message(TM, telemetry(60, clock.now))  # the device is at 60
    assert state(hub) is DeviceState.RECONCILING  # the hub holds 40: a trip may be in 41..60
    await restarted.on_message(JN, batch("d1", entries[40:]))
    assert state(hub) is DeviceState.LIVE
    moves = [(t.from_state, t.to_state, t.event) for t in hub.store.devices.transitions("d1")]
    assert ("live", "reconciling", "hub_restart") in moves


async def test_a_retained_birth_replayed_to_a_live_hub_does_not_take_the_device_out_of_live(
        hub: HubRuntime) -> None:
    sync = new_sync(hub, Clock())
    await live_with(hub, sync, 20)
    await sync.on_message(ST, birth("d1", 20))  # the hub re-subscribed after a broker blip
    assert state(hub) is DeviceState.LIVE


async def test_a_fresh_birth_with_more_journal_is_caught_up_before_live(hub: HubRuntime) -> None:
    sync = new_sync(hub, Clock())
    await live_with(hub, sync, 20)
    fresh = Birth(device="d1", site=SITE, boot_id="c" * 32, contract=None, version=None,
                  last_seq=30).to_bytes()
    await sync.on_message(ST, fresh)
    assert state(hub) is DeviceState.RECONCILING
    await sync.on_message(JN, batch("d1", chain(30, start_ms=T0)[20:]))
    assert state(hub) is DeviceState.LIVE


async def test_a_live_device_whose_journal_stalls_is_no_longer_shown_live(hub: HubRuntime) -> None:
    clock = Clock()
    sync = new_sync(hub, clock)
    await live_with(hub, sync, 20)
    for _ in range(4):  # telemetry flows and reports journal the hub never gets
        clock.now += 10_000
        await sync.on_message(TM, telemetry(25, clock.now))
        sync._check_presence()
    assert state(hub) is DeviceState.RECONCILING
    await sync.on_message(JN, batch("d1", chain(25, start_ms=T0)[20:]))
    assert state(hub) is DeviceState.LIVE


async def test_a_declared_gap_is_stored_as_a_gap_row_alarmed_and_sync_carries_on(
        hub: HubRuntime) -> None:
    sync, entries = new_sync(hub, Clock()), chain(20, start_ms=T0)
    await sync.on_message(ST, birth("d1", 20))
    kept = entries[:9] + entries[12:]
    holed = JournalBatch(device="d1", from_seq=1, to_seq=20, prev_hash=entries[0].prev_hash,
                         entries=tuple(e.to_mapping() for e in kept), gaps=((10, 12),))
    await sync.on_message(JN, holed.to_bytes())
    rows = hub.store.journal.rows("d1", 0, 100)
    device = hub.store.devices.get("d1")
    alarms = [a for a in hub.store.alarms.find() if a.kind != "unsigned_journal"]  # no key enrolled
    assert [r.seq for r in rows] == [*range(1, 11), *range(13, 21)]
    gap = rows[9]
    assert (gap.kind, gap.prev_hash, gap.hash) == ("gap", entries[8].hash, entries[12].prev_hash)
    assert device.acked_seq == 20 and device.state is DeviceState.LIVE
    assert [a.kind for a in alarms] == ["journal_gap"] and "seq 10..12" in alarms[0].detail


async def test_an_idle_device_back_after_its_last_will_with_the_same_birth_is_taken_back(
        hub: HubRuntime) -> None:
    sync = new_sync(hub, Clock())
    await live_with(hub, sync, 20)
    await sync.on_message(ST, b"offline")
    assert state(hub) is DeviceState.PROJECTED
    await sync.on_message(ST, birth("d1", 20))  # same boot, nothing journaled meanwhile
    assert state(hub) is DeviceState.LIVE


async def test_a_live_device_silent_past_the_timeout_is_projected_by_the_presence_check(
        hub: HubRuntime) -> None:
    clock = Clock()
    sync = new_sync(hub, clock)
    await live_with(hub, sync, 20)
    await sync.on_message(TM, telemetry(20, clock.now))
    clock.now += SILENCE_MS // 2
    sync._check_presence()
    assert state(hub) is DeviceState.LIVE  # heard within the timeout
    clock.now += SILENCE_MS
    sync._check_presence()
    assert state(hub) is DeviceState.PROJECTED
