"""The operator page lists each contract of a device, in a real browser (Debian's chromium driven
by Playwright) against a real hub, broker, agent and tank simulator: the hub's status for each
contract, its step and mode, its values, a failing read's fault in words; and, with the device
cut off, each contract's projection with its confidence."""
from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from fieldpact.loopback import DeviceSpec, LocalSite
from hub.states import ContractStatus, DeviceState
from tests.agent.test_multi_contract import _valve
from tests.hub.browser_page import browser_tab, needs_chromium
from tests.hub.sync_helpers import contract_status
from tests.hub.test_fault_words_e2e import READ_WORDS, _mistyped

pytestmark = pytest.mark.slow

DEVICE, SITE = "tank-a", "north-field"
SHOT = "/tmp/device-contracts.png"
PAGE_TIMEOUT_MS = 15_000  # a refresh is every 2 s; the hub and agent share a loaded machine


@asynccontextmanager
async def _page(site: LocalSite) -> AsyncIterator[Any]:
    async with browser_tab(site.api_url, height=1200, token=site.viewer_token,
                           timeout_ms=PAGE_TIMEOUT_MS) as tab:
        yield tab


def _flow_mistyped() -> dict[str, Any]:
    """tank-pump with its flow meter typed beyond the device's map (input 70), its pump register
    right: it trips on the flow read and its safe state is confirmed (test_fault_words_e2e has
    the mistyped pump register too)."""
    doc = _mistyped() | {"device": DEVICE, "site": SITE}
    doc["points"] = [p | {"address": 20} if p["name"] == "pump_speed" else p
                     for p in doc["points"]]
    return doc


def _calm_valve() -> dict[str, Any]:
    """tank-valve with a high-level switch that tolerates a loaded machine's late cycles (this
    test is about what the page shows of a running contract, not about staleness)."""
    doc = _valve(device=DEVICE, site=SITE)
    doc["points"] = [p | {"stale_after_ms": 10_000} if p["direction"] == "read" else p
                     for p in doc["points"]]
    return doc


@needs_chromium
async def test_the_device_panel_lists_each_contract_with_status_step_values_and_faults(
        tmp_path: Path) -> None:
    from playwright.async_api import expect
    spec = DeviceSpec(id=DEVICE, model="tank", initial={"level": 1.0})
    async with LocalSite(tmp_path, [spec], silence_timeout_s=30) as site:
        hub = site.hub
        assert hub is not None
        pump = await hub.service.submit_contract(_flow_mistyped(), "test")
        valve = await hub.service.submit_contract(_calm_valve(), "test")
        await site.wait_for("the valve active, the mistyped pump tripped", lambda: (
            contract_status(hub.store, valve.id), contract_status(hub.store, pump.id)) == (
            ContractStatus.ACTIVE, ContractStatus.TRIPPED), 20)
        async with _page(site) as page:
            panel = page.locator(f"#devices tr[data-contracts-of='{DEVICE}']")
            items = panel.locator("li.device-contract")
            await expect(items).to_have_count(2)
            assert await items.evaluate_all("l => l.map(e => e.dataset.contract)") == [
                "tank-pump@1", "tank-valve@1"]
            await expect(panel).to_contain_text(f"{DEVICE} runs 2 contracts:")
            valve_li = panel.locator("li[data-contract='tank-valve@1']")
            await expect(valve_li.locator(".badge")).to_have_text("ACTIVE")
            await expect(valve_li.locator(".device-contract-step")).to_have_text("open / running")
            await expect(valve_li.locator(".device-contract-values")).to_contain_text(
                "valve_open true")
            assert await valve_li.locator(".device-contract-fault").count() == 0
            pump_li = panel.locator("li[data-contract='tank-pump@1']")
            await expect(pump_li.locator(".badge")).to_have_text("TRIPPED")
            await expect(pump_li.locator(".device-contract-step")).to_have_text("run / safe")
            await expect(pump_li.locator(".device-contract-values")).to_have_text(
                re.compile(r"^level \d"))  # the pump's read-back fails: no value, its fault below
            await expect(pump_li.locator(".device-contract-fault[data-point='flow']")).to_have_text(
                f"flow: {READ_WORDS}")
            await expect(pump_li.locator(".device-contract-trip")).to_contain_text("trip")
            # the device's own row keeps its state and alarms (the contracts are on a row of their own)
            row = page.locator(f"#devices tr[data-device='{DEVICE}']")
            await expect(row.locator(".badge").first).to_have_text("LIVE")
            assert await row.locator(".device-contract").count() == 0
            await page.screenshot(path=SHOT, full_page=True)

            await site.devices[DEVICE].cut.cut()
            await site.wait_for("projected", lambda: site.device_state(DEVICE)
                                is DeviceState.PROJECTED, 15)
            await expect(panel.locator(".device-contract-projection")).to_have_count(2)
            await expect(valve_li.locator(".device-contract-projection")).to_contain_text(
                "projected · confidence ")
            await expect(valve_li.locator(".device-contract-step")).to_have_text("open / running")
            await expect(valve_li.locator(".device-contract-values")).to_contain_text(
                "valve_open true")
            await expect(pump_li.locator(".device-contract-step")).to_have_text("run / safe")
            site.devices[DEVICE].cut.restore()
