"""ModbusLink.hurry against a real hung simulator: while hurried, a hung device costs the scan at
most one timeout (then reads return at once), background probes look for it every interval, and
the link is back within one timeout plus one interval of the device answering again — whatever
the reconnect backoff had grown to."""
from __future__ import annotations

import time

from agent.modbus import ModbusLink
from agent.modbus_calls import DEADLINE_MARGIN_S
from agent.modbus_probe import probe_timeout
from agent.registers import plan_reads
from contracts.schema import DataType, Direction, Point, Table
from transport.backoff import Backoff
from simulators.faults import Fault
from simulators.server import SimDevice
from tests.waiting import eventually

LEVEL = Point(name="level", unit_id=1, table=Table.INPUT, address=0, type=DataType.FLOAT32,
              direction=Direction.READ)
PLAN = plan_reads([LEVEL])
TIMEOUT_S, INTERVAL_S = 0.3, 0.1


async def _read_timed(link: ModbusLink) -> tuple[float, bool]:
    started = time.monotonic()
    r = (await link.read(PLAN, 0))["level"]
    return time.monotonic() - started, r.good


async def test_hurried_link_does_not_block_on_a_hung_device_and_is_back_soon_after() -> None:
    async with SimDevice("tank", tick_ms=20) as sim:
        # A backoff grown to a minute: without hurry the device would not be visited again soon.
        link = ModbusLink("127.0.0.1", sim.port, timeout_s=TIMEOUT_S,
                          backoff=Backoff(initial_s=60.0, max_s=60.0, jitter=0.0))
        try:
            await link.connect()
            assert (await _read_timed(link))[1]
            sim.faults.enable(Fault.HANG)
            link.hurry(INTERVAL_S)
            took, good = await _read_timed(link)
            assert not good and took < 2 * (TIMEOUT_S + DEADLINE_MARGIN_S)  # one timeout, no more
            reads = 0

            async def fast_while_probing() -> bool:  # hung: reads return at once, probes go on
                nonlocal reads
                took, good = await _read_timed(link)
                assert not good and took < TIMEOUT_S / 2
                reads += 1
                return reads >= 10 and link.probes >= 2
            await eventually(fast_while_probing, 10, "ten fast reads and two probes",
                             every_s=INTERVAL_S)
            answered = time.monotonic()
            sim.faults.disable(Fault.HANG)

            async def answers() -> bool:
                return (await _read_timed(link))[1]
            await eventually(answers, 10, "a good read after the hang", every_s=0.01)
            back = time.monotonic() - answered
            assert back <= TIMEOUT_S + INTERVAL_S + 0.2, back  # + scheduling on a loaded machine
            link.hurry(None)
        finally:
            await link.close()


def test_hurried_probes_wait_one_interval_and_every_fourth_the_full_timeout() -> None:
    assert probe_timeout(1, None, TIMEOUT_S) == TIMEOUT_S  # not hurried: the link's own timeout
    waits = [probe_timeout(n, INTERVAL_S, TIMEOUT_S) for n in range(1, 9)]
    assert waits == [INTERVAL_S, INTERVAL_S, INTERVAL_S, TIMEOUT_S] * 2
    # a scan slower than the timeout never lengthens a probe past it
    assert probe_timeout(9, 1.0, TIMEOUT_S) == TIMEOUT_S
