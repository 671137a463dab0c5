"""Benchmark: commissioning and live model divergence on a real tank simulator. Prints, never asserts.

Run: .venv/bin/python -m bench.commission [--quick]

1. `commission` of the shipped tank-fill example against a healthy tank (in-process simulator,
   pymodbus on loopback): the poll's wall time for --seconds (target: at most seconds + one
   round), the reads made, the read latency (median, p99) and whether every point is right.
2. The issue's field case: the same example with pump_speed mapped to holding 63 instead of 20
   (mapped: every write is answered), run by a real Agent (standalone, 100 ms scan). The example's
   own model (level +0.002 m/s while the pump runs) and tolerance (0.5 m), model_divergence_after_s
   5 s: the level drains at 0.002 m/s instead, so the shortfall grows at 0.004 m/s and crosses
   0.5 m after 125 s; expected flag ~130 s, against the fill step's timeout (600 s in the field).
   Figure: fill started -> `model_divergence` journaled, in process seconds. `--quick` runs the
   process and the model 10x faster (simulator time_scale 10, rate x10, after_s / 10), so the
   figure is still in process seconds; the default runs in real time (~2.5 min).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from agent.commission_run import DEFAULT_INTERVAL_S, poll
from agent.commission import analyse
from agent.config import AgentConfig, ModbusConfig
from agent.modbus import ModbusLink
from bench._common import figure, signed_contract, window_around_now
from contracts.loader import check_mapping
from simulators.server import SimDevice
from tests.agent.helpers import events, running_agent
from tests.waiting import eventually

EXAMPLE = Path(__file__).parents[1] / "contracts" / "examples" / "tank-fill.yaml"
STEP_TIMEOUT_S = 600.0
"""The field case's fill timeout (issue 11)."""


def _example() -> dict[str, Any]:
    doc = yaml.safe_load(EXAMPLE.read_text())
    window_around_now(doc)
    return doc


async def bench_commission(seconds: float) -> None:
    print("commission (tank-fill example, healthy tank, loopback)")
    contract = check_mapping(_example())
    async with SimDevice("tank", tick_ms=20, initial={"level": 3.0}) as sim:
        link = ModbusLink("127.0.0.1", sim.port, timeout_s=0.5)
        await link.connect()
        started = time.monotonic()
        samples = await poll(contract, link, seconds=seconds)
        wall = time.monotonic() - started
        await link.close()
    report = analyse(contract, samples, started_ms=0, seconds=seconds)
    (lat,) = report.endpoints
    round_s = DEFAULT_INTERVAL_S
    figure("poll wall time", f"{wall:.2f} s for --seconds {seconds:g}",
           f"<= {seconds + round_s:.1f} s", wall <= seconds + round_s)
    figure("reads", f"{lat.reads} ({lat.failed} failed)")
    figure("read latency median / p99", f"{lat.median_ms} / {lat.p99_ms} ms")
    figure("every point right", str(report.ok), "True", report.ok)


async def bench_divergence(quick: bool) -> None:
    speed = 10.0 if quick else 1.0
    print(f"model_divergence (the field case: pump on holding 63; process x{speed:g})")
    doc = _example()
    for p in doc["points"]:
        if p["name"] == "pump_speed":
            p["address"] = 63
    doc["expect"]["level"]["rate_per_s"] *= speed
    doc["steps"][0]["timeout_s"] = STEP_TIMEOUT_S / speed
    after_s = 5.0 / speed
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cose = work / "contract.cose"
        public = signed_contract(doc, work / "keys", cose)
        async with SimDevice("tank", tick_ms=20, time_scale=speed, initial={"level": 3.0}) as sim:
            cfg = AgentConfig(device=doc["device"], site=doc["site"], journal=work / "j.db",
                              trusted_key=public, contract=cose, model_divergence_after_s=after_s,
                              modbus=ModbusConfig(host="127.0.0.1", port=sim.port, timeout_s=0.5))
            async with running_agent(cfg):
                entered = await eventually(lambda: events(cfg.journal, "step_entered"), 20,
                                           "the fill step")
                found = await eventually(lambda: events(cfg.journal, "model_divergence"),
                                         STEP_TIMEOUT_S / speed, "model_divergence")
    took_s = (found[0].ts_ms - entered[0].ts_ms) / 1000 * speed
    figure("fill -> model_divergence (process s)", f"{took_s:.1f} s (expected ~130 s)",
           f"< {STEP_TIMEOUT_S / 4:.0f} s (a quarter of the {STEP_TIMEOUT_S:.0f} s timeout)",
           took_s < STEP_TIMEOUT_S / 4)
    body = found[0].body
    figure("at flag: expected / actual level", f"{body['expected']:.3f} / {body['actual']:.3f} m")


async def main(quick: bool, seconds: float) -> None:
    await bench_commission(seconds)
    await bench_divergence(quick)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.seconds))
