"""The hub's MQTT side in its own thread and loop, over real brokers, a real store and real HTTP:
the API answers while MQTT handling is stuck, acks follow commits, a store write error is
surfaced and loses nothing, and the side stops cleanly."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.topics import Channel
from contracts.wire import Ack, Telemetry
from transport.mqtt import LinkDown
from hub.app import HubRuntime
from tests.conftest import BrokerEndpoint
from tests.hub.serving import serving
from tests.hub.sync_helpers import (SITE, batch, birth, born_device, chain, device_client,
                                    hub_config, publish, running_hub)
from tests.waiting import eventually

HANDLER_STALL_S = 5.0
"""How long the stuck handler blocks the MQTT side's loop: far longer than a /health answer."""


@contextlib.asynccontextmanager
async def served(hub: HubRuntime) -> AsyncIterator[httpx.AsyncClient]:
    """The hub's app (its lifespan starts the MQTT side) on uvicorn, 127.0.0.1, ephemeral port."""
    async with serving(hub.app()) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        yield http


def _on_mqtt_side(hub: HubRuntime, fn: Callable[[], Any]) -> Awaitable[Any]:
    """Run `fn` on the MQTT side's own loop (its thread, its store connection)."""
    assert hub.mqtt_side is not None and hub.mqtt_side.loop is not None

    async def call() -> Any:
        return fn()

    return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), hub.mqtt_side.loop))


async def test_the_api_answers_while_mqtt_handling_is_stuck(tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))
    entered, finished = threading.Event(), threading.Event()
    try:
        async with served(hub) as http:
            assert hub.sync is not None and hub.broker is not None
            real = hub.sync._on_telemetry

            async def stuck(parts: Any, payload: bytes) -> None:  # a store stalled on its disk
                entered.set()
                threading.Event().wait(HANDLER_STALL_S)  # blocks the loop it runs on
                finished.set()
                await real(parts, payload)

            hub.sync._on_telemetry = stuck  # type: ignore[method-assign]
            async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
                await publish(dev, "d1", Channel.STATUS, birth("d1", 0), retain=True)
                tel = Telemetry(ts_ms=1, values=(("level", 1.0),), mode="idle", step=None, seq=0)
                await publish(dev, "d1", Channel.TELEMETRY, tel.to_bytes())
                await eventually(entered.is_set, 10, "the telemetry handler running")
                health = await http.get("/health")
                answered_while_stuck = not finished.is_set()
                await eventually(finished.is_set, 10, "the handler finishing")
    finally:
        hub.close()
    assert health.status_code == 200
    assert answered_while_stuck  # on a shared loop, /health waits for the handler


async def test_operator_hold_over_http_reaches_a_real_agent_across_the_thread_boundary(
        tmp_path: Path) -> None:
    from fieldpact.loopback import DeviceSpec, LocalSite
    from tests.agent.conftest import tank_document

    spec = DeviceSpec(id="tank-a", model="tank", initial={"level": 1.0})
    async with LocalSite(tmp_path, [spec]) as site:
        hub, agent = site.hub, site.devices["tank-a"].agent
        assert hub is not None and hub.mqtt_side is not None
        auth = {"Authorization": f"Bearer {site.token}"}
        async with httpx.AsyncClient(base_url=site.api_url, headers=auth, timeout=20) as http:
            doc = tank_document(device="tank-a", site="north-field", version=3)
            created = await http.post("/api/contracts", json=doc)
            assert created.status_code == 201, created.text
            cid = created.json()["id"]
            await eventually(lambda: agent.scan.segment is not None, 20, "the contract running")
            held = await http.post(f"/api/contracts/{cid}/hold", json={"reason": "inspect"})
            await eventually(lambda: _mode(agent) == "held", 15, "the agent's engine held")
        api_loop = asyncio.get_running_loop()
    assert held.status_code == 200, held.text
    assert hub.mqtt_side.loop is not api_loop  # the publish crossed to the MQTT side's loop
    assert not hub.mqtt_side.running  # and that side stopped with the site


def _mode(agent: Any) -> str | None:
    segment = agent.scan.segment
    return None if segment is None else str(segment.state.mode.value)


async def _acks_follow_commits(tmp_path: Path, hub: HubRuntime, host: str, port: int) -> None:
    entries = chain(2_000)
    seen: list[tuple[int, int]] = []  # (ack, rows readable through another connection then)
    async with device_client(host, port, "d1") as dev:
        await publish(dev, "d1", Channel.STATUS, birth("d1", 2_000), retain=True)
        await eventually(lambda: hub.store.devices.find(), 10, "the device registered")
        for k in range(0, 2_000, 100):
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[k:k + 100]))
        async with asyncio.timeout(30):
            async for message in dev.messages:
                seq = Ack.from_bytes(bytes(message.payload)).seq
                seen.append((seq, _stored_through(hub, seq)))
                if seq >= 2_000:
                    break
    assert seen and seen[-1][0] == 2_000
    assert all(stored == ack for ack, stored in seen), seen  # every ack: its rows committed


def _stored_through(hub: HubRuntime, seq: int) -> int:
    row = hub.store.db.conn.execute("SELECT count(*) FROM journal WHERE device = 'd1' AND "
                                    "seq <= ?", [seq]).fetchone()
    return int(row[0])


async def test_an_ack_reaches_the_device_only_after_its_entries_are_committed(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        assert hub.broker is not None
        await _acks_follow_commits(tmp_path, hub, "127.0.0.1", hub.broker.port)


@pytest.mark.mosquitto
async def test_an_ack_follows_the_commit_through_mosquitto_too(
        tmp_path: Path, mosquitto_broker: BrokerEndpoint) -> None:
    user = mosquitto_broker.users["hub"]
    hub = HubRuntime(hub_config(tmp_path, external=mosquitto_broker.url,
                                hub_user=(user.name, user.password)))
    try:
        async with hub.running():
            await _acks_follow_commits(tmp_path, hub, mosquitto_broker.host, mosquitto_broker.port)
    finally:
        hub.close()


async def test_a_store_write_error_is_surfaced_acks_nothing_and_loses_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="fieldpact.hub.sync")
    entries = _bulky_chain(400)
    async with running_hub(tmp_path) as hub:
        assert hub.sync is not None
        sync = hub.sync
        async with born_device(hub, "d1", 400) as dev:
            pages = (await _on_mqtt_side(hub, lambda: _pragma(hub, "page_count")))[0]
            await _on_mqtt_side(hub, lambda: _pragma(hub, f"max_page_count = {pages}"))
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[:200]))  # no room
            await eventually(lambda: sync.write_errors >= 1, 15, "the write error counted")
            await _on_mqtt_side(hub, lambda: _pragma(hub, f"max_page_count = {pages * 1000}"))
            # The rest, then the lost half again (as the agent resends from its last ack).
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[200:]))
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[:200]))
            acks = await _acks_until(dev, 400)
        rows = hub.store.journal.rows("d1", 0, 1000)
        alarms = [a.kind for a in hub.store.alarms.find()]
    assert [r.seq for r in rows] == list(range(1, 401))  # nothing acked was lost
    assert acks == [400]  # the failed batch was never acked, nor anything past the hole
    assert "hub_error" in alarms
    assert any("hub_store_write_failed" in r.getMessage() for r in caplog.records)


def _bulky_chain(n: int) -> list[Entry]:
    """A valid chain whose bodies are big enough that 200 of them need new database pages."""
    out, prev = [], GENESIS
    for seq in range(1, n + 1):
        e = make_entry(prev, seq, 1_000 * seq, EntryKind.EVENT, {"event": "note", "text": "x" * 400})
        out.append(e)
        prev = e.hash
    return out


def _pragma(hub: HubRuntime, pragma: str) -> Any:
    assert hub.sync is not None
    return hub.sync.store.db.conn.execute(f"PRAGMA {pragma}").fetchone()


async def _acks_until(dev: aiomqtt.Client, seq: int) -> list[int]:
    acks: list[int] = []
    async with asyncio.timeout(30):
        async for message in dev.messages:
            acks.append(Ack.from_bytes(bytes(message.payload)).seq)
            if acks[-1] >= seq:
                return acks
    return acks


async def test_stopping_the_hub_ends_the_mqtt_thread_and_later_publishes_fail_clearly(
        tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))
    try:
        async with hub.running():
            side = hub.mqtt_side
            assert side is not None and side.running
            assert side.loop is not asyncio.get_running_loop()
        with pytest.raises(LinkDown, match="not running"):
            await hub.publisher.push_contract(SITE, "d1", b"x")
    finally:
        hub.close()
    assert not side.running and side.loop is not None and side.loop.is_closed()


async def test_a_failed_mqtt_side_makes_health_and_operator_publishes_say_why_and_is_raised_at_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.sync import HubSync

    async def broken_ticker(self: HubSync) -> None:  # a bug on the sync side (no real fault does it)
        await asyncio.sleep(0.2)
        raise RuntimeError("ticker bug")

    monkeypatch.setattr(HubSync, "_ticker", broken_ticker)
    hub = HubRuntime(hub_config(tmp_path))
    try:
        with pytest.raises(ExceptionGroup) as raised:  # the sync side's TaskGroup, re-raised
            async with hub.running():
                side = hub.mqtt_side
                assert side is not None
                await eventually(lambda: not side.running, 15, "the MQTT side ending")
                with pytest.raises(LinkDown, match="ticker bug"):
                    await hub.publisher.send_command(SITE, "d1", _hold())
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub.app()),
                                             base_url="http://hub") as api:
                    health = await api.get("/health")
    finally:
        hub.close()
    assert raised.group_contains(RuntimeError, match="ticker bug", depth=None)
    assert health.status_code == 503 and "ticker bug" in health.json()["error"]


def _hold() -> Any:
    from contracts.inputs import Command, CommandKind
    return Command(kind=CommandKind.HOLD, id="hold:test")
