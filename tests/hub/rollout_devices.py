"""Devices for the rollout tests that restart the hub: each speaks MQTT as an agent does (a
retained birth, its hash-chained journal, the contracts it is pushed), keeps its journal across
hub restarts, and counts every contract it was sent — so a test can tell a re-push."""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.codec import content_hash
from contracts.signing import read_signed
from contracts.topics import Channel, topic
from contracts.wire import Birth, Telemetry
from tests.hub.sync_helpers import SITE, batch


@dataclass
class FakeAgent:
    device: str
    password: str
    entries: list[Entry] = field(default_factory=list)
    pushes: list[str] = field(default_factory=list)  # "contract@version", one per message
    running: str | None = None

    def _append(self, kind: EntryKind, body: dict[str, object]) -> Entry:
        prev = self.entries[-1].hash if self.entries else GENESIS
        e = make_entry(prev, len(self.entries) + 1, time.time_ns() // 1_000_000, kind, body)
        self.entries.append(e)
        return e

    async def run(self, port: int, connected: asyncio.Event) -> None:
        """Online on the broker at `port` until cancelled: birth, the whole journal, then each
        contract accepted (journaled with its content hash)."""
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"fp-agent-{self.device}/test",
                                  username=self.device, password=self.password) as client:
            await client.subscribe(topic(SITE, self.device, Channel.CONTRACT), qos=1)
            name, _, version = (self.running or "").partition("@")
            await client.publish(topic(SITE, self.device, Channel.STATUS), Birth(
                device=self.device, site=SITE, boot_id="b" * 32, contract=name or None,
                version=int(version) if version else None,
                last_seq=len(self.entries)).to_bytes(), qos=1, retain=True)
            if self.entries:
                await client.publish(topic(SITE, self.device, Channel.JOURNAL),
                                     batch(self.device, self.entries), qos=1)
            connected.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._telemetry(client))
                await self._contracts(client)

    async def _telemetry(self, client: aiomqtt.Client) -> None:
        """Telemetry every 0.2 s, as an agent's: what tells the hub it is online."""
        while True:
            name, _, version = (self.running or "").partition("@")
            await client.publish(topic(SITE, self.device, Channel.TELEMETRY), Telemetry(
                ts_ms=time.time_ns() // 1_000_000, values=(), mode="running", step=None,
                seq=len(self.entries), contract=name or None,
                version=int(version) if version else None).to_bytes(), qos=0)
            await asyncio.sleep(0.2)

    async def _contracts(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            c = read_signed(bytes(message.payload))  # type: ignore[arg-type]
            cid = f"{c.contract}@{c.version}"
            self.pushes.append(cid)
            e = self._append(EntryKind.CONTRACT, {"event": "accepted", "contract": c.contract,
                                                   "version": c.version, "hash": content_hash(c)})
            self.running = cid
            await client.publish(topic(SITE, self.device, Channel.JOURNAL),
                                 batch(self.device, [e]), qos=1)


@contextlib.asynccontextmanager
async def online(agents: list[FakeAgent], port: int) -> AsyncIterator[None]:
    """`agents` connected to the broker at `port` for the block."""
    events = [asyncio.Event() for _ in agents]
    tasks = [asyncio.create_task(a.run(port, ev), name=f"fake-{a.device}")
             for a, ev in zip(agents, events)]
    try:
        async with asyncio.timeout(20):
            await asyncio.gather(*(ev.wait() for ev in events))
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await t
