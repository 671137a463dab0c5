"""Devices for the rollout tests that restart the hub: each speaks MQTT as an agent does (a
retained birth, its hash-chained journal, the contracts it is pushed), keeps its journal across
hub restarts, and counts every contract it was sent — so a test can tell a re-push.

Its loops honour a cancellation that Python 3.11's `asyncio.wait_for` lost (transport/cancel.py:
aiomqtt awaits each QoS 1 PUBACK through it). Without that, a device cancelled just as a PUBACK
came kept publishing, its TaskGroup never ended, and `online()`'s teardown waited for it until
pytest-timeout killed the test (about once per full-suite run, under load).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from contracts.chain import GENESIS, Entry, make_entry
from contracts.codec import content_hash
from contracts.engine_state import EngineState, EventKind, Mode
from contracts.journal_events import (AgentEvent, BootBody, ContractBody, ContractChange,
                                      EventBody, InputBody, TripBody, encode)
from contracts.schema import Contract
from contracts.signing import read_signed
from contracts.topics import Channel, topic
from contracts.wire import Birth, Telemetry
from tests.hub.sync_helpers import SITE, batch
from transport.cancel import raise_if_cancelled

STOP_S = 15.0
"""How long `online()` waits for its devices to disconnect (aiomqtt's own DISCONNECT wait is its
10 s client timeout): past it the teardown fails naming the device, instead of hanging."""


@dataclass
class FakeAgent:
    device: str
    password: str
    entries: list[Entry] = field(default_factory=list)
    pushes: list[str] = field(default_factory=list)  # "contract@version", one per message
    running: str | None = None
    falls_back: bool = False  # journal `rollout_fallback` right after booting a pushed contract
    commands: list[bytes] = field(default_factory=list)  # every hub command received
    deployed: bool = False  # the contract it runs came from a deployment (has `rollout`)
    trips: bool = False  # journal a guard trip (latched in safe state) after booting one
    loses: bool = False  # lose two entries right after booting one: a declared journal gap
    silent: bool = False  # journal nothing more once it booted one (telemetry goes on)
    lost: tuple[int, int] | None = None  # the seqs it declared lost
    second_writer: bool = False  # journal a `second_writer` (no trip) after booting a pushed one
    received_ms: list[int] = field(default_factory=list)  # when each of `pushes` arrived
    several: bool = False  # runs every contract it is pushed side by side (one per name)
    runs: dict[str, str] = field(default_factory=dict)  # name -> "name@version" (`several`)
    fails_only: str | None = None  # `trips`, `second_writer`: only a contract of this prefix

    def _append(self, body: Any) -> Entry:
        prev = self.entries[-1].hash if self.entries else GENESIS
        e = make_entry(prev, len(self.entries) + 1, time.time_ns() // 1_000_000, body.KIND,
                       encode(body))
        self.entries.append(e)
        return e

    def _births(self) -> tuple[tuple[str, int], ...]:
        """Every contract it runs, as a birth names them (`several`; else only `contract`)."""
        if not self.several:
            return ()
        return tuple(sorted((n, int(cid.rpartition("@")[2])) for n, cid in self.runs.items()))

    def _fails(self, c: Contract) -> bool:
        return self.fails_only is None or c.contract.startswith(self.fails_only)

    def _accept(self, c: Contract) -> list[Entry]:
        """What an agent journals taking a contract on: accepted, its BOOT, the output sync."""
        digest = content_hash(c)
        out = [self._append(ContractBody(event=ContractChange.ACCEPTED, contract=c.contract,
                                         version=c.version, hash=digest)),
               self._append(BootBody(boot_id="b" * 32, t0_ms=time.time_ns() // 1_000_000,
                                     period_ms=c.scan_period_ms, contract=c.contract,
                                     version=c.version, hash=digest,
                                     state=EngineState(mode=Mode.PENDING), resumed=False)),
               self._append(EventBody(event=AgentEvent.OUTPUT_SYNC, fields={"writes": {}},
                                      contract=c.contract))]
        if self.trips and c.rollout is not None and self._fails(c):
            out.append(self._append(TripBody(event=EventKind.GUARD_TRIP, contract=c.contract,
                                             fields={"reason": "out_of_range", "point": "level"})))
        if self.second_writer and c.rollout is not None and self._fails(c):
            out.append(self._append(EventBody(event=AgentEvent.SECOND_WRITER, contract=c.contract,
                                              fields={"point": "pump_speed", "value": 500})))
        if self.falls_back and c.rollout is not None:
            out.append(self._append(EventBody(event="rollout_fallback", contract=c.contract, fields={
                "deployment": c.rollout.deployment, "known_good": c.rollout.known_good or "",
                "fallback": "-", "cause": "guard_trip", "cause_seq": out[-1].seq})))
        return out

    async def run(self, port: int, connected: asyncio.Event) -> None:
        """Online on the broker at `port` until cancelled: birth, the whole journal, then each
        contract accepted (journaled with its content hash)."""
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"fp-agent-{self.device}/test",
                                  username=self.device, password=self.password) as client:
            await client.subscribe(topic(SITE, self.device, Channel.CONTRACT), qos=1)
            await client.subscribe(topic(SITE, self.device, Channel.CMD), qos=1)
            name, _, version = (self.running or "").partition("@")
            await client.publish(topic(SITE, self.device, Channel.STATUS), Birth(
                device=self.device, site=SITE, boot_id="b" * 32, contract=name or None,
                version=int(version) if version else None,
                last_seq=len(self.entries), contracts=self._births()).to_bytes(), qos=1,
                retain=True)
            if self.entries:
                await client.publish(topic(SITE, self.device, Channel.JOURNAL),
                                     batch(self.device, self.entries), qos=1)
            connected.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._telemetry(client))
                await self._contracts(client)

    async def _telemetry(self, client: aiomqtt.Client) -> None:
        """Telemetry every 0.2 s, as an agent's (what tells the hub it is online), and a reading
        journaled each second while a contract runs (what proves its health window over)."""
        tick = 0
        while True:
            raise_if_cancelled()
            name, _, version = (self.running or "").partition("@")
            tick += 1
            names = sorted(self.runs) if self.several else [name] if name else []
            if names and tick % 5 == 0 and not (self.silent and self.deployed):
                readings = [self._append(InputBody(values={"level": [1.0, "good", None]},
                                                   contract=n)) for n in names]
                await client.publish(topic(SITE, self.device, Channel.JOURNAL),
                                     batch(self.device, readings), qos=1)
            await client.publish(topic(SITE, self.device, Channel.TELEMETRY), Telemetry(
                ts_ms=time.time_ns() // 1_000_000, values=(), mode="running", step=None,
                seq=len(self.entries), contract=name or None,
                version=int(version) if version else None).to_bytes(), qos=0)
            await asyncio.sleep(0.2)

    def _lose_two(self) -> tuple[list[Entry], tuple[tuple[int, int], ...]]:
        """Two readings the journal no longer holds (rows unreadable), and one after them."""
        name = (self.running or "").partition("@")[0]
        lost = [self._append(InputBody(values={"level": [1.0, "good", None]}, contract=name))
                for _ in range(2)]
        self.lost = (lost[0].seq, lost[-1].seq)
        kept = self._append(InputBody(values={"level": [1.0, "good", None]}, contract=name))
        return [kept], (self.lost,)

    async def _contracts(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            raise_if_cancelled()
            if str(message.topic).endswith(f"/{Channel.CMD.value}"):
                self.commands.append(bytes(message.payload))  # type: ignore[arg-type,unused-ignore]
                continue
            c = read_signed(bytes(message.payload))  # type: ignore[arg-type,unused-ignore]
            cid = f"{c.contract}@{c.version}"
            self.pushes.append(cid)
            self.received_ms.append(time.time_ns() // 1_000_000)
            entries = self._accept(c)
            self.running = cid
            self.runs[c.contract] = cid
            self.deployed = c.rollout is not None
            gaps: tuple[tuple[int, int], ...] = ()
            if self.loses and self.deployed:
                more, gaps = self._lose_two()
                entries = [*entries, *more]
            await client.publish(topic(SITE, self.device, Channel.JOURNAL),
                                 batch(self.device, entries, gaps), qos=1)
            raise_if_cancelled()


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
        await _stop(tasks)


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the devices' tasks and reap them within STOP_S; a device still running then fails
    the test by name (and is cancelled again, so the test process is not left with it)."""
    for t in tasks:
        t.cancel()
    _, stuck = await asyncio.wait(tasks, timeout=STOP_S)
    for t in stuck:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            try:
                await t
            except* aiomqtt.MqttError:  # its TaskGroup's publish lost the broker: a test
                pass                    # that kills the hub (-9) kills its broker too
    if stuck:
        raise AssertionError(f"fake devices still running {STOP_S:g} s after they were "
                             f"cancelled: {sorted(t.get_name() for t in stuck)}")
