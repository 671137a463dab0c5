"""Commissioning, the I/O: poll every point of a contract for a few seconds, read-only.

Theory of operation: rounds start every `interval_s` for `seconds`; a round reads every point of
the contract once, in contract order, each point in a request of its own (so a failure is that
point's alone and names its address) and as raw words (so agent/commission.py can decode them under
every word order, even when the contract's order gives no number at all), on the point's own
endpoint link, beside the scan's reads (agent/modbus.py queues them). Only `DeviceLink.read`
is ever called: nothing is written. A round that overruns the interval is followed at once by the
next; the poll ends at the first read that would start after `seconds` (the first round always
runs whole, so every point is read at least once). Time is bounded: `seconds` plus one round.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agent.commission import Sample, analyse
from agent.config import AgentConfig
from agent.errors import DeviceLinkError
from agent.faults import in_words
from agent.link import DeviceLink
from agent.endpoints import EndpointSet
from agent.registers import ReadRequest, plan_reads
from contracts.commission_report import MAX_SECONDS, CommissionReport
from contracts.schema import Contract, DataType, Direction, Point

DEFAULT_SECONDS = 3.0
"""Thirty rounds at the default interval: enough to see a live analog move and to rank latency."""
DEFAULT_INTERVAL_S = 0.1
"""A round every 100 ms, the default scan period: no harder on the device than the agent itself."""
MIN_INTERVAL_S = 0.01


def word_request(p: Point) -> ReadRequest:
    """One request reading `p`'s raw words: one uint16 per register, or its bit."""
    if p.table.is_bit:
        words = [Point(name=f"{p.name}#0", unit_id=p.unit_id, endpoint=p.endpoint, table=p.table,
                       address=p.address, type=DataType.BOOL, direction=Direction.READ)]
    else:
        words = [Point(name=f"{p.name}#{i}", unit_id=p.unit_id, endpoint=p.endpoint, table=p.table,
                       address=p.address + i, type=DataType.UINT16, direction=Direction.READ)
                 for i in range(p.registers)]
    (request,) = plan_reads(words)
    return request


async def read_sample(link: DeviceLink, p: Point, request: ReadRequest, now_ms: int,
                      clock: Callable[[], float] = time.perf_counter) -> Sample:
    """One read of `p`'s words through `link` (never raises for I/O: a failure is a Sample)."""
    started = clock()
    readings = await link.read([request], now_ms)
    elapsed_ms = (clock() - started) * 1000.0
    words = [readings[w.name] for w in request.points]
    bad = next((r for r in words if not r.good), None)
    if bad is not None:
        answered = bad.reason not in ("timeout", "disconnected")
        return Sample(point=p.name, ts_ms=now_ms, words=None, error=_in_words(bad.reason, p),
                      latency_ms=elapsed_ms if answered else None)
    raw: tuple[int, ...] | bool = (bool(words[0].value) if p.table.is_bit
                                   else tuple(int(r.value) for r in words))  # type: ignore[arg-type]
    return Sample(point=p.name, ts_ms=now_ms, words=raw, latency_ms=elapsed_ms)


def _in_words(reason: str | None, p: Point) -> str:
    """A device exception ("exception:2") in words with its address (agent/faults.py)."""
    return in_words(reason, p).reason


async def poll(contract: Contract, link: DeviceLink, *, seconds: float = DEFAULT_SECONDS,
               interval_s: float = DEFAULT_INTERVAL_S,
               clock: Callable[[], float] = time.monotonic,
               wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
               keep_going: Callable[[], bool] = lambda: True) -> list[Sample]:
    """Every point, every `interval_s`, for `seconds` (see the module docstring); stops early,
    before a round, when `keep_going()` is False. Raises ValueError for seconds outside
    0..MAX_SECONDS or an interval below MIN_INTERVAL_S."""
    if not 0 < seconds <= MAX_SECONDS or interval_s < MIN_INTERVAL_S:
        raise ValueError(f"seconds must be within 0..{MAX_SECONDS} (got {seconds}) and interval_s "
                         f">= {MIN_INTERVAL_S} (got {interval_s})")
    requests = [(p, _direct(link, p), word_request(p)) for p in contract.points]
    start = clock()
    deadline = start + seconds
    samples: list[Sample] = []
    k = 0
    while k == 0 or start + k * interval_s < deadline:
        await asyncio.sleep(max(0.0, start + k * interval_s - clock()))
        if not keep_going():
            return samples
        for p, on, request in requests:
            if k > 0 and clock() >= deadline:
                return samples
            samples.append(await read_sample(on, p, request, wall_ms()))
        k = max(k + 1, int((clock() - start) / interval_s))
    return samples


def _direct(link: DeviceLink, p: Point) -> DeviceLink:
    """Where `p` is read: on an EndpointSet, its endpoint's own link, so each read reaches the
    device (the set would answer a lane busy with the scan's read from its held answers, which
    never hold the poll's words); a point on no endpoint of the set reads BAD through the set."""
    if isinstance(link, EndpointSet):
        return link.link_for(p.endpoint) or link
    return link


async def commission(contract: Contract, link: DeviceLink, *, seconds: float = DEFAULT_SECONDS,
                     interval_s: float = DEFAULT_INTERVAL_S) -> CommissionReport:
    """Poll and analyse: the report for `contract` on `link` (already connected or not: a link
    that is down gives every point its failure)."""
    started_ms = time.time_ns() // 1_000_000
    samples = await poll(contract, link, seconds=seconds, interval_s=interval_s)
    return analyse(contract, samples, started_ms=started_ms, seconds=seconds)


async def commission_config(cfg: AgentConfig, contract: Contract, *,
                            seconds: float = DEFAULT_SECONDS,
                            interval_s: float = DEFAULT_INTERVAL_S) -> CommissionReport:
    """`fieldpact commission`: links of its own to the configured endpoints, opened and closed.
    Raises ConfigError when the configuration names no endpoint."""
    link = EndpointSet.from_config(cfg.all_endpoints())
    try:
        await link.connect()
    except DeviceLinkError:
        pass  # every read then fails "disconnected", which is what the report must say
    try:
        return await commission(contract, link, seconds=seconds, interval_s=interval_s)
    finally:
        await link.close()
