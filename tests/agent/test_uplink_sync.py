"""The uplink's protocol against a real broker: the hub's acks and births drive resend, and a hole
in the agent's own journal is sent as an explicit gap instead of wedging sync (issue 8).

The first tests play the hub with a plain aiomqtt client on the embedded amqtt broker, so they can
ack exactly what they want; the last one runs the real hub.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from agent.config import AgentConfig, BrokerConfig, ModbusConfig
from agent.journal import SqliteJournal
from agent.process import Agent
from contracts.chain import Entry
from contracts.signing import generate_keypair
from contracts.topics import HUB_STATUS, Channel, topic
from contracts.wire import Ack, HubBirth, JournalBatch
from transport.backoff import Backoff
from hub.app import HubRuntime
from simulators.netcut import NetCut
from simulators.server import SimDevice
from tests.agent.helpers import journal_entries, running_agent
from tests.agent.test_uplink import agent_running, signed_contract
from tests.conftest import BrokerEndpoint
from tests.hub.sync_helpers import PASSWORDS, SITE, acked, hub_config
from tests.waiting import eventually

pytestmark = pytest.mark.slow

NO_TIMEOUT_S = 120.0
"""An ack timeout no test waits for: any resend seen must come from the ack or a birth."""


@contextlib.asynccontextmanager
async def agent_on(tmp_path: Path, broker: BrokerEndpoint) -> AsyncIterator[Agent]:
    generate_keypair(tmp_path / "keys")
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        cfg = AgentConfig(device="d1", site=SITE, journal=tmp_path / "agent.db",
                          trusted_key=tmp_path / "keys" / "hub.pub",
                          modbus=ModbusConfig(host="127.0.0.1", port=sim.port, timeout_s=0.3),
                          broker=BrokerConfig(url=broker.url, username="d1",
                                              password=PASSWORDS["d1"]),
                          contract=signed_contract(tmp_path), batch_max=10,
                          ack_timeout_s=NO_TIMEOUT_S)
        async with running_agent(cfg, reconnect=Backoff(initial_s=0.1, max_s=0.5)) as agent:
            yield agent


@contextlib.asynccontextmanager
async def fake_hub(broker: BrokerEndpoint) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port, identifier="fieldpact-hub/fake-hub",
                              **broker.login("hub")) as client:  # type: ignore[arg-type]
        await client.subscribe(topic(SITE, "d1", Channel.JOURNAL), qos=1)
        yield client


async def next_batch(client: aiomqtt.Client) -> JournalBatch:
    async with asyncio.timeout(30):
        message = await anext(aiter(client.messages))
    return JournalBatch.from_bytes(bytes(message.payload))  # type: ignore[arg-type]


async def batch_from(client: aiomqtt.Client, from_seq: int, what: str) -> JournalBatch:
    """Read batches until one starts at `from_seq` (a resend), failing after 30 s."""
    try:
        async with asyncio.timeout(30):
            while (b := await next_batch(client)).from_seq != from_seq:
                pass
            return b
    except TimeoutError:
        raise AssertionError(f"no batch from seq {from_seq} within 30 s: {what}") from None


async def ack(client: aiomqtt.Client, seq: int) -> None:
    await client.publish(topic(SITE, "d1", Channel.ACK), Ack(seq=seq).to_bytes(), qos=1)


def resends(caplog: pytest.LogCaptureFixture, reason: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if "journal_resend" in r.getMessage() and f"reason={reason}" in r.getMessage()]


async def test_a_duplicate_ack_while_more_is_outstanding_resends_from_it_at_once(
        tmp_path: Path, amqtt_broker: BrokerEndpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fieldpact.agent.uplink")
    async with fake_hub(amqtt_broker) as hub, agent_on(tmp_path, amqtt_broker):
        first = await next_batch(hub)
        await ack(hub, first.to_seq)  # the ack advances: no resend
        second = await batch_from(hub, first.to_seq + 1, "the next batch")
        third = await next_batch(hub)
        assert third.from_seq > second.from_seq  # new data flows while the ack stands still
        await ack(hub, first.to_seq)  # the same ack again: the hub is missing a batch
        again = await batch_from(hub, first.to_seq + 1, "a fast retransmit from the ack")
    assert again.to_seq >= second.to_seq
    assert resends(caplog, "duplicate_ack")


async def test_a_hub_birth_rewinds_to_the_ack_and_a_new_boot_does_again(
        tmp_path: Path, amqtt_broker: BrokerEndpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fieldpact.agent.uplink")
    async with fake_hub(amqtt_broker) as hub, agent_on(tmp_path, amqtt_broker):
        first = await next_batch(hub)
        await ack(hub, first.to_seq)
        await batch_from(hub, first.to_seq + 1, "the next batch")  # sent and never acked
        for boot in ("a" * 32, "b" * 32):
            await hub.publish(HUB_STATUS, HubBirth(boot=boot, ts_ms=1).to_bytes(), qos=1,
                              retain=True)
            await batch_from(hub, first.to_seq + 1, f"a resend after hub birth {boot[:1]}")
    assert resends(caplog, "hub_birth") and resends(caplog, "hub_restart")


HOLES = {
    "deleted": ("DELETE FROM entries WHERE seq = 30", "rows missing"),
    "undecodable": ("UPDATE entries SET body = x'ffff' WHERE seq = 30", "does not decode"),
}


@pytest.mark.parametrize("hole", sorted(HOLES))
async def test_a_hole_in_the_agent_journal_syncs_past_as_an_explicit_alarmed_gap(
        tmp_path: Path, hole: str) -> None:
    sql, why = HOLES[hole]
    generate_keypair(tmp_path / "keys")
    journal = tmp_path / "agent.db"
    hub = HubRuntime(hub_config(tmp_path))
    try:
        async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim, \
                hub.running():
            assert hub.broker is not None
            async with NetCut("127.0.0.1", hub.broker.port) as route:
                await route.cut()  # the agent journals with no way to the hub
                async with agent_running(tmp_path, sim, route.url,
                                         signed_contract(tmp_path)) as agent:
                    await eventually(lambda: len(journal_entries(journal)) >= 60, 30,
                                     "the agent journaling while cut off")
                    with contextlib.closing(sqlite3.connect(journal, timeout=10)) as db, db:
                        db.execute(sql)  # unsent: the hub never had seq 30
                    route.restore()
                    head = (await agent.journal.head())[0]
                    await eventually(lambda: acked(hub, "d1") >= head, 60, f"hub past {head}")
                    rows = hub.store.journal.rows("d1", 0, 1_000_000)
                    alarms = [a for a in hub.store.alarms.find() if a.kind == "journal_gap"]
    finally:
        hub.close()
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    gap = next(r for r in rows if r.seq == 30)
    assert gap.kind == "gap" and gap.prev_hash == rows[28].hash and gap.hash == rows[30].prev_hash
    assert len(alarms) == 1 and "seq 30..30" in alarms[0].detail
    told = [e for e in journal_entries_readable(journal) if e.body.get("event") == "journal_hole"]
    assert [(e.body["from_seq"], why in e.body["reason"]) for e in told] == [(30, True)]
    assert not [e for e in journal_entries_readable(journal) if e.body.get("event") == "uplink_failed"]


def journal_entries_readable(path: Path) -> list[Entry]:
    """Every entry whose row still decodes (the test broke one on purpose)."""
    with SqliteJournal(path) as j:
        return j.read_tolerant(1, 1_000_000)[0]
