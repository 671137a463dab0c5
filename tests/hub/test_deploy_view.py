"""The deployments section of the operator page in a real browser (Debian's chromium driven by
Playwright) against the real hub app under uvicorn: the list, per wave its progress bar and gate,
each failed gate with its journal evidence, the rollback's reason, the devices, the actions (and a
refused one's 409), and a hub without deployments said so.

The deployment answers come from the browser's route table, shaped exactly as fixed interface I4
gives them (tests/hub/deployment_views.py), so the page is proved against the interface whatever
engine serves it; the last test shows a deployment the real API planned, and acts on it."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from hub.api import ROUTES
from hub.auth import ApiRole

from . import deployment_views as views
from .browser_page import browser_tab, needs_chromium
from .conftest import TOKENS

SHOT = "/tmp/deploy-view.png"


@dataclass
class Deployments:
    """What the page is answered on /api/deployments*, and what it posted."""
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    posted: list[tuple[str, Any]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # path -> 409 message

    async def answer(self, route: Any) -> None:
        request = route.request
        path = request.url.split("://", 1)[1].split("/", 1)[1]
        path = "/" + path.split("?", 1)[0]
        if request.method == "POST":
            self.posted.append((path, request.post_data_json if request.post_data else None))
            if path in self.refuse:
                return await _json(route, {"error": self.refuse[path]}, 409)
            ident = path.split("/")[3]
            self.views[ident] = {**self.views[ident], "state": "wave"}
            return await _json(route, self.views[ident])
        if path == "/api/deployments":
            return await _json(route, {"deployments": [views.summary(v)
                                                       for v in self.views.values()]})
        ident = path.rsplit("/", 1)[1]
        if ident not in self.views:
            return await _json(route, {"error": f"no deployment {ident}"}, 404)
        await _json(route, self.views[ident])


async def _json(route: Any, body: Any, status: int = 200) -> None:
    await route.fulfill(status=status, content_type="application/json", body=json.dumps(body))


@pytest.fixture
async def deployments() -> Deployments:
    return Deployments(views={v["id"]: v for v in (views.rolled_back(), views.complete())})


@pytest.fixture
async def page(client: httpx.AsyncClient, deployments: Deployments) -> AsyncIterator[Any]:
    routes = [("**/api/deployments", deployments.answer),
              ("**/api/deployments/**", deployments.answer)]
    async with browser_tab(str(client.base_url).rstrip("/"), height=1400,
                           token=TOKENS[ApiRole.OPERATOR], routes=routes) as tab:
        yield tab


@needs_chromium
async def test_a_rolled_back_deployment_shows_its_waves_the_failed_gate_evidence_and_why(
        page: Any) -> None:
    from playwright.async_api import expect
    items = page.locator("#deployments li.deploy-item")
    await expect(items).to_have_count(2)
    # newest first; none is under way, so the newest is shown
    assert await items.evaluate_all("l => l.map(e => e.dataset.deployment)") == [
        "dep-000002", "dep-000001"]
    await page.click("#deployments li[data-deployment='dep-000001'] .deploy-pick")
    detail = page.locator("#deployment article[data-deployment='dep-000001']")
    await expect(detail).to_have_attribute("data-state", "rolled_back")
    await expect(detail.locator(".deploy-head")).to_contain_text(
        "dep-000001 · snapshot badc0ffee000 · ROLLED_BACK · step rollback (done)")
    why = detail.locator(".deploy-rollback")
    await expect(why.locator(".deploy-rollback-why")).to_have_text(
        "initiated by gate · gate telemetry · devices pump-station-7 · 2026-11-24 06:00:15Z")
    device = why.locator(".deploy-rollback-device[data-device='pump-station-7']")
    await expect(device.locator("strong")).to_have_text("pump-station-7: gate telemetry")
    await expect(device.locator("li.deploy-evidence")).to_have_text([
        "level = 5.62 · journal seq 41 · 2026-11-24 06:00:12Z",
        "telemetry = level >= 1 and level <= 5"])
    canary = detail.locator(".deploy-wave[data-wave='0']")
    await expect(canary).to_have_attribute("data-gate", "failed")
    await expect(canary.locator(".deploy-counts")).to_have_text(
        "0/1 healthy · 1 failed · 0 unreachable · 0 skipped")
    await expect(canary.locator(".deploy-seg-failed")).to_have_attribute("data-count", "1")
    failure = canary.locator(".deploy-failure[data-device='pump-station-7']")
    await expect(failure.locator("strong")).to_have_text("pump-station-7: gate telemetry failed")
    await expect(failure.locator("li[data-seq='41']")).to_be_visible()
    wave = detail.locator(".deploy-wave[data-wave='1']")
    await expect(wave).to_have_attribute("data-gate", "pending")
    await expect(wave.locator(".deploy-counts")).to_contain_text("2 skipped")
    row = detail.locator("tr[data-device='pump-station-7']")
    await expect(row).to_contain_text("ROLLED_BACK")
    await expect(row).to_contain_text("tank-fill@2 (restored as tank-fill@4)")
    await expect(row).to_contain_text("telemetry")
    await expect(detail.locator(".action-deploy-retry")).to_have_count(0)  # nothing left to do
    await expect(detail.locator("li.deploy-transition[data-to='rolling_back']")).to_have_text(
        "2026-11-24 06:00:15Z · canary → rolling_back (gate_failed) — gate telemetry failed on "
        "pump-station-7")
    await detail.locator(".deploy-steps summary").click()
    await expect(detail.locator(".deploy-steps summary")).to_have_text("4 steps")
    await expect(detail.locator("li.deploy-step[data-step='canary:gate']")).to_have_attribute(
        "data-status", "failed")
    await expect(detail.locator("li.deploy-step").first).to_have_text(
        "canary:push: done · by deployment:dep-000001 · 2026-11-24 06:00:00Z → 2026-11-24 06:00:00Z")
    await page.screenshot(path=SHOT, full_page=True)


@needs_chromium
async def test_a_complete_deployment_shows_passed_gates_and_unreachable_devices_apart(
        page: Any) -> None:
    from playwright.async_api import expect
    detail = page.locator("#deployment article[data-deployment='dep-000002']")
    await expect(detail).to_have_attribute("data-state", "complete")
    await expect(detail.locator(".deploy-rollback")).to_have_count(0)
    wave = detail.locator(".deploy-wave[data-wave='1']")
    await expect(wave).to_have_attribute("data-gate", "passed")
    await expect(wave.locator(".deploy-counts")).to_have_text(
        "1/2 healthy · 0 failed · 1 unreachable · 0 skipped")
    await expect(wave.locator(".deploy-seg-unreachable")).to_have_attribute("data-count", "1")
    await expect(detail.locator("tr[data-device='well-9']")).to_contain_text(
        "not accepted within the reach deadline (60 s)")


@needs_chromium
async def test_a_device_rolled_back_alone_shows_why_and_the_pause_says_until_when(
        page: Any, deployments: Deployments) -> None:
    from playwright.async_api import expect
    deployments.views["dep-000004"] = views.went_on()  # under way: shown first
    detail = page.locator("#deployment article[data-deployment='dep-000004']")
    await expect(detail).to_have_attribute("data-state", "wave")
    alone = detail.locator(".deploy-rollback-alone[data-device='booster-skid-2']")
    await expect(alone.locator("strong").first).to_have_text(
        "booster-skid-2 rolled back alone (restored as tank-fill@5):")
    await expect(alone.locator(".deploy-rollback-why")).to_have_text(
        "initiated by gate · gate second_writer · devices booster-skid-2 · 2026-11-24 06:01:15Z")
    await expect(alone.locator("li[data-seq='57']")).to_be_visible()
    await expect(detail.locator(".deploy-pausing")).to_have_text(
        "next wave not before 2026-11-24 06:02:00Z (pause_s)")
    await expect(detail.locator(".deploy-wave[data-wave='1'] .deploy-counts")).to_have_text(
        "0/1 healthy · 1 failed · 0 unreachable · 0 skipped")


@needs_chromium
async def test_a_paused_deployment_is_shown_first_and_approve_posts_and_a_refusal_is_said(
        page: Any, deployments: Deployments) -> None:
    from playwright.async_api import expect
    deployments.views["dep-000003"] = {**views.paused(), "created_ms": views.T0 - 1}
    detail = page.locator("#deployment article[data-deployment='dep-000003']")
    # the oldest, but the one still under way: shown without being picked
    await expect(detail).to_have_attribute("data-state", "paused")
    await expect(detail.locator(".deploy-head")).to_contain_text("step canary:approval (running)")
    await expect(detail.locator(".action-deploy-resume")).to_have_count(0)  # approve, not resume
    page.on("dialog", lambda d: d.accept())
    await detail.locator(".action-deploy-approve").click()
    await expect(page.locator("#message")).to_have_text("Approve deployment dep-000003: wave")
    assert deployments.posted[-1] == ("/api/deployments/dep-000003/approve", None)
    deployments.refuse["/api/deployments/dep-000003/pause"] = (
        "deployment dep-000003 is verifying: pause is not allowed")
    await detail.locator(".action-deploy-pause").click()
    await expect(page.locator("#message")).to_have_text(
        "Pause deployment dep-000003 refused (409): deployment dep-000003 is verifying: "
        "pause is not allowed")


@needs_chromium
async def test_rollback_asks_for_a_reason_and_sends_it(page: Any, deployments: Deployments
                                                       ) -> None:
    from playwright.async_api import expect
    deployments.views["dep-000003"] = views.paused()
    detail = page.locator("#deployment article[data-deployment='dep-000003']")
    await expect(detail).to_be_visible()
    page.on("dialog", lambda d: d.accept("level sensor suspect"))
    await detail.locator(".action-deploy-rollback").click()
    await expect(page.locator("#message")).to_contain_text("Rollback deployment dep-000003")
    assert deployments.posted[-1] == ("/api/deployments/dep-000003/rollback",
                                      {"reason": "level sensor suspect"})


@needs_chromium
async def test_values_reach_the_page_as_text_not_markup(page: Any, deployments: Deployments
                                                        ) -> None:
    from playwright.async_api import expect
    view = views.rolled_back()
    markup = '<img src=x onerror="document.title=\'pwned\'">'
    view["rollback"]["evidence"] = [{"what": markup, "seq": 1, "ts_ms": None, "value": None}]
    view["created_ms"] = views.T0 + 10**6
    deployments.views["dep-000001"] = view
    detail = page.locator("#deployment article[data-deployment='dep-000001']")
    await expect(detail.locator(".deploy-rollback li").first).to_have_text(
        f"{markup} · journal seq 1")
    assert await page.title() == "fieldpact hub"
    assert await detail.locator("img").count() == 0


@needs_chromium
async def test_a_hub_without_deployments_is_said_so(page: Any) -> None:
    from playwright.async_api import expect
    asked: list[str] = []

    async def older_hub(route: Any) -> None:
        asked.append(route.request.url)
        await _json(route, {"error": "Not Found", "issues": []}, 404)
    await page.unroute("**/api/deployments")
    await page.route("**/api/deployments", older_hub)
    await page.reload()
    await expect(page.locator("#deployments")).to_have_text(
        "– (this hub has no /api/deployments)")
    await expect(page.locator("#sites")).to_be_visible()  # the rest of the board works
    asked_before = len(asked)
    shown = await page.locator("#status").text_content()
    await expect(page.locator("#status")).not_to_have_text(shown or "")  # a later refresh ran
    assert len(asked) == asked_before


# ---- against the real deployment API ------------------------------------------------------------

@pytest.fixture
async def real_page(service: Any, auth_config: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The page on a hub with the real deployment API (engine off: the states are the requests'),
    five registered tank devices and a snapshot over them; and an admin client of that hub."""
    from hub.api import create_app
    from tests.contracts.fleet_docs import tank_binding, tank_design

    from .conftest import SERVER_START_TIMEOUT_S, bearer
    from .serving import serving
    app = create_app(service, auth_config, rollouts=False)
    async with serving(app, timeout_s=SERVER_START_TIMEOUT_S, name="uvicorn") as url, \
            httpx.AsyncClient(base_url=url, headers=bearer(ApiRole.ADMIN)) as http:
        for d in ("d1", "d2", "d3"):
            r = await http.post("/api/devices", json={"id": d, "site": "s1"})
            assert r.status_code == 201, r.text
        for path, body in (("/api/designs", tank_design()),
                           ("/api/bindings", tank_binding("all", {"site": "s1"}))):
            assert (await http.post(path, json=body)).status_code == 201
        async with browser_tab(url, height=1400, token=TOKENS[ApiRole.OPERATOR]) as tab:
            yield tab, http


@pytest.mark.skipif(not any(r.path == "/api/deployments" for r in ROUTES),
                    reason="this hub has no deployments (issue 13)")
@needs_chromium
async def test_a_deployment_the_hub_planned_is_shown_and_paused_from_the_page(
        real_page: tuple[Any, httpx.AsyncClient]) -> None:
    from playwright.async_api import expect
    page, http = real_page
    await expect(page.locator("#deployments")).to_have_text("no deployments yet")
    snap = (await http.post("/api/snapshots", json={"target": {"sites": ["s1"]}})).json()
    r = await http.post("/api/deployments", json={
        "snapshot": snap["id"], "strategy": {"canary": {"devices": ["d2"]}, "waves": {"size": 2}},
        "health": {"window_s": 5}})
    assert r.status_code == 201, r.text
    detail = page.locator("#deployment article[data-deployment='dep-000001']")
    await expect(detail).to_have_attribute("data-state", "planned")
    await expect(detail.locator(".deploy-head")).to_contain_text(
        f"dep-000001 · snapshot {snap['id'][:12]} · PLANNED")
    canary = detail.locator(".deploy-wave[data-wave='0']")
    await expect(canary.locator(".deploy-wave-title")).to_contain_text("canary · 1 device")
    await expect(canary.locator(".deploy-counts")).to_have_text(
        "0/1 healthy · 0 failed · 0 unreachable · 0 skipped")
    await expect(detail.locator(".deploy-wave[data-wave='1']")).to_contain_text("wave 1 · 2 devices")
    await expect(detail.locator("tr[data-device='d2']")).to_contain_text("QUEUED")
    page.on("dialog", lambda d: d.accept())
    await detail.locator(".action-deploy-pause").click()
    await expect(page.locator("#message")).to_have_text("Pause deployment dep-000001: paused")
    await expect(detail).to_have_attribute("data-state", "paused")
    # paused by an operator, not at a gate: resume, not approve
    await expect(detail.locator(".action-deploy-approve")).to_have_count(0)
    await detail.locator(".action-deploy-resume").click()
    await expect(page.locator("#message")).to_have_text("Resume deployment dep-000001: planned")
