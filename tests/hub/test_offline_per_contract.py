"""Projection and reconciliation per contract, through the real hub store and sync core (driven
straight through HubSync.on_message, no broker): a device running two contracts goes offline, its
journal comes back with an adapter fault in one contract's segment only, and each contract's
outage is judged on its own entries: the fault is in tank-pump's report, never in tank-valve's."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.journal_events import AdapterFaultBody, InputBody, encode
from contracts.topics import Channel, topic
from hub.app import HubRuntime
from hub.states import ContractEvent, DeviceState
from hub.store import ContractRecord
from hub.sync import HubSync
from tests.agent.test_multi_contract import _pump, _valve
from tests.hub.sync_helpers import SITE, batch, birth, hub_config
from tests.hub.test_offline_cache import _store_contract as _submitted
from tests.hub.test_sync_handlers import telemetry
from transport.mqtt import MqttLink


def _store_contract(hub: HubRuntime, doc: dict[str, Any]) -> ContractRecord:
    """`doc` stored for d1 as accepted by the device (its telemetry then starts it)."""
    record = _submitted(hub, doc)
    for event in (ContractEvent.PUSH, ContractEvent.ACCEPT):
        hub.store.contracts.apply_event(record.id, event, record.created_ms, "test")
    return hub.store.contracts.get(record.id)


def _outage(start_ms: int) -> list[Entry]:
    """Each contract's inputs, in turn, and one read fault in tank-pump's segment."""
    bodies: list[tuple[EntryKind, dict[str, Any]]] = []
    for i in range(1, 21):
        bodies.append((EntryKind.INPUT, encode(InputBody(
            values={"level": [1.0 + i / 100, "good", None]}, contract="tank-pump"))))
        bodies.append((EntryKind.INPUT, encode(InputBody(
            values={"high_level": [False, "good", None]}, contract="tank-valve"))))
    bodies.insert(20, (EntryKind.ADAPTER_FAULT, encode(AdapterFaultBody(
        what="read", reason="timeout", point="level", contract="tank-pump"))))
    out, prev = [], GENESIS
    for seq, (kind, body) in enumerate(bodies, 1):
        out.append(make_entry(prev, seq, start_ms + seq * 100, kind, body))
        prev = out[-1].hash
    return out


async def test_each_contract_is_projected_and_reconciled_on_its_own_entries(tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))
    try:
        pump, valve = _pump(), _valve()
        records = {d["contract"]: _store_contract(hub, d) for d in (pump, valve)}
        sync = HubSync(hub.store, hub.offline, MqttLink("mqtt://127.0.0.1:9", client_id="x"),
                       silence_timeout_ms=30_000)
        now = time.time_ns() // 1_000_000
        st = topic(SITE, "d1", Channel.STATUS)
        await sync.on_message(st, birth("d1", 0))
        for doc in (pump, valve):
            await sync.on_message(topic(SITE, "d1", Channel.TELEMETRY),
                                  telemetry(doc, now - 60_000))  # a minute ago, then silence
        await sync.on_message(st, b"offline")
        projected = hub.store.devices.get("d1")
        folding = sorted(hub.offline.folds.get("d1", {}))
        entries = _outage(now - 50_000)
        await sync.on_message(st, birth("d1", len(entries)))
        await sync.on_message(topic(SITE, "d1", Channel.JOURNAL), batch("d1", entries))
        recs = {r.contract: r for r in hub.store.reconciliations.find(device="d1")}
        back = hub.store.devices.get("d1").state
    finally:
        hub.close()
    assert projected.state is DeviceState.PROJECTED
    blob = projected.projection
    assert {n: c["inputs"]["contract_id"] for n, c in blob["contracts"].items()} == {
        n: r.id for n, r in records.items()}
    assert folding == ["tank-pump", "tank-valve"]  # each contract's outage folded as it arrived
    assert sorted(recs) == ["tank-pump", "tank-valve"] and back is DeviceState.LIVE
    pump_rec, valve_rec = recs["tank-pump"], recs["tank-valve"]
    assert [f["reason"] for f in pump_rec.report["faults"]] == ["timeout"]
    assert valve_rec.report["faults"] == []
    assert {n: (r.version, r.report["step_projected"], r.report["step_actual"], r.divergent)
            for n, r in recs.items()} == {"tank-pump": (1, "run", "run", False),
                                          "tank-valve": (1, "open", "open", False)}
