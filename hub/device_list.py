"""The fleet list (GET /api/devices), encoded once per changed row.

Why: the list is the API's largest read and the operator page polls it; with 1,000 devices,
building and JSON-encoding every view on every request cost 20-40 ms of the interpreter lock that
the MQTT side needs too. A device's list view depends only on its list columns (never on the
clock), so each row's JSON is kept until that row changes; a request is one narrow SELECT (no
projection blobs) and a join of cached bytes. The JSON is exactly what `device_view` gives.

And while nothing was committed since the last request (SQLite's `data_version` for the other
connection's commits, `total_changes` for this one's), the whole body is reused: reading 1,000
rows gives the interpreter lock up once per row, and each time the busy MQTT thread may keep it
for a switch interval, which made the list's p99 hundreds of ms under load.

Each view also carries the endpoints the registry lists for the device (hub/device_endpoints.py;
[] when none): they are part of a row's cache key, and the registry's generation of the body's.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hub.device_endpoints import DeviceEndpoint
from hub.states import DeviceState
from hub.store import HubStore
from hub.store.devices import LIST_COLUMNS


Endpoints = Mapping[str, tuple[DeviceEndpoint, ...]]
"""device -> the endpoints the registry lists for it (DeviceRegistry.endpoints_by_device)."""


def list_view(row: tuple[Any, ...], endpoints: tuple[DeviceEndpoint, ...] = ()) -> dict[str, Any]:
    """`hub.views.device_view(d, now)` (no detail) for a row of LIST_COLUMNS, with `endpoints`."""
    view = dict(zip(LIST_COLUMNS, row, strict=True))
    view["labels"] = json.loads(view["labels"])
    view["endpoints"] = [e.to_mapping() for e in endpoints]
    return view


def _encode(value: Any) -> bytes:
    # Starlette's JSONResponse encoding, so the bytes are the same as before the cache.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


class DeviceListCache:
    """Per app: each device's encoded list view with the row it was encoded from."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[tuple[Any, ...], bytes]] = {}
        self._body: tuple[tuple[Any, ...], bytes] | None = None

    def body(self, store: HubStore, state: DeviceState | None = None, endpoints: Endpoints = {},
             generation: int = 0) -> bytes:
        """The JSON array of list views, in id order (as `store.devices.list_rows` gives them);
        `generation` changes whenever `endpoints` may have (the registry's)."""
        key = (store.data_version(), state, generation)
        if self._body is not None and self._body[0] == key:
            return self._body[1]
        data = b"[" + b",".join(self._encoded(row, endpoints.get(row[0], ()))
                                for row in store.devices.list_rows(state)) + b"]"
        self._body = (key, data)
        return data

    def _encoded(self, row: tuple[Any, ...], endpoints: tuple[DeviceEndpoint, ...]) -> bytes:
        cached = self._rows.get(row[0])
        if cached is not None and cached[0] == (row, endpoints):
            return cached[1]
        data = _encode(list_view(row, endpoints))
        self._rows[row[0]] = ((row, endpoints), data)
        return data
