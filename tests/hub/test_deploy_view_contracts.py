"""The operator page's deployment of several contracts per device (real browser, the page's route
table answered as interface I4 gives it): a row per contract of a device, the version issued
(else the contract it will get), and the failed contract named in the gate and the rollback."""
from __future__ import annotations

from typing import Any

import pytest

from . import deployment_views as views
from .test_deploy_view import Deployments, page  # noqa: F401  (the page over these views)
from .browser_page import needs_chromium

PS7 = "pump-station-7"


@pytest.fixture
async def deployments() -> Deployments:
    view = views.rolled_back()
    fill, aux = "tank-fill.ps7", "tank-aux.ps7"
    view["devices"] = [
        {**view["devices"][0], "name": aux, "contract": f"{aux}@3", "state": "failed",
         "reason": "latched: guard_trip", "restored": None},
        {**view["devices"][0], "name": fill, "contract": f"{fill}@3", "reason": None,
         "evidence": [], "restored": f"{fill}@4"},
        {**view["devices"][1], "name": "tank-aux.bs2", "contract": None}]
    view["waves"][0]["gate"]["failed"][0]["contract"] = aux
    view["rollback"]["evidence"][0]["contract"] = aux
    return Deployments(views={view["id"]: view})


@needs_chromium
async def test_each_contract_of_a_device_is_a_row_and_the_failed_one_is_named(
        page: Any) -> None:  # noqa: F811
    from playwright.async_api import expect
    await page.click("#deployments li[data-deployment='dep-000001'] .deploy-pick")
    detail = page.locator("#deployment article[data-deployment='dep-000001']")
    rows = detail.locator(f"tr[data-device='{PS7}']")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("tank-aux.ps7@3")
    await expect(rows.nth(0)).to_contain_text("latched: guard_trip")
    await expect(rows.nth(1)).to_contain_text("tank-fill.ps7@3")
    await expect(rows.nth(1)).to_contain_text("(restored as tank-fill.ps7@4)")
    await expect(detail.locator("tr[data-device='booster-skid-2']")).to_contain_text(
        "tank-aux.bs2")  # not issued yet: the contract it would get
    failure = detail.locator(f".deploy-wave[data-wave='0'] .deploy-failure[data-device='{PS7}']")
    await expect(failure.locator("strong")).to_have_text(
        f"{PS7} tank-aux.ps7: gate telemetry failed")
    why = detail.locator(f".deploy-rollback .deploy-rollback-device[data-device='{PS7}']")
    await expect(why.locator("strong")).to_have_text(f"{PS7} tank-aux.ps7: gate telemetry")
