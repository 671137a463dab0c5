"""Benchmark: a contract that trips within its rollout health window -> the known-good contract's
safe state on the device, confirmed by read-back. Prints, never asserts.

Run: .venv/bin/python -m bench.rollout_fallback [--runs 20] [--quick]

Each run starts a fresh real Agent (standalone: the fallback never waits on a hub; real
ModbusLink, journal on a temp file) on a tank simulator with two local contracts of `tank-fill`
(scan 100 ms): version 2, the known-good (safe pump speed 25 rpm), and version 3, which replaces it
with a `rollout` naming version 2 as known-good and a tighter level range. Once version 3 runs its
fill, the level is set beyond that range: version 3 trips, and the agent falls back by itself.
Figures, from the trip (the `guard_trip` entry's time: the start of the cycle that read the
level) to:
- `rollout_fallback` journaled (wall clock at the commit, from a journal watcher in the process);
- the known-good's safe pump speed in the simulator's registers (polled every 2 ms);
- the known-good's `safe_confirmed` journaled (wall clock at the commit): the read-back that
  confirms it on the device. Target: < 2 scan periods + one Modbus round trip, the round trip
  measured here as the median of 50 reads of the pump register by a separate client.
Medians (and max) over --runs runs.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pymodbus.client import AsyncModbusTcpClient

from agent.config import AgentConfig, ModbusConfig
from bench._common import median_figure, now_ms, tank_example
from contracts.chain import Entry, EntryKind
from contracts.codec import content_hash
from contracts.loader import check_mapping
from contracts.signing import generate_keypair, load_private_key, sign_contract
from simulators.server import SimDevice
from tests.agent.helpers import running_agent
from tests.waiting import eventually

SCAN_MS = 100
KNOWN_GOOD_PUMP = 25.0
WAIT_S = 20.0
"""Bound on every wait of a run on a loaded machine."""
POLL_S = 0.002


def _docs() -> tuple[dict[str, Any], dict[str, Any]]:
    base = tank_example(SCAN_MS)
    good = {**base, "version": 2, "safe_state": {"pump_speed": KNOWN_GOOD_PUMP, "valve_open": False}}
    new = yaml.safe_load(yaml.safe_dump(base))
    new["version"] = 3
    new["rollout"] = {"deployment": "dep-bench", "health_window_s": 300,
                      "known_good": content_hash(check_mapping(good))}
    for p in new["points"]:
        if p["name"] == "level":
            p["range"] = [0, 4.5]
    return good, new


def _config(port: int, tmp: Path) -> AgentConfig:
    private, public = generate_keypair(tmp / "keys")
    key = load_private_key(private)
    paths = []
    for doc in _docs():
        paths.append(tmp / f"v{doc['version']}.cose")
        paths[-1].write_bytes(sign_contract(check_mapping(doc), key))
    return AgentConfig(device="d1", site="s1", journal=tmp / "journal.db", trusted_key=public,
                       modbus=ModbusConfig(host="127.0.0.1", port=port, timeout_s=0.5),
                       contract=paths[0], contracts=(paths[1],))


class Marks:
    """Wall-clock time of the first commit of each event of interest (a journal watcher)."""

    def __init__(self) -> None:
        self.trip_ms: int | None = None
        self.at: dict[str, float] = {}
        self.fell_back = False

    def watch(self, entries: Sequence[Entry]) -> None:
        now = time.time() * 1000
        for e in entries:
            event = e.body.get("event")
            if event == "guard_trip" and self.trip_ms is None:
                self.trip_ms = e.ts_ms
            elif event == "rollout_fallback":
                self.fell_back = True
                self.at.setdefault("fallback", now)
            elif e.kind is EntryKind.BOOT and self.fell_back:
                self.at.setdefault("boot", now)
            elif event == "safe_confirmed" and "boot" in self.at:
                self.at.setdefault("confirmed", now)


async def one_run(tmp: Path) -> dict[str, float]:
    async with SimDevice("tank", tick_ms=20, initial={"level": 1.0}) as sim, \
            running_agent(_config(sim.port, tmp)) as agent:
        marks = Marks()
        agent.journal.watchers.append(marks.watch)
        await eventually(lambda: any(s.active.contract.version == 3 and s.step_name() == "fill"
                                     and sim.values()["pump_speed"] > 100
                                     for s in agent.scan.segments.values()), WAIT_S,
                         "version 3 filling", every_s=0.01)
        sim.set("level", 4.8)
        await eventually(lambda: sim.values()["pump_speed"] == KNOWN_GOOD_PUMP, WAIT_S,
                         "the known-good safe state on the device", every_s=POLL_S)
        on_device = now_ms()
        await eventually(lambda: "confirmed" in marks.at, WAIT_S, "confirmed", every_s=POLL_S)
    assert marks.trip_ms is not None
    return {"fallback": marks.at["fallback"] - marks.trip_ms,
            "device": on_device - marks.trip_ms,
            "confirmed": marks.at["confirmed"] - marks.trip_ms}


async def round_trip_ms() -> float:
    """Median of 50 reads of the pump register by a separate pymodbus client."""
    async with SimDevice("tank", tick_ms=20, initial={"level": 1.0}) as sim:
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=1)
        await client.connect()
        try:
            times = []
            for _ in range(50):
                started = time.perf_counter()
                reply = await client.read_holding_registers(20, count=1)
                times.append((time.perf_counter() - started) * 1000)
                if reply.isError():
                    raise RuntimeError(f"round trip: the simulator answered {reply}")
        finally:
            client.close()
    return statistics.median(times)


def _summary(label: str, values: list[float], target_ms: float | None = None) -> None:
    median_figure(label, values, target_ms, inclusive=False)


async def main(runs: int) -> None:
    rtt = await round_trip_ms()
    target = 2 * SCAN_MS + rtt
    print(f"bench.rollout_fallback: scan {SCAN_MS} ms, Modbus round trip {rtt:.1f} ms "
          f"(median of 50), {runs} runs", flush=True)
    results: list[dict[str, float]] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(await one_run(Path(tmp)))
    print("trip within the health window -> known-good contract")
    _summary("trip -> rollout_fallback journaled", [r["fallback"] for r in results])
    _summary("trip -> known-good safe state on the device", [r["device"] for r in results])
    _summary("trip -> known-good safe_confirmed (read-back)", [r["confirmed"] for r in results],
             target)


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(main(3 if args.quick else args.runs))


if __name__ == "__main__":
    cli()
