"""Commissioning reports, hub side: ask an agent for one, take its answer, show it.

Rules:
- `POST /api/devices/{id}/commissioning` (operator) `{"seconds": s}` (default 3, at most
  contracts.commission_report.MAX_SECONDS) records a request with a fresh id and publishes it on
  the device's `…/commission` topic: 202 with the request; 503 if it could not be published (the
  row then shows `unsent`). Audited either way.
- The agent answers on `…/commission/report` (hub/sync/ decodes it and hands the reply here). The answer
  must name an open request of that same device (the topic's identity, invariant 10); the first
  answer counts, any other is ignored and logged. A report naming another device is refused.
- The wait is bounded: a request not answered within its `seconds` + ANSWER_MARGIN_S shows as
  `timed_out` (computed when shown, nothing to sweep); the hub never waits on the agent.
- `GET /api/devices/{id}/commissioning` (viewer): the newest request and, if that one is not
  answered, the newest answer as well, so a pending request does not hide the last report;
  `state: none` for a device never asked (404 only for an unknown device).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contracts.commission_report import MAX_SECONDS
from contracts.commission_wire import CommissionReply, CommissionRequest
from contracts.errors import Issue
from contracts.limits import quote
from contracts.types import EpochMs
from hub import inbound
from hub.audit import AuditAction, AuditEntry, Outcome, log_entry
from hub.inbound import BadBody
from hub.refusals import PublishFailed
from hub.service import HubService
from hub.store import HubStore
from hub.store.commissioning import CommissioningRecord

log = logging.getLogger("fieldpact.hub.commissioning")

DEFAULT_SECONDS = 3.0
ANSWER_MARGIN_S = 15.0
"""Beyond the poll itself: the agent may be finishing a round, and MQTT may queue the reply."""
MAX_BODY = 1024


async def request_report(svc: HubService, device_id: str, seconds: float, actor: str) -> CommissioningRecord:
    """Record and publish a request. Raises NotFound (no such device), PublishFailed."""
    device = svc.store.devices.get(device_id)
    rec = CommissioningRecord(id=uuid.uuid4().hex[:16], device=device.id, requested_ms=svc.clock(),
                              seconds=seconds, actor=actor)
    svc.store.commissioning.add(rec)
    payload = CommissionRequest(id=rec.id, seconds=seconds).to_bytes()
    try:
        await svc.publisher.request_commissioning(device.site, device.id, payload)
    except Exception as exc:  # any transport failure: audited, the row shows it unsent
        _audit(svc, actor, Outcome.FAILED, device.id, str(exc), request=rec.id)
        svc.store.commissioning.answer(rec.id, device.id, svc.clock(), report=None, ok=None,
                                       refused=f"unsent: {exc}"[:300])
        raise PublishFailed(f"commissioning request for {device.id} not sent: {exc}") from exc
    _audit(svc, actor, Outcome.OK, device.id, None, request=rec.id, seconds=seconds)
    return rec


def take_reply(store: HubStore, device: str, reply: CommissionReply, now_ms: EpochMs) -> bool:
    """Store an agent's answer from `…/commission/report` of `device` (decoded and bounded by
    hub/sync/messages.py); False if it answers no open request of that device or its report names
    another device."""
    report = reply.report
    if report is not None and report.device != device:
        log.warning("commission_report_refused device=%s names=%s", device, quote(report.device))
        return False
    taken = store.commissioning.answer(
        reply.id, device, now_ms, report=report.to_mapping() if report else None,
        ok=report.ok if report else None, refused=reply.refused)
    if not taken:
        log.warning("commission_report_ignored device=%s request=%s", device, quote(reply.id))
    else:
        log.info("commission_report device=%s request=%s ok=%s refused=%s", device, reply.id,
                 report.ok if report else None, quote(reply.refused))
    return taken


def state(rec: CommissioningRecord, now_ms: EpochMs) -> str:
    """pending, answered, refused, unsent or timed_out."""
    if rec.received_ms is not None:
        if rec.report is not None:
            return "answered"
        return "unsent" if (rec.refused or "").startswith("unsent") else "refused"
    deadline = rec.requested_ms + int((rec.seconds + ANSWER_MARGIN_S) * 1000)
    return "timed_out" if now_ms > deadline else "pending"


def view(rec: CommissioningRecord, now_ms: EpochMs) -> dict[str, Any]:
    return {"id": rec.id, "device": rec.device, "requested_ms": rec.requested_ms,
            "seconds": rec.seconds, "actor": rec.actor, "state": state(rec, now_ms),
            "received_ms": rec.received_ms, "ok": rec.ok, "refused": rec.refused,
            "report": rec.report}


def _audit(svc: HubService, actor: str, outcome: Outcome, device: str, reason: str | None,
           **detail: Any) -> None:
    entry = AuditEntry(ts_ms=svc.clock(), actor=actor, action=AuditAction.COMMISSION,
                       outcome=outcome, device=device, contract=None, reason=reason, detail=detail)
    svc.store.audit.add(entry)
    log_entry(entry)


# ---- the API -------------------------------------------------------------------------------------

async def request_commissioning(request: Request) -> Response:
    """Ask the device's agent for a commissioning report (read-only poll; answered on MQTT)."""
    doc = await inbound.json_object(request, MAX_BODY, '{"seconds": number}')
    unknown = sorted(str(k) for k in doc if k != "seconds")
    seconds = doc.get("seconds", DEFAULT_SECONDS)
    if unknown or isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not 0 < seconds <= MAX_SECONDS:
        raise BadBody('body must be {"seconds": number}', [
            Issue(path=unknown[0][:40] if unknown else "seconds",
                  reason="unknown field" if unknown else f"a number within 0..{MAX_SECONDS:g}")])
    svc = inbound.service(request)
    rec = await request_report(svc, request.path_params["device"], float(seconds),
                               inbound.actor(request))
    return JSONResponse(view(rec, svc.clock()), status_code=202)


async def get_commissioning(request: Request) -> Response:
    """The device's newest commissioning request, and its newest answer."""
    svc = inbound.service(request)
    device = svc.store.devices.get(request.path_params["device"]).id
    latest = svc.store.commissioning.latest(device)
    now = svc.clock()
    if latest is None:  # a device never asked: nothing yet, which is not an error
        return JSONResponse({"id": None, "device": device, "requested_ms": None, "seconds": None,
                             "actor": None, "state": "none", "received_ms": None, "ok": None,
                             "refused": None, "report": None, "last_answer": None})
    body = view(latest, now)
    answered = svc.store.commissioning.latest_answered(device)
    body["last_answer"] = view(answered, now) if answered is not None and answered.id != latest.id \
        else None
    return JSONResponse(body)
