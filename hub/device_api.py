"""The devices as the API shows them: the fleet list, one device with its values, its journal.

Rules:
- A device's values are the sync side's live cache over the stored row (hub/views.py says how
  they are shown); the fleet list is the cached encoding of hub/device_list.py.
- A journal page is bounded (inbound.MAX_LIMIT): one request cannot pull a whole journal; so is
  the window of recent values (hub/series.py folds the journal's readings into series).
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub import inbound, series
from hub.device_list import DeviceListCache
from hub.series_window import SeriesWindows
from hub.service import HubService
from hub.states import DeviceState
from hub.store import DeviceRecord, HubStore, NotFound, contract_id
from hub.views import contracts_view, device_view, journal_view, with_live


def live_device(svc: HubService, device: str) -> DeviceRecord:
    """The stored device with the live values the sync side holds in memory. Raises NotFound."""
    return with_live(svc.store.devices.get(device), svc.live)


async def list_devices(request: Request) -> Response:
    """Every device the hub knows, by id."""
    state = inbound.enum_query(request, "state", DeviceState)
    cache: DeviceListCache = request.app.state.device_list
    svc = inbound.service(request)
    return Response(cache.body(svc.store, state, svc.registry.endpoints_by_device(),
                               svc.registry.generation),
                    media_type="application/json")


async def get_device(request: Request) -> Response:
    """One device: state, contract, last seen, values with age (read-back beside commanded) or
    projection (age, confidence), drift, active alarms."""
    svc = inbound.service(request)
    stored, active = svc.store.devices.detail(request.path_params["device"])  # one statement
    device = with_live(stored, svc.live)
    silence_ms = request.app.state.silence_ms
    alarms = [{"id": i, "kind": kind, "count": count, "acknowledged": acked}
              for i, kind, count, acked in active]
    view = device_view(device, svc.clock(), detail=True, silence_ms=silence_ms, alarms=alarms)
    view["contracts"] = contracts_view(svc.live_contracts.get(device.id, {}), svc.clock(),
                                       silence_ms, device)
    registered = svc.registry.get(device.id)
    view["endpoints"] = [e.to_mapping() for e in registered.endpoints] if registered else []
    return JSONResponse(view)


async def device_journal(request: Request) -> Response:
    """A page of a device's journal from `from_seq`, in seq order."""
    store = inbound.service(request).store
    device = store.devices.get(request.path_params["device"]).id
    from_seq = inbound.int_query(request, "from_seq", 0, 0, 2**63 - 1)
    limit = inbound.int_query(request, "limit", inbound.DEFAULT_LIMIT, 1, inbound.MAX_LIMIT)
    return JSONResponse([journal_view(r) for r in store.journal.rows(device, from_seq, limit)])


def _units(store: HubStore, device: DeviceRecord) -> dict[str, str]:
    """Each point's unit from the device's contracts that claim its points (a device may run
    several); the one it reports running last, so its units win."""
    records = [r for r in store.contracts.find(device=device.id) if r.status.claims_points]
    if device.contract is not None and device.version is not None:
        try:
            records.append(store.contracts.get(contract_id(device.contract, device.version)))
        except NotFound:
            pass
    units: dict[str, str] = {}
    for record in records:
        units |= series.units_of(record.document)
    return units


async def device_series(request: Request) -> Response:
    """A device's recent values from its journal, per point with the unit its contract gives:
    good numeric readings as [ts_ms, value] steps, a bad reading as a null gap (gzipped for a
    client that accepts it: the answer is JSON of thousands of samples). With `after_seq`, only
    what the window holds after it: a page polls for what is new (hub/series_window.py)."""
    store = inbound.service(request).store
    device = store.devices.get(request.path_params["device"])
    limit = inbound.int_query(request, "limit", series.DEFAULT_ENTRIES, 1, inbound.MAX_LIMIT)
    head = {"device": device.id, "contract": device.contract, "version": device.version}
    after = inbound.int_query(request, "after_seq", -1, -1, 2**63 - 1)
    windows: SeriesWindows = request.app.state.series_windows  # only the new rows are read
    units = _units(store, device)
    work, heavy = (windows.after(store, device.id, device.last_seq, limit, after, head, units)
                   if after >= 0 else
                   windows.request(store, device.id, device.last_seq, limit, head, units))
    worker = inbound.service(request).worker
    body = await worker.run(work) if heavy else work()
    if after >= 0 or "gzip" not in request.headers.get("accept-encoding", ""):
        return Response(body, media_type="application/json", headers=_VARY)
    packed = windows.gzipped(body) or await worker.run(windows.gzip, body)
    return Response(packed, media_type="application/json",
                    headers={**_VARY, "Content-Encoding": "gzip"})


_VARY = {"Vary": "Accept-Encoding"}
