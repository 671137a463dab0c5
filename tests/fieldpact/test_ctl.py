"""`fieldpact ctl` against a real hub over HTTP (the app under uvicorn on 127.0.0.1, a real store):
every command, its table and its --json, and each exit status it promises (fieldpact/ctl_client.py).

The command runs in a worker thread (the hub serves on the test's event loop); its stdout and
stderr are captured per call."""
from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from fieldpact import cli
from fieldpact.ctl_client import CtlError, Exit, HubClient
from hub.auth import ApiRole
from hub.live import LiveValues
from hub.publisher import MemoryPublisher
from hub.service import HubService
from hub.states import ContractEvent, ContractStatus, DeviceEvent
from hub.store import HubStore
from tests.hub.conftest import START_MS, TOKENS, bearer

OPERATOR, VIEWER, ADMIN = (TOKENS[r] for r in (ApiRole.OPERATOR, ApiRole.VIEWER, ApiRole.ADMIN))


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Ctl(Protocol):
    def __call__(self, *argv: str, token: str | None = ..., hub: str | None = ...
                 ) -> Awaitable[Ran]: ...


@pytest.fixture
async def fleet(client: httpx.AsyncClient, store: HubStore, tank_fill: dict[str, Any]) -> int:
    """Two devices of north-field (one live with values, one projected), tank-fill@3 active on
    the live one, and a guard_trip alarm on it (its id is returned)."""
    t = START_MS - 60_000
    for device in ("pump-station-7", "booster-skid-2"):
        store.devices.ensure(device, "north-field", t)
    store.devices.apply_event("pump-station-7", DeviceEvent.TELEMETRY, t)
    store.devices.update("pump-station-7", last_seen_ms=START_MS - 5_000, contract="tank-fill",
                         version=3, projection={"source": "live", "ts_ms": START_MS - 5_000,
                                                "values": {"level": 3.14159, "pump_speed": 1200},
                                                "step": "fill", "mode": "running"})
    store.devices.apply_event("booster-skid-2", DeviceEvent.WILL, t)
    r = await client.post("/api/contracts", content=json.dumps(tank_fill),
                          headers={**bearer(ApiRole.OPERATOR), "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    for event in (ContractEvent.ACCEPT, ContractEvent.START):
        store.contracts.apply_event("tank-fill@3", event, START_MS)
    return store.alarms.raise_("pump-station-7", "guard_trip",
                               "seq 9: guard_trip reason=stale point=level", START_MS)


@pytest.fixture
def ctl(client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Callable[..., Awaitable[Ran]]:
    url = str(client.base_url).rstrip("/")

    async def run(*argv: str, token: str | None = OPERATOR, hub: str | None = url) -> Ran:
        if token is None:
            monkeypatch.delenv("FIELDPACT_TOKEN", raising=False)
        else:
            monkeypatch.setenv("FIELDPACT_TOKEN", token)
        monkeypatch.delenv("FIELDPACT_HUB", raising=False)
        capsys.readouterr()
        args = ["ctl", *(["--hub", hub] if hub else []), *argv]
        code = await asyncio.to_thread(cli.main, args)
        out, err = capsys.readouterr()
        return Ran(code, out, err)
    return run


async def test_devices_as_a_table_and_as_json_with_state_and_site_filters(
        fleet: int, ctl: Ctl, client: httpx.AsyncClient) -> None:
    table = await ctl("devices")
    assert table.code == Exit.OK, table.err
    assert "devices (2)" in table.out
    line = next(ln for ln in table.out.splitlines() if "pump-station-7" in ln)
    assert "live" in line and "tank-fill@3" in line and "guard_trip" in line
    as_json = await ctl("devices", "--json")
    api = (await client.get("/api/devices", headers=bearer(ApiRole.VIEWER))).json()
    assert as_json.json() == api
    projected = await ctl("--json", "devices", "--state", "projected")
    assert [d["id"] for d in projected.json()] == ["booster-skid-2"]
    assert (await ctl("devices", "--site", "south-field", "--json")).json() == []
    bad = await ctl("devices", "--state", "asleep")
    assert bad.code == Exit.USAGE and "invalid choice: 'asleep'" in bad.err


async def test_device_shows_values_with_age_and_alarms_and_an_unknown_id_is_not_found(
        fleet: int, ctl: Ctl, service: HubService) -> None:
    service.live_contracts = {"pump-station-7": {  # as the sync side holds each one's telemetry
        "tank-fill@3": LiveValues(ts_ms=START_MS - 5_000, received_ms=START_MS - 5_000,
                                  mode="running", step="fill"),
        "dosing@1": LiveValues(ts_ms=START_MS - 5_000, received_ms=START_MS - 5_000,
                               mode="safe", safe="confirmed", trip="stale:flow")}}
    shown = await ctl("device", "pump-station-7")
    assert shown.code == Exit.OK, shown.err
    assert "values (live" in shown.out and "step fill, mode running" in shown.out
    assert "level" in shown.out and "3.142" in shown.out and "5 s ago" in shown.out
    assert "guard_trip" in shown.out
    running = [ln for ln in shown.out.splitlines() if "dosing@1" in ln or "tank-fill@3 " in ln]
    assert any("safe" in ln and "stale:flow" in ln for ln in running), shown.out
    assert any("running" in ln and "fill" in ln for ln in running), shown.out
    assert (await ctl("device", "pump-station-7", "--json")).json()["values"]["source"] == "live"
    missing = await ctl("device", "no-such-pump")
    assert missing.code == Exit.NOT_FOUND
    assert missing.err.startswith("error: GET /api/devices/no-such-pump: 404") and missing.out == ""


async def test_contracts_table_json_and_status_filter(fleet: int, ctl: Ctl) -> None:
    table = await ctl("contracts")
    assert table.code == Exit.OK, table.err
    row = next(ln for ln in table.out.splitlines() if "tank-fill@3" in ln)
    assert "pump-station-7" in row and "active" in row and "running / fill" in row
    listed = (await ctl("contracts", "--device", "pump-station-7", "--json")).json()
    assert [(c["id"], c["status"]) for c in listed] == [("tank-fill@3", "active")]
    assert (await ctl("contracts", "--status", "tripped", "--json")).json() == []


async def test_alarms_then_ack_by_id_and_ack_of_unknown_or_malformed_ids(
        fleet: int, ctl: Ctl, store: HubStore) -> None:
    listed = await ctl("alarms")
    assert listed.code == Exit.OK and "reason=stale point=level" in listed.out
    assert [a["id"] for a in (await ctl("alarms", "--unacked", "--json")).json()] == [fleet]
    acked = await ctl("ack", str(fleet))
    assert acked.code == Exit.OK, acked.err
    assert acked.out.strip() == (f"alarm {fleet} (guard_trip on pump-station-7): "
                                 f"acknowledged by operator-user")
    assert store.alarms.get(fleet).acked_by == "operator-user"
    assert (await ctl("alarms", "--unacked", "--json")).json() == []
    assert (await ctl("ack", "999999")).code == Exit.NOT_FOUND
    malformed = await ctl("ack", "seven")
    assert malformed.code == Exit.REFUSED and "  alarm: must be an integer id" in malformed.err
    assert (await ctl("alarms", "--cleared", "--json")).json() == []


async def test_hold_resume_abort_change_the_contract_and_a_hold_after_abort_is_a_conflict(
        fleet: int, ctl: Ctl, store: HubStore, publisher: MemoryPublisher) -> None:
    held = await ctl("hold", "tank-fill@3", "--reason", "inspecting the valve")
    assert (held.code, held.out.strip()) == (Exit.OK, "hold tank-fill@3: held")
    assert store.contracts.get("tank-fill@3").status is ContractStatus.HELD
    holds = [e for e in store.audit.find(contract="tank-fill@3") if e.action.value == "hold"]
    assert holds[0].reason == "inspecting the valve" and holds[0].actor == "operator-user"
    resumed = await ctl("resume", "tank-fill@3", "--reason", "valve ok")
    assert (resumed.code, resumed.out.strip()) == (Exit.OK, "resume tank-fill@3: sent")
    assert [c.kind.value for _, _, c in publisher.commands] == ["hold", "resume"]
    aborted = await ctl("abort", "tank-fill@3", "--json")
    assert aborted.code == Exit.OK and aborted.json()["status"] == "aborted"
    conflict = await ctl("hold", "tank-fill@3")
    assert conflict.code == Exit.CONFLICT and "409" in conflict.err
    assert (await ctl("hold", "tank-fill@99")).code == Exit.NOT_FOUND


async def test_a_resume_needs_a_reason_on_the_command_line_and_at_the_hub(
        fleet: int, ctl: Ctl, publisher: MemoryPublisher) -> None:
    assert (await ctl("resume", "tank-fill@3")).code == Exit.USAGE  # argparse: --reason required
    blank = await ctl("resume", "tank-fill@3", "--reason", "   ")
    assert blank.code == Exit.REFUSED
    assert "422 a reason is required" in blank.err and "  reason: required" in blank.err
    assert publisher.commands == []


async def test_tokens_env_file_missing_refused_and_too_weak_are_auth_errors(
        fleet: int, ctl: Ctl, tmp_path: Path, store: HubStore) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(VIEWER + "\n")
    assert (await ctl("devices", "--token-file", str(token_file), token=None)).code == Exit.OK
    weak = await ctl("hold", "tank-fill@3", "--token-file", str(token_file), token="ignored")
    assert weak.code == Exit.AUTH and "needs operator" in weak.err
    assert store.contracts.get("tank-fill@3").status is ContractStatus.ACTIVE
    refused = await ctl("devices", token="not-a-token")
    assert refused.code == Exit.AUTH and "401 missing or invalid bearer token" in refused.err
    none = await ctl("devices", token=None)
    assert none.code == Exit.AUTH and "set FIELDPACT_TOKEN" in none.err
    absent = await ctl("devices", "--token-file", str(tmp_path / "nope"))
    assert absent.code == Exit.AUTH and "No such file" in absent.err


async def test_no_hub_is_usage_a_closed_port_is_unreachable_a_publish_failure_is_a_hub_error(
        fleet: int, ctl: Ctl, publisher: MemoryPublisher) -> None:
    no_hub = await ctl("devices", hub=None)
    assert no_hub.code == Exit.USAGE and "FIELDPACT_HUB" in no_hub.err
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        gone = await ctl("devices", hub=f"http://127.0.0.1:{port}")
    assert gone.code == Exit.UNREACHABLE and "unreachable" in gone.err
    publisher.fail = True
    failed = await ctl("hold", "tank-fill@3")
    assert failed.code == Exit.HUB_ERROR and "503" in failed.err


async def test_a_route_the_hub_lacks_is_unsupported_naming_it_and_a_missing_thing_is_not_found(
        fleet: int, client: httpx.AsyncClient) -> None:
    """An older hub lacks a route a command needs: the client tells that from "no such thing" by
    the hub's own OpenAPI document (a hub of this build has every route ctl calls, so the client
    is asked directly for routes no hub serves: a later issue's, a method a path does not have)."""
    url = str(client.base_url).rstrip("/")

    def ask(method: str, template: str, **params: str) -> CtlError:
        with HubClient(url, ADMIN) as hub, pytest.raises(CtlError) as caught:
            hub.request(method, template, params)
        return caught.value

    absent = await asyncio.to_thread(ask, "GET", "/api/rollouts/{rollout}", rollout="r1")
    assert absent.exit == Exit.UNSUPPORTED
    assert str(absent) == f"the hub at {url} does not serve GET /api/rollouts/{{rollout}} (an older hub?)"
    no_method = await asyncio.to_thread(ask, "DELETE", "/api/alarms/{alarm}/ack", alarm="1")
    assert no_method.exit == Exit.UNSUPPORTED
    missing = await asyncio.to_thread(ask, "GET", "/api/devices/{device}", device="nope")
    assert missing.exit == Exit.NOT_FOUND and "404" in str(missing)


async def test_device_shows_the_endpoints_registered_for_it(
        fleet: int, ctl: Ctl, client: httpx.AsyncClient) -> None:
    assert "endpoints" in (await ctl("device", "pump-station-7")).out  # none yet: shown as -
    r = await client.put("/api/devices/pump-station-7/endpoints", headers=bearer(ApiRole.ADMIN),
                         json={"endpoints": [{"name": "plc", "kind": "modbus-tcp"},
                                             {"name": "line", "kind": "modbus-rtu"}]})
    assert r.status_code == 200, r.text
    shown = await ctl("device", "pump-station-7")
    assert shown.code == Exit.OK, shown.err
    line = next(ln for ln in shown.out.splitlines() if "endpoints" in ln)
    assert "plc (modbus-tcp)" in line and "line (modbus-rtu)" in line, shown.out
    as_json = (await ctl("device", "pump-station-7", "--json")).json()
    assert [e["name"] for e in as_json["endpoints"]] == ["plc", "line"]
