"""Benchmark of the pure engine: cost of one step, and of a 24 h projection. Prints, never asserts.

Run: .venv/bin/python -m bench.engine

- step: a 32-point contract (28 read points with range and staleness guards, 4 owned write
  points, 2 of them rate limited), 5 steps, steady in a step whose `until` stays false: the
  agent's common case. Inputs are built beforehand (reading the device is the adapter's cost).
- projection: the tank-fill example, 24 h at 10 Hz (864,000 cycles) with the default recording.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from contracts.engine import Engine
from contracts.inputs import Inputs, Quality, Reading
from contracts.projection import project
from contracts.schema import Contract
from contracts.schema_parse import parse_contract

STEP_TARGET_US = 50.0
"""A 10 ms scan (100 Hz, MIN_SCAN_PERIOD_MS) must leave room for Modbus I/O and the journal."""
PROJECTION_TARGET_S = 2.0
"""The hub re-projects every offline device when asked; a second or two per device keeps the UI live."""
STEPS, REPEATS = 20_000, 5
EXAMPLE = Path(__file__).parents[1] / "contracts" / "examples" / "tank-fill.yaml"


def wide_contract() -> Contract:
    reads = [{"name": f"r{i}", "unit_id": 1, "table": "input", "address": 2 * i, "type": "float32",
              "direction": "read", "stale_after_ms": 2000, "range": [0, 100]} for i in range(28)]
    writes = [{"name": f"w{i}", "unit_id": 1, "table": "holding", "address": 100 + i,
               "type": "uint16", "direction": "write", "owner": "bench", "limits": [0, 1000],
               **({"max_rate_per_s": 100} if i < 2 else {})} for i in range(4)]
    steps = [{"name": f"s{i}", "do": {f"w{j}": 100 * (i + 1) + j for j in range(4)},
              "until": f"r{i} > 90 or (r{i + 1} < 1 and r{i + 2} < 1 and step_time > 30)",
              "timeout_s": 36_000} for i in range(5)]
    return parse_contract({
        "contract": "bench", "version": 1, "device": "bench-1", "site": "lab",
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
        "scan_period_ms": 100, "points": reads + writes,
        "safe_state": {f"w{i}": 0 for i in range(4)}, "steps": steps,
        "offline": {"autonomy_s": 3600, "then": "safe_state"},
    })


def bench_step() -> list[float]:
    c = wide_contract()
    engine = Engine(c)
    t0 = c.valid_from
    inputs = [Inputs(readings={p.name: Reading(value=50.0, quality=Quality.GOOD, ts_ms=t0 + k * 100)
                               for p in c.read_points}) for k in range(STEPS)]
    state = engine.initial_state()
    for k in range(200):  # start and finish the ramps: measure the steady state
        state = engine.step(state, inputs[k], t0 + k * 100).state
    per_step = []
    for _ in range(REPEATS):
        s, start = state, time.perf_counter()
        for k in range(200, STEPS):
            s = engine.step(s, inputs[k], t0 + k * 100).state
        per_step.append((time.perf_counter() - start) / (STEPS - 200) * 1e6)
    assert s.mode.value == "running", s  # a benchmark of the fault path would measure nothing
    return per_step


def bench_projection() -> tuple[list[float], Any]:
    c = parse_contract(yaml.safe_load(EXAMPLE.read_text()))
    times, p = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        p = project(c, None, c.valid_from, c.valid_from + 24 * 3600 * 1000)
        times.append(time.perf_counter() - start)
    return times, p


def main() -> None:
    us = bench_step()
    print(f"engine.step, 32 points / 5 steps, steady: median {statistics.median(us):.1f} us "
          f"(runs: {', '.join(f'{u:.1f}' for u in us)}; target < {STEP_TARGET_US:.0f} us)")
    secs, p = bench_projection()
    print(f"project tank-fill 24 h @ 10 Hz (864,000 cycles): median {statistics.median(secs):.3f} s "
          f"(runs: {', '.join(f'{s:.3f}' for s in secs)}; target < {PROJECTION_TARGET_S:.0f} s; "
          f"{len(p.points)} points, {len(p.transitions)} transitions, end {p.end_state.mode.value})")


if __name__ == "__main__":
    main()
