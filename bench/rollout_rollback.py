"""Benchmark: a canary's gate fails on the hub -> every canary device back on its known-good
contract, confirmed by read-back. Prints, never asserts.

Run: .venv/bin/python -m bench.rollout_rollback [--runs 5] [--canaries 3] [--quick]

Each run is a fresh fieldpact/loopback.py site: a real hub (embedded broker, API, rollout engine),
`--canaries` real agents (scan 100 ms) on tank simulators, all in this process. A deployment of the
tank design with the pump at 900 rpm completes first (each device's known-good contract); then a
snapshot at 1,400 rpm goes to every device as the canary behind the gate `pump_speed <= 1000`. The
pump ramps from 0 at 300 rpm/s, so the gate fails about 3.5 s into its 8 s window, and the hub
rolls back.
From the gate's failure (the `rollback` step's start, hub clock) to, per device:
- the restored version's CONTRACT `accepted` committed in its journal (a journal watcher);
- its OUTPUT_SYNC committed (the known-good's outputs asserted on the device);
- confirmed by read-back: the first read-back (agent/readback.py, instrumented here) in which
  every write point the known-good owns is good and shows what the device acknowledged to it.
"Every canary back" is a run's slowest device. Target: < 2 scan periods + one round trip, the round
trip measured as the median of 50 QoS 1 publishes through the site's broker until its PUBACK.
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

import aiomqtt
import httpx

from agent.readback import ReadbackMonitor, shows
from bench._common import figure
from contracts.chain import Entry
from contracts.inputs import Reading
from contracts.topics import Channel, topic
from contracts.types import PointName, Value
from fieldpact.loopback import DeviceSpec, LocalSite
from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.waiting import eventually

SCAN_MS = 100
SITE = "bench-site"
WAIT_S = 90.0
"""Bound on a deployment's wait on a loaded machine."""
HEALTH = {"window_s": 8, "telemetry": "pump_speed <= 1000"}
GOOD_RPM, BAD_RPM = 900, 1400

CONFIRMED: dict[int, float] = {}
"""id(ReadbackMonitor) -> wall-clock ms of its first read-back confirming every acknowledged write."""


def _instrument() -> None:
    """Wrap ReadbackMonitor (this process only) to note when a monitor's read-back first confirms
    all of its owned points after each was acknowledged."""
    ack, check = ReadbackMonitor.acknowledged, ReadbackMonitor.check

    def acknowledged(self: ReadbackMonitor, name: PointName, value: Value) -> None:
        ack(self, name, value)
        self.__dict__.setdefault("bench_acked", set()).add(name)

    def checked(self: ReadbackMonitor, readings: Any) -> Any:
        acked = self.__dict__.get("bench_acked", set())
        points = self._points  # noqa: SLF001 — instrumentation
        if points and id(self) not in CONFIRMED and all(p.name in acked for p in points):
            if all(isinstance(r := readings.get(p.name), Reading) and r.good
                   and shows(p, self.applied(p.name), r.value) for p in points):  # type: ignore[arg-type]
                CONFIRMED[id(self)] = time.time() * 1000
        return check(self, readings)

    ReadbackMonitor.acknowledged = acknowledged  # type: ignore[method-assign]
    ReadbackMonitor.check = checked  # type: ignore[method-assign]


class Marks:
    """Per device: commit time of the restored version's `accepted` and OUTPUT_SYNC."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int, str], float] = {}

    def watcher(self, device: str) -> Any:
        def watch(entries: Sequence[Entry]) -> None:
            now = time.time() * 1000
            for e in entries:
                event, version = e.body.get("event"), e.body.get("version")
                if event == "accepted" and isinstance(version, int):
                    self.at.setdefault((device, version, "accepted"), now)
                    self.at[(device, 0, "last")] = version
                elif event == "output_sync":
                    last = int(self.at.get((device, 0, "last"), 0))
                    self.at.setdefault((device, last, "output_sync"), now)
        return watch


async def _ok(r: Any, status: int = 200) -> Any:
    response = await r
    if response.status_code != status:
        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
    return response.json()


async def _deploy(http: httpx.AsyncClient, devices: list[str], rpm: int) -> dict[str, Any]:
    await _ok(http.post("/api/bindings", json=tank_binding("site", {"site": SITE}, max_rpm=rpm)),
              201)
    snap = await _ok(http.post("/api/snapshots", json={"target": {"sites": [SITE]}}), 201)
    dep = await _ok(http.post("/api/deployments", json={
        "snapshot": snap["id"], "health": HEALTH, "target": {"devices": devices},
        "strategy": {"canary": {"devices": devices}, "waves": {"size": 1}}}), 201)

    async def settled() -> dict[str, Any] | None:
        view: dict[str, Any] = await _ok(http.get(f"/api/deployments/{dep['id']}"))
        return view if view["state"] in ("complete", "rolled_back", "failed") else None
    found: dict[str, Any] = await eventually(settled, WAIT_S, f"deployment at {rpm} rpm settled")
    return found


async def one_run(tmp: Path, canaries: int) -> list[dict[str, float]]:
    names = [f"c{i}" for i in range(1, canaries + 1)]
    specs = [DeviceSpec(id=d, model="tank", initial={"level": 1.0}) for d in names]
    marks = Marks()
    async with LocalSite(tmp, specs, site=SITE, scan_period_ms=SCAN_MS,
                         silence_timeout_s=30) as site, httpx.AsyncClient(
            base_url=site.api_url, timeout=10,
            headers={"Authorization": f"Bearer {site.token}"}) as http:
        for d in names:
            site.devices[d].agent.journal.watchers.append(marks.watcher(d))
        await site.wait_for("devices live", lambda: all(site.device_state(d) is not None
                                                        for d in names), 30)
        await _ok(http.post("/api/designs", json=tank_design(scan_period_ms=SCAN_MS)), 201)
        good = await _deploy(http, names, GOOD_RPM)
        if good["state"] != "complete":
            raise RuntimeError(f"the known-good deployment ended {good['state']}")
        bad = await _deploy(http, names, BAD_RPM)
        if bad["state"] != "rolled_back":
            raise RuntimeError(f"the bad deployment ended {bad['state']}, not rolled_back")
        gate_ms = next(s["started_ms"] for s in bad["steps"] if s["name"] == "rollback")
        out = []
        for row in bad["devices"]:
            device, version = row["device"], int(row["restored"].rpartition("@")[2])

            def confirmed(device: str = device, version: int = version) -> float | None:
                for seg in site.devices[device].agent.scan.segments.values():
                    if seg.active.contract.version == version:
                        return CONFIRMED.get(id(seg.actuator.readback))
                return None
            done = await eventually(confirmed, 30, f"{device}@{version} confirmed by read-back")
            out.append({"accepted": marks.at[(device, version, "accepted")] - gate_ms,
                        "output_sync": marks.at[(device, version, "output_sync")] - gate_ms,
                        "confirmed": done - gate_ms})
        return out


async def round_trip_ms(tmp: Path) -> float:
    """Median of 50 QoS 1 publishes by a device on its telemetry topic until the broker's PUBACK."""
    spec = DeviceSpec(id="rtt", model="tank")
    async with LocalSite(tmp, [spec], site=SITE) as site:
        assert site.hub is not None and site.hub.broker is not None
        async with aiomqtt.Client("127.0.0.1", site.hub.broker.port, identifier="fp-agent-rtt/bench",
                                  username="rtt", password=site._passwords["rtt"]) as client:  # noqa: SLF001
            times = []
            for _ in range(50):
                started = time.perf_counter()
                await client.publish(topic(SITE, "rtt", Channel.TELEMETRY), b"\xa0", qos=1)
                times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _summary(label: str, values: list[float], target_ms: float | None = None) -> None:
    median = statistics.median(values)
    text = f"median {median:.0f} ms, max {max(values):.0f} ms (n={len(values)})"
    figure(label, text, None if target_ms is None else f"< {target_ms:.0f} ms",
           None if target_ms is None else median < target_ms)


async def main(runs: int, canaries: int) -> None:
    _instrument()
    with tempfile.TemporaryDirectory() as tmp:
        rtt = await round_trip_ms(Path(tmp))
    target = 2 * SCAN_MS + rtt
    print(f"bench.rollout_rollback: {canaries} canaries, scan {SCAN_MS} ms, MQTT round trip "
          f"{rtt:.1f} ms (median of 50), {runs} runs", flush=True)
    rows: list[list[dict[str, float]]] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(await one_run(Path(tmp), canaries))
    every = [r for run in rows for r in run]
    print("canary gate failed on the hub -> known-good back on each device")
    _summary("gate failed -> restored contract accepted", [r["accepted"] for r in every])
    _summary("gate failed -> its outputs asserted (sync)", [r["output_sync"] for r in every])
    _summary("gate failed -> confirmed by read-back", [r["confirmed"] for r in every])
    _summary("... every canary back (a run's slowest)",
             [max(r["confirmed"] for r in run) for run in rows], target)


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--canaries", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(main(1 if args.quick else args.runs, args.canaries))


if __name__ == "__main__":
    cli()
