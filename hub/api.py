"""The hub's HTTP API: Starlette routes over HubService and HubStore, JSON in and out.

Rules:
- Every error is JSON `{"error": message, "issues": [{"path", "reason"}]}` with a proper status:
  400 bad body, 401/403 (auth middleware), 404, 405, 409 conflict or illegal state, 413 too big,
  415 unsupported media type, 422 invalid contract, 503 publish failed.
- A contract body is YAML or JSON by Content-Type, decoded with the same strictness and bounds as
  contract files (YAML 1.2 booleans, duplicate keys, aliases and deep nesting refused) so a
  document means the same thing either way. Bodies are capped while streaming (413 at the cap, the
  rest never read), and decoding runs in the service's worker thread, never on the event loop.
- `create_app(service, auth_config, lifespan=...)` builds one app with its own metrics registry;
  the integrator adds the MQTT side in the lifespan.
- The operator page (`/`, `/static/*`, files in hub/static) is served beside the API but is not
  part of it: it is left out of ROUTES, so the OpenAPI document lists only the API.
"""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Lifespan

from contracts import codec
from contracts.errors import DocumentError, EncodingError, Issue
from contracts.limits import MAX_DOCUMENT_BYTES, clip, quote
from contracts.loader import decode_json, decode_yaml
from hub import inbound, openapi, registry_api
from hub.device_list import DeviceListCache
from hub.auth import AuthConfig, AuthMiddleware
from hub.metrics import CONTENT_TYPE, HubMetrics, LatencyMiddleware
from hub.audit import AuditAction
from hub.config import DEFAULT_SILENCE_TIMEOUT_S
from hub.operator_api import ack_alarm, list_alarms, reset_device, resume_contract
from hub.service import HubService, RequestRefused
from hub.views import engine_view, plain, shown_status, values_view, with_live
from hub.states import ContractStatus, DeviceState
from hub.store import ContractRecord, DeviceRecord, JournalRow, NotFound, ReconciliationRecord

JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
DEFAULT_LIMIT = 100
DEFAULT_SILENCE_MS = int(DEFAULT_SILENCE_TIMEOUT_S * 1000)
MAX_LIMIT = 1000
"""Pages are bounded so one request cannot pull a whole journal into memory."""


class BadRequest(RequestRefused):
    """A body or query parameter the API cannot read (400)."""


def _error(status: int, message: str, issues: tuple[Issue, ...] = ()) -> JSONResponse:
    body = {"error": message, "issues": [{"path": i.path, "reason": i.reason} for i in issues]}
    return JSONResponse(body, status_code=status)


async def _refused(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestRefused)
    return _error(int(exc.status), exc.message, exc.issues)


async def _not_found(_: Request, exc: Exception) -> Response:
    return _error(404, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = _error(exc.status_code, exc.detail)
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["Allow"] = _allowed(request)
    return response


def _allowed(request: Request) -> str:
    """Every method of every route at this path: Starlette's own Allow names only the first
    route that matched the path, and GET and POST /api/contracts are two routes."""
    path = request.url.path
    methods = {m for r in request.app.router.routes if isinstance(r, Route)
               and r.path_regex.match(path) for m in (r.methods or ())}
    return ", ".join(sorted(methods))


_actor, _service = inbound.actor, inbound.service


def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        reason = f"must be an integer within {low}..{high}, got {quote(raw)}"
        raise BadRequest(f"bad query parameter {name}", [Issue(path=name, reason=reason)])
    return value


def _enum_query(request: Request, name: str, cls: type[ContractStatus] | type[DeviceState]) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return cls(raw)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise BadRequest(f"bad query parameter {name}",
                         [Issue(path=name, reason=f"{quote(raw)} is not one of {allowed}")]) from None


# ---- bodies -------------------------------------------------------------------------------------

MAX_REASON_BYTES = 4096
"""A hold/abort reason is a sentence for the audit trail, not a document."""


_read_capped = inbound.read_capped


def _decode_document(body: bytes, media: str) -> Any:
    """Runs in a worker thread: YAML of a large contract takes a while (never on the loop)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"cannot decode the body as {media}: not UTF-8 (byte {exc.start})",
                         [Issue(path="<body>", reason="not UTF-8")]) from exc
    try:
        return decode_json(text, "<body>") if media in JSON_TYPES else decode_yaml(text, "<body>")
    except DocumentError as exc:
        raise BadRequest(f"cannot decode the body as {media}: {exc}",
                         [Issue(path="<body>", reason=str(exc))]) from exc


async def _document(request: Request) -> tuple[bytes, str]:
    """The raw contract body (capped while streaming) and its media type; decoding happens in
    the service's worker thread (`_decode_document`)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES | YAML_TYPES:
        raise HTTPException(415, f"send the contract as application/json or application/yaml, "
                                 f"not {clip(media) or 'no content type'!r}")
    return await _read_capped(request, MAX_DOCUMENT_BYTES), media


async def _reason(request: Request) -> str | None:
    """Optional `{"reason": "..."}` JSON body of hold/abort."""
    body = await _read_capped(request, MAX_REASON_BYTES)
    if not body:
        return None
    try:
        reason = decode_json(body.decode("utf-8"), "<body>").get("reason")
    except (DocumentError, UnicodeDecodeError, AttributeError) as exc:
        raise BadRequest("body must be a JSON object {\"reason\": string}",
                         [Issue(path="<body>", reason=clip(str(exc)))]) from exc
    if reason is not None and not isinstance(reason, str):
        raise BadRequest("reason must be a string", [Issue(path="reason", reason="not a string")])
    return reason


# ---- views: records to JSON ---------------------------------------------------------------------

def device_view(d: DeviceRecord, now: int, *, detail: bool = False,
                silence_ms: int = DEFAULT_SILENCE_MS,
                alarms: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": d.id, "site": d.site, "labels": dict(d.labels), "state": d.state.value,
        "state_since_ms": d.state_since_ms, "last_seen_ms": d.last_seen_ms,
        "contract": d.contract, "version": d.version, "last_seq": d.last_seq,
        "acked_seq": d.acked_seq}
    if alarms is not None:
        view["alarms"] = alarms
    if detail:
        seen_age = now - d.last_seen_ms if d.last_seen_ms is not None else None
        view |= {"boot_id": d.boot_id, "values": values_view(d, now, silence_ms),
                 "last_seen_age_ms": seen_age,
                 "drift": dict(d.drift) if d.drift is not None else None}
    return view


def contract_view(c: ContractRecord, *, detail: bool = False,
                  engine: dict[str, Any] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": c.id, "contract": c.contract, "version": c.version, "device": c.device,
        "site": c.site, "status": shown_status(c, engine), "lifecycle": c.status.value,
        "engine": engine, "lineage": c.lineage or c.id, "content_hash": c.content_hash,
        "created_ms": c.created_ms, "updated_ms": c.updated_ms, "reason": c.reason}
    if detail:
        view |= {"document": c.document, "signed": base64.b64encode(c.signed).decode()}
    return view


def _journal_view(r: JournalRow) -> dict[str, Any]:
    try:
        body = plain(codec.loads(r.body))
    except EncodingError:
        body = {"raw_b64": base64.b64encode(r.body).decode()}
    return {"seq": r.seq, "ts_ms": r.ts_ms, "kind": r.kind, "body": body,
            "prev_hash": r.prev_hash.hex(), "hash": r.hash.hex()}


def _reconciliation_view(r: ReconciliationRecord) -> dict[str, Any]:
    return {"id": r.id, "device": r.device, "contract": r.contract, "version": r.version,
            "ts_ms": r.ts_ms, "report": r.report, "divergent": r.divergent, "action": r.action}


# ---- endpoints ----------------------------------------------------------------------------------

async def health(request: Request) -> Response:
    """The process answers (no auth); 503 once the hub's MQTT side has stopped, since a hub that
    still serves its API but no longer hears its devices must not look healthy to a monitor."""
    failure = _service(request).mqtt_failure
    if failure is not None:
        return _error(503, f"the hub's MQTT side has {failure}")
    return JSONResponse({"status": "ok"})


def _device_alarms(svc: HubService, device: str | None = None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for a in svc.store.alarms(device=device):
        out.setdefault(a.device, []).append({"id": a.id, "kind": a.kind, "count": a.count,
                                             "acknowledged": a.acked_ms is not None})
    return out


async def list_devices(request: Request) -> Response:
    """Every device the hub knows, by id."""
    state = _enum_query(request, "state", DeviceState)
    cache: DeviceListCache = request.app.state.device_list
    return Response(cache.body(_service(request).store, state), media_type="application/json")


def _device(svc: HubService, device: str) -> DeviceRecord:
    """The stored device with the live values the sync side holds in memory. Raises NotFound."""
    return with_live(svc.store.device(device), svc.live)


async def get_device(request: Request) -> Response:
    """One device: state, contract, last seen, values with age (read-back beside commanded) or
    projection (age, confidence), drift, active alarms."""
    svc = _service(request)
    device = _device(svc, request.path_params["device"])
    return JSONResponse(device_view(device, svc.clock(), detail=True,
                                    silence_ms=request.app.state.silence_ms,
                                    alarms=_device_alarms(svc, device.id).get(device.id, [])))


async def device_journal(request: Request) -> Response:
    """A page of a device's journal from `from_seq`, in seq order."""
    store = _service(request).store
    device = store.device(request.path_params["device"]).id
    from_seq = _int_query(request, "from_seq", 0, 0, 2**63 - 1)
    limit = _int_query(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return JSONResponse([_journal_view(r) for r in store.journal(device, from_seq, limit)])


async def submit_contract(request: Request) -> Response:
    """Check, sign, store and push a contract (YAML or JSON body)."""
    body, media = await _document(request)
    svc = _service(request)
    document = await svc.worker.run(_decode_document, body, media)
    record = await svc.submit_contract(document, _actor(request))
    return JSONResponse(contract_view(record), status_code=201,
                        headers={"Location": f"/api/contracts/{record.id}"})


async def list_contracts(request: Request) -> Response:
    """Contract versions, filtered by `device` and `status`."""
    svc = _service(request)
    status = _enum_query(request, "status", ContractStatus)
    records = svc.store.contracts(device=request.query_params.get("device"), status=status)
    devices = {d.id: with_live(d, svc.live) for d in svc.store.devices()}
    now = svc.clock()
    return JSONResponse([contract_view(c, engine=engine_view(c, devices.get(c.device), now))
                         for c in records])


async def get_contract(request: Request) -> Response:
    """One contract version ("name@version") with its document and signed bytes (base64), the
    device's engine mode for it, and the last resume asked and the agent's answer."""
    svc = _service(request)
    record = svc.store.contract(request.path_params["contract"])
    try:
        device: DeviceRecord | None = _device(svc, record.device)
    except NotFound:
        device = None
    view = contract_view(record, detail=True, engine=engine_view(record, device, svc.clock()))
    resumes = [e for e in svc.store.audit(contract=record.id, limit=50)
               if e.action is AuditAction.RESUME]
    view["last_resume"] = [{"ts_ms": e.ts_ms, "actor": e.actor, "outcome": e.outcome.value,
                            "reason": e.reason} for e in resumes[:2]]
    return JSONResponse(view)


async def reconcile_contract(request: Request) -> Response:
    """Ask the sync side to reconcile this contract's device now."""
    cid = request.path_params["contract"]
    request_id, new = _service(request).request_reconcile(cid, _actor(request))
    # 202 for a new request; 200 with the open (or just finished) one that absorbed a repeat.
    return JSONResponse({"request": request_id, "contract": cid, "absorbed": not new},
                        status_code=202 if new else 200)


async def hold_contract(request: Request) -> Response:
    """Send HOLD to the agent: keep outputs, stop advancing steps."""
    svc, cid = _service(request), request.path_params["contract"]
    record = await svc.hold(cid, _actor(request), await _reason(request))
    return JSONResponse(contract_view(record))


async def abort_contract(request: Request) -> Response:
    """Send ABORT to the agent: outputs to safe_state, contract ends."""
    svc, cid = _service(request), request.path_params["contract"]
    record = await svc.abort(cid, _actor(request), await _reason(request))
    return JSONResponse(contract_view(record))


async def list_reconciliations(request: Request) -> Response:
    """Reconciliation reports, newest first, optionally for one `device`."""
    limit = _int_query(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    records = _service(request).store.reconciliations(request.query_params.get("device"), limit)
    return JSONResponse([_reconciliation_view(r) for r in records])


async def list_audit(request: Request) -> Response:
    """The audit trail, newest first, optionally for one `device` or `contract`."""
    q = request.query_params
    limit = _int_query(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    entries = _service(request).store.audit(contract=q.get("contract"), device=q.get("device"),
                                            limit=limit)
    return JSONResponse([{"id": e.id, "ts_ms": e.ts_ms, "actor": e.actor,
                          "action": e.action.value, "outcome": e.outcome.value,
                          "device": e.device, "contract": e.contract, "reason": e.reason,
                          "detail": dict(e.detail)} for e in entries])


async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this hub's registry."""
    hub_metrics: HubMetrics = request.app.state.metrics
    return Response(hub_metrics.render(), media_type=CONTENT_TYPE)


async def openapi_json(request: Request) -> Response:
    """This API's OpenAPI 3.1 document."""
    return JSONResponse(request.app.state.openapi)


ROUTES = (
    Route("/health", health, methods=["GET"]),
    Route("/api/devices", list_devices, methods=["GET"]),
    Route("/api/devices/{device}", get_device, methods=["GET"]),
    Route("/api/devices/{device}/journal", device_journal, methods=["GET"]),
    *registry_api.ROUTES,
    Route("/api/contracts", submit_contract, methods=["POST"]),
    Route("/api/contracts", list_contracts, methods=["GET"]),
    Route("/api/contracts/{contract}", get_contract, methods=["GET"]),
    Route("/api/contracts/{contract}/reconcile", reconcile_contract, methods=["POST"]),
    Route("/api/contracts/{contract}/hold", hold_contract, methods=["POST"]),
    Route("/api/contracts/{contract}/abort", abort_contract, methods=["POST"]),
    Route("/api/contracts/{contract}/resume", resume_contract, methods=["POST"]),
    Route("/api/devices/{device}/reset", reset_device, methods=["POST"]),
    Route("/api/alarms", list_alarms, methods=["GET"]),
    Route("/api/alarms/{alarm}/ack", ack_alarm, methods=["POST"]),
    Route("/api/reconciliations", list_reconciliations, methods=["GET"]),
    Route("/api/audit", list_audit, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
)


STATIC_DIR = Path(__file__).parent / "static"
PAGE_HEADERS = {
    # The page loads only its own files; frame-ancestors stops another site framing the
    # Hold/Abort buttons (clickjacking); no-cache so an upgraded hub serves the new page.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


async def operator_page(request: Request) -> Response:
    """The operator web page (public: it asks for a token and sends it on every API call)."""
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


def page_routes() -> list[BaseRoute]:
    """`/` and `/static/*`; auth.required_role exempts exactly these (GET/HEAD)."""
    return [Route("/", operator_page, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static")]


def create_app(service: HubService, auth_config: AuthConfig, *,
               lifespan: Lifespan[Starlette] | None = None,
               silence_timeout_ms: int = DEFAULT_SILENCE_MS) -> Starlette:
    """The hub's ASGI app: its own metrics registry; auth on every route but /health and the
    operator page (`/`, `/static/*`)."""
    hub_metrics = HubMetrics(service.store, lambda: service.remote_errors)
    app = Starlette(
        routes=[*ROUTES, *page_routes()],
        middleware=[Middleware(LatencyMiddleware, metrics=hub_metrics),
                    Middleware(AuthMiddleware, config=auth_config)],
        exception_handlers={RequestRefused: _refused, NotFound: _not_found,
                            HTTPException: _http_error},
        lifespan=lifespan)
    app.state.service = service
    app.state.silence_ms = silence_timeout_ms
    app.state.metrics = hub_metrics
    app.state.device_list = DeviceListCache()
    app.state.openapi = openapi.document(ROUTES)
    return app
