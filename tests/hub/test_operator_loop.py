"""The operator's loop over real HTTP and a real store: alarms (dedupe, clear, ack), resume,
reset out of FAULT, values with their age; and the planner's lineage rules against the store."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.inputs import CommandKind
from contracts.schema_parse import parse_contract
from hub.alarms import AlarmKind
from hub.api import ROUTES
from hub.audit import AuditAction
from hub.auth import ApiRole
from hub.policy import DEFAULT_POLICIES, FailureCategory, RetryConfig
from hub.offline import OfflineManager
from hub.openapi import document
from hub.publisher import MemoryPublisher
from hub.service import HubService
from hub.states import ContractEvent, ContractStatus, DeviceEvent, DeviceState
from hub.store import HubStore

from .conftest import START_MS, StepClock, bearer

OP, VIEW, ADMIN = bearer(ApiRole.OPERATOR), bearer(ApiRole.VIEWER), bearer(ApiRole.ADMIN)
DEVICE = "pump-station-7"


async def _submitted(service: HubService, doc: dict[str, Any], version: int,
                     **changes: Any) -> str:
    d = copy.deepcopy(doc) | {"version": version, **changes}
    return (await service.submit_contract(d, "ops")).id


def _to(store: HubStore, cid: str, *events: ContractEvent) -> None:
    for e in events:
        store.contracts.apply_event(cid, e, START_MS)


# ---- alarms ---------------------------------------------------------------------------------

async def test_an_alarm_raised_twice_is_one_alarm_with_a_count_then_acked_then_cleared(
        client: httpx.AsyncClient, store: HubStore, clock: StepClock) -> None:
    store.devices.ensure("d1", "s1", START_MS)
    first = store.alarms.raise_("d1", AlarmKind.GUARD_TRIP, "stale:level", START_MS)
    again = store.alarms.raise_("d1", AlarmKind.GUARD_TRIP, "x" * 1000, START_MS + 5)
    other = store.alarms.raise_("d1", AlarmKind.SECOND_WRITER, "pump_speed", START_MS + 6)
    listed = (await client.get("/api/alarms", headers=VIEW,
                               params={"kind": "guard_trip", "device": "d1"})).json()
    viewer_ack = await client.post(f"/api/alarms/{first}/ack", headers=VIEW)
    acked = await client.post(f"/api/alarms/{first}/ack", headers=OP)
    unacked = (await client.get("/api/alarms", headers=VIEW,
                                params={"acknowledged": "false"})).json()
    store.alarms.clear_kind("d1", AlarmKind.GUARD_TRIP, START_MS + 10)
    active = (await client.get("/api/alarms", headers=VIEW)).json()
    cleared = (await client.get("/api/alarms", headers=VIEW, params={"active": "false"})).json()
    audit = store.audit.find(device="d1")
    assert first == again != other
    assert len(listed) == 1 and listed[0]["count"] == 2 and len(listed[0]["detail"]) <= 300
    assert (listed[0]["first_ms"], listed[0]["last_ms"]) == (START_MS, START_MS + 5)
    assert viewer_ack.status_code == 403
    assert acked.status_code == 200 and acked.json()["acknowledged"]
    assert acked.json()["acked_by"] == "operator-user" and acked.json()["active"]
    assert [a["id"] for a in unacked] == [other]
    assert [a["id"] for a in active] == [other]
    assert [a["id"] for a in cleared] == [first] and cleared[0]["cleared_ms"] == START_MS + 10
    assert audit[0].action is AuditAction.ACK and audit[0].actor == "operator-user"


async def test_a_cleared_alarm_raised_again_is_a_new_alarm(store: HubStore) -> None:
    a = store.alarms.raise_("d1", AlarmKind.GUARD_TRIP, "1", START_MS)
    assert store.alarms.clear_kind("d1", AlarmKind.GUARD_TRIP, START_MS + 1) == 1
    assert store.alarms.clear_kind("d1", AlarmKind.GUARD_TRIP, START_MS + 2) == 0
    b = store.alarms.raise_("d1", AlarmKind.GUARD_TRIP, "2", START_MS + 3)
    assert a != b and [x.id for x in store.alarms.find()] == [b]


async def test_bad_alarm_queries_and_ids_are_refused_naming_the_field(
        client: httpx.AsyncClient) -> None:
    kind = await client.get("/api/alarms", headers=VIEW, params={"kind": "weather"})
    flag = await client.get("/api/alarms", headers=VIEW, params={"active": "yes"})
    bad_id = await client.post("/api/alarms/abc/ack", headers=OP)
    missing = await client.post("/api/alarms/999/ack", headers=OP)
    assert kind.status_code == 400 and kind.json()["issues"][0]["path"] == "kind"
    assert flag.status_code == 400 and flag.json()["issues"][0]["path"] == "active"
    assert bad_id.status_code == 400 and missing.status_code == 404


async def test_active_alarms_are_in_metrics_by_kind_and_state(
        client: httpx.AsyncClient, store: HubStore) -> None:
    store.alarms.raise_("d1", AlarmKind.GUARD_TRIP, "stale:level", START_MS)
    a = store.alarms.raise_("d2", AlarmKind.GUARD_TRIP, "stale:level", START_MS)
    store.alarms.ack(a, "ops", START_MS)
    text = (await client.get("/metrics", headers=VIEW)).text
    samples = {(s.labels["kind"], s.labels["state"]): s.value
               for f in text_string_to_metric_families(text) if f.name == "fieldpact_hub_alarms"
               for s in f.samples}
    assert samples[("guard_trip", "unacknowledged")] == 1
    assert samples[("guard_trip", "acknowledged")] == 1
    assert samples[("second_writer", "unacknowledged")] == 0


# ---- resume and reset -----------------------------------------------------------------------

async def test_resume_needs_a_reason_sends_resume_and_leaves_the_status_to_the_journal(
        client: httpx.AsyncClient, service: HubService, store: HubStore,
        publisher: MemoryPublisher, tank_fill: dict[str, Any]) -> None:
    cid = await _submitted(service, tank_fill, 3)
    not_tripped = await client.post(f"/api/contracts/{cid}/resume", headers=OP,
                                    json={"reason": "go"})
    _to(store, cid, ContractEvent.ACCEPT, ContractEvent.START, ContractEvent.TRIP)
    no_reason = await client.post(f"/api/contracts/{cid}/resume", headers=OP, json={})
    empty = await client.post(f"/api/contracts/{cid}/resume", headers=OP, json={"reason": " "})
    viewer = await client.post(f"/api/contracts/{cid}/resume", headers=VIEW, json={"reason": "go"})
    unknown = await client.post("/api/contracts/nope@1/resume", headers=OP, json={"reason": "go"})
    ok = await client.post(f"/api/contracts/{cid}/resume", headers=OP,
                           json={"reason": "sensor replaced"})
    publisher.fail = True
    down = await client.post(f"/api/contracts/{cid}/resume", headers=OP, json={"reason": "again"})
    assert not_tripped.status_code == 409
    assert no_reason.status_code == 422 and no_reason.json()["issues"][0]["path"] == "reason"
    assert empty.status_code == 422 and viewer.status_code == 403 and unknown.status_code == 404
    assert ok.status_code == 202 and down.status_code == 503
    assert [c.kind for _, _, c in publisher.commands] == [CommandKind.RESUME]
    assert store.contracts.get(cid).status is ContractStatus.TRIPPED  # until the journal says resumed
    resumes = [e for e in store.audit.find(contract=cid) if e.action is AuditAction.RESUME]
    assert [e.outcome.value for e in resumes] == ["failed", "ok", "refused"]
    assert resumes[1].reason == "sensor replaced" and resumes[1].actor == "operator-user"


async def test_reset_needs_admin_and_a_reason_and_leaves_fault(
        client: httpx.AsyncClient, store: HubStore) -> None:
    store.devices.ensure("d1", "s1", START_MS)
    for e in (DeviceEvent.TELEMETRY, DeviceEvent.CHAIN_BROKEN):
        store.devices.apply_event("d1", e, START_MS)
    store.alarms.raise_("d1", AlarmKind.CHAIN_BREAK, "seq 7: prev_hash", START_MS)
    operator = await client.post("/api/devices/d1/reset", headers=OP, json={"reason": "x"})
    no_reason = await client.post("/api/devices/d1/reset", headers=ADMIN)
    ok = await client.post("/api/devices/d1/reset", headers=ADMIN,
                           json={"reason": "journal restored from backup"})
    again = await client.post("/api/devices/d1/reset", headers=ADMIN, json={"reason": "x"})
    store.devices.ensure("d2", "s1", START_MS)
    store.devices.apply_event("d2", DeviceEvent.TELEMETRY, START_MS)
    live = await client.post("/api/devices/d2/reset", headers=ADMIN, json={"reason": "x"})
    unknown = await client.post("/api/devices/zz/reset", headers=ADMIN, json={"reason": "x"})
    assert operator.status_code == 403
    assert no_reason.status_code == 422 and no_reason.json()["issues"][0]["path"] == "reason"
    assert ok.status_code == 200 and ok.json()["state"] == "unknown"
    assert store.devices.get("d1").state is DeviceState.UNKNOWN
    assert store.alarms.find(device="d1") == []
    assert again.status_code == 200  # a retried reset is idempotent (hub/store.py)
    assert live.status_code == 409 and unknown.status_code == 404
    assert store.audit.find(device="d1")[1].action is AuditAction.RESET


def test_every_new_route_is_in_the_openapi_document_with_its_status_codes() -> None:
    paths = document(ROUTES)["paths"]
    codes = {(p, m): set(op["responses"]) for p, ops in paths.items() for m, op in ops.items()}
    assert codes[("/api/contracts/{contract}/resume", "post")] >= {"202", "400", "401", "403",
                                                                   "404", "409", "422", "503"}
    assert codes[("/api/devices/{device}/reset", "post")] >= {"200", "403", "404", "409", "422"}
    assert codes[("/api/alarms", "get")] >= {"200", "400", "401"}
    assert codes[("/api/alarms/{alarm}/ack", "post")] >= {"200", "400", "403", "404"}
    assert paths["/api/devices/{device}/reset"]["post"]["x-required-role"] == "admin"
    assert paths["/api/contracts/{contract}/resume"]["post"]["x-required-role"] == "operator"


# ---- values with their age ----------------------------------------------------------------

async def test_values_show_age_per_point_and_commanded_beside_a_differing_readback(
        client: httpx.AsyncClient, store: HubStore, clock: StepClock) -> None:
    store.devices.ensure("d1", "s1", START_MS)
    store.devices.apply_event("d1", DeviceEvent.TELEMETRY, START_MS)
    store.devices.update("d1", projection={
        "source": "live", "ts_ms": clock.now - 1000, "mode": "safe", "step": "fill",
        "values": {"level": 2.5, "pump_speed": 1000, "valve_open": False},
        "commanded": {"pump_speed": 0, "valve_open": False},
        "read_ms": {"level": clock.now - 4000}, "safe": "unconfirmed", "trip": "stale:level"})
    v = (await client.get("/api/devices/d1", headers=VIEW)).json()["values"]
    points = {p["name"]: p for p in v["points"]}
    assert v["source"] == "live" and v["safe"] == "unconfirmed" and v["trip"] == "stale:level"
    assert points["level"]["age_ms"] == 4000 and points["pump_speed"]["age_ms"] == 1000
    assert points["pump_speed"]["value"] == 1000 and points["pump_speed"]["commanded"] == 0
    assert "commanded" not in points["valve_open"]


async def test_after_a_hub_restart_old_stored_values_are_not_shown_live(
        client: httpx.AsyncClient, store: HubStore, clock: StepClock) -> None:
    store.devices.ensure("d1", "s1", START_MS)
    store.devices.apply_event("d1", DeviceEvent.TELEMETRY, START_MS)  # LIVE, as stored before
    store.devices.update("d1", projection={"source": "live", "ts_ms": clock.now - 63_000,
                                          "values": {"level": 2.5}, "mode": "running"})
    v = (await client.get("/api/devices/d1", headers=VIEW)).json()["values"]
    assert v["source"] == "last_known" and v["confidence"] is None
    assert v["age_ms"] == 63_000 and not v["points"][0]["live"]


# ---- the planner against the store --------------------------------------------------------

def _offline(store: HubStore, service: HubService, clock: StepClock,
             retry: RetryConfig = RetryConfig(backoff_ms=30_000, settle_ms=0)) -> OfflineManager:
    return OfflineManager(store, service, DEFAULT_POLICIES, clock, retry)


async def test_a_stale_record_is_reissued_from_the_version_the_device_runs_never_from_itself(
        service: HubService, store: HubStore, clock: StepClock,
        tank_fill: dict[str, Any]) -> None:
    v3 = await _submitted(service, tank_fill, 3)
    steps = copy.deepcopy(tank_fill["steps"])
    steps[0]["do"]["pump_speed"] = 900
    v4 = await _submitted(service, tank_fill, 4, steps=steps)
    _to(store, v4, ContractEvent.ACCEPT, ContractEvent.START)
    store.devices.update(DEVICE, contract="tank-fill", version=4)
    offline = _offline(store, service, clock)
    old = store.contracts.get(v3)
    decision = await offline.apply_policy(parse_contract(old.document), old,
                                          FailureCategory.RUNTIME, "step: off", 0)
    new = store.contracts.get("tank-fill@5")
    assert decision is not None and new.document["labels"]["replanned_from"] == "tank-fill@4"
    assert new.document["steps"][0]["do"]["pump_speed"] == 900 and new.lineage == v4


async def test_no_reissue_while_a_newer_version_is_active_but_not_yet_running(
        service: HubService, store: HubStore, clock: StepClock, publisher: MemoryPublisher,
        tank_fill: dict[str, Any]) -> None:
    await _submitted(service, tank_fill, 3)
    await _submitted(service, tank_fill, 4)
    store.devices.update(DEVICE, contract="tank-fill", version=3)
    old = store.contracts.get("tank-fill@3")
    pushed = len(publisher.contracts)
    decision = await _offline(store, service, clock).apply_policy(
        parse_contract(old.document), old, FailureCategory.RUNTIME, "step: off", 1)
    assert decision is None and len(publisher.contracts) == pushed
    assert store.contracts.highest_version("tank-fill") == 4


async def test_retries_are_counted_per_lineage_across_triggers_with_backoff_and_persisted(
        service: HubService, store: HubStore, clock: StepClock, tank_fill: dict[str, Any],
        tmp_path: Path) -> None:
    v3 = await _submitted(service, tank_fill, 3)
    store.devices.update(DEVICE, contract="tank-fill", version=3)
    offline = _offline(store, service, clock)

    async def trigger(cid: str, category: FailureCategory) -> Any:
        r = store.contracts.get(cid)
        return await offline.apply_policy(parse_contract(r.document), r, category, "t", 0)

    first = await trigger(v3, FailureCategory.RUNTIME)         # a divergence: v4 at once
    store.devices.update(DEVICE, version=4)
    waiting = await trigger("tank-fill@4", FailureCategory.ADAPTERS)  # a failure, 1 s later
    clock.now += 1000
    await offline.retry_pending()
    still = store.contracts.highest_version("tank-fill")
    clock.now += 30_000
    await offline.retry_pending()                              # backoff over: v5
    store.devices.update(DEVICE, version=5)
    clock.now += 60_000
    exhausted = await trigger("tank-fill@5", FailureCategory.RUNTIME)  # RUNTIME max 2: spent
    assert first is not None and first.action.value == "retry"
    assert waiting is not None and waiting.action.value == "wait" and still == 4
    assert store.contracts.highest_version("tank-fill") == 5
    assert exhausted is not None and exhausted.action.value == "escalate"
    assert store.alarms.find(kind=AlarmKind.ESCALATED)
    assert {store.contracts.get(f"tank-fill@{v}").lineage for v in (3, 4, 5)} == {v3}
    store.close()
    with HubStore.open(tmp_path / "hub.db") as reopened:
        budget = reopened.lineages.budget(v3)
    assert budget.retries == 2 and budget.next_allowed_ms == START_MS + 31_000 + 60_000


@pytest.mark.parametrize("status_events", [(), (ContractEvent.ACCEPT, ContractEvent.START)])
async def test_a_trip_under_the_default_policy_holds_without_a_command_or_a_reissue(
        service: HubService, store: HubStore, clock: StepClock, publisher: MemoryPublisher,
        tank_fill: dict[str, Any], status_events: tuple[ContractEvent, ...]) -> None:
    cid = await _submitted(service, tank_fill, 3)
    _to(store, cid, *status_events, ContractEvent.TRIP)
    store.devices.update(DEVICE, contract="tank-fill", version=3)
    r = store.contracts.get(cid)
    decision = await _offline(store, service, clock).apply_policy(
        parse_contract(r.document), r, FailureCategory.TRIP, "guard trip: stale:level", 0)
    assert decision is not None and decision.action.value == "hold"
    assert publisher.commands == [] and store.contracts.highest_version("tank-fill") == 3
    assert store.contracts.get(cid).status is ContractStatus.TRIPPED


@pytest.mark.parametrize("body", [b"[" * 4000, b"\xff\xfe", b"[1, 2]", b"{\"reason\": 7}",
                                  b"x" * 5000])
async def test_an_unreadable_or_wrong_reason_body_is_refused_and_nothing_is_sent(
        client: httpx.AsyncClient, service: HubService, store: HubStore,
        publisher: MemoryPublisher, tank_fill: dict[str, Any], body: bytes) -> None:
    cid = await _submitted(service, tank_fill, 3)
    _to(store, cid, ContractEvent.ACCEPT, ContractEvent.START, ContractEvent.TRIP)
    r = await client.post(f"/api/contracts/{cid}/resume", headers=OP, content=body)
    assert r.status_code in (400, 413, 422) and r.json()["error"]
    assert publisher.commands == []


def test_a_v1_database_upgrades_keeping_contracts_as_their_own_lineage_and_one_active_alarm(
        tmp_path: Path) -> None:
    from sqlite_utils import Database
    from hub.store.schema import MIGRATIONS
    path = tmp_path / "old.db"
    db = Database(path)
    MIGRATIONS.apply(db, stop_before="0002_lineage_alarms")
    db.execute("INSERT INTO contracts (id, contract, version, device, site, status, document, "
               "signed, content_hash, created_ms, updated_ms) VALUES ('fill@3', 'fill', 3, 'd1', "
               "'s1', 'active', '{}', x'00', 'h', 1, 1)")
    for ts in (1, 2):  # the old table inserted a row per raise
        db.execute("INSERT INTO alarms (ts_ms, device, kind, detail) VALUES (?, 'd1', "
                   "'guard_trip', 'x')", [ts])
    db.conn.commit()
    db.close()
    with HubStore.open(path) as store:
        lineage = store.contracts.get("fill@3").lineage
        active = store.alarms.find()
        again = store.alarms.raise_("d1", "guard_trip", "y", 3)
    assert lineage == "fill@3"
    assert len(active) == 1 and active[0].ts_ms == 2 and again == active[0].id
