"""`fieldpact ctl` over issue 12's fleet routes on a real hub (uvicorn on 127.0.0.1, a real store):
designs, snapshot create|list|show|diff, plan (a dry run: the store is unchanged) and drift
(`--check` exits DRIFT). Skipped on a hub without the routes (test_ctl.py checks that a route the
hub lacks is Exit.UNSUPPORTED)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from fieldpact.ctl_client import Exit
from hub.api import ROUTES
from hub.auth import ApiRole
from hub.store import HubStore
from tests.hub.conftest import TOKENS, StepClock, bearer
from tests.waiting import eventually

from .test_ctl import ADMIN, OPERATOR, Ctl, ctl  # noqa: F401 - the ctl fixture

FLEET_ROUTES = {"/api/designs", "/api/snapshots", "/api/plans", "/api/drift"}
if not FLEET_ROUTES <= {r.path for r in ROUTES}:
    pytest.skip("this hub has no fleet routes (issue 12)", allow_module_level=True)

from tests.contracts.fleet_docs import tank_binding, tank_design  # noqa: E402 - issue 12's docs

DRIFT_STALE_MS = 10_000
"""Hub time past any freshness window of hub/drift.py: GET /api/drift answers from the drift
monitor's last evaluation (it runs on its own, about every second), or evaluates itself when that
is this old; the test moves the hub clock and waits (bounded) for an evaluation that has it."""
DRIFT_WAIT_S = 15.0

DEVICES = {"pump-7": ("north", 20), "skid-2": ("north", 100), "tank-9": ("south", 7)}
TARGET = {"target": {"labels": {"kind": "tank"}}}
assert TOKENS[ApiRole.ADMIN] == ADMIN


async def _post(client: httpx.AsyncClient, path: str, body: Any) -> Any:
    r = await client.post(path, json=body, headers=bearer(ApiRole.ADMIN))
    assert r.status_code in (200, 201), r.text
    return r.json()


@pytest.fixture
async def bound(client: httpx.AsyncClient) -> None:
    """Three registered tank devices, the tank design, one binding per device."""
    for device, (site, _) in DEVICES.items():
        await _post(client, "/api/devices", {"id": device, "site": site,
                                             "labels": {"kind": "tank"}})
    await _post(client, "/api/designs", tank_design())
    for device, (_, pump) in DEVICES.items():
        await _post(client, "/api/bindings", tank_binding(f"b-{device}", {"device": device}, pump))


async def _snapshot(ctl: Ctl, tmp_path: Path, name: str = "snap.yaml") -> str:
    file = tmp_path / name
    file.write_text(json.dumps(TARGET) if name.endswith(".json")
                    else "target:\n  labels: {kind: tank}\n")
    made = await ctl("snapshot", "create", str(file), "--json", token=ADMIN)
    assert made.code == Exit.OK, made.err
    return str(made.json()["id"])


async def test_designs_list_and_show_and_an_unknown_design_is_not_found(
        bound: None, ctl: Ctl) -> None:
    listed = await ctl("designs")
    assert listed.code == Exit.OK, listed.err
    row = next(ln for ln in listed.out.splitlines() if "tank-fill" in ln)
    assert "[3]" in row and row.rstrip("│ ").endswith("3")
    shown = await ctl("designs", "tank-fill", "--json")
    assert [v["version"] for v in shown.json()["versions"]] == [3]
    assert (await ctl("designs", "nope")).code == Exit.NOT_FOUND


async def test_snapshot_create_is_content_addressed_listed_shown_and_needs_admin(
        bound: None, ctl: Ctl, tmp_path: Path) -> None:
    sid = await _snapshot(ctl, tmp_path)
    assert await _snapshot(ctl, tmp_path, "again.json") == sid  # same content, same id
    listed = await ctl("snapshot", "list", "--json")
    assert [s["id"] for s in listed.json()["snapshots"]] == [sid]
    assert sid in (await ctl("snapshot", "list")).out
    shown = await ctl("snapshot", "show", sid, "--json")
    assert shown.code == Exit.OK and len(shown.json()["content"]["bindings"]) == 3
    assert (await ctl("snapshot", "show", "0" * 64)).code == Exit.NOT_FOUND
    weak = await ctl("snapshot", "create", str(tmp_path / "snap.yaml"), token=OPERATOR)
    assert weak.code == Exit.AUTH and "needs admin" in weak.err
    (tmp_path / "bad.yaml").write_text("target: {colour: blue}\n")
    bad = await ctl("snapshot", "create", str(tmp_path / "bad.yaml"), token=ADMIN)
    assert bad.code == Exit.REFUSED and "  target:" in bad.err


async def test_snapshot_diff_names_the_device_and_field_that_change(
        bound: None, ctl: Ctl, client: httpx.AsyncClient, tmp_path: Path) -> None:
    a = await _snapshot(ctl, tmp_path)
    await _post(client, "/api/bindings", tank_binding("b-skid-2", {"device": "skid-2"}, 101))
    b = await _snapshot(ctl, tmp_path, "b.yaml")
    diff = await ctl("snapshot", "diff", a, b, "--json")
    assert diff.code == Exit.OK, diff.err
    [row] = diff.json()["devices"]
    assert (row["device"], row["change"]) == ("skid-2", "changed")
    table = await ctl("snapshot", "diff", a, b)
    assert "skid-2" in table.out and "changed" in table.out and "summary: added 0" in table.out


async def test_plan_is_a_dry_run_that_changes_nothing_and_narrows_to_a_site(
        bound: None, ctl: Ctl, store: HubStore, tmp_path: Path) -> None:
    sid = await _snapshot(ctl, tmp_path)
    before = (store.contracts.find(), store.audit.find(limit=1000))
    plan = await ctl("plan", sid, "--json", token=ADMIN)
    assert plan.code == Exit.OK, plan.err
    assert sorted(r["device"] for r in plan.json()["devices"]) == sorted(DEVICES)
    table = await ctl("plan", sid, token=ADMIN)
    assert "dry run: nothing changed" in table.out and "install" in table.out
    south = await ctl("plan", sid, "--target", json.dumps({"sites": ["south"]}), "--json",
                      token=ADMIN)
    assert [r["device"] for r in south.json()["devices"]] == ["tank-9"]
    assert (store.contracts.find(), store.audit.find(limit=1000)) == before
    unknown = await ctl("plan", "0" * 64, token=ADMIN)  # the body names it: 422 on that field
    assert unknown.code == Exit.REFUSED and f"  snapshot: no snapshot '{'0' * 64}'" in unknown.err
    bad = await ctl("plan", sid, "--target", "[1]", token=ADMIN)
    assert bad.code == Exit.USAGE and "is not a JSON object" in bad.err


async def test_drift_lists_desired_vs_observed_and_check_exits_drift_naming_each_device(
        bound: None, ctl: Ctl, client: httpx.AsyncClient, tmp_path: Path,
        clock: StepClock) -> None:
    assert (await ctl("drift", "--check")).code == Exit.OK  # nothing desired: nothing drifts
    sid = await _snapshot(ctl, tmp_path)
    r = await client.put("/api/devices/pump-7/desired", json={"snapshot": sid},
                         headers=bearer(ApiRole.ADMIN))
    assert r.status_code == 200, r.text
    clock.now += DRIFT_STALE_MS

    async def evaluated() -> list[Any]:
        entries: list[Any] = (await ctl("drift", "--json")).json()["entries"]
        return entries
    [entry] = await eventually(evaluated, DRIFT_WAIT_S, "a drift evaluation with pump-7")
    assert (entry["device"], entry["in_sync"]) == ("pump-7", False)
    table = await ctl("drift")
    row = next(ln for ln in table.out.splitlines() if "pump-7" in ln)
    assert sid[:12] in row and "nothing reported" in row and "false" in row
    checked = await ctl("drift", "--check")
    assert checked.code == Exit.DRIFT and "pump-7" in checked.out
    assert f"  pump-7 {entry['contract']}: {entry['why']}" in checked.err
    south = await ctl("drift", "--check", "--site", "south", "--json")
    assert south.code == Exit.OK and south.json()["entries"] == []


async def test_desired_set_then_clear_drops_its_drift_rows_and_alarm_audited_and_needs_admin(
        bound: None, ctl: Ctl, store: HubStore, tmp_path: Path, clock: StepClock) -> None:
    from hub.alarms import AlarmKind
    sid = await _snapshot(ctl, tmp_path)
    assert (await ctl("desired", "set", "pump-7", sid, token=OPERATOR)).code == Exit.AUTH
    made = await ctl("desired", "set", "pump-7", sid, token=ADMIN)
    assert made.code == Exit.OK and f"pump-7: desired snapshot {sid}" in made.out, made.err
    clock.now += DRIFT_STALE_MS

    async def drifting() -> bool:
        return bool((await ctl("drift", "--json")).json()["entries"])
    await eventually(drifting, DRIFT_WAIT_S, "pump-7 drifting")
    clock.now += 16 * 60_000  # past the drift alarm's 15 min (hub.toml default)

    async def alarmed() -> bool:
        return bool(store.alarms.find(device="pump-7", kind=AlarmKind.DRIFT))
    await eventually(alarmed, DRIFT_WAIT_S, "pump-7's drift alarm raised")
    assert store.fleet.drift_rows() and store.fleet.desired() == {"pump-7": sid}

    assert (await ctl("desired", "clear", "pump-7", token=OPERATOR)).code == Exit.AUTH
    cleared = await ctl("desired", "clear", "pump-7", "--json", token=ADMIN)
    assert cleared.code == Exit.OK, cleared.err
    assert cleared.json() == {"device": "pump-7", "snapshot": None, "cleared": sid}
    assert store.fleet.desired() == {} and store.fleet.drift_rows() == {}
    assert store.alarms.find(device="pump-7", kind=AlarmKind.DRIFT) == []
    [audit] = [e for e in store.audit.find(device="pump-7") if e.action == "desired_clear"]
    assert (audit.actor, dict(audit.detail)) == ("admin-user", {"snapshot": sid})
    clock.now += DRIFT_STALE_MS

    async def gone() -> bool:
        return (await ctl("drift", "--json")).json()["entries"] == []
    await eventually(gone, DRIFT_WAIT_S, "no drift entry once nothing is desired")
    again = await ctl("desired", "clear", "pump-7", token=ADMIN)
    assert again.code == Exit.OK and "no desired snapshot was set" in again.out
    assert (await ctl("desired", "clear", "nope", token=ADMIN)).code == Exit.NOT_FOUND
