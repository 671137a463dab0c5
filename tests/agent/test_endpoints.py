"""Endpoints as failure domains, end to end: the scan loop on two Modbus TCP endpoints, each a
simulator in its own OS process (simulators/process.py). One is SIGSTOPped (a hung device: its
kernel still accepts connections and queues requests) or killed (connections refused): its points
go BAD while the other's stay GOOD every cycle and keep their period (p99 lateness within
P99_BOUND_MS, none past MAX_BOUND_MS). And a contract naming an endpoint the agent does not have is refused, journaled with
the point and the endpoint, by a real Agent.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.endpoint_config import Endpoint, EndpointKind
from agent.endpoints import EndpointSet
from agent.journal_thread import AsyncJournal
from agent.modbus import ModbusLink
from agent.process import Agent
from agent.scan import Connectivity, CycleReport, ScanLoop
from agent.segment import ActiveContract
from contracts.chain import EntryKind
from contracts.loader import check_mapping
from contracts.schema import Contract
from simulators.process import SimProcess
from tests.agent.conftest import tank_document
from tests.agent.helpers import journal_entries
from tests.waiting import eventually

PERIOD_MS = 20
TIMEOUT_S = 0.5
P99_BOUND_MS = PERIOD_MS
"""One period. The loop's own p99 lateness is well under a millisecond on an idle machine
(bench/scan.py, bench/endpoints.py measure it); a test machine shared by other work gets a period
of slack. A dead endpoint that delayed the cycle would cost its whole TIMEOUT_S (25 periods)."""
MAX_BOUND_MS = 5 * PERIOD_MS
"""No cycle at all is late by a fifth of the dead endpoint's timeout."""
A_POINTS = ("level", "high_level")
"""a's read points. Its write points are left out: their read-back just after a write is never a
held answer (agent/endpoint_lane.py), so on a loaded test machine a late read of `a` itself shows
them BAD for a cycle — `a`'s own slowness, not `b`'s death."""
B_POINTS = ("level_b", "high_level_b", "feedback_b")


def two_endpoint_contract() -> Contract:
    """tank-fill on endpoint `a`, and three read points of the other tank on endpoint `b`."""
    doc = tank_document(scan_period_ms=PERIOD_MS)
    for p in doc["points"]:
        p.pop("frozen_after_ms", None)
        p["endpoint"] = "a"
    read = {"direction": "read", "endpoint": "b", "unit_id": 1, "stale_after_ms": 60_000}
    doc["points"] += [
        {"name": "level_b", "table": "input", "address": 0, "type": "float32", **read},
        {"name": "high_level_b", "table": "discrete", "address": 0, "type": "bool", **read},
        {"name": "feedback_b", "table": "holding", "address": 21, "type": "uint16", **read}]
    return check_mapping(doc)


def tcp(name: str, port: int) -> Endpoint:
    return Endpoint(name=name, kind=EndpointKind.TCP, host="127.0.0.1", port=port,
                    timeout_s=TIMEOUT_S, retry_initial_s=0.05, retry_max_s=0.2)


@asynccontextmanager
async def scanning(tmp_path: Path, a: SimProcess, b: SimProcess) -> AsyncIterator[list[CycleReport]]:
    link = EndpointSet({"a": ModbusLink.for_endpoint(tcp("a", a.port)),
                        "b": ModbusLink.for_endpoint(tcp("b", b.port))})
    reports: list[CycleReport] = []
    async with AsyncJournal(tmp_path / "journal.db") as journal:
        await link.connect()
        loop = ScanLoop(journal, link, Connectivity(standalone=True), on_cycle=reports.append)
        loop.offer(ActiveContract(contract=two_endpoint_contract(), signed=b"", hash="ab" * 32))
        task = asyncio.create_task(loop.run(), name="scan-under-test")
        try:
            yield reports
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await link.close()


def _good(report: CycleReport, names: tuple[str, ...]) -> bool:
    return all(report.view[n].good for n in names)


def _bad(report: CycleReport, names: tuple[str, ...]) -> bool:
    return all(not report.view[n].good for n in names)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["sigstop", "kill"])
async def test_a_dead_endpoint_marks_only_its_points_bad_and_never_delays_the_other(
        tmp_path: Path, fault: str) -> None:
    with SimProcess("tank", tick_ms=20, initial={"level": 1.0}) as a, \
            SimProcess("tank", tick_ms=20, initial={"level": 2.0}) as b:
        async with scanning(tmp_path, a, b) as reports:
            await eventually(lambda: len(reports) >= 10 and _good(reports[-1], A_POINTS + B_POINTS),
                             10, "both endpoints read GOOD")
            b.pause() if fault == "sigstop" else b.stop()
            await eventually(lambda: _bad(reports[-1], B_POINTS), 5, "endpoint b's points BAD")
            start = len(reports)
            # Long enough for several of b's timeouts and reconnect attempts (TIMEOUT_S, backoff).
            await eventually(lambda: len(reports) >= start + 75, 10, "75 cycles with b dead")
            window = reports[start:]
            if fault == "sigstop":
                b.resume()
    assert all(_good(r, A_POINTS) for r in window), [(r.now_ms, {n: r.view[n] for n in A_POINTS}) for r in window if not _good(r, A_POINTS)][:3]
    assert all(_bad(r, B_POINTS) for r in window), [(r.now_ms, {n: r.view[n] for n in B_POINTS}) for r in window if not _bad(r, B_POINTS)][:3]
    late = [r.late_ms for r in window]
    assert _p99(late) < P99_BOUND_MS and max(late) < MAX_BOUND_MS, sorted(late)[-5:]


async def test_a_contract_naming_an_endpoint_the_agent_does_not_have_is_refused(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    doc = tank_document()
    doc["points"][0]["endpoint"] = "plc9"
    contract_file = tmp_path / "contract.cose"
    contract_file.write_bytes(signer(check_mapping(doc)))
    cfg = AgentConfig(device="d1", site="s1", journal=tmp_path / "journal.db", trusted_key=keys[1],
                      endpoints=(tcp("plc", 1), tcp("line", 2)), contract=contract_file)
    agent = Agent(cfg)
    task = asyncio.create_task(agent.run(), name="agent-under-test")
    try:
        async with asyncio.timeout(10):
            await agent.started.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    refused = [e.body for e in journal_entries(cfg.journal, {EntryKind.CONTRACT})
               if e.body.get("event") == "refused"]
    name = doc["points"][0]["name"]
    assert [(r["refusal"], r["detail"]) for r in refused] == [
        ("invalid", f"points.{name}.endpoint: 'plc9' is not an endpoint of this agent (it has line, plc)")]
    assert agent.scan.segment is None and not agent.scan.pending
