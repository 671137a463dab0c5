"""The operator page's commissioning section in a real browser (tests/hub/test_webui.py's setup):
a device's newest report shown point by point, a pending request above it, and the Commission
button publishing a request (the in-memory publisher records it) — values reach the page as text."""
from __future__ import annotations

from typing import Any

from contracts.commission_wire import CommissionRequest
from hub.publisher import MemoryPublisher
from hub.store import HubStore
from hub.store.commissioning import CommissioningRecord

from .conftest import START_MS, TOKENS, ApiRole
from .browser_page import needs_chromium, sign_in
from .test_webui import hub_url, page  # noqa: F401 (fixtures)

REPORT = {
    "v": 1, "contract": "tank-fill", "version": 3, "device": "pump-station-7", "started_ms": START_MS,
    "seconds": 3.0, "ok": False, "endpoints": [{"endpoint": "default", "reads": 60, "failed": 0,
                                                "median_ms": 1.2, "p99_ms": 4.0}],
    "points": [
        {"name": "level", "endpoint": "default", "where": "unit 1 input 0..1", "type": "float32",
         "direction": "read", "unit": "m", "value": 2.3e-41, "reads": 30, "good": 30,
         "range": "ok", "motion": "frozen", "readback": None, "verdict": "fail",
         "hints": ["probably swapped word order (word_order: little): as CDAB it reads 2.5 m"],
         "error": None},
        {"name": "pump_speed", "endpoint": "default", "where": "unit 1 holding 20", "type": "uint16",
         "direction": "write", "unit": "rpm", "value": 0, "reads": 30, "good": 30, "range": "ok",
         "motion": "frozen", "readback": True, "verdict": "ok", "hints": [], "error": None}],
}


def _seed_report(store: HubStore) -> None:
    store.commissioning.add(CommissioningRecord(id="r1", device="pump-station-7",
                                                requested_ms=START_MS - 20_000, seconds=3, actor="op"))
    store.commissioning.answer("r1", "pump-station-7", START_MS - 15_000, report=REPORT, ok=False,
                               refused=None)
    store.commissioning.add(CommissioningRecord(id="r2", device="pump-station-7",
                                                requested_ms=START_MS - 1_000, seconds=3, actor="op"))


@needs_chromium
async def test_the_newest_report_is_shown_point_by_point_below_a_pending_request(
        page: Any, store: HubStore, publisher: MemoryPublisher) -> None:  # noqa: F811
    from playwright.async_api import expect
    _seed_report(store)
    await sign_in(page, TOKENS[ApiRole.OPERATOR])
    pending = page.locator("#commissioning tr[data-commissioning='pump-station-7']")
    await expect(pending.locator(".badge")).to_have_text("PENDING")
    level = page.locator("#commissioning tr[data-point='pump-station-7/level']")
    await expect(level.locator(".badge")).to_have_text("FAIL")
    await expect(level).to_contain_text("probably swapped word order (word_order: little)")
    pump = page.locator("#commissioning tr[data-point='pump-station-7/pump_speed']")
    await expect(pump).to_contain_text("unit 1 holding 20 uint16")
    await expect(pump).to_contain_text("yes")
    await page.click("#devices tr[data-device='booster-2'] .action-commission")
    await expect(page.locator("#message")).to_have_text("Commission booster-2: sent")
    (site, device, payload), = publisher.commissioning
    assert (site, device, CommissionRequest.from_bytes(payload).seconds) == ("north-field",
                                                                            "booster-2", 3)
