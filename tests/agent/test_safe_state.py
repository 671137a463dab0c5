"""Safe state is a fact on the device — scan cycles driven one by one over a MemoryLink (the real
DeviceLink for pure tests) and a real SQLite journal: re-asserted until the read-back confirms it,
journaled as attempt state (not per cycle), a failed safe write is not a second writer, a second
master loses to safe state, ramps start from the read-back, and the journal replays exactly.
(The same properties against real devices, hung, SIGSTOPped and cut off: test_safe_state_faults.py.)
"""
from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.journal_thread import AsyncJournal
from agent.link import MemoryLink
from agent.scan import Connectivity, ScanLoop
from agent.segment import ActiveContract
from contracts.chain import Entry
from contracts.engine import Mode
from contracts.inputs import Command, CommandKind
from contracts.loader import check_mapping
from contracts.journal_replay import replay_entries
from contracts.schema import Contract, Table
from tests.agent.conftest import now_ms, tank_document
from tests.agent.helpers import journal_entries

PERIOD = 50
H, C, I, D = Table.HOLDING, Table.COIL, Table.INPUT, Table.DISCRETE


def _level_words(level: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", level)))


def _device(level: float = 1.0) -> MemoryLink:
    link = MemoryLink({(1, I): dict(enumerate(_level_words(level))), (1, D): {0: False},
                       (1, H): {20: 0}, (1, C): {13: False}})
    link._connected = True
    return link


class Rig:
    def __init__(self, journal: AsyncJournal, link: MemoryLink, contract: Contract, path: Path) -> None:
        self.journal, self.link, self.contract, self.path = journal, link, contract, path
        self.loop = ScanLoop(journal, link, Connectivity(standalone=True))
        self.t = 0

    async def start(self) -> None:
        await self.loop._start_segment(ActiveContract(contract=self.contract, signed=b"", hash="h"),
                                       None, resumed=False)
        self.t = self.loop._anchor.wall_ms

    async def cycles(self, n: int = 1) -> None:
        seg = self.loop.segment
        assert seg is not None
        for _ in range(n):
            await self.loop.cycle(seg, self.t)
            self.t += PERIOD

    @property
    def mode(self) -> Mode:
        assert self.loop.segment is not None
        return self.loop.segment.state.mode

    def pump(self) -> float:
        return int(self.link.banks[(1, H)][20]) * 0.1

    def valve(self) -> bool:
        return bool(self.link.banks[(1, C)][13])

    def events(self, name: str) -> list[Entry]:
        return [e for e in journal_entries(self.path) if e.body.get("event") == name]

    def outputs_at(self, ts: int) -> dict[str, Any]:
        return next(e.body["writes"] for e in journal_entries(self.path)
                    if e.ts_ms == ts and e.kind.value == "output")

    def replay_ok(self) -> bool:
        report = replay_entries(journal_entries(self.path), lambda h: self.contract)
        assert report.mismatches == ()
        return report.cycles > 0


def _contract(**pump: Any) -> Contract:
    doc = tank_document()
    for p in doc["points"]:
        p.pop("frozen_after_ms", None)  # a memory device's level does not jitter
        if p["name"] == "pump_speed":
            p.update(pump)
    return check_mapping(doc)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    path = tmp_path / "journal.db"
    async with AsyncJournal(path) as journal:
        r = Rig(journal, _device(), _contract(), path)
        await r.start()
        yield r


async def test_safe_state_is_reasserted_every_cycle_until_the_device_shows_it_then_confirmed(
        rig: Rig) -> None:
    await rig.cycles(10)
    assert rig.valve() and rig.pump() > 0
    rig.link.online = False  # the device stops answering mid-fill
    await rig.cycles()
    trip_ms = rig.t - PERIOD
    assert rig.mode is Mode.SAFE
    await rig.cycles(20)  # twenty cycles unconfirmed: the journal records it once
    unconfirmed = rig.events("safe_unconfirmed")
    assert [(e.body["points"], e.body["since_ms"], e.body["attempts"]) for e in unconfirmed] == [
        (["pump_speed", "valve_open"], trip_ms, 1)]
    assert rig.valve() and rig.pump() > 0  # nothing reached the device yet
    rig.link.online = True
    await rig.cycles()  # the device answers: safe state written, and read back, in this cycle
    assert (rig.pump(), rig.valve()) == (0, False)
    confirmed = rig.events("safe_confirmed")
    assert [e.body["elapsed_ms"] for e in confirmed] == [rig.t - PERIOD - trip_ms]
    assert confirmed[0].body["attempts"] == 22
    assert rig.loop.segment is not None and rig.loop.segment.actuator.safe_view() is not None
    assert len(rig.events("output_reassert")) == 1
    assert rig.events("second_writer") == []  # our own failed safe write is not another master
    await rig.cycles(10)
    assert (rig.pump(), rig.valve()) == (0, False) and len(rig.events("safe_confirmed")) == 1
    assert rig.replay_ok()


async def test_a_second_master_after_our_acknowledged_safe_write_is_alarmed_and_loses(
        rig: Rig) -> None:
    await rig.cycles(5)
    rig.link.set(1, I, 0, _level_words(9.0))  # out of range: trip with the device answering
    await rig.cycles(2)
    assert rig.mode is Mode.SAFE and (rig.pump(), rig.valve()) == (0, False)
    assert [e.body["elapsed_ms"] for e in rig.events("safe_confirmed")] == [0]  # read back at once
    rig.link.set(1, H, 20, [8000])  # an HMI starts the pump at 800 rpm
    await rig.cycles()
    writer = rig.events("second_writer")
    assert [(e.body["point"], e.body["expected"], e.body["actual"]) for e in writer] == [
        ("pump_speed", 0, 800.0)]
    assert rig.pump() == 0  # safe state wins on the device, in the same cycle
    assert len(rig.events("safe_confirmed")) == 2
    await rig.cycles()
    assert len(rig.events("second_writer_cleared")) == 1
    assert [e.body["points"] for e in rig.events("safe_unconfirmed")] == [
        ["pump_speed", "valve_open"], ["pump_speed"]]  # the trip, then the second master
    assert len(rig.events("safe_confirmed")) == 2
    assert rig.replay_ok()


async def test_outside_safe_state_a_second_master_is_alarmed_not_fought(tmp_path: Path) -> None:
    async with AsyncJournal(tmp_path / "j.db") as journal:
        rig = Rig(journal, _device(), _contract(max_rate_per_s=None), tmp_path / "j.db")
        await rig.start()
        await rig.cycles(3)
        assert rig.pump() == 1200
        rig.link.set(1, H, 20, [5000])
        await rig.cycles(5)
        assert rig.pump() == 500 and len(rig.events("second_writer")) == 1
        assert rig.replay_ok()


async def test_after_a_second_master_moves_the_pump_mid_ramp_the_ramp_goes_on_from_the_read_back(
        rig: Rig) -> None:
    await rig.cycles(40)  # 300 rpm/s at 50 ms: 15 rpm per cycle
    commanded = rig.pump()
    assert 400 < commanded < 1200
    rig.link.set(1, H, 20, [2000])  # another master: 200 rpm
    await rig.cycles()
    assert rig.outputs_at(rig.t - PERIOD) == {"pump_speed": 215.0}  # not commanded + 15
    await rig.cycles()
    assert rig.pump() == 230.0
    assert rig.replay_ok()


async def test_resume_is_refused_and_journaled_while_the_cause_persists_then_continues_the_step(
        rig: Rig) -> None:
    await rig.cycles(5)
    rig.link.set(1, I, 0, _level_words(9.0))
    await rig.cycles(2)
    rig.loop.commands.append(Command(kind=CommandKind.RESUME, id="op-1"))
    await rig.cycles(30)
    refused = rig.events("resume_refused")
    assert [(e.body["command"], e.body["cause"]) for e in refused] == [("op-1", "out_of_range:level")]
    assert rig.mode is Mode.SAFE  # the latch holds: nothing but an operator's resume clears it
    rig.link.set(1, I, 0, _level_words(2.0))
    await rig.cycles(30)
    assert rig.mode is Mode.SAFE  # healthy inputs alone never clear the trip
    rig.loop.commands.append(Command(kind=CommandKind.RESUME, id="op-2"))
    await rig.cycles(3)
    assert rig.mode is Mode.RUNNING and rig.loop.segment is not None
    assert rig.loop.segment.step_name() == "fill" and rig.valve() and rig.pump() > 0
    assert rig.loop.segment.actuator.safe_view() is None
    assert rig.replay_ok()


async def test_an_abort_while_the_device_is_unreachable_is_asserted_when_it_answers(rig: Rig) -> None:
    await rig.cycles(10)
    rig.link.online = False
    rig.loop.commands.append(Command(kind=CommandKind.ABORT, id="op-abort"))
    await rig.cycles(5)
    assert rig.mode is Mode.ABORTED and rig.valve()  # the abort's safe writes did not land
    assert len(rig.events("safe_unconfirmed")) == 1
    rig.link.online = True
    await rig.cycles()
    assert (rig.pump(), rig.valve()) == (0, False) and len(rig.events("safe_confirmed")) == 1
    assert rig.replay_ok()
