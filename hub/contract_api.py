"""Contracts through the API: submit (YAML or JSON), list, read, reconcile now, hold, abort.

Rules:
- A contract body is YAML or JSON by Content-Type, decoded with the same strictness and bounds as
  contract files (YAML 1.2 booleans, duplicate keys, aliases and deep nesting refused) so a
  document means the same thing either way. Bodies are capped while streaming (413 at the cap, the
  rest never read), and decoding runs in the service's worker thread, never on the event loop.
- Hold and abort take an optional `{"reason": "..."}`; resume (hub/operator_api.py) requires one.
"""
from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contracts.errors import DocumentError, Issue
from contracts.limits import MAX_DOCUMENT_BYTES, clip
from contracts.loader import decode_json, decode_yaml
from hub import inbound
from hub.audit import AuditAction
from hub.device_api import live_device
from hub.inbound import BadBody
from hub.states import ContractStatus
from hub.store import DeviceRecord, NotFound
from hub.views import contract_view, engine_view, with_live

JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
MAX_REASON_BYTES = 4096
"""A hold/abort reason is a sentence for the audit trail, not a document."""


# ---- bodies -------------------------------------------------------------------------------------

def _decode_document(body: bytes, media: str) -> Any:
    """Runs in a worker thread: YAML of a large contract takes a while (never on the loop)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"cannot decode the body as {media}: not UTF-8 (byte {exc.start})",
                      [Issue(path="<body>", reason="not UTF-8")]) from exc
    try:
        return decode_json(text, "<body>") if media in JSON_TYPES else decode_yaml(text, "<body>")
    except DocumentError as exc:
        raise BadBody(f"cannot decode the body as {media}: {exc}",
                      [Issue(path="<body>", reason=str(exc))]) from exc


async def _document(request: Request) -> tuple[bytes, str]:
    """The raw contract body (capped while streaming) and its media type; decoding happens in
    the service's worker thread (`_decode_document`)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES | YAML_TYPES:
        raise HTTPException(415, f"send the contract as application/json or application/yaml, "
                                 f"not {clip(media) or 'no content type'!r}")
    return await inbound.read_capped(request, MAX_DOCUMENT_BYTES), media


async def _reason(request: Request) -> str | None:
    """Optional `{"reason": "..."}` JSON body of hold/abort."""
    body = await inbound.read_capped(request, MAX_REASON_BYTES)
    if not body:
        return None
    try:
        reason = decode_json(body.decode("utf-8"), "<body>").get("reason")
    except (DocumentError, UnicodeDecodeError, AttributeError) as exc:
        raise BadBody("body must be a JSON object {\"reason\": string}",
                      [Issue(path="<body>", reason=clip(str(exc)))]) from exc
    if reason is not None and not isinstance(reason, str):
        raise BadBody("reason must be a string", [Issue(path="reason", reason="not a string")])
    return reason


# ---- endpoints ----------------------------------------------------------------------------------

async def submit_contract(request: Request) -> Response:
    """Check, sign, store and push a contract (YAML or JSON body)."""
    body, media = await _document(request)
    svc = inbound.service(request)
    document = await svc.worker.run(_decode_document, body, media)
    record = await svc.submit_contract(document, inbound.actor(request))
    return JSONResponse(contract_view(record), status_code=201,
                        headers={"Location": f"/api/contracts/{record.id}"})


async def list_contracts(request: Request) -> Response:
    """Contract versions, filtered by `device` and `status`."""
    svc = inbound.service(request)
    status = inbound.enum_query(request, "status", ContractStatus)
    records = svc.store.contracts.find(device=request.query_params.get("device"), status=status)
    devices = {d.id: with_live(d, svc.live) for d in svc.store.devices.find()}
    now = svc.clock()
    return JSONResponse([contract_view(c, engine=engine_view(c, devices.get(c.device), now))
                         for c in records])


async def get_contract(request: Request) -> Response:
    """One contract version ("name@version") with its document and signed bytes (base64), the
    device's engine mode for it, and the last resume asked and the agent's answer."""
    svc = inbound.service(request)
    record = svc.store.contracts.get(request.path_params["contract"])
    try:
        device: DeviceRecord | None = live_device(svc, record.device)
    except NotFound:
        device = None
    view = contract_view(record, detail=True, engine=engine_view(record, device, svc.clock()))
    resumes = [e for e in svc.store.audit.find(contract=record.id, limit=50)
               if e.action is AuditAction.RESUME]
    view["last_resume"] = [{"ts_ms": e.ts_ms, "actor": e.actor, "outcome": e.outcome.value,
                            "reason": e.reason} for e in resumes[:2]]
    return JSONResponse(view)


async def reconcile_contract(request: Request) -> Response:
    """Ask the sync side to reconcile this contract's device now."""
    cid = request.path_params["contract"]
    request_id, new = inbound.service(request).request_reconcile(cid, inbound.actor(request))
    # 202 for a new request; 200 with the open (or just finished) one that absorbed a repeat.
    return JSONResponse({"request": request_id, "contract": cid, "absorbed": not new},
                        status_code=202 if new else 200)


async def hold_contract(request: Request) -> Response:
    """Send HOLD to the agent: keep outputs, stop advancing steps."""
    svc, cid = inbound.service(request), request.path_params["contract"]
    record = await svc.hold(cid, inbound.actor(request), await _reason(request))
    return JSONResponse(contract_view(record))


async def abort_contract(request: Request) -> Response:
    """Send ABORT to the agent: outputs to safe_state, contract ends."""
    svc, cid = inbound.service(request), request.path_params["contract"]
    record = await svc.abort(cid, inbound.actor(request), await _reason(request))
    return JSONResponse(contract_view(record))
