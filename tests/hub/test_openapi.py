"""The OpenAPI document lists every status every route really returns (issue 9: schemathesis found
21 mismatches). Structural: it walks the app's own routes, so routes added later (alarms, resume,
reset) are covered without touching this file, and probes each one over real HTTP with the kinds of
request that produce each error: no token, a weak token, unknown path ids, bad query values, an
unreadable body and one over the cap."""
from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from hub.api import ROUTES, page_routes
from hub.auth import ApiRole, required_role
from tests.hub.conftest import bearer

_PAGE_PATHS = {getattr(r, "path", None) for r in page_routes()}


def _api_routes() -> list[tuple[Route, str]]:
    """Every (route, method) the app serves (the app is built from ROUTES plus the page routes)."""
    return [(r, m) for r in ROUTES if isinstance(r, Route) and r.path not in _PAGE_PATHS
            for m in sorted(r.methods or ()) if m != "HEAD"]


def _probes(route: Route, method: str, op: dict[str, Any]) -> list[dict[str, Any]]:
    """Requests that each provoke a different answer from `method route.path`."""
    path = re.sub(r"{\w+}", "no-such-thing", route.path)
    admin = bearer(ApiRole.ADMIN)
    probes: list[dict[str, Any]] = [{"url": path, "headers": {}},
                                    {"url": path, "headers": bearer(ApiRole.VIEWER)},
                                    {"url": path, "headers": admin}]
    for p in op.get("parameters", []):
        if p["in"] == "query":
            probes.append({"url": path, "headers": admin, "params": {p["name"]: "-1x"}})
    if "requestBody" in op:
        json_admin = {**admin, "Content-Type": "application/json"}
        probes += [{"url": path, "headers": json_admin, "content": b"{"},
                   {"url": path, "headers": json_admin, "content": b"[" * (2 << 20)},
                   {"url": path, "headers": {**admin, "Content-Type": "text/plain"},
                    "content": b"x"}]
    return probes


async def test_every_api_route_and_method_is_in_the_document(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json", headers=bearer(ApiRole.VIEWER))).json()
    for route, method in _api_routes():
        op = doc["paths"][route.path][method.lower()]
        codes = set(op["responses"])
        if required_role(method, route.path) is not None:
            assert {"401", "403"} <= codes, (method, route.path)
        if "{" in route.path:
            assert "404" in codes, (method, route.path)
        if "requestBody" in op:
            assert {"400", "413"} <= codes, (method, route.path)


@pytest.mark.slow
async def test_every_status_a_route_returns_is_documented(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json", headers=bearer(ApiRole.VIEWER))).json()
    undocumented = []
    for route, method in _api_routes():
        op = doc["paths"][route.path][method.lower()]
        for probe in _probes(route, method, op):
            r = await client.request(method, **probe)
            if str(r.status_code) not in op["responses"]:
                undocumented.append(f"{method} {route.path} -> {r.status_code}")
    assert undocumented == []
