"""Interop: the hub and an agent through a real Mosquitto (ACL + password file rendered by us)."""
from __future__ import annotations

from pathlib import Path

import pytest

from contracts.signing import generate_keypair
from hub.app import HubRuntime
from hub.states import ContractStatus, DeviceState
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import journal_entries
from tests.agent.test_uplink import agent_running
from tests.conftest import BrokerEndpoint
from tests.hub.sync_helpers import acked, hub_config
from tests.waiting import eventually

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]


async def test_hub_and_agent_sync_through_mosquitto(tmp_path: Path,
                                                    mosquitto_broker: BrokerEndpoint) -> None:
    generate_keypair(tmp_path / "keys")
    hub_user = mosquitto_broker.users["hub"]
    hub = HubRuntime(hub_config(tmp_path, external=mosquitto_broker.url,
                                hub_user=(hub_user.name, hub_user.password)))
    try:
        async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
            async with hub.running():
                async with agent_running(tmp_path, sim, mosquitto_broker.url, None) as agent:
                    await eventually(lambda: agent.conn.online, 15, "agent connected to mosquitto")
                    rec = await hub.service.submit_contract(tank_document(version=5), "test")
                    await eventually(lambda: hub.store.contracts.get(rec.id).status is ContractStatus.ACTIVE,
                                     20, "contract active via mosquitto")
                    await eventually(lambda: hub.store.devices.get("d1").state is DeviceState.LIVE, 20, "live")
                    head = len(journal_entries(tmp_path / "agent.db"))
                    await eventually(lambda: acked(hub, "d1") >= head, 20,
                                     "journal acked through mosquitto")
                    rows = hub.store.journal.rows("d1", 0, 100_000)
    finally:
        hub.close()
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= head
