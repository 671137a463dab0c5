"""The hub's HTTP API: the route table, JSON errors, and `create_app`.

Rules:
- Every error is JSON `{"error": message, "issues": [{"path", "reason"}]}` with a proper status:
  400 bad body, 401/403 (auth middleware), 404, 405, 409 conflict or illegal state, 413 too big,
  415 unsupported media type, 422 invalid contract, 503 publish failed.
- What a route reads off a request (caller, bounded bodies, query parameters) is hub/inbound.py;
  what it shows of a record is hub/views.py. The endpoints live by subject: hub/device_api.py,
  hub/contract_api.py, hub/operator_api.py (resume, reset, alarms), hub/registry_api.py,
  hub/history_api.py (reconciliations, audit), hub/commissioning.py, hub/deploy_api.py
  (deployments); the few about the hub
  itself are here.
- `create_app(service, auth_config, lifespan=...)` builds one app with its own metrics registry;
  the integrator adds the MQTT side in the lifespan.
- The operator page (`/`, `/static/*`, files in hub/static) is served beside the API but is not
  part of it: it is left out of ROUTES, so the OpenAPI document lists only the API.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Lifespan

from contracts.errors import Issue
from hub import deploy_api, drift_api, fleet_api, inbound, openapi, registry_api
from hub.auth import AuthConfig, AuthMiddleware
from hub.commissioning import get_commissioning, request_commissioning
from hub.contract_api import (abort_contract, get_contract, hold_contract, list_contracts,
                              reconcile_contract, submit_contract)
from hub.device_api import device_journal, device_series, get_device, list_devices
from hub.device_list import DeviceListCache
from hub.drift import DEFAULT_ALARM_AFTER_MS, DriftMonitor
from hub.fleet import Fleet
from hub.history_api import get_reconciliation, list_audit, list_reconciliations
from hub.metrics import CONTENT_TYPE, HubMetrics, LatencyMiddleware
from hub.operator_api import ack_alarm, list_alarms, reset_device, resume_contract
from hub.plans import Planner
from hub.refusals import RequestRefused
from hub.rollout import Deployments
from hub import rollout_engine
from hub.series import DecodedRows
from hub.series_window import SeriesWindows
from hub.service import HubService
from hub.store import NotFound
from hub.views import DEFAULT_SILENCE_MS


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


# ---- the hub itself -----------------------------------------------------------------------------

async def health(request: Request) -> Response:
    """The process answers (no auth); 503 once the hub's MQTT side has stopped, since a hub that
    still serves its API but no longer hears its devices must not look healthy to a monitor."""
    failure = inbound.service(request).mqtt_failure
    if failure is not None:
        return _error(503, f"the hub's MQTT side has {failure}")
    return JSONResponse({"status": "ok"})


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
    Route("/api/devices/{device}/series", device_series, methods=["GET"]),
    Route("/api/devices/{device}/commissioning", request_commissioning, methods=["POST"]),
    Route("/api/devices/{device}/commissioning", get_commissioning, methods=["GET"]),
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
    Route("/api/reconciliations/{reconciliation}", get_reconciliation, methods=["GET"]),
    Route("/api/audit", list_audit, methods=["GET"]),
    *fleet_api.ROUTES,
    *drift_api.ROUTES,
    *deploy_api.ROUTES,
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
)


# ---- the operator page --------------------------------------------------------------------------

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


def _with_drift_monitor(lifespan: Lifespan[Starlette] | None,
                        rollouts: bool) -> Lifespan[Starlette]:
    """The integrator's lifespan (if any), and the drift monitor and the rollout engine running
    inside it."""
    @contextlib.asynccontextmanager
    async def both(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            await stack.enter_async_context(drift_api.monitoring(app))
            if rollouts:
                await stack.enter_async_context(rollout_engine.running(app))
            yield

    return both


def create_app(service: HubService, auth_config: AuthConfig, *,
               lifespan: Lifespan[Starlette] | None = None,
               silence_timeout_ms: int = DEFAULT_SILENCE_MS,
               drift_alarm_after_ms: int = DEFAULT_ALARM_AFTER_MS,
               rollouts: bool = True) -> Starlette:
    """The hub's ASGI app: its own metrics registry; auth on every route but /health and the
    operator page (`/`, `/static/*`); the fleet configuration and its drift monitor; the rollout
    engine (`rollouts`: off only for tests of the deployment requests alone)."""
    hub_metrics = HubMetrics(service.store, lambda: service.remote_errors)
    app = Starlette(
        routes=[*ROUTES, *page_routes()],
        middleware=[Middleware(LatencyMiddleware, metrics=hub_metrics),
                    Middleware(AuthMiddleware, config=auth_config)],
        exception_handlers={RequestRefused: _refused, NotFound: _not_found,
                            HTTPException: _http_error},
        lifespan=_with_drift_monitor(lifespan, rollouts))
    app.state.service = service
    app.state.fleet = fleet = Fleet(service.store, service.registry, service.clock)
    app.state.drift = DriftMonitor(fleet, drift_alarm_after_ms)
    app.state.planner = planner = Planner(fleet)
    app.state.deployments = Deployments(service.store, fleet, planner, service.clock)
    app.state.silence_ms = silence_timeout_ms
    app.state.metrics = hub_metrics
    app.state.device_list = DeviceListCache()
    app.state.series_windows = SeriesWindows(DecodedRows())
    app.state.openapi = openapi.document(ROUTES)
    return app
