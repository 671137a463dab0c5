"""Desired state, drift and plans: `PUT|DELETE /api/devices/{id}/desired`, `GET /api/drift`,
`POST /api/plans` (a dry run: it changes nothing, hub/plans.py).

The drift monitor runs on its own every DRIFT_EVERY_S while the app runs (`monitoring`, in its own
thread with its own store connection): it evaluates when the store changed and raises drift alarms
when they fall due, whether or not anyone looks; GET /api/drift answers from its last evaluation.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts.errors import FleetInvalid, Issue
from contracts.fleet_binding import parse_selector
from hub import inbound
from hub.drift import FRESH_MS, DriftMonitor
from hub.fleet import Fleet
from hub.fleet_api import MAX_REQUEST_BYTES, FleetRefused, fleet_of, refused
from hub.loop_thread import LoopThread
from hub.plans import Planner
from hub.store import HubStore, NotFound

log = logging.getLogger("fieldpact.hub.drift")

DRIFT_EVERY_S = FRESH_MS / 1000
"""How often the monitor refreshes drift (hub.drift.FRESH_MS)."""
MAX_DESIRED_BYTES = 4096


def _snapshot_id(body: Any) -> str:
    sid = body.get("snapshot")
    if not isinstance(sid, str) or not 1 <= len(sid) <= 128:
        raise FleetRefused("snapshot is required", [Issue(path="snapshot",
                                                          reason="must be a snapshot id")])
    return sid


async def set_desired(request: Request) -> Response:
    """Set a device's desired snapshot (admin): {snapshot}."""
    fleet, device = fleet_of(request), request.path_params["device"]
    sid = _snapshot_id(await inbound.json_object(request, MAX_DESIRED_BYTES))
    fleet.target(device)  # an unknown device is the path's: 404
    with _named_in_body():
        fleet.set_desired(device, sid, inbound.actor(request))
    return JSONResponse({"device": device, "snapshot": sid})


async def clear_desired(request: Request) -> Response:
    """Clear a device's desired snapshot (admin): nothing is desired of it any more; its drift
    rows and drift alarm go, audited with the snapshot that was desired (`cleared`, null when
    none was: then nothing changes)."""
    fleet, device = fleet_of(request), request.path_params["device"]
    cleared = fleet.clear_desired(device, inbound.actor(request))
    return JSONResponse({"device": device, "snapshot": None, "cleared": cleared})


@contextlib.contextmanager
def _named_in_body() -> Iterator[None]:
    """A snapshot the body names but the hub does not have: 422 naming the field (the route's
    own resource, in the path, exists; a 404 would say it does not)."""
    try:
        yield
    except NotFound as exc:
        if exc.kind != "snapshot":
            raise
        raise FleetRefused(str(exc), [Issue(path="snapshot", reason=str(exc))]) from exc


async def get_drift(request: Request) -> Response:
    """Per device and desired contract: desired, observed (as the device reports it), in sync or
    why not, since when, and when the drift alarm is due (`alarm_at_ms`; `now_ms` beside it),
    from an evaluation at most hub.drift.FRESH_MS old (`evaluated_ms`)."""
    monitor: DriftMonitor = request.app.state.drift
    entries, body, evaluated = monitor.render()
    now = monitor.fleet.clock()
    drifting = [e for e in entries if not e["in_sync"]]
    head = json.dumps({"now_ms": now, "evaluated_ms": evaluated,
                       "alarm_after_ms": monitor.alarm_after_ms, "summary": {
        "contracts": len(entries), "in_sync": len(entries) - len(drifting),
        "drifting": len(drifting),
        "alarmed": sum(1 for e in drifting if e["alarm_at_ms"] <= now),
        "devices_drifting": len({e["device"] for e in drifting})}}, separators=(",", ":"))
    # The entries' JSON is cached with them (DriftMonitor.render): spliced in, not re-encoded.
    return Response(head[:-1].encode() + b',"entries":' + body + b"}",
                    media_type="application/json")


async def create_plan(request: Request) -> Response:
    """Dry run of a snapshot: {snapshot, target?, documents?}. Per device what it runs now, what
    it would get (in full with `documents`), the field diff and whether it is eligible. Nothing is
    stored."""
    body = await inbound.json_object(request, MAX_REQUEST_BYTES)
    sid = _snapshot_id(body)
    try:
        narrow = parse_selector(body["target"]) if "target" in body else None
    except FleetInvalid as exc:
        raise refused(exc) from exc
    documents = body.get("documents", False)
    if not isinstance(documents, bool):
        raise FleetRefused("documents", [Issue(path="documents", reason="must be true or false")])
    planner: Planner = request.app.state.planner
    with _named_in_body():
        return JSONResponse(planner.plan(sid, narrow, documents=documents))


ROUTES = (
    Route("/api/devices/{device}/desired", set_desired, methods=["PUT"]),
    Route("/api/devices/{device}/desired", clear_desired, methods=["DELETE"]),
    Route("/api/drift", get_drift, methods=["GET"]),
    Route("/api/plans", create_plan, methods=["POST"]),
)


MONITOR_START_TIMEOUT_S = 30.0
"""Opening the monitor's store connection and its first evaluation, on a loaded host."""


@contextlib.asynccontextmanager
async def monitoring(app: Any) -> AsyncIterator[None]:
    """Run the drift monitor while the block runs: in a thread of its own (hub/loop_thread.py)
    with its own store connection, so an evaluation (every device row, every contract head) never
    holds up the API's event loop; `app.state.drift` is that monitor, whose last evaluation the
    API reads. A database without a file (none in production) keeps it on the API's loop."""
    api_monitor: DriftMonitor = app.state.drift
    fleet = api_monitor.fleet
    path = fleet.store.db.conn.execute("PRAGMA database_list").fetchone()[2]
    if not path:
        async with _on_this_loop(api_monitor):
            yield
        return
    side = LoopThread("hub-drift")

    async def main(ready: Callable[[], None]) -> None:
        with HubStore.open(path) as store:
            monitor = DriftMonitor(Fleet(store, fleet.registry, fleet.clock),
                                   api_monitor.alarm_after_ms)
            _refresh(monitor)  # the first GET finds an evaluation
            app.state.drift = monitor
            ready()
            await _refreshing(monitor)

    await side.start(main, MONITOR_START_TIMEOUT_S)
    try:
        yield
    finally:
        app.state.drift = api_monitor
        await side.stop(MONITOR_START_TIMEOUT_S)


async def _refreshing(monitor: DriftMonitor) -> None:
    while True:
        await asyncio.sleep(DRIFT_EVERY_S)
        _refresh(monitor)


def _refresh(monitor: DriftMonitor) -> None:
    try:
        monitor.refresh()
    except Exception:  # a bad row must not stop the monitor (nor the hub): the API shows the last
        log.exception("drift_evaluation_failed")  # evaluation, and the log says why


@contextlib.asynccontextmanager
async def _on_this_loop(monitor: DriftMonitor) -> AsyncIterator[None]:
    task = asyncio.create_task(_refreshing(monitor), name="fleet-drift")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
