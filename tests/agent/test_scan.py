"""The scan loop on its own, against a real pymodbus server on 127.0.0.1 and a real SQLite journal:
cycles on the period grid (never early, every skipped deadline journaled as an overrun), one read
per coalesced request per cycle, a failing request marks exactly its points BAD and trips safe
state in the same cycle, faults journaled on their edges, the journal written before the device,
and a step change checkpointed.
"""
from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agent.journal_thread import AsyncJournal
from agent.link import MemoryLink
from agent.modbus import ModbusLink
from agent.scan import KEYFRAME_MS, Connectivity, CycleReport, ScanLoop
from agent.segment import ActiveContract, checkpoint_name, decode_checkpoint
from contracts.chain import Entry, EntryKind
from contracts.engine import EventKind
from contracts.guards import TripReason
from contracts.loader import check_mapping
from contracts.schema import Contract, Table
from tests.agent.conftest import tank_document
from tests.agent.helpers import journal_entries
from tests.waiting import eventually
from tests.agent.modbus_server import BankContext, bank_server

PERIOD_MS = 50
H, C, I, D = Table.HOLDING, Table.COIL, Table.INPUT, Table.DISCRETE
FC_READ = {1, 2, 3, 4}
FC_WRITE = {5, 6, 15, 16}
HASH = "ab" * 32


def _level_words(level: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", level)))


def _contract() -> Contract:
    """tank-fill plus `temp` at input 2, right after level's two registers (one request for both)."""
    doc = tank_document(scan_period_ms=PERIOD_MS)
    for p in doc["points"]:
        p.pop("frozen_after_ms", None)  # the served level does not jitter
    doc["points"].append({"name": "temp", "unit_id": 1, "table": "input", "address": 2,
                          "type": "int16", "direction": "read", "stale_after_ms": 1000})
    return check_mapping(doc)


def _bank(level: float = 1.0) -> MemoryLink:
    return MemoryLink({(1, I): {**dict(enumerate(_level_words(level))), 2: 215},
                       (1, D): {0: False}, (1, H): {20: 0}, (1, C): {13: False}})


@dataclass
class Scan:
    loop: ScanLoop
    bank: MemoryLink
    server: BankContext
    path: Path
    journal: AsyncJournal
    reports: list[CycleReport] = field(default_factory=list)

    def entries(self, *kinds: EntryKind) -> list[Entry]:
        return journal_entries(self.path, set(kinds) if kinds else None)

    def boot(self) -> Entry:
        return self.entries(EntryKind.BOOT)[0]

    def reads(self) -> list[tuple[int, int, int, int]]:
        return [r for r in self.server.requests if r[1] in FC_READ]

    def guard_trips(self) -> list[Entry]:
        return [e for e in self.entries(EntryKind.TRIP)
                if e.body.get("event") == EventKind.GUARD_TRIP.value]

    def faults(self) -> list[tuple[str, str, str | None]]:
        return [(e.body["what"], e.body["reason"], e.body["point"])
                for e in self.entries(EntryKind.ADAPTER_FAULT)]

    def fault_codes(self) -> list[int | None]:
        return [e.body.get("code") for e in self.entries(EntryKind.ADAPTER_FAULT)]


@asynccontextmanager
async def scanning(tmp_path: Path, *, keyframe_ms: int = KEYFRAME_MS) -> AsyncIterator[Scan]:
    """The loop running tank-fill against a served bank, until the block ends."""
    bank, path = _bank(), tmp_path / "journal.db"
    async with bank_server(bank) as (_, server, port), AsyncJournal(path) as journal:
        link = ModbusLink("127.0.0.1", port, timeout_s=1.0)
        await link.connect()
        reports: list[CycleReport] = []
        loop = ScanLoop(journal, link, Connectivity(standalone=True), on_cycle=reports.append,
                        keyframe_ms=keyframe_ms)
        scan = Scan(loop=loop, bank=bank, server=server, path=path, journal=journal, reports=reports)
        scan.loop.offer(ActiveContract(contract=_contract(), signed=b"", hash=HASH))
        task = asyncio.create_task(scan.loop.run(), name="scan-under-test")
        try:
            yield scan
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await link.close()


async def test_cycles_run_on_the_period_grid_from_the_boot_never_before_their_deadline(
        tmp_path: Path) -> None:
    async with scanning(tmp_path, keyframe_ms=4 * PERIOD_MS) as scan:
        await eventually(lambda: len(scan.reports) >= 12, 10, "twelve cycles")
        started = time.monotonic()
        before = len(scan.reports)
        await eventually(lambda: len(scan.reports) >= before + 8, 10, "eight more cycles")
        elapsed_ms = (time.monotonic() - started) * 1000
        ran = len(scan.reports) - before
    boot = scan.boot().body
    assert boot["period_ms"] == PERIOD_MS and boot["t0_ms"] % PERIOD_MS == 0
    times = [r.now_ms for r in scan.reports]
    assert all((t - boot["t0_ms"]) % PERIOD_MS == 0 for t in times)
    assert times == sorted(set(times))  # each deadline at most once, in order
    assert all(r.late_ms >= 0 for r in scan.reports)  # a cycle never starts before its deadline
    assert ran <= elapsed_ms / PERIOD_MS + 2  # no bursts: never faster than the period
    # Every deadline from t0 to the last cycle either ran or is journaled as skipped.
    missed = (times[-1] - boot["t0_ms"]) // PERIOD_MS + 1 - len(times)
    overruns = [e.body for e in scan.entries(EntryKind.OVERRUN) if e.body["resume_ms"] <= times[-1]]
    assert missed == sum(o["skipped"] for o in overruns)
    keyframes = [e.ts_ms for e in scan.entries(EntryKind.KEYFRAME)]
    assert keyframes[0] == times[0] and len(keyframes) >= 3
    assert all(b - a >= 4 * PERIOD_MS for a, b in zip(keyframes, keyframes[1:]))
    assert all((k - boot["t0_ms"]) % PERIOD_MS == 0 for k in keyframes)


async def test_each_cycle_sends_one_read_per_coalesced_request(tmp_path: Path) -> None:
    async with scanning(tmp_path) as scan:
        await eventually(lambda: len(scan.reports) >= 10, 10, "ten cycles")
    cycles, reads = scan.loop.stats.cycles, scan.reads()
    # level (input 0-1) and temp (input 2) share one FC4 request; each other table one request.
    assert set(reads) == {(1, 1, 13, 1), (1, 2, 0, 1), (1, 3, 20, 1), (1, 4, 0, 3)}
    per_request = {r: reads.count(r) for r in set(reads)}
    # +1: a cycle in flight when counted; the write points' requests (valve coil 13, pump holding
    # 20) once more: the read-back of the segment's OUTPUT_SYNC, before cycle 0 (agent/scan.py).
    synced = {(1, 1, 13, 1), (1, 3, 20, 1)}
    assert all(cycles <= n - (r in synced) <= cycles + 1 for r, n in per_request.items()), (
        cycles, per_request)


async def test_a_failing_request_marks_only_its_points_bad_and_trips_safe_in_that_cycle(
        tmp_path: Path) -> None:
    async with scanning(tmp_path) as scan:
        await eventually(lambda: scan.bank.banks[(1, C)][13], 10, "the valve opened (filling)")
        del scan.bank.banks[(1, D)]  # high_level's address goes away: exception 2 on FC2
        trips = await eventually(scan.guard_trips, 10, "a guard trip")
        await eventually(lambda: not scan.bank.banks[(1, C)][13] and scan.bank.banks[(1, H)][20] == 0,
                         10, "safe state on the device")
        scan.bank.set(1, D, 0, [False])
        await eventually(lambda: ("read_recovered", "ok", "high_level") in scan.faults(), 10,
                         "the recovery journaled")
        cycles_after = scan.loop.stats.cycles
        await eventually(lambda: scan.loop.stats.cycles >= cycles_after + 3, 10, "three more cycles")
    trip = trips[0]
    assert trip.body["point"] == "high_level" and trip.body["reason"] == TripReason.BAD_QUALITY.value
    seen = [e for e in scan.entries(EntryKind.INPUT) if e.ts_ms == trip.ts_ms][0].body["values"]
    assert seen["high_level"] == [None, "bad", "exception:2"]
    assert "level" not in seen or seen["level"][1] == "good"  # the other requests stay GOOD
    fault_at = [e.ts_ms for e in scan.entries(EntryKind.ADAPTER_FAULT)]
    assert fault_at[0] == trip.ts_ms  # fault, input and trip: one cycle
    # Journaled on the edges only: once when it started failing, once when it recovered.
    # In words, with the device's exception code kept as a field (the BAD reading keeps its code).
    assert scan.faults() == [
        ("read", "exception 2 (illegal data address) at discrete 0", "high_level"),
        ("read_recovered", "ok", "high_level")]
    assert scan.fault_codes() == [2, None]


async def test_a_slow_cycle_skips_to_the_latest_deadline_and_journals_the_overrun(
        tmp_path: Path) -> None:
    async with scanning(tmp_path) as scan:
        await eventually(lambda: len(scan.reports) >= 5, 10, "five cycles")
        slow = asyncio.Event()

        async def hold_one_read(unit: int, fc: int, address: int) -> None:
            if fc == 4 and not slow.is_set():
                slow.set()
                await asyncio.sleep(5 * PERIOD_MS / 1000)  # the device takes five periods once

        scan.server.hook = hold_one_read
        overruns = await eventually(lambda: [e for e in scan.entries(EntryKind.OVERRUN)
                                             if e.body["skipped"] >= 3], 10, "the overrun")
        resume = overruns[0].body["resume_ms"]
        await eventually(lambda: any(r.now_ms > resume for r in scan.reports), 10, "cycles after it")
    body, boot = overruns[0].body, scan.boot().body
    assert body["late_ms"] >= 3 * PERIOD_MS
    assert resume == overruns[0].ts_ms + body["skipped"] * PERIOD_MS
    assert (resume - boot["t0_ms"]) % PERIOD_MS == 0
    times = [r.now_ms for r in scan.reports]
    assert resume in times and overruns[0].ts_ms not in times  # skipped, not run late in a burst
    assert scan.loop.stats.overruns == len(scan.entries(EntryKind.OVERRUN))
    assert scan.loop.stats.skipped == sum(e.body["skipped"] for e in scan.entries(EntryKind.OVERRUN))
    slow_cycle = max(scan.reports, key=lambda r: r.duration_ms)
    assert slow_cycle.duration_ms > PERIOD_MS and not slow_cycle.healthy


async def test_every_write_reaches_the_device_only_after_the_journal_holds_it(tmp_path: Path) -> None:
    """pymodbus serves a write as set-then-get, so the hook also runs once the device holds the new
    value: by then the journal must hold that very value (each ramp step is a distinct value)."""
    checked: list[tuple[str, object, bool]] = []

    async with scanning(tmp_path) as scan:
        def journaled(point: str) -> set[object]:
            bodies = [e.body for e in scan.entries(EntryKind.OUTPUT, EntryKind.EVENT)]
            return {round(b["writes"][point], 6) if point == "pump_speed" else b["writes"][point]
                    for b in bodies if point in (b.get("writes") or {})}

        async def check_journal(unit: int, fc: int, address: int) -> None:
            if fc in FC_WRITE:
                point = "valve_open" if address == 13 else "pump_speed"
                held = scan.bank.banks[(1, C)][13] if address == 13 else \
                    round(int(scan.bank.banks[(1, H)][20]) * 0.1, 6)
                checked.append((point, held, held in journaled(point)))

        scan.server.hook = check_journal
        await eventually(lambda: sum(p == "pump_speed" for p, _, _ in checked) >= 8, 10,
                         "a few pump writes")
    assert len({v for p, v, _ in checked if p == "pump_speed" and v}) >= 3  # ramp steps, each new
    assert (("valve_open", True, True) in checked) and all(ok for _, _, ok in checked), checked


async def test_a_step_change_is_checkpointed_with_the_contract_hash(tmp_path: Path) -> None:
    async with scanning(tmp_path) as scan:
        await eventually(lambda: scan.bank.banks[(1, C)][13], 10, "filling")
        scan.bank.set(1, I, 0, _level_words(4.5))  # full: `until: level >= 4.0` ends the fill step

        async def step_saved() -> tuple[bytes, int, int] | None:
            saved = await scan.journal.load_checkpoint(checkpoint_name("tank-fill"))
            hold = saved is not None and decode_checkpoint(saved[0])[1].step_index == 1
            return saved if hold else None

        saved = await eventually(step_saved, 10, "the hold step checkpointed")
    contract_hash, state = decode_checkpoint(saved[0])
    assert contract_hash == HASH and state.step_index == 1 and state.last_ms is None
    assert saved[1] <= max(e.seq for e in scan.entries())  # valid as of a seq already journaled
