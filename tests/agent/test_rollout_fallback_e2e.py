"""On-device rollout fallback (issue 13, I2), end to end: a real agent process on a real tank
simulator, connected to a real broker, gets a new contract version from a hub (played by a plain
MQTT client that then goes away) whose `rollout` names the known-good contract it replaces.

- It trips within its health window with the hub gone: the agent by itself re-installs the
  known-good contract, latched in SAFE with the known-good's own safe state on the device
  (confirmed by read-back), journals `rollout_fallback` with the I2 fields, and after a kill -9
  comes back running the known-good contract, latched, never the tripped one.
- It trips after its window, with an agent restart in between: no fallback (the restart did not
  reopen the window), the tripped contract holds its own safe state.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from contracts.chain import Entry, EntryKind
from contracts.codec import content_hash
from contracts.loader import check_mapping
from contracts.schema import Contract
from contracts.inputs import Command, CommandKind
from contracts.topics import Channel, topic
from contracts.wire import CommandMessage
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import events, journal_entries, write_config
from tests.conftest import BrokerEndpoint
from tests.waiting import eventually

pytestmark = pytest.mark.slow

FIELDPACT = [sys.executable, "-m", "fieldpact.cli"]
KNOWN_GOOD_PUMP = 25.0
"""The known-good contract's safe pump speed (rpm): unlike the new version's 0, so the device
shows which contract's safe state it holds."""


def known_good_doc() -> dict[str, Any]:
    return tank_document(version=2, safe_state={"pump_speed": KNOWN_GOOD_PUMP, "valve_open": False})


def new_version_doc(known_good: Contract, window_s: float) -> dict[str, Any]:
    """Version 3: a tighter level range (the bad setting that trips it) and its rollout."""
    doc = tank_document(version=3, rollout={"deployment": "dep-000001", "health_window_s": window_s,
                                            "known_good": content_hash(known_good)})
    for p in doc["points"]:
        if p["name"] == "level":
            p["range"] = [0, 4.5]
    return doc


class AgentProcess:
    """`fieldpact agent run` in its own process, to kill -9 and start again."""

    def __init__(self, cfg: Path, log: Path) -> None:
        self.cfg, self.log = cfg, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *FIELDPACT, "agent", "run", "--config", str(self.cfg),
                stdout=asyncio.subprocess.DEVNULL, stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            async with asyncio.timeout(10):
                await self.proc.wait()
        self.proc = None


@contextlib.asynccontextmanager
async def field(tmp_path: Path, keys: tuple[Path, Path], broker: BrokerEndpoint,
                signed_known_good: bytes) -> AsyncIterator[tuple[SimDevice, AgentProcess, Path]]:
    """The tank simulator and an agent process running the known-good contract (a local file)."""
    local = tmp_path / "known-good.cose"
    local.write_bytes(signed_known_good)
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        agent = AgentProcess(write_config(tmp_path, keys, sim.port, local, broker=broker),
                             tmp_path / "agent.log")
        await agent.start()
        try:
            yield sim, agent, tmp_path / "journal.db"
        finally:
            await agent.stop()


def _boots(journal: Path, digest: str) -> list[Entry]:
    try:
        booted = journal_entries(journal, {EntryKind.BOOT})
    except sqlite3.OperationalError:  # the agent is still creating its journal
        return []
    return [e for e in booted if e.body["hash"] == digest]


async def push_then_leave(broker: BrokerEndpoint, journal: Path, signed: bytes,
                          digest: str) -> Entry:
    """Play the hub: publish the contract until the agent runs it (its BOOT), then disconnect."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="fieldpact-hub/fake-hub",
                              **broker.login("hub")) as hub:  # type: ignore[arg-type]
        async def booted() -> list[Entry]:
            await hub.publish(topic("s1", "d1", Channel.CONTRACT), signed, qos=1)
            return _boots(journal, digest)
        boots = await eventually(booted, 30, "the new version running on the agent", every_s=0.5)
    return boots[0]


def _read_level(journal: Path, after: int, level: float) -> bool:
    return any(abs(e.body["values"].get("level", [0])[0] - level) < 0.01
               for e in _after(journal_entries(journal, {EntryKind.INPUT}), after))


def _after(entries: list[Entry], seq: int) -> list[Entry]:
    return [e for e in entries if e.seq > seq]


async def test_a_trip_within_the_window_falls_back_to_the_known_good_by_itself_hub_gone(
        tmp_path: Path, keys: tuple[Path, Path], amqtt_broker: BrokerEndpoint,
        signer: Callable[[Contract], bytes]) -> None:
    known_good = check_mapping(known_good_doc())
    good_hash = content_hash(known_good)
    new = check_mapping(new_version_doc(known_good, window_s=60))
    new_hash = content_hash(new)
    async with field(tmp_path, keys, amqtt_broker, signer(known_good)) as (sim, agent, journal):
        await eventually(lambda: _boots(journal, good_hash) and sim.values()["pump_speed"] > 0, 20,
                         f"the known-good contract filling the tank (log: {agent.log})")
        boot = await push_then_leave(amqtt_broker, journal, signer(new), new_hash)  # hub gone
        await eventually(lambda: [e for e in events(journal, "step_entered") if e.seq > boot.seq],
                         10, "the new version filling")
        sim.set("level", 4.8)  # beyond the new version's range: it trips
        found = await eventually(lambda: events(journal, "rollout_fallback"), 10,
                                 f"a rollout_fallback event (log: {agent.log})")
        installed = await eventually(lambda: _boots(journal, good_hash)[1:], 10,
                                     "the known-good contract installed again")
        confirmed = await eventually(
            lambda: [e for e in events(journal, "safe_confirmed") if e.seq > installed[0].seq], 10,
            "the known-good's safe state confirmed by read-back")
        assert sim.values()["pump_speed"] == KNOWN_GOOD_PUMP and not sim.values()["valve_open"]
        await agent.stop(signal.SIGKILL)
        before = journal_entries(journal)
        await agent.start()  # no hub, still: the agent comes back on its own
        resumed = await eventually(lambda: [e for e in _after(journal_entries(journal), len(before))
                                            if e.kind is EntryKind.BOOT], 20, "a resumed segment")
        await eventually(lambda: len(_after(journal_entries(journal), resumed[0].seq)) >= 3, 10,
                         "the restarted agent journaling")
        assert sim.values()["pump_speed"] == KNOWN_GOOD_PUMP
        after_restart = journal_entries(journal)
        refused, resumed_step = await hub_returns(amqtt_broker, journal, signer(new))
    entries = after_restart
    trip = next(e for e in entries if e.kind is EntryKind.TRIP and e.body["event"] == "guard_trip"
                and e.seq > _boots(journal, new_hash)[0].seq)
    event = found[0]
    assert event.kind is EntryKind.EVENT and len(events(journal, "rollout_fallback")) == 1
    assert {k: event.body[k] for k in ("of", "deployment", "known_good", "fallback", "cause",
                                       "cause_seq")} == {
        "of": "tank-fill", "deployment": "dep-000001", "known_good": good_hash,
        "fallback": "tank-fill@2", "cause": "guard_trip", "cause_seq": trip.seq}
    boot = next(e for e in _after(entries, event.seq) if e.kind is EntryKind.BOOT)
    assert boot.body["hash"] == good_hash and boot.body["version"] == 2
    assert boot.body["state"]["mode"] == "safe" and boot.body["state"]["trip"] == "rollout_fallback"
    assert confirmed[0].seq > boot.seq and confirmed[0].body["of"] == "tank-fill"
    # Latched: the known-good never ran a step by itself, before or after the restart, and the
    # tripped version never came back.
    assert not [e for e in _after(entries, boot.seq) if e.body.get("event") == "step_entered"]
    assert resumed[0].body["hash"] == good_hash and resumed[0].body["resumed"]
    assert resumed[0].body["state"]["mode"] == "safe"
    assert all(e.body["hash"] == good_hash for e in _after(entries, boot.seq - 1)
               if e.kind is EntryKind.BOOT)
    # The hub back: the tripped version sent again is refused; an operator's resume runs the
    # known-good contract from its first step.
    assert refused.body["refusal"] == "fell_back" and "tank-fill@3" in refused.body["detail"]
    assert resumed_step.body["step"] == "fill"


async def hub_returns(broker: BrokerEndpoint, journal: Path, tripped: bytes) -> tuple[Entry, Entry]:
    """The hub again: it re-sends the tripped version, then an operator resumes the contract.
    Returns the agent's refusal and the step the known-good contract enters."""
    start = len(journal_entries(journal))
    async with aiomqtt.Client(broker.host, broker.port, identifier="fieldpact-hub/fake-hub",
                              **broker.login("hub")) as hub:  # type: ignore[arg-type]
        async def refused() -> list[Entry]:
            await hub.publish(topic("s1", "d1", Channel.CONTRACT), tripped, qos=1)
            return [e for e in _after(journal_entries(journal, {EntryKind.CONTRACT}), start)
                    if e.body["event"] == "refused"]
        refusal = await eventually(refused, 20, "the tripped version refused", every_s=0.5)
        resume = CommandMessage(command=Command(kind=CommandKind.RESUME, id="op-resume-1"),
                                contract="tank-fill").to_bytes()

        async def entered() -> list[Entry]:
            await hub.publish(topic("s1", "d1", Channel.CMD), resume, qos=1)
            return [e for e in _after(events(journal, "step_entered"), start)]
        step = await eventually(entered, 20, "the known-good contract resumed", every_s=0.5)
    return refusal[0], step[0]


async def test_a_trip_after_the_window_does_not_fall_back_even_across_a_restart(
        tmp_path: Path, keys: tuple[Path, Path], amqtt_broker: BrokerEndpoint,
        signer: Callable[[Contract], bytes]) -> None:
    window_s = 8.0  # room for a kill -9 and a restart on a loaded machine
    known_good = check_mapping(known_good_doc())
    new = check_mapping(new_version_doc(known_good, window_s=window_s))
    new_hash = content_hash(new)
    async with field(tmp_path, keys, amqtt_broker, signer(known_good)) as (sim, agent, journal):
        await eventually(lambda: _boots(journal, content_hash(known_good)), 20,
                         f"the known-good contract running (log: {agent.log})")
        boot = await push_then_leave(amqtt_broker, journal, signer(new), new_hash)
        await eventually(lambda: len(_after(journal_entries(journal), boot.seq)) >= 5, 10,
                         "the new version's first cycles")
        await agent.stop(signal.SIGKILL)  # a restart within the window...
        await agent.start()
        await eventually(lambda: len(_boots(journal, new_hash)) >= 2, 20, "the new version resumed")
        over_ms = boot.ts_ms + window_s * 1000 + 500
        assert time.time() * 1000 < over_ms, "the restart outlasted the window: this proves nothing"
        await eventually(lambda: time.time() * 1000 > over_ms, window_s + 1,
                         "the window over")  # ...must not have reopened it
        sim.set("level", 4.8)
        await eventually(lambda: [e for e in events(journal, "safe_confirmed")
                                  if e.seq > _boots(journal, new_hash)[-1].seq], 10,
                         "the tripped version's own safe state confirmed")
        trip = events(journal, "guard_trip")
        assert trip and trip[-1].ts_ms > boot.ts_ms + window_s * 1000
        for level in (4.9, 5.0):  # later cycles journal what they read: a fallback had its turn
            sim.set("level", level)
            await eventually(lambda: _read_level(journal, trip[-1].seq, level), 10,
                             f"the level {level} read after the trip")
        assert sim.values()["pump_speed"] == 0  # the new version's safe state, not the known-good's
    assert events(journal, "rollout_fallback") == []
    assert _boots(journal, new_hash)[-1].seq == max(
        e.seq for e in journal_entries(journal, {EntryKind.BOOT}))
