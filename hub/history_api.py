"""What happened, through the API: reconciliation reports and the audit trail, newest first.

Both are paged (inbound.MAX_LIMIT) and filtered by device (and the audit by contract id).
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub import inbound
from hub.views import reconciliation_view


async def list_reconciliations(request: Request) -> Response:
    """Reconciliation reports, newest first, optionally for one `device`."""
    limit = inbound.int_query(request, "limit", inbound.DEFAULT_LIMIT, 1, inbound.MAX_LIMIT)
    records = inbound.service(request).store.reconciliations.find(
        request.query_params.get("device"), limit)
    return JSONResponse([reconciliation_view(r) for r in records])


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
