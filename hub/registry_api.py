"""Admin routes of the device registry (hub/registry.py): register, remove, enroll a journal key,
set the endpoints (hub/device_endpoints.py).

All four are admin-only (hub.auth: a write outside /api/contracts needs admin) and audited with
their actor and outcome. Bodies are small JSON objects read with a cap while streaming; every
refusal names the field.
"""
from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote as url_quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts.errors import Issue
from contracts.limits import quote
from contracts.topics import check_id
from hub.audit import AuditAction, AuditEntry, Outcome, log_entry
from hub import inbound
from hub.device_endpoints import DeviceEndpoint, EndpointsInvalid, parse_endpoints
from hub.refusals import RequestRefused
from hub.registry import DeviceRegistry, RegisteredDevice, RegistryRefused
from hub.service import HubService

MAX_BODY_BYTES = 16 * 1024
"""A registration is an id, a site, a few labels and a 52-character key: 16 KiB is generous."""
MAX_ID_CHARS = 128
MAX_LABELS = 32


class DeviceConflict(RequestRefused):
    status = HTTPStatus.CONFLICT


class InvalidDevice(RequestRefused):
    status = HTTPStatus.UNPROCESSABLE_ENTITY


def device_view(d: RegisteredDevice) -> dict[str, Any]:
    return {"id": d.id, "site": d.site, "labels": dict(d.labels), "source": d.source,
            "journal_key": d.journal_key, "endpoints": [e.to_mapping() for e in d.endpoints]}


async def register_device(request: Request) -> Response:
    """Register a device (admin): {id, site, labels?, journal_key?, endpoints?}."""
    svc, body = inbound.service(request), await _json_body(request)
    device, site = _id(body, "id"), _id(body, "site")
    labels, key = _labels(body), _optional_str(body, "journal_key")
    endpoints = _endpoints(body.get("endpoints", []))
    rec = _do(svc, request, AuditAction.DEVICE_REGISTER, device,
              lambda: svc.registry.register(device, site, labels, key, svc.clock(),
                                            inbound.actor(request), endpoints))
    return JSONResponse(device_view(rec), status_code=201,
                        headers={"Location": f"/api/devices/{url_quote(device, safe='')}"})


async def remove_device(request: Request) -> Response:
    """Remove an API-registered device (admin); its history stays, it can no longer take part."""
    svc, device = inbound.service(request), request.path_params["device"]
    _do(svc, request, AuditAction.DEVICE_REMOVE, device, lambda: svc.registry.remove(device))
    return JSONResponse({"id": device, "removed": True})


async def enroll_journal_key(request: Request) -> Response:
    """Enroll (or replace) a device's journal public key (admin): {journal_key}."""
    svc, device = inbound.service(request), request.path_params["device"]
    key = _optional_str(await _json_body(request), "journal_key")
    if key is None:
        raise InvalidDevice("journal_key is required", [Issue(path="journal_key", reason="missing")])
    registry: DeviceRegistry = svc.registry
    _do(svc, request, AuditAction.KEY_ENROLL, device,
        lambda: registry.enroll_key(device, key, svc.clock(), inbound.actor(request)))
    rec = registry.get(device)
    assert rec is not None
    return JSONResponse(device_view(rec))


async def set_endpoints(request: Request) -> Response:
    """Replace a device's endpoints (admin): {endpoints: [{name, kind}]}; [] makes them unknown."""
    svc, device = inbound.service(request), request.path_params["device"]
    body = await _json_body(request)
    if "endpoints" not in body:
        raise InvalidDevice("endpoints is required", [Issue(path="endpoints", reason="missing")])
    endpoints = _endpoints(body["endpoints"])
    rec = _do(svc, request, AuditAction.ENDPOINTS_SET, device,
              lambda: svc.registry.set_endpoints(device, endpoints, svc.clock(),
                                                 inbound.actor(request)))
    return JSONResponse(device_view(rec))


ROUTES = (
    Route("/api/devices", register_device, methods=["POST"]),
    Route("/api/devices/{device}", remove_device, methods=["DELETE"]),
    Route("/api/devices/{device}/journal-key", enroll_journal_key, methods=["PUT"]),
    Route("/api/devices/{device}/endpoints", set_endpoints, methods=["PUT"]),
)


def _do(svc: HubService, request: Request, action: AuditAction, device: str, fn: Any) -> Any:
    """Run the registry change, auditing it either way; RegistryRefused becomes 409/422."""
    actor = inbound.actor(request)
    try:
        result = fn()
    except RegistryRefused as exc:
        _audit(svc, actor, action, Outcome.REFUSED, device, exc.reason)
        cls = DeviceConflict if exc.conflict else InvalidDevice
        raise cls(f"{exc.field}: {exc.reason}", [Issue(path=exc.field, reason=exc.reason)]) from exc
    _audit(svc, actor, action, Outcome.OK, device, None)
    return result


def _audit(svc: HubService, actor: str, action: AuditAction, outcome: Outcome, device: str,
           reason: str | None) -> None:
    entry = AuditEntry(ts_ms=svc.clock(), actor=actor, action=action, outcome=outcome,
                       device=quote(device, MAX_ID_CHARS, bare=True), reason=reason)
    svc.store.audit.add(entry)
    log_entry(entry)


async def _json_body(request: Request) -> Mapping[str, Any]:
    return await inbound.json_object(request, MAX_BODY_BYTES)


def _bad(name: str, reason: str) -> InvalidDevice:
    return InvalidDevice(f"{name}: {reason}", [Issue(path=name, reason=reason)])


def _utf8(value: Any, limit: int = MAX_ID_CHARS) -> bool:
    """A string of at most `limit` characters that UTF-8 can carry (JSON allows lone surrogates,
    which SQLite and the logs cannot store)."""
    if not isinstance(value, str) or len(value) > limit:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _id(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not _utf8(value) or not value:
        raise _bad(name, f"must be a string of 1..{MAX_ID_CHARS} characters")
    try:
        return check_id(name, value)
    except ValueError as exc:
        raise _bad(name, quote(str(exc), bare=True)) from None


def _labels(body: Mapping[str, Any]) -> dict[str, str]:
    value = body.get("labels", {})
    ok = isinstance(value, Mapping) and len(value) <= MAX_LABELS and all(
        _utf8(k) and _utf8(v) for k, v in value.items())
    if not ok:
        raise _bad("labels", f"must be an object of at most {MAX_LABELS} short string labels")
    return dict(value)


def _endpoints(value: Any) -> tuple[DeviceEndpoint, ...]:
    try:
        return parse_endpoints(value)
    except EndpointsInvalid as exc:
        raise _bad(exc.field, exc.reason) from None


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not _utf8(value, MAX_BODY_BYTES):
        raise _bad(name, "must be a string")
    return value


