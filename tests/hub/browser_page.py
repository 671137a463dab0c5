"""The operator page in a real browser for the web UI tests: Debian's chromium, headless, driven by
Playwright, opened on a hub's base URL and signed in with a bearer token.

Needs /usr/bin/chromium (Debian packages `chromium`; CI installs it in .ci/run): a test that opens
a tab is marked `needs_chromium`, so it is skipped, naming the package, where there is none.
Playwright is imported when a tab opens, never at collection."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
UI_TIMEOUT_MS = 5000  # a refresh is every 2 s; two and a half of them is plenty on a loaded CI box
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason=f"{CHROMIUM} missing: apt-get install chromium")

Handler = Callable[[Any], Awaitable[None]]
"""A Playwright route handler: answers the request of the route it is given."""


async def sign_in(page: Any, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#login button[type=submit]")


@contextlib.asynccontextmanager
async def browser_tab(base_url: str, *, height: int, token: str | None = None,
                      timeout_ms: int = UI_TIMEOUT_MS,
                      routes: Sequence[tuple[str, Handler]] = ()) -> AsyncIterator[Any]:
    """A tab 1600 px wide and `height` high on the page at `base_url` (no trailing slash), each
    of its waits bounded by `timeout_ms`; the URL patterns of `routes` are answered by their
    handlers from before the page loads; signed in with `token` when one is given. The browser
    is closed on exit."""
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = await browser.new_page(viewport={"width": 1600, "height": height})
            tab.set_default_timeout(timeout_ms)
            for pattern, handler in routes:
                await tab.route(pattern, handler)
            await tab.goto(base_url + "/")
            if token is not None:
                await sign_in(tab, token)
            yield tab
        finally:
            await browser.close()
