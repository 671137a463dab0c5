"""Benchmark of fleet configuration at 1,000 devices (issue 12). Prints, never asserts.

Run: .venv/bin/python -m bench.fleet

The fleet: 1,000 registered devices across 50 sites, all live; one design; one label binding per
site, each placing the pump at its own register; every device runs a contract of the design (half
the desired configuration, half an older one: max_rpm 1000) and has the snapshot as its desired
state. Over real HTTP (uvicorn on 127.0.0.1, the hub API with its store file):
- plan: POST /api/plans for the snapshot over the 1,000 devices. `cold` is the first plan of a
  freshly started hub (every contract compiled, every record read); `warm` a later one.
- compile: the design compiled for each of the 1,000 devices through a binding of its own (no
  sharing), the part of a cold plan that label bindings save.
- drift: GET /api/drift, 200 requests after one warm-up; p50 and p99 of the latency, with the
  store unchanged between requests (the evaluation is cached until something is committed) and
  with a device row committed before each request (the monitor evaluates again once a second,
  hub.drift.FRESH_MS, in its own thread); and the cost of its evaluations.
"""
from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._common import figure, now_ms, percentile
from bench.tank_fleet import tank_fleet
from contracts.codec import content_hash
from contracts.fleet_binding import Target, parse_binding
from contracts.fleet_compile import compile_contract
from contracts.fleet_design import parse_design
from contracts.schema_serialize import to_mapping
from contracts.signing import sign_contract
from hub.api import create_app
from hub.auth import ApiRole, AuthConfig, Token, hash_token
from hub.config import DeviceCredential
from hub.registry import DeviceRegistry
from hub.publisher import MemoryPublisher
from hub.service import HubService
from hub.states import ContractStatus, DeviceEvent
from hub.store import ContractRecord, HubStore
from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.hub.serving import serving

DEVICES, SITES = 1000, 50
PLAN_TARGET_S = 1.0
DRIFT_P99_TARGET_MS = 50.0
DRIFT_REQUESTS = 200
TOKEN = "bench-admin"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _running(store: HubStore, devices: list[DeviceCredential]) -> None:
    """Every device live and running a contract of the design (every other one an older config)."""
    design, key, now = parse_design(tank_design()), Ed25519PrivateKey.generate(), now_ms()
    store.begin_batch()
    for i, d in enumerate(devices):
        site = int(d.site.rpartition("-")[2])
        binding = parse_binding(tank_binding(f"site-{site:02d}", {"device": d.id}, 20 + site,
                                             max_rpm=1200 if i % 2 else 1000))
        c = compile_contract(design, binding, Target(id=d.id, site=d.site), version=1,
                             valid_from_ms=now)
        store.devices.ensure(d.id, d.site, now, d.labels)
        store.devices.apply_event(d.id, DeviceEvent.TELEMETRY, now)
        store.contracts.insert(ContractRecord(
            id=f"{c.contract}@1", contract=c.contract, version=1, device=d.id, site=d.site,
            status=ContractStatus.ACTIVE, document=to_mapping(c), signed=sign_contract(c, key),
            content_hash=content_hash(c), created_ms=now, updated_ms=now))
        store.devices.update(d.id, contract=c.contract, version=1)
    store.commit_batch()


async def _configure(http: httpx.AsyncClient) -> str:
    await http.post("/api/designs", json=tank_design())
    for s in range(SITES):
        r = await http.post("/api/bindings", json=tank_binding(
            f"site-{s:02d}", {"site": f"site-{s:02d}", "labels": {"kind": "tank"}}, 20 + s))
        assert r.status_code == 201, r.text
    sid: str = (await http.post("/api/snapshots", json={})).json()["id"]
    return sid


def _app(store: HubStore, devices: list[DeviceCredential]) -> Any:
    registry = DeviceRegistry(store, devices)
    service = HubService(store, functools.partial(sign_contract, key=Ed25519PrivateKey.generate()),
                         MemoryPublisher(), now_ms, registry=registry)
    return create_app(service, AuthConfig(tokens=(
        Token(name="admin", sha256=hash_token(TOKEN), role=ApiRole.ADMIN),)))


async def _timed(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    r = await http.request(method, path, **kw)
    assert r.status_code == 200, r.text[:300]
    return time.perf_counter() - t0, r.json()


def _compile_each(devices: list[DeviceCredential]) -> float:
    """Seconds to compile the design for every device through its own binding: what a cold plan
    costs when no label binding is shared (a label binding compiles once per site)."""
    design = parse_design(tank_design())
    bindings = [parse_binding(tank_binding(f"b-{d.id}", {"device": d.id}, 20)) for d in devices]
    t0 = time.perf_counter()
    for d, b in zip(devices, bindings):
        compile_contract(design, b, Target(id=d.id, site=d.site), version=1, valid_from_ms=0)
    return time.perf_counter() - t0


async def main() -> None:
    devices = tank_fleet(DEVICES, SITES)
    each = _compile_each(devices)
    with tempfile.TemporaryDirectory() as tmp, HubStore.open(Path(tmp) / "hub.db") as store:
        _running(store, devices)
        async with serving(_app(store, devices)) as url, \
                httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60) as http:
            sid = await _configure(http)
            for device in devices:
                store.fleet.set_desired(device.id, sid, now_ms(), "bench")
        # A fresh app over the same store: nothing compiled or cached yet.
        app = _app(store, devices)
        async with serving(app) as url, \
                httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60) as http:
            cold, plan = await _timed(http, "POST", "/api/plans", json={"snapshot": sid})
            warm, _ = await _timed(http, "POST", "/api/plans", json={"snapshot": sid})
            summary = plan["summary"]
            first, drift = await _timed(http, "GET", "/api/drift")
            quiet = [(await _timed(http, "GET", "/api/drift"))[0] * 1000
                     for _ in range(DRIFT_REQUESTS)]
            busy = []
            for i in range(DRIFT_REQUESTS):  # as the sync side does: a commit between requests
                store.devices.update(devices[i % DEVICES].id, last_seen_ms=now_ms())
                busy.append((await _timed(http, "GET", "/api/drift"))[0] * 1000)
            evaluations = list(app.state.drift.timings_ms)  # the monitor thread's own
    print(f"fleet: {DEVICES} devices, {SITES} sites, one design, {SITES} label bindings")
    figure("plan, cold (first after start)", f"{cold:.3f} s", f"< {PLAN_TARGET_S} s",
           cold < PLAN_TARGET_S)
    figure("plan, warm", f"{warm:.3f} s", f"< {PLAN_TARGET_S} s", warm < PLAN_TARGET_S)
    figure("1,000 compilations, one binding each", f"{each:.3f} s")
    figure("plan rows: update / unchanged", f"{summary['eligible']} / {summary['unchanged']}")
    figure("GET /api/drift, first", f"{first * 1000:.1f} ms")
    for label, latencies in (("store unchanged", quiet), ("a commit before each", busy)):
        p99 = percentile(latencies, 0.99)
        figure(f"GET /api/drift p50, {label}", f"{percentile(latencies, 0.5):.1f} ms")
        figure(f"GET /api/drift p99, {label}", f"{p99:.1f} ms",
               f"< {DRIFT_P99_TARGET_MS:.0f} ms", p99 < DRIFT_P99_TARGET_MS)
    figure(f"one drift evaluation p50 / max ({len(evaluations)})",
           f"{percentile(evaluations, 0.5):.1f} / {max(evaluations):.1f} ms")
    figure("drifting / in sync", f"{drift['summary']['drifting']} / {drift['summary']['in_sync']}")


if __name__ == "__main__":
    asyncio.run(main())
