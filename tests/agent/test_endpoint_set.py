"""EndpointSet's rules on real in-memory devices, one of them slow: reads of the endpoints overlap,
the cycle's deadline bounds them, a slow endpoint's points are BAD "timeout" and it stays busy
(BAD at once, writes refused unsent) until its request is over; the others are never held up."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace

import pytest

from agent.endpoints import BUSY, EndpointSet
from agent.errors import DeviceLinkError
from agent.link import MemoryLink
from agent.registers import ReadRequest, plan_reads
from contracts.inputs import Reading
from contracts.schema import Direction, Table
from contracts.types import EpochMs, PointName
from tests.agent.endpoint_points import level, pump_speed
from tests.waiting import eventually


class SlowLink(MemoryLink):
    """A memory device that answers after `delay_s` (a device busy on a slow serial line)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__({(1, Table.INPUT): {0: 0x3F80, 1: 0}, (1, Table.HOLDING): {20: 0}})
        self.delay_s = delay_s
        self.timeout_s = 0.2  # how long the endpoint set holds an answer of this device

    async def read(self, plan: Sequence[ReadRequest], now_ms: EpochMs) -> dict[PointName, Reading]:
        await asyncio.sleep(self.delay_s)
        return await super().read(plan, now_ms)


POINTS = [level("fast_level", "fast"), level("slow_level", "slow"), pump_speed("slow_pump", "slow")]


async def _set(slow_s: float, fast_s: float = 0.01) -> EndpointSet:
    links = EndpointSet({"fast": SlowLink(fast_s), "slow": SlowLink(slow_s)})
    await links.connect()
    return links


async def test_endpoints_are_read_at_once_not_one_after_the_other() -> None:
    links = await _set(0.1, 0.1)
    started = time.monotonic()
    readings = await links.read(plan_reads(POINTS), 0)
    assert all(r.good for r in readings.values())
    assert time.monotonic() - started < 0.18  # two 100 ms devices in parallel, not 200 ms


async def test_a_slow_endpoint_holds_its_last_answer_then_goes_bad_and_never_holds_up_the_other() -> None:
    links = await _set(0.01)
    plan = plan_reads(POINTS)
    assert all(r.good for r in (await links.read(plan, 0)).values())  # the first answers
    slow = links.link("slow")
    assert isinstance(slow, SlowLink)
    slow.delay_s = 0.5
    links.pace(time.monotonic() + 0.05)
    started = time.monotonic()
    first = await links.read(plan, 10)
    assert time.monotonic() - started < 0.2  # the deadline, not the slow device's 500 ms
    assert first["fast_level"].good and first["fast_level"].ts_ms == 10
    assert first["slow_level"].good and first["slow_level"].ts_ms == 10  # held, within hold_s
    with pytest.raises(DeviceLinkError) as err:  # busy past the deadline: refused, not sent
        links.pace(time.monotonic() + 0.05)
        await links.write(POINTS[2], 100.0)
    assert err.value.reason == BUSY and slow.writes == []
    await eventually(lambda: time.monotonic() - started > slow.timeout_s, 5, "past the hold time")
    links.pace(time.monotonic() + 0.05)
    again_started = time.monotonic()
    again = await links.read(plan, 20)  # still busy: not asked again, not waited for
    assert time.monotonic() - again_started < 0.04
    assert again["fast_level"].good
    assert again["slow_level"].reason == again["slow_pump"].reason == "timeout"
    assert links.late("slow") >= 1
    await eventually(lambda: not links.busy("slow"), 5, "the slow device's request over")
    links.pace(None)
    slow.delay_s = 0.01
    assert all(r.good for r in (await links.read(plan, 30)).values())
    await links.write(POINTS[2], 100.0)
    assert slow.writes == [("slow_pump", 100.0)]
    await links.close()


async def test_with_one_endpoint_reads_are_bounded_by_its_own_timeout_not_the_deadline() -> None:
    """No other endpoint to protect: a slow answer is waited for (the cycle is late, not BAD)."""
    links = EndpointSet({"only": SlowLink(0.1)})
    await links.connect()
    links.pace(time.monotonic() + 0.01)
    readings = await links.read(plan_reads([level("l", None)]), 0)
    assert readings["l"].good


async def test_an_acknowledged_write_forgets_every_held_answer_of_its_addresses() -> None:
    """The same register read under another contract's name (agent/cycle_reads.py) must not keep
    showing the value from before the write: held, it would look like a second writer."""
    slow = SlowLink(0.01)
    slow.timeout_s = 5.0  # answers held long enough for a loaded host
    links = EndpointSet({"fast": SlowLink(0.01), "slow": slow})
    await links.connect()
    seen = replace(pump_speed("right/pump_speed", "slow"), direction=Direction.READ, owner=None)
    plan = plan_reads([*POINTS, seen])
    assert all(r.good for r in (await links.read(plan, 0)).values())  # answers held
    await links.write(POINTS[2], 100.0)
    slow.delay_s = 0.5  # the next read is late: only held answers could fill it
    links.pace(time.monotonic() + 0.03)
    late = await links.read(plan, 10)
    assert late["slow_level"].good  # another address: its answer still held
    assert late["slow_pump"].reason == late["right/pump_speed"].reason == "timeout"
    await links.close()
