"""The operator's way out of a trip: resume, reset, alarms — HTTP endpoints over HubService.

Rules:
- Resume (operator) and reset (admin) need a reason: `{"reason": "..."}`, non-empty, at most
  MAX_REASON characters; a missing one is 422 naming `reason`. Both are audited, refusals too.
- A resume is 202: the command is sent, and the agent decides. It refuses while the trip's cause
  persists (journaled; the hub shows it as a `resume_refused` alarm, in the audit trail and in the
  contract's `last_resume`), and the contract leaves `tripped` only when the journal shows it
  resumed.
- Alarms are listed with their count, first and last time, acknowledgement; acknowledging one
  (operator) is audited and does not clear it.
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contracts.errors import Issue
from contracts.limits import clip
from hub.alarms import AlarmKind
from hub import inbound
from hub.inbound import BadBody
from hub.refusals import RequestRefused
from hub.store import Alarm

MAX_REASON = 500
"""An operator's reason is a sentence for the audit trail, not a document."""
MAX_REASON_BODY = 8192
"""Room for MAX_REASON characters however they are escaped (12 bytes for a \\u surrogate pair)."""
MAX_ALARMS = 1000


class MissingReason(RequestRefused):
    status = HTTPStatus.UNPROCESSABLE_ENTITY


async def required_reason(request: Request) -> str:
    """The body's `reason`. Raises 413 over MAX_REASON_BODY (capped while streaming), BadBody
    (400) for an unreadable body, MissingReason (422) for a missing or empty reason."""
    doc = await inbound.json_object(request, MAX_REASON_BODY, '{"reason": string}')
    unknown = sorted(k for k in doc if k != "reason")
    if unknown:
        raise MissingReason("unknown fields", [Issue(path=clip(str(k)), reason="unknown field")
                                               for k in unknown[:5]])
    reason = doc.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise MissingReason("a reason is required",
                            [Issue(path="reason", reason="required: a non-empty string")])
    if len(reason) > MAX_REASON:
        raise MissingReason("reason is too long",
                            [Issue(path="reason", reason=f"at most {MAX_REASON} characters")])
    return reason.strip()


def alarm_view(a: Alarm) -> dict[str, Any]:
    return {"id": a.id, "device": a.device, "kind": a.kind, "detail": a.detail,
            "first_ms": a.ts_ms, "last_ms": a.last_ms or a.ts_ms, "count": a.count,
            "active": a.active, "cleared_ms": a.cleared_ms, "acknowledged": a.acked_ms is not None,
            "acked_ms": a.acked_ms, "acked_by": a.acked_by}


# ---- endpoints ----------------------------------------------------------------------------------

async def resume_contract(request: Request) -> Response:
    """Send RESUME to the agent for a tripped or held contract (reason required)."""
    svc, cid = inbound.service(request), request.path_params["contract"]
    reason = await required_reason(request)
    command = await svc.resume(cid, inbound.actor(request), reason)
    return JSONResponse({"contract": cid, "command": command.id, "status": "sent"},
                        status_code=202)


async def reset_device(request: Request) -> Response:
    """Reset a device out of FAULT (admin, reason required)."""
    svc = inbound.service(request)
    reason = await required_reason(request)
    device = svc.reset_device(request.path_params["device"], inbound.actor(request), reason)
    return JSONResponse({"id": device.id, "state": device.state.value})


async def list_alarms(request: Request) -> Response:
    """Alarms: active ones (oldest first) by default, or `active=false` for cleared ones (newest
    first); filter by `device`, `kind`, `acknowledged`."""
    q = request.query_params
    kind = q.get("kind")
    if kind is not None and kind not in {k.value for k in AlarmKind}:
        allowed = ", ".join(k.value for k in AlarmKind)
        raise BadBody("bad query parameter kind",
                      [Issue(path="kind", reason=f"{kind[:40]!r} is not one of {allowed}")])
    active = inbound.bool_query(request, "active")
    alarms = inbound.service(request).store.alarms.find(
        device=q.get("device"), kind=kind, acknowledged=inbound.bool_query(request, "acknowledged"),
        limit=MAX_ALARMS, cleared_only=active is False)
    return JSONResponse([alarm_view(a) for a in alarms])


async def ack_alarm(request: Request) -> Response:
    """Acknowledge an alarm (operator; audited). It stays active until its condition clears."""
    raw = request.path_params["alarm"]
    if not raw.isdigit() or len(raw) > 18:
        raise BadBody("bad alarm id", [Issue(path="alarm", reason="must be an integer id")])
    alarm = inbound.service(request).ack_alarm(int(raw), inbound.actor(request))
    return JSONResponse(alarm_view(alarm))
