"""Benchmark of the scan loop on three endpoints, one of them dead. Prints, never asserts.

Run: .venv/bin/python -m bench.endpoints [--seconds 20] [--quick] [--links]

A real Agent (bench/agent_run.py: standalone; journal on a real file) runs a 64-point contract at scan_period_ms=10
(100 Hz) on three named endpoints from its agent.toml config, each served by a simulator in its
OWN process (so the CPU figure is the agent's):
  plc_a  modbus-tcp  tank simulator: tank-fill's 4 points + 20 reads
  plc_b  modbus-tcp  tank simulator: 20 reads
  line1  modbus-rtu  a line of two tank simulators (unit ids 1 and 2) on one end of a pty pair
                     (socat's when on PATH, else simulators/ptypair.py's relay thread — which then
                     runs inside the agent's process and is counted in its CPU), 20 reads
Phases, each measured for --seconds after the previous settled: all endpoints up; plc_b hung
(SIGSTOP: its kernel accepts connections and queues requests, nothing answers); plc_b dead (killed:
connections refused). Period error is ScanStats.lateness_ms (how late each cycle started); CPU is
this process's over the window, as a percentage of one core and per cycle run.

`--links` measures one link at a time instead, without the scan loop: a ModbusLink's `read()` of
its endpoint's part of the contract, back to back (1,000 reads, median of 3), CPU per read and per
request (Modbus TCP on plc_a's simulator, RTU frames over TCP on a line's, RTU on the pty).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.endpoint_config import Endpoint, EndpointKind
from agent.modbus import ModbusLink
from agent.process import Agent
from agent.registers import plan_reads
from bench._common import figure, proc_cpu_s, window_around_now
from bench.agent_run import (
    MODBUS_TIMEOUT_S, Window, agent_config, cpu_figures, measure as measure_window, nice_option,
    running_agent, timing_figures,
)
from contracts.inputs import Reading
from contracts.loader import check_mapping
from simulators.process import LineProcess, SimProcess
from simulators.ptypair import PtyPair
from tests.waiting import eventually

P99_TARGET_MS = 1.0
"""Issue 11: a dead endpoint must not cost the others their period; sub-ms is what the loop's spin
buys with one endpoint (bench/scan.py)."""
CPU_TARGET_PCT = 20.0
"""Issue 11: one field controller core hosts the agent beside the OS and other services."""
BAUD = 115200
UP = "all endpoints up"
WRITES = ("pump_speed", "valve_open")
EXAMPLE = Path(__file__).parents[1] / "contracts" / "examples" / "tank-fill.yaml"


def _reads(prefix: str, endpoint: str, unit_id: int, count: int) -> list[dict[str, Any]]:
    """`count` read points on the tank simulator's registers 0..63, contiguous so that each table
    is one request: float32 inputs from 2, uint16 holding registers from 0 (never the tank's own
    level, high_level and pump addresses)."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        table, address, type_ = (("input", 2 + 2 * (i // 2), "float32") if i % 2 == 0
                                 else ("holding", i // 2, "uint16"))
        out.append({"name": f"{prefix}{i}", "endpoint": endpoint, "unit_id": unit_id,
                    "table": table, "address": address, "type": type_, "direction": "read",
                    "stale_after_ms": 3_600_000})
    return out


def contract() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc.update(device="bench-1", site="lab", scan_period_ms=10)
    window_around_now(doc)
    for p in doc["points"]:
        p["endpoint"] = "plc_a"
    doc["points"] += (_reads("a", "plc_a", 1, 20) + _reads("b", "plc_b", 1, 20)
                      + _reads("r1_", "line1", 1, 10) + _reads("r2_", "line1", 2, 10))
    assert len(doc["points"]) == 64
    return doc


@dataclass(frozen=True, kw_only=True)
class Phase:
    name: str
    window: Window
    sims_cpu_pct: float
    b_points_bad: bool
    others_good: bool


View = Mapping[str, Reading]
"""One cycle's view (CycleReport.view): kept as it is, judged after the window."""


@contextlib.asynccontextmanager
async def running(work: Path, a: SimProcess, b: SimProcess, line_dev: str,
                  nice: int) -> AsyncIterator[Agent]:
    tcp: dict[str, Any] = {"kind": EndpointKind.TCP, "host": "127.0.0.1", "timeout_s": MODBUS_TIMEOUT_S}
    endpoints = (Endpoint(name="plc_a", port=a.port, **tcp), Endpoint(name="plc_b", port=b.port, **tcp),
                 Endpoint(name="line1", kind=EndpointKind.RTU, device=line_dev, baud=BAUD, parity="N",
                          timeout_s=MODBUS_TIMEOUT_S))
    cfg = agent_config([contract()], work, endpoints=endpoints)
    async with running_agent(cfg, lambda agent: agent.scan.stats.cycles >= 200,
                             "two seconds of cycles", nice=nice) as agent:
        yield agent


async def measure(agent: Agent, name: str, seconds: float, sim_pids: list[int],
                  views: list[View]) -> Phase:
    sims0 = sum(proc_cpu_s(p) for p in sim_pids)
    views.clear()
    window = await measure_window(agent, seconds)
    sims = sum(proc_cpu_s(p) for p in sim_pids) - sims0
    b_names = [n for n in (views[0] if views else {}) if n.startswith("b")]
    # Read points only: a write point's read-back just after a write is never a held answer
    # (agent/endpoint_lane.py), so a late read of its own endpoint shows it BAD for a cycle.
    others = [n for n in (views[0] if views else {}) if not n.startswith("b") and n not in WRITES]
    return Phase(name=name, window=window, sims_cpu_pct=100 * sims / window.wall_s,
                 b_points_bad=all(not v[n].good for v in views for n in b_names),
                 others_good=all(v[n].good for v in views for n in others))


def report(phase: Phase) -> None:
    print(f"{phase.name}:", flush=True)
    timing_figures(phase.window, P99_TARGET_MS)
    cpu_figures(phase.window, CPU_TARGET_PCT)
    figure("simulators' CPU (their own processes)", f"{phase.sims_cpu_pct:.1f} %")
    figure("plc_a + line1 read points GOOD every cycle", str(phase.others_good), "True", phase.others_good)
    if phase.name != UP:
        figure("plc_b points BAD every cycle", str(phase.b_points_bad), "True", phase.b_points_bad)


async def bench(seconds: float, nice: int) -> None:
    socat = shutil.which("socat") is not None
    print(f"scan loop at 100 Hz, 64 points on 3 endpoints (2 modbus-tcp, 1 modbus-rtu over a pty "
          f"pair by {'socat' if socat else 'a relay thread in the agent process'}, {BAUD} baud, "
          f"2 unit ids), simulators in their own processes, {seconds:g} s per phase", flush=True)
    views: list[View] = []
    with tempfile.TemporaryDirectory(prefix="bench-endpoints-") as tmp, PtyPair() as (line_side, agent_side), \
            SimProcess("tank", tick_ms=100, initial={"level": 1.0}) as a, \
            SimProcess("tank", tick_ms=100, initial={"level": 1.0}) as b, \
            LineProcess([("tank", 1), ("tank", 2)], serial=line_side, baud=BAUD, parity="N") as line:
        async with running(Path(tmp), a, b, agent_side, nice) as agent:
            agent.scan._on_cycle = _recorder(agent, views)
            pids = [p.proc.pid for p in (a, b, line) if p.proc is not None]
            report(await measure(agent, UP, seconds, pids, views))
            b.pause()
            await eventually(lambda: bool(views) and not any(r.good for n, r in views[-1].items()
                                                              if n.startswith("b")), 5, "plc_b BAD")
            report(await measure(agent, "plc_b hung (SIGSTOP)", seconds, pids[:1] + pids[2:], views))
            await asyncio.to_thread(b.stop)  # its wait must not block the agent's loop (an overrun)
            report(await measure(agent, "plc_b dead (killed)", seconds, pids[:1] + pids[2:], views))


async def links(reads: int = 1000) -> None:
    """CPU per ModbusLink.read() of each endpoint kind, back to back (see the module docstring)."""
    doc = check_mapping(contract())
    plans = {name: plan_reads(p for p in doc.points if p.endpoint == name) for name in ("plc_a", "line1")}

    async def one(endpoint: Endpoint, plan: str) -> None:
        link, runs = ModbusLink.for_endpoint(endpoint), []
        await link.connect()
        for _ in range(100):
            await link.read(plans[plan], 0)
        for _ in range(3):
            started = time.process_time()
            for _ in range(reads):
                view = await link.read(plans[plan], 0)
            runs.append((time.process_time() - started) / reads * 1e6)
        await link.close()
        per_read = sorted(runs)[1]
        figure(f"{endpoint.kind.value} ({len(plans[plan])} requests)",
               f"{per_read:.0f} us per read, {per_read / len(plans[plan]):.0f} us per request, "
               f"{sum(r.good for r in view.values())}/{len(view)} GOOD")
    tcp: dict[str, Any] = {"host": "127.0.0.1", "timeout_s": MODBUS_TIMEOUT_S}
    with SimProcess("tank", tick_ms=100, initial={"level": 1.0}) as a, \
            LineProcess([("tank", 1), ("tank", 2)]) as gateway, PtyPair() as (line_side, agent_side), \
            LineProcess([("tank", 1), ("tank", 2)], serial=line_side, baud=BAUD, parity="N"):
        await one(Endpoint(name="plc_a", kind=EndpointKind.TCP, port=a.port, **tcp), "plc_a")
        await one(Endpoint(name="gw", kind=EndpointKind.RTU_OVER_TCP, port=gateway.port, **tcp),
                  "line1")
        await one(Endpoint(name="line1", kind=EndpointKind.RTU, device=agent_side, baud=BAUD,
                           parity="N", timeout_s=MODBUS_TIMEOUT_S), "line1")


def _recorder(agent: Agent, views: list[View]) -> Any:
    """Keeps each cycle's view as it is (a new dict every cycle: agent/input_filters.py), so the
    benchmark's own bookkeeping costs the agent's loop one append per cycle."""
    on_cycle = agent.scan._on_cycle

    def record(report: Any) -> None:
        views.append(report.view)
        if on_cycle is not None:
            on_cycle(report)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per phase")
    parser.add_argument("--quick", action="store_true", help="5 s windows")
    parser.add_argument("--links", action="store_true",
                        help="CPU per read of one link at a time, back to back, instead")
    nice_option(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the dead endpoint's timeouts are the point
    started = time.monotonic()
    asyncio.run(links() if args.links else bench(5.0 if args.quick else args.seconds, args.nice))
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"done in {time.monotonic() - started:.0f} s (load average {' '.join(load)}; the "
          "figures are only meaningful on an otherwise idle machine)")


if __name__ == "__main__":
    main()
