"""The fleet view of the operator page in a real browser (Debian's chromium driven by Playwright)
against the real hub app under uvicorn: sites worst first, devices with state, alarms and desired
vs observed (or why not), the "what changed recently" timeline, and the SVG charts of a device's
journaled values with units, gaps included."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from contracts import codec
from hub.api import ROUTES
from hub.auth import ApiRole
from hub.states import DeviceEvent
from hub.store import HubStore, JournalRow, ReconciliationRecord

from .browser_page import browser_tab, needs_chromium
from .conftest import START_MS, TOKENS, StepClock, bearer

SHOT = "/tmp/fleet-view.png"
HAS_DRIFT = any(r.path == "/api/drift" for r in ROUTES)
DRIFT_UI_TIMEOUT_MS = 15_000


def _inputs(seq: int, ts_ms: int, level: float | None, speed: int) -> JournalRow:
    level_wire = [level, "good", None] if level is not None else [0.0, "bad", "timeout"]
    body = {"values": {"level": level_wire, "pump_speed": [speed, "good", None]}}
    return JournalRow(device="pump-station-7", seq=seq, ts_ms=ts_ms, kind="input",
                      body=codec.canonical_dumps(body), prev_hash=b"\x00", hash=bytes([seq]))


def _seed(store: HubStore) -> None:
    """north-field: one live device with an alarm, one live (degraded site); south-field: all
    projected (offline); east-field: live and quiet (ok). pump-station-7 has journaled levels
    with a bad reading in the middle; an alarm raised and cleared, a reconciliation."""
    t = START_MS - 120_000
    for device, site in (("pump-station-7", "north-field"), ("booster-skid-2", "north-field"),
                         ("well-9", "south-field"), ("mixer-4", "east-field")):
        store.devices.ensure(device, site, t)
    for device in ("pump-station-7", "booster-skid-2", "mixer-4"):
        store.devices.apply_event(device, DeviceEvent.TELEMETRY, t)
    store.devices.apply_event("well-9", DeviceEvent.WILL, t)
    levels = (1.0, 1.5, 2.0, None, 2.5, 3.0)
    store.journal.insert([_inputs(i + 1, START_MS - 60_000 + 10_000 * i, lv, 1200)
                          for i, lv in enumerate(levels)])
    store.devices.update("pump-station-7", contract="tank-fill", version=3, last_seq=len(levels),
                         last_seen_ms=START_MS - 5_000)
    store.reconciliations.add(ReconciliationRecord(
        device="well-9", contract="tank-fill", version=2, ts_ms=START_MS - 30_000,
        divergent=True, report={"reasons": ["step: projected fill, actual hold"]}, action="none"))
    store.reconciliations.add(ReconciliationRecord(
        device="booster-skid-2", contract="tank-fill", version=3, ts_ms=START_MS - 90_000,
        divergent=True, action="none", report={
            "from_ms": START_MS - 600_000, "to_ms": START_MS - 90_000,
            "reasons": ["timing: step hold off by 120.0 s (tolerance 30 s)"],
            "timing": [{"step": "fill", "projected_ms": START_MS - 600_000,
                        "actual_ms": START_MS - 600_000, "delta_s": 0.0},
                       {"step": "hold", "projected_ms": START_MS - 400_000,
                        "actual_ms": START_MS - 280_000, "delta_s": 120.0}]}))
    old = store.alarms.raise_("mixer-4", "journal_gap", "seq 4..9 missing", START_MS - 50_000)
    store.alarms.clear(old, START_MS - 40_000)
    store.alarms.raise_("pump-station-7", "guard_trip", "reason=stale point=level", START_MS + 1000)


@pytest.fixture
async def page(client: httpx.AsyncClient, store: HubStore,
               tank_fill: dict[str, Any]) -> AsyncIterator[Any]:
    r = await client.post("/api/contracts", content=json.dumps(tank_fill),
                          headers={**bearer(ApiRole.OPERATOR), "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    _seed(store)
    async with browser_tab(str(client.base_url).rstrip("/"), height=1200,
                           token=TOKENS[ApiRole.VIEWER]) as tab:
        yield tab


@needs_chromium
async def test_sites_come_worst_first_with_their_devices_state_alarms_and_snapshots(
        page: Any) -> None:
    from playwright.async_api import expect
    sites = page.locator("#sites > section.site")
    await expect(sites).to_have_count(3)
    assert await sites.evaluate_all("s => s.map(e => [e.dataset.site, e.dataset.health])") == [
        ["south-field", "offline"], ["north-field", "degraded"], ["east-field", "ok"]]
    north = page.locator("#sites [data-site='north-field']")
    await expect(north.locator(".site-title")).to_contain_text("2 devices · 1 alarm")
    pump = north.locator("li[data-device='pump-station-7']")
    await expect(pump).to_have_attribute("data-health", "degraded")
    await expect(pump.locator(".badge-live")).to_have_text("LIVE")
    await expect(pump.locator("[data-kind='guard_trip']")).to_have_text("GUARD_TRIP")
    await expect(pump.locator(".fleet-contract")).to_have_text("tank-fill@3")
    # the degraded device is listed before its quiet neighbour
    assert await north.locator("li.fleet-device").evaluate_all(
        "l => l.map(e => e.dataset.device)") == ["pump-station-7", "booster-skid-2"]
    await expect(pump.locator(".fleet-snapshot")).to_have_text(
        "desired: none set" if HAS_DRIFT else "desired: – (this hub has no /api/drift)")
    await page.screenshot(path=SHOT, full_page=True)


@needs_chromium
async def test_timeline_lists_pushes_reconciliations_and_alarms_newest_first(page: Any) -> None:
    from playwright.async_api import expect
    items = page.locator("#timeline li.timeline-item")
    await expect(items.first).to_contain_text("alarm guard_trip on pump-station-7")
    kinds = await items.evaluate_all("l => l.map(e => e.dataset.kind)")
    assert kinds[:4] == ["alarm", "push", "reconciliation", "alarm-cleared"], kinds
    await expect(items.nth(1)).to_contain_text("push tank-fill@3 on pump-station-7 by operator-user")
    await expect(items.nth(2)).to_contain_text(
        "reconciled well-9 tank-fill@2: divergent — step: projected fill, actual hold")
    await expect(items.nth(3)).to_contain_text("cleared journal_gap on mixer-4")
    times = await items.locator("time").all_text_contents()
    assert times == sorted(times, reverse=True)


@needs_chromium
async def test_chart_draws_the_journaled_values_with_units_a_gap_and_follows_a_clicked_device(
        page: Any) -> None:
    from playwright.async_api import expect
    await expect(page.locator("#chart-title")).to_have_text("Recent values: pump-station-7")
    level = page.locator("#charts figure[data-point='level']")
    await expect(level.locator("figcaption")).to_have_text("level (m)")
    await expect(level.locator(".chart-last")).to_have_text("3 m")
    path = await level.locator("path.chart-line").get_attribute("d")
    assert path.count("M") == 2, path  # the bad reading splits the line in two runs
    ticks = await level.locator(".chart-tick").all_text_contents()
    assert "1" in ticks and "3" in ticks and any(t.endswith("UTC") for t in ticks), ticks
    speed = page.locator("#charts figure[data-point='pump_speed']")
    await expect(speed.locator("figcaption")).to_have_text("pump_speed (rpm)")
    await expect(speed.locator(".chart-last")).to_have_text("1200 rpm")
    await page.click("#sites li[data-device='mixer-4'] .fleet-pick")
    await expect(page.locator("#chart-title")).to_have_text("Recent values: mixer-4")
    await expect(page.locator("#charts")).to_have_text("no journaled readings yet")


@needs_chromium
async def test_the_last_reconciled_outage_draws_projected_against_actual_steps(page: Any) -> None:
    from playwright.async_api import expect
    outage = page.locator("#outage")
    await expect(outage.locator(".outage-caption")).to_have_text(
        "booster-skid-2 · tank-fill@3 · outage 05:50:00–05:58:30 UTC · "
        "timing: step hold off by 120.0 s (tolerance 30 s)")
    await expect(outage.locator("g.outage-step")).to_have_count(4)

    async def x(lane: str, step: str) -> float:
        rect = outage.locator(f"g[data-lane='{lane}'][data-step='{step}'] rect")
        return float(await rect.get_attribute("x") or "nan")
    assert await x("projected", "fill") == await x("actual", "fill")
    # hold entered 120 s later than projected: the actual segment starts further right
    assert await x("actual", "hold") - await x("projected", "hold") > 100


@needs_chromium
async def test_a_hub_without_drift_is_said_so_and_the_rest_of_the_view_works(page: Any) -> None:
    from playwright.async_api import expect
    asked: list[str] = []

    async def older_hub(route: Any) -> None:  # a hub of before issue 12: no such route
        asked.append(route.request.url)
        await route.fulfill(status=404, content_type="application/json",
                            body='{"error": "Not Found", "issues": []}')
    await page.route("**/api/drift", older_hub)
    await page.reload()  # the token stays in the tab's sessionStorage
    pump = page.locator("#sites li[data-device='pump-station-7']")
    await expect(pump.locator(".fleet-snapshot")).to_have_text(
        "desired: – (this hub has no /api/drift)")
    await expect(page.locator("#charts figure[data-point='level']")).to_be_visible()
    await expect(page.locator("#status")).not_to_contain_text("STALE")
    await expect(page.locator("#timeline li.timeline-item").first).to_be_visible()
    asked_before = len(asked)  # 1, or 2 if a refresh from before the reload was in flight
    shown = await page.locator("#status").text_content()
    await expect(page.locator("#status")).not_to_have_text(shown or "")  # a later refresh ran
    assert len(asked) == asked_before  # not asked again until the next sign-in


@pytest.mark.skipif(not HAS_DRIFT, reason="this hub has no GET /api/drift (issue 12)")
@needs_chromium
async def test_a_device_not_running_its_desired_snapshot_shows_drift_and_degrades_its_site(
        page: Any, client: httpx.AsyncClient, clock: StepClock) -> None:
    from playwright.async_api import expect

    from tests.contracts.fleet_docs import tank_binding, tank_design
    admin = bearer(ApiRole.ADMIN)
    r = await client.post("/api/devices", json={"id": "mixer-4", "site": "east-field"},
                          headers=admin)
    assert r.status_code == 201, r.text
    for path, body in (("/api/designs", tank_design()),
                       ("/api/bindings", tank_binding("b-mixer", {"device": "mixer-4"})),
                       ("/api/snapshots", {"target": {"devices": ["mixer-4"]}})):
        r = await client.post(path, json=body, headers=admin)
        assert r.status_code == 201, r.text
    sid = r.json()["id"]
    r = await client.put("/api/devices/mixer-4/desired", json={"snapshot": sid}, headers=admin)
    assert r.status_code == 200, r.text
    clock.now += 10_000  # past hub/drift.py's freshness window: the next refresh re-evaluates
    east = page.locator("#sites [data-site='east-field']")
    # the drift monitor evaluates on its own (about every second), the page refreshes every 2 s
    await expect(east).to_have_attribute("data-health", "degraded", timeout=DRIFT_UI_TIMEOUT_MS)
    await expect(east.locator("li[data-device='mixer-4'] .fleet-snapshot")).to_contain_text(
        f"desired {sid[:12]} (tank-fill.mixer-4) · observed nothing reported · DRIFT: ")
    timeline = page.locator("#timeline li[data-kind='snapshot']")
    await expect(timeline.first).to_contain_text(f"snapshot {sid} by admin-user")


def _reconciled_outage(doc: dict[str, Any]) -> dict[str, Any]:
    """A real reconciliation report (hub/reconcile.py over a real projection of tank-fill@3):
    five minutes offline, the projection filling at 0.002 m/s from 1 m, the journal's level
    rising at half that."""
    from contracts.chain import GENESIS, EntryKind, make_entry
    from contracts.loader import check_mapping
    from contracts.projection import project
    from hub.projector import SAMPLE_MS
    from hub.reconcile import reconcile

    contract = check_mapping(doc)
    t0, span = contract.valid_from, 300_000
    projection = project(contract, None, t0, t0 + span + 60_000, initial={"level": 1.0},
                         every_ms=SAMPLE_MS)
    entries, prev = [], GENESIS
    for seq in range(1, span // 1000 + 1):
        e = make_entry(prev, seq, t0 + seq * 1000, EntryKind.INPUT,
                       {"values": {"level": [1.0 + seq * 0.001, "good", None]}})
        entries.append(e)
        prev = e.hash
    return reconcile(contract, projection, entries, t0, t0 + span).to_json()


def _vertices(d: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in
            (p[1:].split(",") for p in d.split() if p[0] in "ML")]


@needs_chromium
async def test_a_reconciled_outage_draws_the_projected_values_against_the_actual_with_units(
        page: Any, store: HubStore, tank_fill: dict[str, Any]) -> None:
    from playwright.async_api import expect
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/api/reconciliations/" in r.url else None)
    report = _reconciled_outage(tank_fill)
    rec_id = store.reconciliations.add(ReconciliationRecord(
        device="pump-station-7", contract="tank-fill", version=3, ts_ms=START_MS + 5_000,
        divergent=report["divergent"], report=report, action="none"))
    outage = page.locator("#outage")
    level = outage.locator("figure.trajectory-figure[data-point='level']")
    await expect(level.locator("figcaption")).to_have_text(  # the page refreshes every 2 s
        "level (m): projected against actual", timeout=DRIFT_UI_TIMEOUT_MS)
    await expect(outage.locator(".outage-caption")).to_contain_text(
        "pump-station-7 · tank-fill@3 · outage ")
    [want] = [t for t in report["trajectory"] if t["point"] == "level"]
    drawn = _vertices(await level.locator("path.chart-projected").get_attribute("d") or "")
    assert len(drawn) == len(want["projected"]) >= 30, (len(drawn), len(want["projected"]))
    # the path follows the projected samples: x affine in time, y affine in value (up is more)
    (t0, v0), (tn, vn) = want["projected"][0], want["projected"][-1]
    (x0, y0), (xn, yn) = drawn[0], drawn[-1]
    assert vn > v0 and yn < y0
    for (ts, v), (x, y) in zip(want["projected"], drawn):
        assert abs((x - x0) / (xn - x0) - (ts - t0) / (tn - t0)) < 0.01, (ts, x)
        assert abs((y - y0) / (yn - y0) - (v - v0) / (vn - v0)) < 0.01, (v, y)
    actual = _vertices(await level.locator("path.chart-actual").get_attribute("d") or "")
    assert len(actual) >= 2 * len(want["actual"]) - 1  # steps: a level and a riser per sample
    assert actual[-1][1] > yn  # the device ended lower than projected: drawn below
    await expect(level.locator(".trajectory-projected")).to_have_text(
        f"projected {want['projected'][-1][1]:.4g} m")
    await expect(level.locator(".trajectory-actual")).to_have_text("actual 1.3 m")
    assert any(t.endswith(" m") for t in await level.locator(".chart-tick").all_text_contents())
    await page.screenshot(path="/tmp/fleet-outage.png", full_page=True)
    shown = await page.locator("#status").text_content()
    await expect(page.locator("#status")).not_to_have_text(shown or "")  # a later refresh ran
    assert [u.rsplit("/", 1)[-1] for u in fetched] == [str(rec_id)]  # read once: it never changes


@needs_chromium
async def test_the_chart_asks_only_for_what_is_new_and_merges_it_as_the_journal_grows(
        page: Any, store: HubStore) -> None:
    from playwright.async_api import expect
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/series" in r.url else None)
    level = page.locator("#charts figure[data-point='level']")
    await expect(level.locator(".chart-last")).to_have_text("3 m")
    await expect(page.locator("#status")).not_to_have_text(  # a refresh after the first load
        await page.locator("#status").text_content() or "")
    store.journal.insert([_inputs(7, START_MS - 5_000, 3.5, 1200),
                          _inputs(8, START_MS - 4_000, 4.25, 900)])
    store.devices.update("pump-station-7", last_seq=8)
    await expect(level.locator(".chart-last")).to_have_text("4.25 m", timeout=DRIFT_UI_TIMEOUT_MS)
    speed = page.locator("#charts figure[data-point='pump_speed']")
    await expect(speed.locator(".chart-last")).to_have_text("900 rpm")
    path = await level.locator("path.chart-line").get_attribute("d") or ""
    assert path.count("M") == 2, path  # the gap from before is still there, the new steps joined
    merged = _vertices(path)
    assert len(merged) == 2 * 7, merged  # 1, 1.5, 2 | 2.5, 3, 3.5, 4.25: a level and a riser each
    assert any("after_seq=6" in u for u in asked), asked  # the answer after the first: increments
    assert not any("after_seq" not in u for u in asked[1:]), asked
