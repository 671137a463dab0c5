"""Several contracts on one agent, seen from a real hub: embedded broker, real HTTP API, the
agent on the tank simulator. Each contract is pushed, run, commanded and shown on its own."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.config import AgentConfig, BrokerConfig, ModbusConfig
from agent.process import Agent
from contracts.loader import check_mapping
from contracts.signing import generate_keypair, load_private_key, sign_contract
from hub.app import HubRuntime
from hub.auth import ApiRole, AuthConfig, Token, hash_token
from simulators.server import SimDevice
from tests.agent.helpers import running_agent
from tests.agent.test_multi_contract import _pump, _valve, agent_cycles
from tests.hub.serving import serving
from tests.hub.sync_helpers import PASSWORDS, SITE, contract_status, hub_config
from tests.waiting import eventually
from transport.backoff import Backoff

pytestmark = pytest.mark.slow

VIEWER = "multi-contract-viewer-token"


@contextlib.asynccontextmanager
async def hub_agent_http(tmp_path: Path, *local: dict[str, Any]
                         ) -> AsyncIterator[tuple[HubRuntime, Agent, SimDevice, httpx.AsyncClient]]:
    """A hub (embedded broker, served API) and a connected agent on a tank simulator, running
    the `local` contract documents from files (signed with the hub's key) besides what the hub
    pushes."""
    generate_keypair(tmp_path / "keys")
    key = load_private_key(tmp_path / "keys" / "hub.key")
    files = []
    for doc in local:
        files.append(tmp_path / f"{doc['contract']}.cose")
        files[-1].write_bytes(sign_contract(check_mapping(doc), key))
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        auth = AuthConfig(tokens=(Token(name="viewer", sha256=hash_token(VIEWER),
                                        role=ApiRole.VIEWER),))
        hub = HubRuntime(replace(hub_config(tmp_path), auth=auth))
        try:
            async with serving(hub.app()) as url, httpx.AsyncClient(
                    base_url=url, timeout=20, headers={"Authorization": f"Bearer {VIEWER}"}) as http:
                assert hub.broker is not None
                cfg = AgentConfig(
                    device="d1", site=SITE, journal=tmp_path / "agent.db",
                    trusted_key=tmp_path / "keys" / "hub.pub", telemetry_s=0.2,
                    contracts=tuple(files),
                    modbus=ModbusConfig(host="127.0.0.1", port=sim.port, timeout_s=0.3),
                    broker=BrokerConfig(url=hub.broker.url, username="d1",
                                        password=PASSWORDS["d1"]))
                async with running_agent(cfg, reconnect=Backoff(initial_s=0.1, max_s=0.5,
                                                                jitter=0.2)) as agent:
                    await eventually(lambda: agent.conn.online, 15, "agent connected")
                    yield hub, agent, sim, http
        finally:
            hub.close()


def _shown(view: dict[str, Any]) -> dict[str | None, tuple[str, str | None]]:
    return {c["contract"]: (c["mode"], c["trip"]) for c in view.get("contracts", [])}


async def test_the_hub_pushes_commands_and_shows_each_contract_of_one_agent(
        tmp_path: Path) -> None:
    async with hub_agent_http(tmp_path) as (hub, agent, sim, http):
        pump = await hub.service.submit_contract(_pump(), "test")
        valve = await hub.service.submit_contract(_valve(), "test")
        await eventually(lambda: sorted(agent.scan.segments) == ["tank-pump", "tank-valve"], 15,
                         "both contracts running on the agent")
        await eventually(lambda: all(contract_status(hub.store, r.id).value == "active"
                                     for r in (pump, valve)), 15, "both active on the hub")

        last: list[Any] = []

        async def shown() -> dict[str | None, tuple[str, str | None]]:
            r = await http.get("/api/devices/d1")
            last[:] = [r.status_code, r.text[:3000]]
            return _shown(r.json())

        async def both_running() -> bool:
            return await shown() == {"tank-pump": ("running", None),
                                     "tank-valve": ("running", None)}

        await eventually(both_running, 15, "the device's API view lists both contracts running",
                         detail=lambda: str(last))
        # Each contract's telemetry arrives in turn: the device's own contract stays one of them
        # (no flapping record, no re-push of the other one at the next birth).
        seen = set()
        for _ in range(5):
            await agent_cycles(agent, "tank-valve", 4)  # 4 cycles of 50 ms: one telemetry (0.2 s)
            seen.add(hub.store.devices.get("d1").contract)
        assert len(seen) == 1 and seen <= {"tank-pump", "tank-valve"}, seen
        await hub.service.hold(pump.id, "operator-ann", "inspect the pump")
        await eventually(lambda: agent.scan.segments["tank-pump"].state.mode.value == "held", 10,
                         "tank-pump held")
        assert agent.scan.segments["tank-valve"].state.mode.value == "running"

        async def one_held() -> bool:
            return await shown() == {"tank-pump": ("held", None), "tank-valve": ("running", None)}

        await eventually(one_held, 10, "the hub shows tank-pump held, tank-valve running")
        sim.set("level", 5.2)  # beyond tank-pump's level range: it trips, tank-valve runs on

        async def one_tripped() -> bool:
            view = await shown()
            return view["tank-pump"][0] == "safe" and view["tank-valve"] == ("running", None)

        await eventually(one_tripped, 10, "the hub shows tank-pump tripped, tank-valve running")
        assert sim.values()["valve_open"] and sim.values()["pump_speed"] == 0
        assert (await shown())["tank-pump"][1] == "out_of_range:level"
        await hub.service.abort(pump.id, "operator-ann", "withdrawn")  # one contract withdrawn
        await eventually(lambda: agent.scan.segments["tank-pump"].state.mode.value == "aborted",
                         10, "tank-pump aborted")
        await agent_cycles(agent, "tank-valve", 5)
        assert agent.scan.segments["tank-valve"].state.mode.value == "running"
        assert sim.values()["valve_open"]


async def test_a_pushed_contract_overlapping_one_the_agent_runs_is_refused_naming_the_conflict(
        tmp_path: Path) -> None:
    """The hub does not know the agent's local contract, so it accepts a pushed one on the same
    pump register: the agent refuses it (single writer on the agent as on the hub), and the hub
    records the refusal with the agent's reason."""
    async with hub_agent_http(tmp_path, _pump("tank-pump-local")) as (hub, agent, sim, _):
        await eventually(lambda: "tank-pump-local" in agent.scan.segments, 10, "local contract")
        rec = await hub.service.submit_contract(_pump(), "test")
        refused = await eventually(
            lambda: hub.store.contracts.get(rec.id).status.value == "refused"
            and hub.store.contracts.get(rec.id), 15, "the hub records the agent's refusal")
        assert sorted(agent.scan.segments) == ["tank-pump-local"]
        assert sim.values()["pump_speed"] >= 1000  # the running contract kept the pump
    assert "write_conflict" in (refused.reason or "")
    assert "tank-pump@1 write points overlap tank-pump-local@1" in (refused.reason or "")
