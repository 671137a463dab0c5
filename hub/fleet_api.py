"""Fleet configuration routes: designs, bindings, snapshots and their per-device diff.

Writes are admin-only (hub.auth: a write outside /api/contracts), audited (hub/fleet.py), and
bodies are JSON capped while streaming. A design or binding that does not check is 422 with every
issue, each naming design, binding, device and field; a stored design version is 409 (designs
never change). Snapshots have no PUT, PATCH or DELETE: 405, and the store refuses too.
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import quote as url_quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts.errors import EncodingError, FleetInvalid, FleetIssue, Issue
from contracts.fleet_compile import field_diff
from contracts.fleet_snapshot import Snapshot
from contracts.limits import MAX_DOCUMENT_BYTES
from hub import inbound
from hub.fleet import Desired, Fleet
from hub.refusals import RequestRefused
from hub.store import Duplicate, NotFound
from hub.store.fleet import SnapshotRecord

MAX_BINDING_BYTES = 256 * 1024
"""A binding places at most MAX_POINTS points: ~100 bytes each."""
MAX_REQUEST_BYTES = 64 * 1024
"""A snapshot or plan request names designs, bindings and a selector."""


class FleetRefused(RequestRefused):
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class FleetConflict(RequestRefused):
    status = HTTPStatus.CONFLICT


def issue_view(i: FleetIssue) -> dict[str, Any]:
    return {"design": i.design, "binding": i.binding, "device": i.device, "origin": i.origin,
            "field": i.field, "reason": i.reason}


def refused(exc: FleetInvalid) -> FleetRefused:
    """422 whose issues say, in `path`, the field and, in `reason`, design, binding and device."""
    return FleetRefused(f"{len(exc.issues)} issue(s): {exc}"[:2000],
                        [Issue(path=i.field, reason=str(i)) for i in exc.issues[:200]])


def fleet_of(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.fleet
    return fleet


# ---- designs ------------------------------------------------------------------------------------

async def list_designs(request: Request) -> Response:
    """Every design with its versions (the latest last)."""
    by_name: dict[str, list[int]] = {}
    for d in fleet_of(request).store.fleet.designs():
        by_name.setdefault(d.name, []).append(d.version)
    return JSONResponse({"designs": [{"design": n, "versions": v, "latest": v[-1]}
                                     for n, v in sorted(by_name.items())]})


async def create_design(request: Request) -> Response:
    """Store a design version (admin); a stored version is never replaced (409)."""
    doc = await inbound.json_object(request, MAX_DOCUMENT_BYTES)
    try:
        design = fleet_of(request).add_design(doc, inbound.actor(request))
    except FleetInvalid as exc:
        raise refused(exc) from exc
    except Duplicate as exc:
        raise FleetConflict(str(exc), [Issue(path="version", reason=str(exc))]) from exc
    return JSONResponse({"design": design.name, "version": design.version}, status_code=201,
                        headers={"Location": f"/api/designs/{url_quote(design.name, safe='')}"})


async def get_design(request: Request) -> Response:
    """Every version of one design, with its document."""
    name = request.path_params["name"]
    found = fleet_of(request).store.fleet.designs(name)
    if not found:
        raise NotFound("design", name)
    return JSONResponse({"design": name, "versions": [
        {"version": d.version, "created_ms": d.created_ms, "actor": d.actor,
         "document": d.document} for d in found]})


# ---- bindings -----------------------------------------------------------------------------------

async def create_binding(request: Request) -> Response:
    """Store a new revision of a binding (admin)."""
    doc = await inbound.json_object(request, MAX_BINDING_BYTES)
    try:
        binding, revision = fleet_of(request).add_binding(doc, inbound.actor(request))
    except FleetInvalid as exc:
        raise refused(exc) from exc
    return JSONResponse({"binding": binding.name, "revision": revision, "design": binding.design},
                        status_code=201)


async def list_bindings(request: Request) -> Response:
    """The latest revision of every binding (`?all=true`: every revision)."""
    every = inbound.bool_query(request, "all")
    rows = fleet_of(request).store.fleet.bindings(latest=not every)
    return JSONResponse({"bindings": [{"binding": b.name, "revision": b.version,
                                       "created_ms": b.created_ms, "actor": b.actor,
                                       "document": b.document} for b in rows]})


# ---- snapshots ----------------------------------------------------------------------------------

def snapshot_view(rec: SnapshotRecord, snap: Snapshot | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rec.id, "created_ms": rec.created_ms, "actor": rec.actor,
                           "source": rec.source, "bytes": len(rec.body)}
    if snap is not None:
        out["content"] = {"designs": [dict(d.document) for d in snap.designs],
                          "bindings": [dict(b.document) for b in snap.bindings],
                          "target": snap.target.to_mapping()}
    return out


async def create_snapshot(request: Request) -> Response:
    """Make a snapshot (admin): {designs?: {name: version|null}, bindings?: [name], target?}.
    201 when new; 200 with the existing one when the same content was snapshotted before."""
    body = await inbound.json_object(request, MAX_REQUEST_BYTES)
    designs, bindings = body.get("designs"), body.get("bindings")
    if designs is not None and not (isinstance(designs, dict) and all(
            isinstance(k, str) and (v is None or type(v) is int) for k, v in designs.items())):
        raise FleetRefused("designs", [Issue(path="designs", reason="must map design names to "
                                                                    "a version or null")])
    if bindings is not None and not (isinstance(bindings, list) and
                                     all(isinstance(b, str) for b in bindings)):
        raise FleetRefused("bindings", [Issue(path="bindings", reason="must be a list of names")])
    fleet = fleet_of(request)
    try:
        rec, created = fleet.create_snapshot(body, inbound.actor(request))
    except FleetInvalid as exc:
        raise refused(exc) from exc
    return JSONResponse(snapshot_view(rec), status_code=201 if created else 200,
                        headers={"Location": f"/api/snapshots/{rec.id}"})


async def list_snapshots(request: Request) -> Response:
    """Snapshots, newest first."""
    limit = inbound.int_query(request, "limit", inbound.DEFAULT_LIMIT, 1, inbound.MAX_LIMIT)
    return JSONResponse({"snapshots": [snapshot_view(r) for r in
                                       fleet_of(request).store.fleet.snapshots(limit)]})


async def get_snapshot(request: Request) -> Response:
    """One snapshot with its full content (design documents, bindings, target)."""
    fleet, sid = fleet_of(request), request.path_params["snapshot"]
    rec = fleet.store.fleet.snapshot(sid)
    return JSONResponse(snapshot_view(rec, _decoded(fleet, sid)))


def _decoded(fleet: Fleet, sid: str) -> Snapshot:
    try:
        return fleet.snapshot(sid)
    except (EncodingError, FleetInvalid) as exc:  # a stored snapshot this build cannot read
        raise FleetRefused(f"snapshot {sid} cannot be read by this hub: {exc}"[:500]) from exc


async def diff_snapshots(request: Request) -> Response:
    """Per device, which contract fields change from snapshot a to snapshot b."""
    fleet = fleet_of(request)
    a, b = request.path_params["a"], request.path_params["b"]
    _decoded(fleet, a), _decoded(fleet, b)
    rows, counts = [], {"added": 0, "removed": 0, "changed": 0, "unchanged": 0, "invalid": 0}
    for t in fleet.targets():
        before = {d.contract: d for d in fleet.desired(a, t)}
        after = {d.contract: d for d in fleet.desired(b, t)}
        for name in sorted(set(before) | set(after), key=str):
            row = _diff_row(t.id, name, before.get(name), after.get(name))
            counts[row["change"]] += 1
            if row["change"] != "unchanged":
                rows.append(row)
    return JSONResponse({"from": a, "to": b, "devices": rows, "summary": counts})


def _diff_row(device: str, name: str | None, old: Desired | None,
              new: Desired | None) -> dict[str, Any]:
    if (old is not None and old.issues) or (new is not None and new.issues):
        issues = [*(old.issues if old else ()), *(new.issues if new else ())]
        return {"device": device, "contract": name, "change": "invalid", "fields": [],
                "issues": [issue_view(i) for i in issues]}
    change = "added" if old is None else "removed" if new is None else "changed"
    fields = field_diff(old.document if old else None, new.document if new else None)
    if change == "changed" and not fields:
        change = "unchanged"
    return {"device": device, "contract": name, "change": change,
            "design": {"from": old.design if old else None, "to": new.design if new else None},
            "fields": fields if change == "changed" else []}


ROUTES = (
    Route("/api/designs", list_designs, methods=["GET"]),
    Route("/api/designs", create_design, methods=["POST"]),
    Route("/api/designs/{name}", get_design, methods=["GET"]),
    Route("/api/bindings", create_binding, methods=["POST"]),
    Route("/api/bindings", list_bindings, methods=["GET"]),
    Route("/api/snapshots", create_snapshot, methods=["POST"]),
    Route("/api/snapshots", list_snapshots, methods=["GET"]),
    Route("/api/snapshots/{snapshot}", get_snapshot, methods=["GET"]),
    Route("/api/snapshots/{a}/diff/{b}", diff_snapshots, methods=["GET"]),
)
