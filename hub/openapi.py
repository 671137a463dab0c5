"""The OpenAPI 3.1 document of the hub API, generated from the route table so it cannot drift.

Each operation takes its summary from the endpoint's docstring, its required role from
`hub.auth.required_role` (the same table the middleware enforces), its path parameters from the
path, its query parameters and success status from the small tables below, and its request body
from hub/openapi_bodies.py.

Error statuses are derived from the route's shape, so a new route is documented correctly without
a table entry: an authenticated route can answer 401/403, a path parameter 404, a query parameter
400, a body 400 and 413 (bodies are capped while streaming). Only what an endpoint decides for
itself (409 conflict, 415, 422, 503) is listed per endpoint in `_ERRORS_BY_ENDPOINT`.
tests/hub/test_openapi.py walks the app's routes and checks every status each one really returns
is documented.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.routing import Route

from hub.alarms import AlarmKind
from hub.auth import required_role
from hub.openapi_bodies import BODY_ENDPOINTS, bodies
from hub.states import ContractStatus, DeviceState

TITLE = "fieldpact hub"
API_VERSION = "1"

_LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000}
_TEXT = {"type": "string"}
_BOOL = {"type": "string", "enum": ["true", "false"]}
_QUERY: Mapping[str, tuple[tuple[str, Mapping[str, Any], str], ...]] = {
    # endpoint -> (name, JSON schema, description); the bounds are those hub/inbound.py enforces
    "list_devices": (("state", {"type": "string", "enum": [s.value for s in DeviceState]},
                      "only devices in this state"),),
    "device_journal": (("from_seq", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                        "first seq to return (default 0)"),
                       ("limit", _LIMIT, "page size, 1..1000 (default 100)")),
    "device_series": (("limit", _LIMIT, "journal entries scanned back from the newest, 1..1000 "
                                        "(default 500)"),
                      ("after_seq", {"type": "integer", "minimum": -1, "maximum": 2**63 - 1},
                       "only what the window holds after this seq (the `to_seq` of an earlier "
                       "answer); -1 or absent: the whole window")),
    "list_contracts": (("device", _TEXT, "only this device's contracts"),
                       ("status", {"type": "string", "enum": [s.value for s in ContractStatus]},
                        "only contracts in this status")),
    "list_reconciliations": (("device", _TEXT, "only this device"),
                             ("limit", _LIMIT, "page size, 1..1000 (default 100)")),
    "list_audit": (("device", _TEXT, "only this device"), ("contract", _TEXT,
                   "only this contract id (name@version)"),
                   ("limit", _LIMIT, "page size, 1..1000 (default 100)")),
    "list_bindings": (("all", _BOOL, "true: every revision; default: the latest of each"),),
    "list_snapshots": (("limit", _LIMIT, "page size, 1..1000 (default 100)"),),
    "list_deployments": (("limit", _LIMIT, "page size, 1..1000 (default 100)"),),
    "list_alarms": (("device", _TEXT, "only this device"),
                    ("kind", {"type": "string", "enum": [k.value for k in AlarmKind]},
                     "only this alarm kind"),
                    ("active", _BOOL, "true (default): active alarms; false: cleared ones"),
                    ("acknowledged", _BOOL, "only acknowledged (true) or unacknowledged")),
}

_SUCCESS: Mapping[str, tuple[str, str]] = {
    "submit_contract": ("201", "stored, signed and pushed"),
    "reconcile_contract": ("202", "request recorded"),
    "resume_contract": ("202", "RESUME sent; the agent decides (see the journal and alarms)"),
    "register_device": ("201", "registered"),
    "create_design": ("201", "design version stored"),
    "create_binding": ("201", "binding revision stored"),
    "create_snapshot": ("201", "snapshot made"),
    "request_commissioning": ("202", "request published; GET shows the agent's answer"),
    "create_deployment": ("201", "planned and stored; the engine starts it"),
}

_ALSO: Mapping[str, tuple[tuple[str, str], ...]] = {
    # endpoint -> further success statuses
    "reconcile_contract": (("200", "absorbed into the open (or just made) request for this "
                                   "contract, whose id is returned"),),
    "create_snapshot": (("200", "the same content was snapshotted before: that snapshot"),),
}

_ERRORS: Mapping[str, str] = {
    "400": "unreadable body or query parameter", "401": "missing or invalid bearer token",
    "403": "role too weak", "404": "no such device, contract, design, binding or snapshot",
    "413": "body larger than the route's limit",
    "409": "write conflict, stale version or illegal state",
    "415": "unsupported content type",
    "422": "invalid contract or device (every issue listed), or a required reason missing",
    "503": "accepted but not published to the agent (/health: the hub's MQTT side has stopped)",
}
_ERRORS_BY_ENDPOINT: Mapping[str, tuple[str, ...]] = {
    # what the endpoint itself decides, beyond the statuses its shape implies (see the docstring)
    "health": ("503",),
    "submit_contract": ("409", "415", "422", "503"),
    "hold_contract": ("409", "503"),
    "abort_contract": ("409", "503"),
    "resume_contract": ("409", "422", "503"),  # 422: no reason
    "reset_device": ("409", "422"),
    "ack_alarm": ("400",),                     # an alarm id that is not an integer
    "register_device": ("409", "422"), "remove_device": ("409",),
    "enroll_journal_key": ("409", "422"), "set_endpoints": ("409", "422"),
    "create_design": ("409", "422"), "create_binding": ("422",),
    "create_snapshot": ("404", "422"),      # 404: a design or binding the hub does not have
    "get_snapshot": ("422",),               # stored by a hub whose format this one cannot read
    "diff_snapshots": ("422",),
    "create_plan": ("422",), "set_desired": ("422",),  # 422 also: a snapshot the hub lacks
    "request_commissioning": ("503",),
    "create_deployment": ("409", "422"),     # 409: its devices are in another deployment
    **{f"{verb}_deployment": ("409",) for verb in ("pause", "resume", "approve", "retry")},
    "rollback_deployment": ("409", "422"),   # 422: no reason
}

_ERROR_SCHEMA = {
    "type": "object", "required": ["error", "issues"],
    "properties": {"error": {"type": "string"}, "issues": {"type": "array", "items": {
        "type": "object", "properties": {"path": {"type": "string"},
                                         "reason": {"type": "string"}}}}},
}
_PATH: Mapping[str, Mapping[str, Any]] = {
    "alarm": {"type": "string", "pattern": "^[0-9]{1,18}$"},  # hub/operator_api.py ack_alarm
    "reconciliation": {"type": "string", "pattern": "^[0-9]{1,18}$"},  # hub/history_api.py
}


def _parameters(path: str, endpoint: str) -> list[dict[str, Any]]:
    params = [{"name": name, "in": "path", "required": True,
               "schema": dict(_PATH.get(name, {"type": "string"}))}
              for name in re.findall(r"{(\w+)}", path)]
    params += [{"name": n, "in": "query", "required": False, "schema": dict(schema),
                "description": d} for n, schema, d in _QUERY.get(endpoint, ())]
    return params


def error_codes(path: str, endpoint: str, public: bool) -> list[str]:
    """Every error status `endpoint` at `path` can answer with, derived from its shape."""
    codes = set(_ERRORS_BY_ENDPOINT.get(endpoint, ()))
    if not public:
        codes |= {"401", "403"}
    if "{" in path:
        codes.add("404")
    if _QUERY.get(endpoint):
        codes.add("400")
    if endpoint in BODY_ENDPOINTS:
        codes |= {"400", "413"}
    return sorted(codes)


def _responses(path: str, endpoint: str, public: bool) -> dict[str, Any]:
    code, text = _SUCCESS.get(endpoint, ("200", "OK"))
    out: dict[str, Any] = {code: {"description": text}}
    out |= {c: {"description": t} for c, t in _ALSO.get(endpoint, ())}
    for c in error_codes(path, endpoint, public):
        out[c] = {"description": _ERRORS.get(c, "error"), "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
    return out


def _operation(route: Route, method: str) -> dict[str, Any]:
    name = route.endpoint.__name__
    role = required_role(method, route.path)
    op: dict[str, Any] = {
        "operationId": name,
        "summary": (route.endpoint.__doc__ or name).strip().splitlines()[0],
        "parameters": _parameters(route.path, name),
        "responses": _responses(route.path, name, public=role is None),
        "security": [] if role is None else [{"bearer": []}],
    }
    if role is not None:
        op["x-required-role"] = role.name.lower()
    if name in BODY_ENDPOINTS:
        op["requestBody"] = bodies()[name]
    return op


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes` (HEAD, which Starlette adds to GETs, is left out)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                paths.setdefault(route.path, {})[method.lower()] = _operation(route, method)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": API_VERSION},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR_SCHEMA},
        },
    }
