"""Alarms raised and cleared from journal entries as the hub ingests them, over a real broker
(interface 2's events: safe_unconfirmed/safe_confirmed, second_writer/…_cleared, resume_refused),
and a device reset out of FAULT after a broken chain."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.topics import Channel
from hub.alarms import AlarmKind
from hub.app import HubRuntime
from hub.live import LiveValues
from hub.states import DeviceState
from tests.hub.sync_helpers import (batch, birth, born_device, chain, hub_config, publish,
                                    running_hub, tampered, wait_ack)
from tests.waiting import eventually


def _journal(bodies: list[tuple[EntryKind, dict[str, Any]]]) -> list[Entry]:
    ts, prev, out = time.time_ns() // 1_000_000, GENESIS, []
    for seq, (kind, body) in enumerate(bodies, start=1):
        e = make_entry(prev, seq, ts + seq, kind, body)
        out.append(e)
        prev = e.hash
    return out


def _kinds(hub: HubRuntime, active_only: bool = True) -> list[str]:
    return sorted(a.kind for a in hub.store.alarms.find(active_only=active_only)
                  if a.kind != AlarmKind.UNSIGNED_JOURNAL)  # the fake device signs nothing


async def test_journal_events_raise_alarms_once_and_their_counterparts_clear_them(
        tmp_path: Path) -> None:
    ev = EntryKind.EVENT
    journal = _journal([
        (ev, {"event": "safe_unconfirmed", "points": ["pump_speed"], "since_ms": 1, "attempts": 1}),
        (ev, {"event": "safe_unconfirmed", "points": ["pump_speed", "valve_open"], "since_ms": 1,
              "attempts": 4}),
        (ev, {"event": "second_writer", "point": "pump_speed", "value": 500}),
        (EntryKind.REFUSAL, {"event": "command_refused", "command": "resume:x@1:1",
                             "kind": "resume", "reason": "stale"}),
        (EntryKind.REFUSAL, {"event": "resume_refused", "command": "resume:x@1:1",
                             "cause": "stale:level"}),
        (ev, {"event": "safe_confirmed", "elapsed_ms": 180}),
        (ev, {"event": "second_writer_cleared", "point": "pump_speed"}),
    ])
    raised, cleared = journal[:5], journal[5:]
    async with running_hub(tmp_path) as hub:
        async with born_device(hub, "d1", 5) as dev:
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", raised))
            await wait_ack(dev, 5)
            during = _kinds(hub)
            refusal = hub.store.alarms.find(kind=AlarmKind.RESUME_REFUSED)[0]
            refusals = [e for e in hub.store.audit.find(device="d1") if e.action.value == "resume"]
            unconfirmed = hub.store.alarms.find(kind=AlarmKind.SAFE_UNCONFIRMED)[0]
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", cleared))
            await wait_ack(dev, 7)
            after = _kinds(hub)
    assert during == ["resume_refused", "safe_unconfirmed", "second_writer"]
    assert unconfirmed.count == 2 and "valve_open" in unconfirmed.detail
    # The engine's command_refused and the agent's resume_refused are one refusal.
    assert refusal.count == 1 and "stale:level" in refusal.detail and len(refusals) == 1
    assert after == ["resume_refused"]  # nobody has resumed yet


async def test_a_device_reset_after_a_broken_chain_leaves_fault_and_clears_the_alarm(
        tmp_path: Path) -> None:
    entries = chain(20)
    forged = tampered(entries, 10)
    async with running_hub(tmp_path) as hub:
        async with born_device(hub, "d1", 20) as dev:
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", forged))
            await eventually(lambda: hub.store.devices.get("d1").state is DeviceState.FAULT, 5,
                             "fault")
            hub.service.reset_device("d1", "admin", "journal restored from backup")
            reset_state = hub.store.devices.get("d1").state
            alarms = _kinds(hub)
            await publish(dev, "d1", Channel.STATUS, birth("d1", 10), retain=True)
            await eventually(lambda: hub.store.devices.get("d1").state is not DeviceState.UNKNOWN,
                             5, "the device's next birth")
        states = [t.to_state for t in hub.store.devices.transitions("d1")]
    assert reset_state is DeviceState.UNKNOWN and alarms == []
    at = states.index("fault")
    assert states[at + 1] == "unknown" and "fault" not in states[at + 1:]
    assert states[-1] in ("reconciling", "reconciled", "live")


def test_telemetry_safe_and_trip_fields_raise_once_and_clear_when_the_device_runs_again(
        tmp_path: Path) -> None:
    from transport.mqtt import MqttLink
    from hub.sync import HubSync
    hub = HubRuntime(hub_config(tmp_path))
    try:
        sync = HubSync(hub.store, hub.offline, MqttLink("mqtt://127.0.0.1:9", client_id="x"),
                       silence_timeout_ms=30_000)
        hub.store.devices.ensure("d1", "s1", 0)
        tripped = LiveValues(ts_ms=1, received_ms=1, safe="unconfirmed", trip="stale:level",
                             mode="safe")
        for before in (None, tripped, tripped):  # three messages, one trip
            sync._telemetry_alarms("d1", before, tripped)
        both = {a.kind: a.count for a in hub.store.alarms.find(device="d1")}
        sync._telemetry_alarms("d1", tripped, replace(tripped, safe="confirmed"))
        confirmed = _kinds(hub)
        sync._telemetry_alarms("d1", replace(tripped, safe="confirmed"),
                               replace(tripped, safe=None, trip=None, mode="running"))
        running = _kinds(hub)
    finally:
        hub.close()
    assert both == {"guard_trip": 1, "safe_unconfirmed": 1}
    assert confirmed == ["guard_trip"] and running == []
