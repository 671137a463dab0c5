"""Telemetry and the retained `points/` documents show the device's read-back (its truth), with the
engine's command beside it where they differ, the read time of each value, and whether the safe
state is confirmed on the device. Real agent, real amqtt broker, real simulator, a real second
Modbus master."""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pymodbus.client import AsyncModbusTcpClient

from agent.config import AgentConfig, BrokerConfig, ModbusConfig
from contracts.loader import check_mapping
from contracts.schema import Contract
from contracts.wire import Telemetry
from transport.backoff import Backoff
from simulators.faults import Fault
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import running_agent
from tests.conftest import BrokerEndpoint
from tests.waiting import eventually

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def _listen(broker: BrokerEndpoint, user: str, topic: str) -> AsyncIterator[dict[str, bytes]]:
    """The latest payload per topic, as `user` receives them."""
    latest: dict[str, bytes] = {}
    async with aiomqtt.Client(broker.host, broker.port, **broker.login(user)) as client:
        await client.subscribe(topic, qos=0)

        async def collect() -> None:
            async for message in client.messages:
                latest[str(message.topic)] = bytes(message.payload)  # type: ignore[arg-type]
        task = asyncio.create_task(collect())
        try:
            yield latest
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _telemetry(latest: dict[str, bytes]) -> Telemetry | None:
    raw = latest.get("fp/v1/s1/d1/telemetry")
    return Telemetry.from_bytes(raw) if raw else None


def _point(latest: dict[str, bytes], name: str) -> dict[str, Any] | None:
    raw = latest.get(f"fp/v1/s1/d1/points/{name}")
    return json.loads(raw) if raw else None


async def test_telemetry_and_points_carry_the_read_back_and_the_safe_confirmation(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes],
        amqtt_broker: BrokerEndpoint) -> None:
    doc = tank_document()
    for p in doc["points"]:
        if p["name"] == "pump_speed":
            p["max_rate_per_s"] = None  # jump straight to 1200 rpm
    contract = tmp_path / "contract.cose"
    contract.write_bytes(signer(check_mapping(doc)))
    async with SimDevice("tank", tick_ms=20, initial={"level": 1.0}) as sim:
        cfg = AgentConfig(device="d1", site="s1", journal=tmp_path / "j.db", trusted_key=keys[1],
                          modbus=ModbusConfig(host="127.0.0.1", port=sim.port, timeout_s=0.3),
                          broker=BrokerConfig(url=amqtt_broker.url, username="d1",
                                              password=amqtt_broker.users["d1"].password),
                          contract=contract, telemetry_s=0.2)
        async with _listen(amqtt_broker, "hub", "fp/v1/s1/d1/telemetry") as tele, \
                _listen(amqtt_broker, "scada", "fp/v1/s1/+/points/#") as points, \
                running_agent(cfg, reconnect=Backoff(initial_s=0.1, max_s=0.5)):
            await eventually(lambda: sim.values()["pump_speed"] == 1200, 10, "pump at 1200 rpm")
            hmi = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=1, retries=0)
            await hmi.connect()
            await hmi.write_register(20, 5000, device_id=1)  # a second master: 500 rpm
            hmi.close()
            doc_pump = await eventually(
                lambda: (d := _point(points, "pump_speed")) and d["value"] == 500.0 and d, 10,
                "points/pump_speed showing the device's 500 rpm")
            assert doc_pump["commanded"] == 1200
            t = await eventually(lambda: (m := _telemetry(tele)) and
                                 dict(m.values).get("pump_speed") == 500.0 and m, 10, "telemetry")
            assert dict(t.commanded)["pump_speed"] == 1200
            assert {"level", "pump_speed", "valve_open"} <= set(dict(t.read_ms))
            assert t.safe is None and t.trip is None
            sim.faults.enable(Fault.HANG)
            t = await eventually(lambda: (m := _telemetry(tele)) and m.safe == "unconfirmed" and m,
                                 10, "telemetry saying safe state is not confirmed")
            assert t.mode == "safe" and t.trip == "bad_quality:level"
            assert dict(t.commanded)["pump_speed"] == 0 and dict(t.values)["pump_speed"] == 500.0
            sim.faults.disable(Fault.HANG)
            await eventually(lambda: (m := _telemetry(tele)) and m.safe == "confirmed", 10,
                             "telemetry saying safe state is confirmed on the device")
            await eventually(lambda: (d := _point(points, "pump_speed")) and d["value"] == 0.0
                             and "commanded" not in d, 10, "points/pump_speed at 0 rpm")
