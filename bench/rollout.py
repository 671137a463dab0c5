"""Benchmark of a staged rollout over 1,000 simulated devices (issue 13). Prints, never asserts.

Run: .venv/bin/python -m bench.rollout [--quick] [--sim-thread]   (--quick: 100 devices, waves
of 32; --sim-thread: the device simulator on its own thread and store connection)

The fleet: 1,000 registered devices across 50 sites, all live, each running version 1 of the tank
design (its known-good contract). The hub: its API under uvicorn on 127.0.0.1 with the rollout
engine on (hub/rollout_engine.py, on the API's loop and store connection), a real store file, an
in-memory publisher. The devices: a simulator in this process answers every push as the hub's
sync side stores an agent's answer (the MQTT path is bench/sync.py's figure): the contract
accepted and started, and the device's journal — a CONTRACT entry accepting the pushed content
hash, a BOOT entry whose period grid the health gate counts cycles on, then an INPUT entry on that
grid once a second (a level reading, as a tank at 1 Hz journals) — a short, fixed delay after the
push (ANSWER_MS), so every device proves healthy. Those 1,000 journal entries a second are
stored on the hub's loop like the rest (the sync side's ingest, in one batch a second).

The deployment: a canary of 10, then waves of WAVE_SIZE, each behind a gate of HEALTH (window
and cycles; every device must prove itself from its journal), approval auto, no pause.

Figures:
- hub overhead per step: the engine's own time on the hub's loop (RolloutEngine.advance, which
  runs each step's due work: pushes, judgements, transitions, each committed with the step's
  record; timed slice by slice between its awaits, so other tasks' time is not counted), summed
  per step name and per device of the step; its longest slice (the longest the API waited on
  it); and the step's duration, most of it waiting for the devices and the window.
- the device simulator's own time on the loop (timed as the engine's), and its longest slice:
  here it shares the API's loop and store connection, where the sync side it stands in for runs
  on its own thread, so its slices are in the API's latency below but not a hub's.
- API latency while it runs: GET /api/deployments/{id} (the whole view: 1,000 devices and every
  step) and GET /api/devices/{id}, back to back from one client for the whole deployment; p50
  and p99 of each (target p99 < 50 ms).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._common import figure, now_ms, percentile
from bench.loop_time import Spent, Timed
from bench.rollout_devices import ANSWER_MS, Devices
from bench.tank_fleet import tank_fleet
from contracts.signing import sign_contract
from hub.api import create_app
from hub.auth import ApiRole, AuthConfig, Token, hash_token
from hub.config import DeviceCredential
from hub.publisher import MemoryPublisher
from hub.registry import DeviceRegistry
from hub.service import HubService
from hub.states import DeviceEvent
from hub.store import HubStore
from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.hub.serving import serving

DEVICES, SITES = 1000, 50
CANARY, WAVE_SIZE = 10, 250
QUICK = {"DEVICES": 100, "SITES": 10, "CANARY": 4, "WAVE_SIZE": 32}
HEALTH = {"window_s": 3, "min_cycles": 10}
API_P99_TARGET_MS = 50.0
SIM_THREAD = False
"""--sim-thread: the simulator on its own thread (see `_in_thread`)."""
PROGRESS_S = 10.0
"""A progress line this often while the deployment runs."""
DEPLOY_TIMEOUT_S = 900.0
TOKEN = "bench-admin"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _app(store: HubStore, devices: list[DeviceCredential],
         publisher: MemoryPublisher) -> Any:
    registry = DeviceRegistry(store, devices)
    service = HubService(store, functools.partial(sign_contract, key=Ed25519PrivateKey.generate()),
                         publisher, now_ms, registry=registry)
    return create_app(service, AuthConfig(tokens=(
        Token(name="admin", sha256=hash_token(TOKEN), role=ApiRole.ADMIN),)))


async def _configure(http: httpx.AsyncClient, store: HubStore,
                     devices: list[DeviceCredential]) -> tuple[str, str]:
    """Design v1 and v2 (max_rpm 1000 -> 1200 by the binding), a binding per site; every device
    live and running v1's contract (pushed through the API, answered in the store)."""
    for version in (1, 2):
        r = await http.post("/api/designs", json=tank_design(version))
        assert r.status_code == 201, r.text
    for s in range(SITES):
        r = await http.post("/api/bindings", json=tank_binding(
            f"site-{s:02d}", {"site": f"site-{s:02d}", "labels": {"kind": "tank"}}, 20 + s))
        assert r.status_code == 201, r.text
    t = now_ms()
    store.begin_batch()
    for d in devices:
        store.devices.ensure(d.id, d.site, t, d.labels)
        store.devices.apply_event(d.id, DeviceEvent.TELEMETRY, t)
    store.commit_batch()
    sids = []
    for version in (1, 2):
        r = await http.post("/api/snapshots", json={"designs": {"tank-fill": version}})
        assert r.status_code in (200, 201), r.text
        sids.append(str(r.json()["id"]))
    return sids[0], sids[1]


async def _baseline(http: httpx.AsyncClient, sid: str) -> None:
    plan = (await http.post("/api/plans", json={"snapshot": sid, "documents": True},
                            timeout=120)).json()
    for row in plan["devices"]:
        r = await http.post("/api/contracts", json=row["would_get"]["document"])
        assert r.status_code == 201, r.text



def _timed_engine(engine: Any) -> Spent:
    """Wraps engine.advance (one pass of a deployment's running step) to time its slices."""
    spent = Spent()
    advance: Callable[[str], Awaitable[None]] = engine.advance

    async def timed(dep_id: str) -> None:
        step = engine.store.deployments.current_step(dep_id)
        name = step.name if step is not None else "(begin)"
        spent.passes[name] += 1
        await Timed(advance(dep_id), spent, name)
    engine.advance = timed
    return spent


async def _poll_api(http: httpx.AsyncClient, dep: str, stop: asyncio.Event,
                    lat: dict[str, list[float]]) -> dict[str, Any]:
    last: dict[str, Any] = {}
    i, shown = 0, time.monotonic()
    while not stop.is_set():
        for name, path in (("GET /api/deployments/{id}", f"/api/deployments/{dep}"),
                           ("GET /api/devices/{id}", f"/api/devices/dev-{i % DEVICES:04d}")):
            t0 = time.perf_counter()
            r = await http.get(path)
            lat[name].append((time.perf_counter() - t0) * 1000)
            if name.startswith("GET /api/deployments"):
                last = r.json()
        i += 1
        if last.get("state") in ("complete", "rolled_back", "failed"):
            stop.set()
        elif time.monotonic() >= shown + PROGRESS_S:
            shown = time.monotonic()
            print(f"  … {last.get('state')} at {(last.get('step') or {}).get('name')}: "
                  f"{_counts(last)}", flush=True)
    return last


def _counts(view: dict[str, Any]) -> str:
    states: dict[str, int] = defaultdict(int)
    for d in view.get("devices", []):
        states[d["state"]] += 1
    return ", ".join(f"{n} {s}" for s, n in sorted(states.items()))


async def main() -> None:
    devices = tank_fleet(DEVICES, SITES)
    publisher = MemoryPublisher()
    with tempfile.TemporaryDirectory() as tmp, HubStore.open(Path(tmp) / "hub.db") as store:
        app = _app(store, devices, publisher)
        sim = Devices(store, publisher)
        async with serving(app) as url, \
                httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60) as http:
            sim_spent, sim_stop = Spent(), threading.Event()
            thread = _in_thread(sim, Path(tmp) / "hub.db", sim_stop, sim_spent) if SIM_THREAD \
                else None
            responder = asyncio.create_task(_timed_devices(sim, sim_spent) if thread is None
                                            else _idle(sim_stop), name="devices")
            try:
                v1, v2 = await _configure(http, store, devices)
                await _baseline(http, v1)
                while sim.answered < DEVICES:
                    await asyncio.sleep(0.1)
                spent = _timed_engine(app.state.rollout_engine)
                lat: dict[str, list[float]] = defaultdict(list)
                t0 = time.perf_counter()
                r = await http.post("/api/deployments", json={
                    "snapshot": v2, "strategy": {"canary": {"count": CANARY},
                                                 "waves": {"size": WAVE_SIZE}},
                    "health": HEALTH})
                assert r.status_code == 201, r.text
                stop = asyncio.Event()
                async with asyncio.timeout(DEPLOY_TIMEOUT_S):
                    view = await _poll_api(http, r.json()["id"], stop, lat)
                took = time.perf_counter() - t0
            finally:
                sim_stop.set()
                responder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await responder
                if thread is not None:
                    thread.join(10)
    _report(view, spent, lat, took, sim_spent)


async def _timed_devices(sim: Devices, spent: Spent) -> None:
    """The device simulator, its slices timed as the engine's are: it runs on the API's loop and
    store connection here, where the sync side it stands in for has its own thread."""
    await Timed(sim.run(), spent, "devices")


async def _idle(stop: threading.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.1)


def _in_thread(sim: Devices, path: Path, stop: threading.Event, spent: Spent) -> threading.Thread:
    """`--sim-thread`: the simulator on its own thread, loop and store connection, as the sync
    side runs in a hub (hub/app.py), instead of on the API's loop."""
    async def run() -> None:
        with HubStore.open(path) as store:
            sim.store = store
            task = asyncio.create_task(_timed_devices(sim, spent))
            await _idle(stop)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    thread = threading.Thread(target=asyncio.run, args=(run(),), name="devices", daemon=True)
    thread.start()
    return thread


def _report(view: dict[str, Any], spent: Spent, lat: dict[str, list[float]],
            took: float, sim: Spent) -> None:
    waves = view.get("waves", [])
    print(f"rollout: {DEVICES} devices, {SITES} sites; canary {CANARY}, waves of {WAVE_SIZE} "
          f"({len(waves)} waves in all); health {HEALTH}; devices answer {ANSWER_MS} ms after "
          f"a push; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    figure("deployment", f"{view.get('state')} in {took:.1f} s")
    sizes = {("canary" if w["kind"] == "canary" else f"wave:{w['index']}"): len(w["devices"])
             for w in waves}
    took_ms = {s["name"]: (s.get("finished_ms") or 0) - (s.get("started_ms") or 0)
               for s in view.get("steps", [])}
    for name, total in spent.total.items():
        wave = name.rsplit(":", 1)[0]
        per_device = f", {total * 1000 / sizes[wave]:.1f} ms/device" if wave in sizes else ""
        figure(f"hub overhead, step {name}",
               f"{total * 1000:.0f} ms in {spent.passes[name]} passes{per_device}; longest "
               f"slice {spent.longest[name] * 1000:.0f} ms; step took {took_ms.get(name, 0) / 1000:.1f} s")
    where = "its own thread" if SIM_THREAD else "the API's loop"
    figure(f"device simulator on {where}", f"{sim.total['devices'] * 1000:.0f} ms in all; "
           f"longest slice {sim.longest['devices'] * 1000:.0f} ms")
    for name, values in lat.items():
        p99 = percentile(values, 0.99)
        figure(f"{name} p50 ({len(values)})", f"{percentile(values, 0.5):.1f} ms")
        figure(f"{name} p99", f"{p99:.1f} ms", f"< {API_P99_TARGET_MS:.0f} ms",
               p99 < API_P99_TARGET_MS)


def _args() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 devices: a smoke check")
    p.add_argument("--sim-thread", action="store_true",
                   help="the device simulator on its own thread and store connection, as the "
                        "sync side runs in a hub (default: on the API's loop)")
    args = p.parse_args()
    if args.quick:
        globals().update(QUICK)
    globals()["SIM_THREAD"] = args.sim_thread


if __name__ == "__main__":
    _args()
    asyncio.run(main())
