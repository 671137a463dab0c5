"""The devices as the API shows them: the fleet list, one device with its values, its journal.

Rules:
- A device's values are the sync side's live cache over the stored row (hub/views.py says how
  they are shown); the fleet list is the cached encoding of hub/device_list.py.
- A journal page is bounded (inbound.MAX_LIMIT): one request cannot pull a whole journal.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub import inbound
from hub.device_list import DeviceListCache
from hub.service import HubService
from hub.states import DeviceState
from hub.store import DeviceRecord
from hub.views import contracts_view, device_view, journal_view, with_live


def _device_alarms(svc: HubService, device: str | None = None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for a in svc.store.alarms.find(device=device):
        out.setdefault(a.device, []).append({"id": a.id, "kind": a.kind, "count": a.count,
                                             "acknowledged": a.acked_ms is not None})
    return out


def live_device(svc: HubService, device: str) -> DeviceRecord:
    """The stored device with the live values the sync side holds in memory. Raises NotFound."""
    return with_live(svc.store.devices.get(device), svc.live)


async def list_devices(request: Request) -> Response:
    """Every device the hub knows, by id."""
    state = inbound.enum_query(request, "state", DeviceState)
    cache: DeviceListCache = request.app.state.device_list
    return Response(cache.body(inbound.service(request).store, state),
                    media_type="application/json")


async def get_device(request: Request) -> Response:
    """One device: state, contract, last seen, values with age (read-back beside commanded) or
    projection (age, confidence), drift, active alarms."""
    svc = inbound.service(request)
    device = live_device(svc, request.path_params["device"])
    silence_ms = request.app.state.silence_ms
    view = device_view(device, svc.clock(), detail=True, silence_ms=silence_ms,
                       alarms=_device_alarms(svc, device.id).get(device.id, []))
    view["contracts"] = contracts_view(svc.live_contracts.get(device.id, {}), svc.clock(),
                                       silence_ms)
    return JSONResponse(view)


async def device_journal(request: Request) -> Response:
    """A page of a device's journal from `from_seq`, in seq order."""
    store = inbound.service(request).store
    device = store.devices.get(request.path_params["device"]).id
    from_seq = inbound.int_query(request, "from_seq", 0, 0, 2**63 - 1)
    limit = inbound.int_query(request, "limit", inbound.DEFAULT_LIMIT, 1, inbound.MAX_LIMIT)
    return JSONResponse([journal_view(r) for r in store.journal.rows(device, from_seq, limit)])
