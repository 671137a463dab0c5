"""The agent's uplink against a real hub and broker: store-and-forward, exactly once, refusals."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import AgentConfig, BrokerConfig, ModbusConfig
from agent.journal import SqliteJournal
from agent.process import Agent
from agent.uplink import Uplink
from contracts.loader import check_mapping
from contracts.signing import generate_keypair, load_private_key, sign_contract
from transport.backoff import Backoff
from hub.app import HubRuntime
from simulators.faults import Fault
from simulators.server import SimDevice
from tests.agent.conftest import now_ms, tank_document
from tests.agent.helpers import journal_entries, running_agent
from tests.hub.sync_helpers import PASSWORDS, SITE, acked, contract_status, hub_config
from tests.waiting import eventually, free_port

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def agent_running(tmp_path: Path, sim: SimDevice, broker_url: str,
                        contract: Path | None) -> AsyncIterator[Agent]:
    cfg = AgentConfig(device="d1", site=SITE, journal=tmp_path / "agent.db",
                      trusted_key=tmp_path / "keys" / "hub.pub",
                      modbus=ModbusConfig(host="127.0.0.1", port=sim.port, timeout_s=0.3),
                      broker=BrokerConfig(url=broker_url, username="d1", password=PASSWORDS["d1"]),
                      contract=contract, batch_max=50)
    async with running_agent(cfg, reconnect=Backoff(initial_s=0.1, max_s=0.5, jitter=0.2)) as agent:
        yield agent


@contextlib.asynccontextmanager
async def hub_and_agent(tmp_path: Path) -> AsyncIterator[tuple[HubRuntime, Agent, SimDevice]]:
    """A hub (embedded broker) and a connected agent with no contract yet, on a tank simulator."""
    generate_keypair(tmp_path / "keys")
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        hub = HubRuntime(hub_config(tmp_path))
        try:
            async with hub.running():
                assert hub.broker is not None
                async with agent_running(tmp_path, sim, hub.broker.url, None) as agent:
                    await eventually(lambda: agent.conn.online, 15, "agent connected")
                    yield hub, agent, sim
        finally:
            hub.close()


def signed_contract(tmp_path: Path, **overrides: object) -> Path:
    key = load_private_key(tmp_path / "keys" / "hub.key")
    path = tmp_path / f"contract-{len(list(tmp_path.glob('contract-*')))}.cose"
    path.write_bytes(sign_contract(check_mapping(tank_document(**overrides)), key))
    return path


async def test_agent_journals_with_broker_down_then_every_entry_arrives_exactly_once(
        tmp_path: Path) -> None:
    generate_keypair(tmp_path / "keys")
    port = free_port()
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        async with agent_running(tmp_path, sim, f"mqtt://127.0.0.1:{port}",
                                 signed_contract(tmp_path)) as agent:
            await eventually(lambda: len(journal_entries(tmp_path / "agent.db")) >= 60, 15,
                             "the agent journaling while no broker exists")
            assert not agent.conn.online
            hub = HubRuntime(hub_config(tmp_path, listen_port=port))
            try:
                async with hub.running():
                    await eventually(lambda: agent.conn.online, 15, "agent connected")
                    sent_head = len(journal_entries(tmp_path / "agent.db"))
                    await eventually(lambda: acked(hub, "d1") >= sent_head, 20,
                                     "hub caught up with what was journaled offline")
                    hub_acked = acked(hub, "d1")
                    rows = hub.store.journal.rows("d1", 0, 100_000)
                    # The agent keeps journaling, so the counter and the table are compared at a
                    # moment between two batches: a duplicate counted as stored would keep the
                    # counter ahead of the table for good.
                    sync = hub.sync
                    assert sync is not None
                    await eventually(lambda: sync.entries_ingested == hub.store.journal.count(), 10,
                                     "the ingest counter equal to the stored rows",
                                     detail=lambda: f"{sync.entries_ingested} counted, "
                                                    f"{hub.store.journal.count()} stored")
                    await eventually(lambda: _agent_acked(tmp_path) >= hub_acked, 10, "durable ack")
            finally:
                hub.close()
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) >= hub_acked >= sent_head


def _agent_acked(tmp_path: Path) -> int:
    with SqliteJournal(tmp_path / "agent.db") as j:
        return j.acked_seq()


async def test_contract_pushed_over_mqtt_is_run_and_bad_ones_are_refused_with_reasons(
        tmp_path: Path) -> None:
    async with hub_and_agent(tmp_path) as (hub, agent, _):
        rec = await hub.service.submit_contract(tank_document(version=4), "test")
        await eventually(lambda: agent.scan.segment is not None, 10, "contract running")
        tampered = bytearray(rec.signed)
        tampered[-5] ^= 0xFF
        older = signed_contract(tmp_path, version=2).read_bytes()
        for data in (bytes(tampered), older):
            await hub.publisher.push_contract(SITE, "d1", data)
        refusals = await eventually(lambda: _refusals(tmp_path, 2), 10, "two refusals")
        status = hub.store.contracts.get(rec.id).status.value
    assert refusals == ["bad_signature", "older_version"]
    assert status in ("accepted", "active")


def _refusals(tmp_path: Path, at_least: int) -> list[str] | None:
    found = [e.body["refusal"] for e in journal_entries(tmp_path / "agent.db")
             if e.body.get("event") == "refused"]
    return found if len(found) >= at_least else None


async def test_operator_reconcile_request_and_hold_then_abort_reach_the_running_agent(
        tmp_path: Path) -> None:
    async with hub_and_agent(tmp_path) as (hub, agent, sim):
        rec = await hub.service.submit_contract(tank_document(version=6), "test")
        await eventually(lambda: hub.store.contracts.get(rec.id).status.value == "active", 15,
                         "contract active")
        await eventually(lambda: acked(hub, "d1") > 5, 10, "journal")
        hub.service.request_reconcile(rec.id, "operator-ann")
        recon = await eventually(lambda: hub.store.reconciliations.find(device="d1"), 10,
                                 "the requested reconciliation")
        await hub.service.hold(rec.id, "operator-ann", "inspect the valve")
        await eventually(lambda: agent.scan.segment.state.mode.value == "held", 10, "engine held")
        await hub.service.abort(rec.id, "operator-ann", "stop for the day")
        await eventually(lambda: agent.scan.segment.state.mode.value == "aborted", 10,
                         "engine aborted")
        await eventually(lambda: sim.values()["pump_speed"] == 0, 5, "pump stopped")
        audit = [(a.actor, a.action.value) for a in hub.store.audit.find(limit=100)]
    assert recon[0].report["requested_by"] == "operator-ann"
    assert recon[0].report["step_actual"] == "fill"
    assert ("operator-ann", "hold") in audit and ("operator-ann", "abort") in audit
    assert ("operator-ann", "reconcile") in audit


async def test_offline_autonomy_budget_counts_from_the_last_contact_across_a_restart(
        tmp_path: Path) -> None:
    """A restarted agent must not get a fresh autonomy budget: last hub contact 120 s ago, budget
    60 s, no broker reachable → safe state at once (journaled as autonomy exhausted)."""
    generate_keypair(tmp_path / "keys")
    with SqliteJournal(tmp_path / "agent.db") as j:
        j.save_checkpoint("hub:last_contact", str(now_ms() - 120_000).encode(), 0, now_ms())
    contract = signed_contract(tmp_path, offline={"autonomy_s": 60, "then": "safe_state"})
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        async with agent_running(tmp_path, sim, f"mqtt://127.0.0.1:{free_port()}", contract):
            trips = await eventually(lambda: [e for e in journal_entries(tmp_path / "agent.db")
                                              if e.body.get("event") == "autonomy_exhausted"], 5,
                                     "autonomy exhausted")
            first_step = [e for e in journal_entries(tmp_path / "agent.db")
                          if e.body.get("event") == "step_entered"]
    assert trips and (not first_step or trips[0].ts_ms - first_step[0].ts_ms <= 200)
    assert sim.values()["pump_speed"] == 0


async def test_contract_failing_on_a_live_device_goes_to_the_planner_and_is_reissued(
        tmp_path: Path) -> None:
    doc = tank_document(version=7)
    doc["steps"][0]["timeout_s"] = 1  # the tank cannot reach 4 m in a second: the step times out
    async with hub_and_agent(tmp_path) as (hub, _, _):
        await hub.service.submit_contract(doc, "test")
        await eventually(lambda: _status(hub, "tank-fill@7") == "failed", 15, "failed")
        await eventually(lambda: _status(hub, "tank-fill@8") in ("accepted", "active"), 15,
                         "re-issued version accepted by the agent")
        replans = [a for a in hub.store.audit.find(limit=200) if a.action.value == "replan"]
    assert replans and replans[-1].detail["category"] == "runtime"
    assert replans[-1].detail["action"] == "retry"


def _live_ts(hub: HubRuntime) -> int:
    """When the hub's newest telemetry from d1 was sent (0: none yet)."""
    live = hub.sync.live.get("d1") if hub.sync else None
    return live.ts_ms if live is not None else 0


def _status(hub: HubRuntime, cid: str) -> str | None:
    status = contract_status(hub.store, cid)
    return None if status is None else status.value


async def test_device_fault_while_connected_keeps_agent_and_telemetry_running(tmp_path: Path) -> None:
    """A BAD reading has no value; telemetry must still flow (it carries good values only) and the
    agent must keep running its safe state — not crash on its own telemetry."""
    async with hub_and_agent(tmp_path) as (hub, agent, sim):
        await hub.service.submit_contract(tank_document(version=9), "test")
        await eventually(lambda: agent.scan.segment is not None, 10, "contract running")
        sim.faults.enable(Fault.EXCEPTION)
        await eventually(lambda: agent.scan.segment.state.mode.value == "safe", 10, "tripped")
        assert hub.sync is not None
        before = _live_ts(hub)
        await eventually(lambda: _live_ts(hub) > before + 1500, 10,
                         "telemetry still flowing after the fault")
        assert agent.conn.online


async def test_an_uplink_crash_is_journaled_and_restarted_without_stopping_the_agent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A bug in network code cannot be produced for real: inject one (the only mock here).
    real_run = Uplink.run
    calls: list[int] = []

    async def crash_once(self: Uplink) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected uplink bug")
        await real_run(self)

    monkeypatch.setattr(Uplink, "run", crash_once)
    async with hub_and_agent(tmp_path) as (hub, agent, _):
        await hub.service.submit_contract(tank_document(version=10), "test")
        await eventually(lambda: agent.scan.segment is not None, 10, "contract running after restart")
        failed = [e for e in journal_entries(tmp_path / "agent.db")
                  if e.body.get("event") == "uplink_failed"]
    assert len(calls) == 2 and "injected uplink bug" in failed[0].body["error"]
