"""Benchmark of two contracts side by side on one agent and one device link. Prints, never asserts.

Run: .venv/bin/python -m bench.multicontract [--seconds 20] [--quick]

A real Agent (bench/agent_run.py: standalone, journal on a real file, synchronous=FULL) runs two
contracts at scan_period_ms=10 each (100 Hz each) against the tank simulator in ANOTHER process:
`tank-pump` (16 read points + the pump) and `tank-valve` (16 other read points + the valve) —
bench/scan.py's 32-read contract cut in two. Same period, so the same instants: the first cycle
at each instant reads for both (agent/cycle_reads.py, one request per (unit, table) for the two),
the other takes its part; their cycles take turns on the link (agent/scan.py). Per contract:
period error p50/p99/max (ScanStats.by_contract: how late each cycle started after its
deadline), cycles run against deadlines; how many cycles took a shared read; the agent's CPU
over the window. The first WARMUP_S and the pump's start ramp are not measured.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

from bench._common import figure, rss_mb, simulator_process
from bench.agent_run import (
    agent_config, cpu_figures, measure, nice_option, running_agent, timing_figures,
)
from bench.scan import example, warm, wide_points

P99_TARGET_MS = 1.0
"""The same sub-millisecond period error a single contract gets (bench/scan.py)."""
CPU_TARGET_PCT = 15.0
"""As bench/scan.py: the same 32 reads and 2 writes at 100 Hz, in two contracts."""
PERIOD_MS = 10


def _contract(name: str, reads: list[dict[str, Any]], write: dict[str, Any], value: Any,
              safe: Any) -> dict[str, Any]:
    doc = example()
    doc.update(contract=name, scan_period_ms=PERIOD_MS, points=[*reads, {**write, "owner": name}],
               safe_state={write["name"]: safe}, expect={},
               tolerance={"timing_s": 300, "values": {}},
               steps=[{"name": "run", "do": {write["name"]: value}, "for_s": 3600}])
    return doc


def contracts() -> list[dict[str, Any]]:
    reads = wide_points()
    writes = {p["name"]: p for p in example()["points"] if p["direction"] == "write"}
    return [_contract("tank-pump", reads[:16], writes["pump_speed"], 1200, 0),
            _contract("tank-valve", reads[16:], writes["valve_open"], True, False)]


def _ready(agent: Any, n: int) -> bool:
    late = agent.scan.stats.by_contract
    return warm(agent, PERIOD_MS) and len(late) == n and all(len(v) >= 100 for v in late.values())


async def bench(seconds: float, nice: int) -> None:
    print(f"two contracts on one agent and one link, 16 read + 1 write points each, "
          f"scan_period_ms={PERIOD_MS} each (100 Hz each), {seconds:g} s after warm-up; simulator "
          f"in its own process", flush=True)
    docs = contracts()
    with tempfile.TemporaryDirectory(prefix="bench-multi-") as tmp:
        async with simulator_process("tank", tick_ms=100, initial=["level=1.0"]) as (port, _):
            async with running_agent(agent_config(docs, Path(tmp), port=port),
                                     lambda a: _ready(a, len(docs)),
                                     "both contracts past their warm-up", nice=nice) as agent:
                w = await measure(agent, seconds)
                modes = {k: f"{s.state.mode.value}/{s.step_name()}"
                         for k, s in sorted(agent.scan.segments.items())}
    for name, late in sorted(w.by_contract.items()):
        timing_figures(w, P99_TARGET_MS, late_ms=late, label=f"{name}: ")
    figure("overruns / cycles skipped", f"{w.overruns} / {w.skipped}")
    # Half of the cycles when every instant runs both; an instant whose other cycle was skipped
    # (an overrun) reads alone, so a loaded host shows a little less.
    figure("cycles on the other contract's read", f"{w.shared} of {w.cycles}",
           "~ half (one read per instant)", w.shared >= 0.45 * w.cycles)
    cpu_figures(w, CPU_TARGET_PCT)
    peak, _ = rss_mb()
    figure("agent RSS peak (getrusage)", f"{peak:.1f} MB")
    figure("engines at the end", ", ".join(f"{k} {m}" for k, m in modes.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--quick", action="store_true", help="a 3 s window (smoke check)")
    nice_option(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(bench(3.0 if args.quick else args.seconds, args.nice))


if __name__ == "__main__":
    main()
