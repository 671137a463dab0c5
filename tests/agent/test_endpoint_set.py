"""EndpointSet's rules on real in-memory devices, one of them slow: reads of the endpoints overlap,
the cycle's deadline bounds them, a slow endpoint's points are BAD "timeout" and it stays busy
(BAD at once, writes refused unsent) until its request is over; the others are never held up."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from agent.endpoints import BUSY, EndpointSet
from agent.errors import DeviceLinkError
from agent.link import MemoryLink
from agent.registers import ReadRequest, plan_reads
from contracts.inputs import Reading
from contracts.schema import Table
from contracts.types import EpochMs, PointName
from tests.agent.endpoint_points import level, pump_speed
from tests.waiting import eventually


class SlowLink(MemoryLink):
    """A memory device that answers after `delay_s` (a device busy on a slow serial line)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__({(1, Table.INPUT): {0: 0x3F80, 1: 0}, (1, Table.HOLDING): {20: 0}})
        self.delay_s = delay_s

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


async def test_a_slow_endpoint_is_bad_by_the_deadline_then_busy_and_the_other_is_never_held_up() -> None:
    links = await _set(0.5)
    plan = plan_reads(POINTS)
    links.pace(time.monotonic() + 0.05)
    started = time.monotonic()
    first = await links.read(plan, 0)
    assert time.monotonic() - started < 0.2  # the deadline, not the slow device's 500 ms
    assert first["fast_level"].good
    assert first["slow_level"].reason == first["slow_pump"].reason == "timeout"
    links.pace(time.monotonic() + 0.05)
    again_started = time.monotonic()
    again = await links.read(plan, 10)  # still busy: BAD at once, nothing sent
    assert again["fast_level"].good and again["slow_level"].reason == "timeout"
    assert time.monotonic() - again_started < 0.04
    with pytest.raises(DeviceLinkError) as err:
        await links.write(POINTS[2], 100.0)
    assert err.value.reason == BUSY and links.late("slow") >= 1
    assert links.link("slow").writes == []  # type: ignore[attr-defined]
    links.pace(None)
    await eventually(lambda: not links.busy("slow"), 5, "the slow device's request over")
    assert all(r.good for r in (await links.read(plan, 20)).values())
    await links.write(POINTS[2], 100.0)
    await links.close()
