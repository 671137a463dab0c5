"""A segment's first assertion of its outputs (OUTPUT_SYNC) is read back at once, as a safe
state's re-assertion is: a contract just installed — a rollback's known-good — is confirmed on the
device a Modbus round trip after its writes instead of a scan period later, and a device that
does not show what it acknowledged is a second writer before the contract's first cycle."""
from __future__ import annotations

from pathlib import Path

from agent.cycle_outputs import sync_outputs
from agent.journal_thread import AsyncJournal
from agent.link import MemoryLink
from agent.scan import Connectivity, ScanLoop
from agent.segment import ActiveContract
from contracts.schema import Point, Table
from contracts.types import Value
from tests.agent.helpers import events
from tests.agent.test_cycle_reads import HASH, _contract

C = Table.COIL


class _PanelHeld(MemoryLink):
    """A device whose coil 0 a local panel holds on: it acknowledges our writes and keeps it."""

    async def write(self, point: Point, value: Value) -> None:
        await super().write(point, value)
        self.set(point.unit_id, point.table, point.address, [True])


async def _sync_once(tmp_path: Path, link: MemoryLink) -> tuple[ScanLoop, Path]:
    await link.connect()
    path = tmp_path / "j.db"
    async with AsyncJournal(path) as journal:
        loop = ScanLoop(journal, link, Connectivity(standalone=True))
        assert await loop._start_segment(ActiveContract(contract=_contract("left", 0),
                                                        signed=b"", hash=HASH), None,
                                         resumed=False)
        seg = loop.segments["left"]
        await sync_outputs(seg, loop.link, seg.anchor.wall_ms)  # the segment's start, before cycle 0
    return loop, path


async def test_a_device_that_does_not_show_the_synced_outputs_is_a_second_writer_at_once(
        tmp_path: Path) -> None:
    link = _PanelHeld({(1, Table.HOLDING): {0: 111}, (1, C): {0: True}})
    _, path = await _sync_once(tmp_path, link)
    assert link.writes == [("valve", False)]  # the safe state, acknowledged
    [found] = events(path, "second_writer")
    assert (found.body["point"], found.body["expected"], found.body["actual"]) == (
        "valve", False, True)


async def test_a_device_that_shows_them_is_judged_without_a_divergence(tmp_path: Path) -> None:
    link = MemoryLink({(1, Table.HOLDING): {0: 111}, (1, C): {0: True}})
    loop, path = await _sync_once(tmp_path, link)
    assert events(path, "second_writer") == []
    readback = loop.segments["left"].actuator.readback
    assert readback.applied("valve") is False and readback.diverged == frozenset()
