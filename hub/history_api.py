"""What happened, through the API: reconciliation reports and the audit trail, newest first.

Both are paged (inbound.MAX_LIMIT) and filtered by device (and the audit by contract id). A
report's value trajectories (hub/trajectory.py: tens of kB) are left out of the list, which the
page reads every refresh (`trajectory_points` says how many it has); one reconciliation by id has
them in full.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub import inbound
from hub.store import NotFound
from hub.views import reconciliation_view


async def list_reconciliations(request: Request) -> Response:
    """Reconciliation reports, newest first, optionally for one `device`."""
    limit = inbound.int_query(request, "limit", inbound.DEFAULT_LIMIT, 1, inbound.MAX_LIMIT)
    records = inbound.service(request).store.reconciliations.find(
        request.query_params.get("device"), limit)
    return JSONResponse([_listed(reconciliation_view(r)) for r in records])


def _listed(view: dict[str, Any]) -> dict[str, Any]:
    report = view.get("report")
    if isinstance(report, dict) and "trajectory" in report:
        shown = {k: v for k, v in report.items() if k != "trajectory"}
        trajectory = report["trajectory"]
        view = {**view, "report": shown,
                "trajectory_points": len(trajectory) if isinstance(trajectory, list) else 0}
    return view


async def get_reconciliation(request: Request) -> Response:
    """One reconciliation report in full, with the outage's projected and actual value
    trajectories (`report.trajectory`)."""
    raw = request.path_params["reconciliation"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound("reconciliation", raw)
    store = inbound.service(request).store
    return JSONResponse(reconciliation_view(store.reconciliations.get(int(raw))))


async def list_audit(request: Request) -> Response:
    """The audit trail, newest first, optionally for one `device` or `contract`."""
    q = request.query_params
    limit = inbound.int_query(request, "limit", inbound.DEFAULT_LIMIT, 1, inbound.MAX_LIMIT)
    entries = inbound.service(request).store.audit.find(
        contract=q.get("contract"), device=q.get("device"), limit=limit)
    return JSONResponse([{"id": e.id, "ts_ms": e.ts_ms, "actor": e.actor,
                          "action": e.action.value, "outcome": e.outcome.value,
                          "device": e.device, "contract": e.contract, "reason": e.reason,
                          "detail": dict(e.detail)} for e in entries])
