"""The cached fleet list is byte for byte what the per-request views gave, and follows changes."""
from __future__ import annotations

from pathlib import Path

from starlette.responses import JSONResponse

from hub.views import device_view
from hub.device_list import DeviceListCache
from hub.states import DeviceEvent, DeviceState
from hub.store import HubStore


def _expected(store: HubStore, state: DeviceState | None = None) -> bytes:
    return bytes(JSONResponse([{**device_view(d, 0), "endpoints": []}
                               for d in store.devices.find(state)]).body)


def test_cached_list_equals_the_views_and_follows_every_change(store: HubStore) -> None:
    store.devices.ensure("b-2", "north", 10, {"area": "pumps", "zone": "ü"})
    store.devices.ensure("a-1", "north", 11)
    store.devices.update("a-1", contract="tank-fill", version=3, last_seq=7, acked_seq=5,
                        last_seen_ms=99, projection={"source": "live", "values": {"level": 1.5}})
    cache = DeviceListCache()
    assert cache.body(store) == _expected(store)
    store.devices.apply_event("b-2", DeviceEvent.BIRTH, 20, "boot")
    store.devices.update("a-1", acked_seq=7, labels={"area": "tanks"})
    assert cache.body(store) == _expected(store)  # both changed rows re-encoded
    born = store.devices.get("b-2").state
    assert cache.body(store, born) == _expected(store, born) != b"[]"
    assert cache.body(store, DeviceState.FAULT) == b"[]"


def test_the_cached_body_follows_commits_of_this_and_of_another_connection(tmp_path: Path) -> None:
    with HubStore.open(tmp_path / "hub.db") as api, HubStore.open(tmp_path / "hub.db") as sync:
        api.devices.ensure("a-1", "north", 1)
        cache = DeviceListCache()
        first = cache.body(api)
        assert cache.body(api) is first  # nothing committed since: the same bytes object
        sync.devices.update("a-1", acked_seq=3)  # the MQTT side's connection
        assert cache.body(api) == _expected(api) != first
        sync.begin_batch()
        sync.devices.update("a-1", acked_seq=4)
        assert cache.body(api) == _expected(api)  # not committed yet: still 3
        sync.commit_batch()
        assert b'"acked_seq":4' in cache.body(api)
        api.devices.ensure("b-2", "north", 2)  # this connection's own write
        assert cache.body(api) == _expected(api)


def test_the_list_shows_each_devices_endpoints_and_follows_their_change(store: HubStore) -> None:
    from hub.device_endpoints import DeviceEndpoint
    store.devices.ensure("a-1", "north", 1)
    cache = DeviceListCache()
    plc = (DeviceEndpoint(name="plc", kind="modbus-tcp"),)
    assert b'"endpoints":[]' in cache.body(store, None, {}, 1)
    assert b'"endpoints":[{"name":"plc","kind":"modbus-tcp"}]' in \
        cache.body(store, None, {"a-1": plc}, 2)
