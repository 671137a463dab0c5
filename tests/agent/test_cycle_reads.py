"""Reads shared across contracts (agent/cycle_reads.py): two contracts due at the same instants
cost one request per (endpoint, unit, table), counted at a real pymodbus server; each contract
gets its own points back (even under the same name); a part kept for a contract that ran a cycle
in between is never used."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agent.cycle_reads import shared_phase
from agent.journal_thread import AsyncJournal
from agent.link import MemoryLink
from agent.modbus import ModbusLink
from agent.registers import ReadRequest
from agent.scan import Connectivity, CycleReport, ScanLoop
from agent.segment import ActiveContract
from contracts.inputs import Reading
from contracts.loader import check_mapping
from contracts.schema import Contract, Table
from contracts.types import EpochMs, PointName
from tests.agent.conftest import tank_document
from tests.agent.helpers import events
from tests.agent.modbus_server import BankContext, bank_server
from tests.waiting import eventually

H, C = Table.HOLDING, Table.COIL
PERIOD_MS = 20
HASH = "cd" * 32


def _contract(name: str, address: int, period_ms: int = PERIOD_MS,
              endpoint: str | None = None) -> Contract:
    """Reads `level` at holding `address`, owns the coil at `address` (open it and hold)."""
    points: list[dict[str, Any]] = [
        {"name": "level", "unit_id": 1, "table": "holding", "address": address, "type": "uint16",
         "direction": "read", "stale_after_ms": 5000},
        {"name": "valve", "unit_id": 1, "table": "coil", "address": address, "type": "bool",
         "direction": "write", "owner": name}]
    if endpoint is not None:
        points = [{**p, "endpoint": endpoint} for p in points]
    return check_mapping(tank_document(
        contract=name, version=1, scan_period_ms=period_ms, points=points,
        safe_state={"valve": False}, expect={}, tolerance={"timing_s": 300, "values": {}},
        steps=[{"name": "open", "do": {"valve": True}, "for_s": 3600}]))


def _bank() -> MemoryLink:
    return MemoryLink({(1, H): {0: 111, 1: 222}, (1, C): {0: False, 1: False}})


@asynccontextmanager
async def two_contracts(tmp_path: Path, periods: tuple[int, int] = (PERIOD_MS, PERIOD_MS)
                        ) -> AsyncIterator[tuple[ScanLoop, BankContext, list[CycleReport]]]:
    bank = _bank()
    async with bank_server(bank) as (_, server, port), AsyncJournal(tmp_path / "j.db") as journal:
        link = ModbusLink("127.0.0.1", port, timeout_s=1.0)
        await link.connect()
        reports: list[CycleReport] = []
        loop = ScanLoop(journal, link, Connectivity(standalone=True), on_cycle=reports.append)
        loop.offer(ActiveContract(contract=_contract("left", 0, periods[0]), signed=b"", hash=HASH))
        loop.offer(ActiveContract(contract=_contract("right", 1, periods[1]), signed=b"", hash=HASH))
        task = asyncio.create_task(loop.run(), name="scan-under-test")
        try:
            await eventually(lambda: bank.banks[(1, C)] == {0: True, 1: True}, 10, "both valves open")
            yield loop, server, reports
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await link.close()


def _reads(server: BankContext) -> list[tuple[int, int, int, int]]:
    return [r for r in server.requests if r[1] in (1, 2, 3, 4)]


async def test_two_contracts_reading_adjacent_registers_cost_one_request_per_table(
        tmp_path: Path) -> None:
    async with two_contracts(tmp_path) as (loop, server, reports):
        server.requests.clear()
        start = len(reports)
        await eventually(lambda: len(reports) >= start + 20, 10, "ten cycles of each")
        reads, ran = _reads(server), reports[start:]
        segments = dict(loop.segments)
    # holding 0 + 1 (the two `level`s) in one FC3, coils 0 + 1 (the two read-backs) in one FC1.
    merged = {(1, 3, 0, 2), (1, 1, 0, 2)}
    alone = _instants_run_by_one(ran)  # a loaded host may skip one contract's cycle (an overrun)
    solo = [r for r in reads if r not in merged]
    assert len(solo) <= 2 * (alone + 1), (solo, alone)  # only there: two requests each
    assert {r for r in reads if r in merged} == merged
    assert loop.reads.shared >= len(ran) // 2 - alone - 1
    # Each contract its own registers, both named `level`; no read-back taken for a second writer.
    assert segments["left"].last_good["level"][0] == 111
    assert segments["right"].last_good["level"][0] == 222
    assert events(tmp_path / "j.db", "second_writer") == []


async def test_a_contract_at_a_multiple_of_the_period_shares_every_one_of_its_instants(
        tmp_path: Path) -> None:
    async with two_contracts(tmp_path, periods=(PERIOD_MS, 2 * PERIOD_MS)) as (loop, server, reports):
        server.requests.clear()
        start = len(reports)
        await eventually(lambda: len(reports) >= start + 15, 10, "ten cycles of the fast one")
        ran = reports[start:]
        fast_t0 = loop.segments["left"].anchor.wall_ms
    slow = [r.now_ms for r in ran if r.contract == "right"]
    assert slow and all((t - fast_t0) % PERIOD_MS == 0 for t in slow)  # on the fast one's instants
    right_alone = len(set(slow) - {r.now_ms for r in ran if r.contract == "left"})
    # `right` reads its holding register alone only where `left` did not run (skipped, or the
    # window's edge), never where both ran.
    assert _reads(server).count((1, 3, 1, 1)) <= right_alone + 1


def _instants_run_by_one(ran: Sequence[CycleReport]) -> int:
    by: dict[int, int] = {}
    for r in ran:
        by[r.now_ms] = by.get(r.now_ms, 0) + 1
    return sum(1 for n in by.values() if n == 1)


def test_a_new_contract_takes_the_phase_of_one_whose_period_divides_or_multiplies_its_own() -> None:
    assert shared_phase(20, [(20, 1_000_007)]) == 7
    assert shared_phase(40, [(20, 1_000_007)]) == 7      # every one of its cycles is one of theirs
    assert shared_phase(10, [(20, 1_000_007)]) == 7
    assert shared_phase(30, [(20, 1_000_007)]) is None  # apart: agent/timing.py free_phase
    assert shared_phase(30, []) is None


class CountingLink(MemoryLink):
    def __init__(self) -> None:
        super().__init__({(1, H): {0: 111, 1: 222}, (1, C): {0: False, 1: False}})
        self.plans: list[Sequence[ReadRequest]] = []

    async def read(self, plan: Sequence[ReadRequest], now_ms: EpochMs) -> dict[PointName, Reading]:
        self.plans.append(plan)
        return await super().read(plan, now_ms)


async def test_a_part_kept_for_a_contract_that_ran_a_cycle_since_is_not_used(tmp_path: Path) -> None:
    link = CountingLink()
    await link.connect()
    async with AsyncJournal(tmp_path / "j.db") as journal:
        loop = ScanLoop(journal, link, Connectivity(standalone=True))
        for name, address in (("left", 0), ("right", 1)):
            assert await loop._start_segment(ActiveContract(contract=_contract(name, address),
                                                            signed=b"", hash=HASH), None,
                                             resumed=False)
        left, right = loop.segments["left"], loop.segments["right"]
        t = max(left.anchor.wall_ms, right.anchor.wall_ms) + 3 * PERIOD_MS
        assert (t - left.anchor.wall_ms) % PERIOD_MS == (t - right.anchor.wall_ms) % PERIOD_MS == 0
        await loop.cycle(left, t)  # reads for both
        assert [len(p) for p in link.plans] == [2]
        await loop.cycle(right, t - PERIOD_MS)  # right runs (and may write) in between
        await loop.cycle(right, t)  # so it reads again instead of taking the part kept at t
        assert len(link.plans) == 3 and loop.reads.shared == 0
        await loop.cycle(left, t + PERIOD_MS)
        await loop.cycle(right, t + PERIOD_MS)  # nothing in between: the kept part is used
        assert len(link.plans) == 4 and loop.reads.shared == 1
        link.set(1, H, 1, [333])
        view: dict[str, Any] = {}
        report = await loop.cycle(right, t + 2 * PERIOD_MS)  # left has not run t+2p: shares it
        view.update(report.view)
    assert view["level"].value == 333


async def test_in_a_shared_read_a_dead_endpoint_marks_only_its_own_contracts_points_bad(
        tmp_path: Path) -> None:
    """Each endpoint stays its own failure domain whichever contracts it serves: `left` is on a
    dead device, `right` on a live one, both due at the same instant, read as one."""
    from agent.endpoints import EndpointSet

    dead, live = MemoryLink(_bank().banks), MemoryLink(_bank().banks)
    links = EndpointSet({"a": dead, "b": live})
    await links.connect()
    dead.online = False
    docs = {"left": _contract("left", 0, endpoint="a"), "right": _contract("right", 1, endpoint="b")}
    async with AsyncJournal(tmp_path / "j.db") as journal:
        loop = ScanLoop(journal, links, Connectivity(standalone=True))
        for name in ("left", "right"):
            assert await loop._start_segment(ActiveContract(contract=docs[name], signed=b"",
                                                            hash=HASH), None, resumed=False)
        left, right = loop.segments["left"], loop.segments["right"]
        t = max(left.anchor.wall_ms, right.anchor.wall_ms) + 3 * PERIOD_MS
        links.pace(None)
        first = await loop.cycle(left, t)
        second = await loop.cycle(right, t)
    assert loop.reads.shared == 1
    assert first.view["level"].reason == "disconnected"
    assert second.view["level"].good and second.view["level"].value == 222
    await links.close()
