"""The operator page in a real browser (Debian's chromium driven by Playwright) against the real hub
app under uvicorn: sign-in, device states, projection, reconciliations, audit, Hold/Abort and their
refusals, auto-refresh, and that API values reach the page as text, never as markup.

Needs /usr/bin/chromium (Debian packages `chromium`; CI installs it in .ci/run). The page's own HTTP
rules (public page, protected API, headers) are checked without a browser."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.api import ROUTES
from hub.auth import required_role
from hub.states import ContractEvent, ContractStatus, DeviceEvent
from hub.store import HubStore, ReconciliationRecord

from .browser_page import browser_tab, needs_chromium, sign_in
from .conftest import START_MS, TOKENS, ApiRole, bearer

SCREENSHOT = Path("/tmp/webui.png")
MARKUP_SITE = '<img src=x onerror="document.title=\'pwned\'">north'


def _seed_devices(store: HubStore) -> None:
    """One device per state the page must tell apart, with values as the sync side stores them."""
    t = START_MS - 60_000
    for device, site in (("pump-station-7", "north-field"), ("booster-2", "north-field"),
                         ("well-9", MARKUP_SITE), ("mixer-4", "south-field")):
        store.devices.ensure(device, site, t)
    store.devices.apply_event("pump-station-7", DeviceEvent.TELEMETRY, t)
    store.devices.update("pump-station-7", last_seen_ms=START_MS - 5_000, contract="tank-fill",
                        version=3, projection={"source": "live", "ts_ms": START_MS - 5_000,
                                               "values": {"level": 3.14159, "pump_speed": 1200,
                                                          "valve_open": True},
                                               "step": "fill", "mode": "running"})
    store.devices.apply_event("booster-2", DeviceEvent.WILL, t)
    store.devices.update("booster-2", last_seen_ms=START_MS - 600_000, projection={
        "source": "projection", "ts_ms": START_MS - 600_000, "values": {"pressure": 4.2},
        "confidence": 0.82, "step": "boost", "mode": "running"})
    store.devices.apply_event("well-9", DeviceEvent.BIRTH, t)
    store.devices.apply_event("mixer-4", DeviceEvent.TELEMETRY, t)
    store.devices.apply_event("mixer-4", DeviceEvent.CHAIN_BROKEN, t, "prev_hash mismatch at 41")


@pytest.fixture
async def hub_url(client: httpx.AsyncClient, store: HubStore, tank_fill: dict[str, Any]) -> str:
    """The hub's base URL, with devices in every state, an active contract, a reconciliation."""
    _seed_devices(store)
    r = await client.post("/api/contracts", content=json.dumps(tank_fill),
                          headers={**bearer(ApiRole.OPERATOR), "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    for event in (ContractEvent.ACCEPT, ContractEvent.START):
        store.contracts.apply_event("tank-fill@3", event, START_MS)
    store.reconciliations.add(ReconciliationRecord(
        device="booster-2", contract="boost", version=2, ts_ms=START_MS - 30_000, divergent=True,
        report={"reasons": ["step: projected boost, actual idle"]}, action="replan boost@3"))
    return str(client.base_url).rstrip("/")


@pytest.fixture
async def page(hub_url: str) -> AsyncIterator[Any]:
    async with browser_tab(hub_url, height=1000) as tab:
        yield tab


def _badge(page: Any, table: str, key: str, value: str) -> Any:
    return page.locator(f"#{table} tr[data-{key}='{value}'] .badge")


@needs_chromium
async def test_signed_in_page_shows_every_device_state_projection_and_history_as_text(
        page: Any) -> None:
    from playwright.async_api import expect
    await sign_in(page, TOKENS[ApiRole.VIEWER])
    for device, state in (("pump-station-7", "LIVE"), ("booster-2", "PROJECTED"),
                          ("well-9", "RECONCILING"), ("mixer-4", "FAULT")):
        await expect(_badge(page, "devices", "device", device)).to_have_text(state)
    live = page.locator("#devices tr[data-device='pump-station-7']")
    await expect(live).to_contain_text("tank-fill@3 (active)")
    await expect(live).to_contain_text("5 s ago")
    await expect(live).to_contain_text("fill / running")
    await expect(live).to_contain_text("level 3.142 · pump_speed 1200 · valve_open true")
    projected = page.locator("#devices tr[data-device='booster-2']")
    await expect(projected).to_contain_text("confidence 82% · 10 min old")
    await expect(_badge(page, "contracts", "contract", "tank-fill@3")).to_have_text("ACTIVE")
    await expect(page.locator("#reconciliations")).to_contain_text(
        "step: projected boost, actual idle")
    await expect(page.locator("#reconciliations .badge-divergent")).to_have_text("YES")
    await expect(page.locator("#audit")).to_contain_text("operator-user")
    # A site name holding markup arrives as text: no element is created, no handler runs.
    await expect(page.locator("#devices tr[data-device='well-9']")).to_contain_text(MARKUP_SITE)
    assert await page.locator("#devices img").count() == 0
    assert await page.title() == "fieldpact hub"
    await page.screenshot(path=str(SCREENSHOT), full_page=True)


@needs_chromium
async def test_wrong_token_shows_the_hubs_refusal_and_asks_again(page: Any) -> None:
    from playwright.async_api import expect
    await sign_in(page, "not-a-token")
    await expect(page.locator("#message")).to_have_text(
        "Token refused by the hub: missing or invalid bearer token")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#board")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('fieldpact.token')") is None


@needs_chromium
async def test_viewer_hold_click_shows_the_403_and_the_contract_stays_active(
        page: Any, store: HubStore) -> None:
    from playwright.async_api import expect
    page.on("dialog", lambda dialog: dialog.accept())
    await sign_in(page, TOKENS[ApiRole.VIEWER])
    await page.click("#contracts tr[data-contract='tank-fill@3'] .action-hold")
    await expect(page.locator("#message")).to_have_text(
        "Hold tank-fill@3 on pump-station-7 refused (403): role viewer may not do this "
        "(needs operator)")
    assert store.contracts.get("tank-fill@3").status is ContractStatus.ACTIVE


@needs_chromium
async def test_operator_hold_after_confirming_holds_the_contract_and_a_dismissed_abort_does_not(
        page: Any, store: HubStore) -> None:
    from playwright.async_api import expect
    await sign_in(page, TOKENS[ApiRole.OPERATOR])
    page.once("dialog", lambda dialog: dialog.dismiss())
    await page.click("#contracts tr[data-contract='tank-fill@3'] .action-abort")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.click("#contracts tr[data-contract='tank-fill@3'] .action-hold")
    await expect(_badge(page, "contracts", "contract", "tank-fill@3")).to_have_text("HELD")
    await expect(page.locator("#message")).to_have_text("Hold tank-fill@3 on pump-station-7: done")
    assert store.contracts.get("tank-fill@3").status is ContractStatus.HELD
    assert [e.action.value for e in store.audit.find()].count("abort") == 0
    await expect(page.locator("#audit")).to_contain_text("from the operator page")


@needs_chromium
async def test_page_refreshes_by_itself_and_greys_out_as_stale_when_the_hub_stops_answering(
        page: Any, store: HubStore) -> None:
    from playwright.async_api import expect
    await sign_in(page, TOKENS[ApiRole.VIEWER])
    await expect(_badge(page, "devices", "device", "pump-station-7")).to_have_text("LIVE")
    store.devices.apply_event("pump-station-7", DeviceEvent.WILL, START_MS)
    await expect(_badge(page, "devices", "device", "pump-station-7")).to_have_text("PROJECTED")
    await page.route("**/api/devices", lambda route: route.abort())
    await expect(page.locator("#status")).to_contain_text(
        "STALE: refresh failed (0): hub unreachable")
    await expect(page.locator("#board")).to_have_class("stale")
    await expect(_badge(page, "devices", "device", "pump-station-7")).to_have_text("PROJECTED")


async def test_page_and_its_files_are_public_and_the_api_still_is_not(
        client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and "fieldpact hub" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, media in (("app.js", "javascript"), ("app.css", "text/css")):
        r = await client.get(f"/static/{name}")
        assert r.status_code == 200 and media in r.headers["content-type"], name
    assert (await client.get("/static/nope.js")).status_code == 404
    assert (await client.get("/api/devices")).status_code == 401
    assert (await client.post("/")).status_code == 401  # only GET/HEAD of the page are public


async def test_openapi_document_lists_the_api_but_not_the_page(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json", headers=bearer(ApiRole.VIEWER))).json()
    assert set(doc["paths"]) == {r.path for r in ROUTES}
    assert "/" not in doc["paths"]


@pytest.mark.parametrize(("method", "path", "role"), [
    ("GET", "/", None),
    ("HEAD", "/", None),
    ("GET", "/static/app.js", None),
    ("POST", "/", ApiRole.ADMIN),
    ("POST", "/static/app.js", ApiRole.ADMIN),
    ("GET", "/staticky", ApiRole.VIEWER),
    ("GET", "/api/static/x", ApiRole.VIEWER),
])
def test_only_reading_the_page_and_its_files_is_public(method: str, path: str,
                                                       role: ApiRole | None) -> None:
    assert required_role(method, path) is role


@needs_chromium
async def test_alarm_banner_ack_and_a_working_resume_button_on_a_tripped_contract(
        page: Any, store: HubStore, publisher: Any) -> None:
    from playwright.async_api import expect
    store.contracts.apply_event("tank-fill@3", ContractEvent.TRIP, START_MS, "trip: stale:level")
    alarm = store.alarms.raise_("pump-station-7", "guard_trip", "seq 9: guard_trip reason=stale "
                              "point=level", START_MS)
    await sign_in(page, TOKENS[ApiRole.OPERATOR])
    banner = page.locator("#alarm-banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("pump-station-7: guard_trip")
    await expect(banner).to_contain_text("reason=stale point=level")
    await expect(page.locator("#devices tr[data-device='pump-station-7'] [data-kind='guard_trip']")
                 ).to_have_text("GUARD_TRIP")
    await page.click(f"#alarms li[data-alarm='{alarm}'] .action-ack")
    await expect(banner).to_contain_text("acknowledged by operator-user")
    assert store.alarms.get(alarm).acked_by == "operator-user"
    await expect(_badge(page, "contracts", "contract", "tank-fill@3")).to_have_text("TRIPPED")
    page.once("dialog", lambda dialog: dialog.accept("level sensor replaced"))
    await page.click("#contracts tr[data-contract='tank-fill@3'] .action-resume")
    await expect(page.locator("#message")).to_have_text(
        "Resume tank-fill@3 on pump-station-7: sent")
    assert [c.kind.value for _, _, c in publisher.commands] == ["resume"]
    resumes = [e for e in store.audit.find(contract="tank-fill@3") if e.action.value == "resume"]
    assert resumes[0].reason == "level sensor replaced"


@needs_chromium
async def test_a_dismissed_resume_prompt_sends_nothing_and_an_admin_resets_a_faulted_device(
        page: Any, store: HubStore, publisher: Any) -> None:
    from playwright.async_api import expect
    store.contracts.apply_event("tank-fill@3", ContractEvent.TRIP, START_MS, "trip: stale:level")
    await sign_in(page, TOKENS[ApiRole.ADMIN])
    page.once("dialog", lambda dialog: dialog.dismiss())
    await page.click("#contracts tr[data-contract='tank-fill@3'] .action-resume")
    page.once("dialog", lambda dialog: dialog.accept("journal restored"))
    await page.click("#devices tr[data-device='mixer-4'] .action-reset")
    await expect(_badge(page, "devices", "device", "mixer-4")).to_have_text("UNKNOWN")
    assert publisher.commands == []
    assert store.devices.get("mixer-4").state.value == "unknown"
