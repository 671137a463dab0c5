"""The rollout e2e tests' side of the API, over a hub process (tests/hub/rollout_hub.py) and its
devices on MQTT (tests/hub/rollout_devices.py): an admin client with the fleet's agents online,
the tank snapshot, a deployment planned, and a bounded wait on a deployment's view whose failure
says what the deployment was doing at the deadline.

Rules: every answer's status is asserted where it is read (`ok`), naming the body on a mismatch;
every wait is bounded (`view_when`: 45 s unless told)."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.hub.rollout_devices import FakeAgent, online
from tests.hub.rollout_hub import FLEET, HubProcess, hub_process
from tests.hub.sync_helpers import SITE
from tests.waiting import eventually


async def ok(r: Any, status: int = 200) -> Any:
    """The JSON of the awaited response `r`, once its status is asserted to be `status`."""
    response = await r
    assert response.status_code == status, response.text
    return response.json()


def api_client(hub: HubProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=hub.api_url, headers=hub.headers, timeout=10)


def fleet_agents(names: list[str] | None = None, *, several: bool = False) -> list[FakeAgent]:
    """The fake agents of FLEET (those named, in FLEET's order); `several`: each runs every
    contract it is pushed side by side."""
    return [FakeAgent(device=d, password=p, several=several) for d, p in FLEET.items()
            if names is None or d in names]


@contextlib.asynccontextmanager
async def hub_and_agents(workdir: Path, agents: list[FakeAgent]
                         ) -> AsyncIterator[tuple[HubProcess, httpx.AsyncClient]]:
    """A hub process on `workdir`, an admin client of its API, and `agents` online on its broker;
    all stopped on exit (the hub even if the test killed it)."""
    with hub_process(workdir) as hub:
        async with api_client(hub) as http, online(agents, hub.mqtt_port):
            yield hub, http


async def tank_snapshot(http: httpx.AsyncClient) -> str:
    """The tank design bound to every device of SITE, snapshotted: its id."""
    await ok(http.post("/api/designs", json=tank_design()), 201)
    await ok(http.post("/api/bindings", json=tank_binding("site", {"site": SITE})), 201)
    return await site_snapshot(http)


async def site_snapshot(http: httpx.AsyncClient) -> str:
    """A snapshot of every binding over SITE's devices: its id."""
    return str((await ok(http.post("/api/snapshots", json={"target": {"sites": [SITE]}}),
                         201))["id"])


async def deploy(http: httpx.AsyncClient, snapshot: str, body: dict[str, Any]) -> str:
    """Plan a deployment of `snapshot` (health, target and strategy from `body`): its id."""
    return str((await ok(http.post("/api/deployments", json={"snapshot": snapshot, **body}),
                         201))["id"])


async def deployment_view(http: httpx.AsyncClient, dep: str) -> dict[str, Any]:
    view: dict[str, Any] = await ok(http.get(f"/api/deployments/{dep}"))
    return view


async def view_when(http: httpx.AsyncClient, dep: str, check: Any, what: str,
                timeout_s: float = 45) -> dict[str, Any]:
    """The deployment's view once `check(view)` holds; fails naming `what` and the last view."""
    last: dict[str, Any] = {}

    async def ready() -> dict[str, Any] | None:
        view = await deployment_view(http, dep)
        last.update(view)
        return view if check(view) else None

    def seen() -> str:  # what the deployment was doing at the deadline, for a failure's message
        if not last:
            return "(no view read)"
        return (f"state={last.get('state')} step={last.get('step')} devices="
                f"{[(d['device'], d['state'], d.get('reason')) for d in last.get('devices', ())]}")
    found: dict[str, Any] = await eventually(ready, timeout_s, what, detail=seen)
    return found


async def second_after_first(http: httpx.AsyncClient, body: dict[str, Any], agent: FakeAgent,
                             does: str) -> dict[str, Any]:
    """A first deployment of the tank snapshot under `body` completes; then `agent` misbehaves as
    told (`does` is one of its switches: falls_back, trips, second_writer) under a second one (the
    binding at max_rpm 1000, same body); the second's view once it ended."""
    dep = await deploy(http, await tank_snapshot(http), body)
    await view_when(http, dep, lambda v: v["state"] == "complete", "the first complete")
    setattr(agent, does, True)
    await ok(http.post("/api/bindings", json=tank_binding("site", {"site": SITE}, max_rpm=1000)),
             201)
    dep = await deploy(http, await site_snapshot(http), body)
    return await view_when(http, dep, lambda v: v["state"] in ("rolled_back", "complete"),
                       "the second ended")
