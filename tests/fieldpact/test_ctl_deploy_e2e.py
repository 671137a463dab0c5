"""`fieldpact ctl deploy …` against the real hub (uvicorn on 127.0.0.1, a real store file, the
deployment API of issue 13) with its engine off, so each state is the one the requests made:
start sends what its flags say and shows the planned waves, the actions move the deployment
through its table (hub/states/rollout.py) and an illegal one is Exit.CONFLICT naming the state,
an operator's rollback carries its reason, and the hub's refusals keep their exit statuses."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from fieldpact import cli
from fieldpact.ctl_client import Exit
from hub.api import ROUTES, create_app
from hub.auth import ApiRole, AuthConfig
from hub.service import HubService
from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.hub.conftest import SERVER_START_TIMEOUT_S, TOKENS, bearer
from tests.hub.serving import serving

from .test_ctl import Ran

if "/api/deployments" not in {r.path for r in ROUTES}:
    pytest.skip("this hub has no deployments (issue 13)", allow_module_level=True)

ADMIN = bearer(ApiRole.ADMIN)
DEVICES = ("d1", "d2", "d3", "d4", "d5")
Deploy = Callable[..., Awaitable[Ran]]


@pytest.fixture
async def hub(service: HubService, auth_config: AuthConfig) -> AsyncIterator[tuple[str, str]]:
    """The hub's URL and a snapshot over five registered tank devices of site s1."""
    app = create_app(service, auth_config, rollouts=False)
    async with serving(app, timeout_s=SERVER_START_TIMEOUT_S, name="uvicorn") as url, \
            httpx.AsyncClient(base_url=url, headers=ADMIN) as http:
        for d in DEVICES:
            await _ok(http.post("/api/devices", json={"id": d, "site": "s1",
                                                      "labels": {"k": "v"}}), 201)
        await _ok(http.post("/api/designs", json=tank_design()), 201)
        await _ok(http.post("/api/bindings", json=tank_binding("all", {"site": "s1"})), 201)
        snap = await _ok(http.post("/api/snapshots", json={"target": {"sites": ["s1"]}}), 201)
        yield url, str(snap["id"])


async def _ok(r: Awaitable[httpx.Response], status: int = 200) -> Any:
    response = await r
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture
def deploy(hub: tuple[str, str], capsys: pytest.CaptureFixture[str],
           monkeypatch: pytest.MonkeyPatch) -> Deploy:
    async def run(*argv: str, role: ApiRole = ApiRole.OPERATOR) -> Ran:
        monkeypatch.setenv("FIELDPACT_TOKEN", TOKENS[role])
        capsys.readouterr()
        code = await asyncio.to_thread(cli.main, ["ctl", "--hub", hub[0], "deploy", *argv])
        out, err = capsys.readouterr()
        return Ran(code, out, err)
    return run


async def test_start_plans_the_waves_its_flags_ask_for_and_lists_it(
        deploy: Deploy, hub: tuple[str, str]) -> None:
    sid = hub[1]
    ran = await deploy("start", sid, "--canary", "d3", "--wave-size", "2", "--health-window-s",
                       "5", "--telemetry", "level >= 1", "--min-cycles", "10")
    assert ran.code == Exit.OK, ran.err
    assert "deployment dep-000001 started" in ran.out and "planned" in ran.out
    waves = [ln for ln in ran.out.splitlines() if "healthy," in ln]
    assert len(waves) == 3 and "canary" in waves[0] and "d3" in waves[0]
    assert "d1, d2" in waves[1] and "d4, d5" in waves[2]
    view = (await deploy("status", "dep-000001", "--json")).json()
    assert view["strategy"]["canary"] == {"devices": ["d3"]}
    assert view["health"] == {"window_s": 5.0, "telemetry": "level >= 1", "min_cycles": 10}
    listed = await deploy("list")
    assert listed.code == Exit.OK and "deployments (1)" in listed.out
    assert "dep-000001" in listed.out and sid[:12] in listed.out


async def test_actions_follow_the_deployment_table_and_an_illegal_one_is_a_conflict(
        deploy: Deploy, hub: tuple[str, str]) -> None:
    assert (await deploy("start", hub[1], "--health-window-s", "5")).code == Exit.OK
    early = await deploy("approve", "dep-000001")
    assert early.code == Exit.CONFLICT and "dep-000001 is planned" in early.err
    paused = await deploy("pause", "dep-000001")
    assert paused.code == Exit.OK and "pause dep-000001: paused" in paused.out
    waiting = await deploy("status", "dep-000001", "--wait", "5")
    assert waiting.code == Exit.PAUSED and "ctl deploy resume dep-000001" in waiting.err
    resumed = await deploy("resume", "dep-000001")
    assert resumed.code == Exit.OK and "resume dep-000001: planned" in resumed.out
    back = await deploy("rollback", "dep-000001", "--reason", "wrong snapshot")
    assert back.code == Exit.OK, back.err
    shown = " ".join((await deploy("status", "dep-000001")).out.split())
    assert "initiated by operator:operator-user" in shown and "reason: wrong snapshot" in shown


async def test_the_hubs_refusals_keep_their_exit_statuses(deploy: Deploy,
                                                          hub: tuple[str, str]) -> None:
    bad = await deploy("start", "no-such-snapshot")
    assert bad.code == Exit.REFUSED and "snapshot: no snapshot 'no-such-snapshot'" in bad.err
    viewer = await deploy("start", hub[1], role=ApiRole.VIEWER)
    assert viewer.code == Exit.AUTH
    assert (await deploy("status", "dep-000042")).code == Exit.NOT_FOUND
    assert (await deploy("list", role=ApiRole.VIEWER)).code == Exit.OK
