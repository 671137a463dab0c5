"""Benchmark of two contracts side by side on one agent and one device link. Prints, never asserts.

Run: .venv/bin/python -m bench.multicontract [--seconds 20] [--quick]

A real Agent (standalone, journal on a real file, synchronous=FULL) runs two contracts at
scan_period_ms=10 each (100 Hz each) against the tank simulator in ANOTHER process: `tank-pump`
(16 read points + the pump) and `tank-valve` (16 other read points + the valve) — bench/scan.py's
32-read contract cut in two. Their cycles take turns on the link (agent/scan.py), so each
contract's period error includes waiting for the other's I/O. Per contract: period error
p50/p99/max (ScanStats.by_contract: how late each cycle started after its deadline), cycles run
against deadlines; the agent's CPU over the window. The first WARMUP_S and the pump's start ramp
are not measured.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ModbusConfig
from agent.process import Agent
from bench._common import CpuMeter, figure, percentile, rss_mb, simulator_process
from bench.scan import example, wide_points
from contracts.loader import check_mapping
from contracts.signing import generate_keypair, load_private_key, sign_contract
from tests.waiting import eventually

P99_TARGET_MS = 1.0
"""The same sub-millisecond period error a single contract gets (bench/scan.py)."""
CPU_TARGET_PCT = 15.0
"""As bench/scan.py: the same 32 reads and 2 writes at 100 Hz, in two contracts."""
WARMUP_S = 1.0
STEADY_RPM = 1200
"""tank-pump's pump target; the ramp to it (300 rpm/s: 4 s of writes, each a journal commit) is
not measured, as in bench/scan.py."""


def _contract(name: str, reads: list[dict[str, Any]], write: dict[str, Any], value: Any,
              safe: Any) -> dict[str, Any]:
    doc = example()
    doc.update(contract=name, scan_period_ms=10, points=[*reads, {**write, "owner": name}],
               safe_state={write["name"]: safe}, expect={},
               tolerance={"timing_s": 300, "values": {}},
               steps=[{"name": "run", "do": {write["name"]: value}, "for_s": 3600}])
    return doc


def contracts() -> list[dict[str, Any]]:
    reads = wide_points()
    writes = {p["name"]: p for p in example()["points"] if p["direction"] == "write"}
    return [_contract("tank-pump", reads[:16], writes["pump_speed"], 1200, 0),
            _contract("tank-valve", reads[16:], writes["valve_open"], True, False)]


@contextlib.asynccontextmanager
async def running_agent(docs: list[dict[str, Any]], work: Path, port: int) -> AsyncIterator[Agent]:
    private, public = generate_keypair(work / "keys")
    key, files = load_private_key(private), []
    for doc in docs:
        files.append(work / f"{doc['contract']}.cose")
        files[-1].write_bytes(sign_contract(check_mapping(doc), key))
    cfg = AgentConfig(device=docs[0]["device"], site=docs[0]["site"], journal=work / "journal.db",
                      trusted_key=public, contracts=tuple(files),
                      modbus=ModbusConfig(host="127.0.0.1", port=port, timeout_s=0.3))
    agent = Agent(cfg)
    task = asyncio.create_task(agent.run(), name="bench-agent")

    def ready() -> bool:
        if task.done():
            task.result()  # what stopped the agent
        late, pump = agent.scan.stats.by_contract, agent.scan.segments.get("tank-pump")
        ramped = pump is not None and dict(pump.state.outputs).get("pump_speed") == STEADY_RPM
        return ramped and len(late) == len(docs) and all(len(v) * 10 >= WARMUP_S * 1000
                                                         for v in late.values())

    try:
        await eventually(ready, 20, "both contracts past their warm-up")
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def bench(seconds: float) -> None:
    print(f"two contracts on one agent and one link, 16 read + 1 write points each, "
          f"scan_period_ms=10 each (100 Hz each), {seconds:g} s after warm-up; simulator in its "
          f"own process", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-multi-") as tmp:
        async with simulator_process("tank", tick_ms=100, initial=["level=1.0"]) as (port, _):
            async with running_agent(contracts(), Path(tmp), port) as agent:
                late = agent.scan.stats.by_contract
                before = {k: len(v) for k, v in late.items()}
                cpu = CpuMeter()
                cpu.start()
                await asyncio.sleep(seconds)  # the measured window itself
                window = cpu.stop()
                runs = {k: list(v)[before[k]:] for k, v in late.items()}
                modes = {k: f"{s.state.mode.value}/{s.step_name()}"
                         for k, s in sorted(agent.scan.segments.items())}
    for name, values in sorted(runs.items()):
        p50, p99, worst = (percentile(values, q) for q in (0.5, 0.99, 1.0))
        figure(f"{name}: period error p50 / p99 / max", f"{p50:.3f} / {p99:.3f} / {worst:.3f} ms",
               f"p99 < {P99_TARGET_MS:g} ms", p99 < P99_TARGET_MS)
        figure(f"{name}: cycles run / deadlines", f"{len(values)} / {round(window.wall_s * 100)}")
    figure("agent CPU (one core, all threads)", f"{window.percent:.1f} %",
           f"< {CPU_TARGET_PCT:g} %", window.percent < CPU_TARGET_PCT)
    peak, _ = rss_mb()
    figure("agent RSS peak (getrusage)", f"{peak:.1f} MB")
    figure("engines at the end", ", ".join(f"{k} {m}" for k, m in modes.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--quick", action="store_true", help="a 3 s window (smoke check)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(bench(3.0 if args.quick else args.seconds))


if __name__ == "__main__":
    main()
