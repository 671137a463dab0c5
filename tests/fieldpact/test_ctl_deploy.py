"""`fieldpact ctl deploy …` over real HTTP against an I4 stand-in: a Starlette app on uvicorn at
127.0.0.1 that answers the deployment routes exactly as fixed interface I4 shapes them, from the
views in tests/hub/deployment_views.py, and records what it was asked. It proves the client's
side — the request a command sends, what its tables show (waves, gate evidence, the rollback's
reason), --json, and each exit status --wait promises; test_ctl_deploy_e2e.py runs the commands
against the real deployment API."""
from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fieldpact import cli
from fieldpact.ctl_client import Exit
from fieldpact.ctl_deploy import deployment_request
from tests.hub import deployment_views as views
from tests.hub.serving import serving

from .test_ctl import Ran

PATHS = ["/api/deployments", "/api/deployments/{id}", *(
    f"/api/deployments/{{id}}/{verb}" for verb in ("pause", "resume", "approve", "retry",
                                                    "rollback"))]
ACTIONS = {"pause": {"canary", "wave", "verifying"}, "resume": {"paused"}, "approve": {"paused"},
           "retry": {"failed"}, "rollback": {"canary", "wave", "verifying", "paused", "failed"}}
"""The states each action is legal in (I4: 409 naming the state otherwise), as far as these
tests need them."""


@dataclass
class StandIn:
    """The deployments the stand-in holds; GET of one pops the next of its `script`, if any, so a
    test can make it progress while a command waits."""
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    script: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    asked: list[tuple[str, str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/openapi.json", self._openapi),
            Route("/api/deployments", self._collection, methods=["GET", "POST"]),
            Route("/api/deployments/{id}", self._one),
            Route("/api/deployments/{id}/{verb}", self._action, methods=["POST"])])

    async def _openapi(self, request: Request) -> JSONResponse:
        return JSONResponse({"paths": {p: {"get": {}, "post": {}} for p in PATHS}})

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        self.asked.append((request.method, request.url.path, body))
        return body

    async def _collection(self, request: Request) -> JSONResponse:
        body = await self._body(request)
        if request.method == "GET":
            return JSONResponse({"deployments": [views.summary(v) for v in self.views.values()]})
        if not body.get("snapshot"):
            return JSONResponse({"error": "invalid deployment", "issues": [
                {"path": "snapshot", "reason": "required"}]}, status_code=422)
        view = {**views.paused(), "id": "dep-000009", "state": "canary", "snapshot": body["snapshot"]}
        self.views[view["id"]] = view
        return JSONResponse(view, status_code=201)

    async def _one(self, request: Request) -> JSONResponse:
        await self._body(request)
        ident = request.path_params["id"]
        if ident not in self.views:
            return JSONResponse({"error": f"no deployment {ident}"}, status_code=404)
        if self.script.get(ident):
            self.views[ident] = self.script[ident].pop(0)
        return JSONResponse(self.views[ident])

    async def _action(self, request: Request) -> JSONResponse:
        await self._body(request)
        ident, verb = request.path_params["id"], request.path_params["verb"]
        view = self.views.get(ident)
        if view is None:
            return JSONResponse({"error": f"no deployment {ident}"}, status_code=404)
        if view["state"] not in ACTIONS[verb]:
            return JSONResponse({"error": f"deployment {ident} is {view['state']}: "
                                          f"{verb} is not allowed"}, status_code=409)
        view = self.views[ident] = {**view, "state": "wave" if verb != "pause" else "paused"}
        return JSONResponse(view)


@pytest.fixture
async def hub() -> AsyncIterator[tuple[StandIn, str]]:
    stand_in = StandIn(views={v["id"]: v for v in (views.rolled_back(), views.complete(),
                                                   views.paused())})
    async with serving(stand_in.app(), timeout_s=5.0, name="i4-stand-in") as url:
        yield stand_in, url


@pytest.fixture
def deploy(hub: tuple[StandIn, str], capsys: pytest.CaptureFixture[str],
           monkeypatch: pytest.MonkeyPatch) -> Callable[..., Awaitable[Ran]]:
    monkeypatch.setenv("FIELDPACT_TOKEN", "operator-secret")
    monkeypatch.setattr("fieldpact.ctl_deploy.POLL_S", 0.01)

    async def run(*argv: str) -> Ran:
        capsys.readouterr()
        code = await asyncio.to_thread(cli.main, ["ctl", "--hub", hub[1], "deploy", *argv])
        out, err = capsys.readouterr()
        return Ran(code, out, err)
    return run


async def test_status_shows_waves_the_failed_gate_with_its_evidence_and_the_rollback_reason(
        deploy: Callable[..., Awaitable[Ran]]) -> None:
    shown = await deploy("status", "dep-000001")
    assert shown.code == Exit.OK, shown.err  # a read, not a verdict
    out = shown.out
    assert "rolled_back" in out and "badc0ffee" in out
    canary = next(ln for ln in out.splitlines() if "canary" in ln and "healthy" in ln)
    assert "0/1 healthy, 1 failed, 0 unreachable, 0 skipped" in canary and "failed" in canary
    wave = next(ln for ln in out.splitlines() if "│ 1" in ln and "skipped" in ln)
    assert "2 skipped" in wave and "pending" in wave
    gate = next(ln for ln in out.splitlines() if "telemetry" in ln and "seq 41" in ln)
    assert "pump-station-7" in gate and "level = 5.62 at seq 41" in gate
    said = " ".join(out.split())
    assert "initiated by gate, gate telemetry, devices pump-station-7; evidence: pump-station-7 " \
           "(telemetry): level = 5.62 at seq 41" in said
    # the known-good contract each device goes back to, and the version that re-issued it
    assert "tank-fill@2 (restored as tank-fill@4)" in " ".join(out.split())
    change = next(ln for ln in out.splitlines() if "rolling_back" in ln and "gate_failed" in ln)
    assert "2026-11-24T06:00:15Z" in change and "canary" in change


async def test_status_shows_a_device_rolled_back_alone_and_until_when_the_next_wave_waits(
        hub: tuple[StandIn, str], deploy: Callable[..., Awaitable[Ran]]) -> None:
    hub[0].views["dep-000004"] = views.went_on()
    shown = await deploy("status", "dep-000004")
    assert shown.code == Exit.OK, shown.err
    said = " ".join(shown.out.split())
    assert "booster-skid-2 rolled back alone at 2026-11-24T06:01:15Z (restored as tank-fill@5): " \
           "initiated by gate, gate second_writer in wave:1:gate; evidence: booster-skid-2 " \
           "(second_writer): second_writer" in said
    assert "seq 57" in said
    assert "next wave not before │ 2026-11-24T06:02:00Z" in said


async def test_status_json_is_the_hubs_view_and_steps_are_listed_on_request(
        deploy: Callable[..., Awaitable[Ran]]) -> None:
    assert (await deploy("status", "dep-000002", "--json")).json() == views.complete()
    steps = await deploy("status", "dep-000002", "--steps")
    assert "wave:1:gate" in steps.out and "steps" in steps.out
    assert "wave:1:gate" not in (await deploy("status", "dep-000002")).out
    missing = await deploy("status", "dep-424242")
    assert missing.code == Exit.NOT_FOUND and "no deployment dep-424242" in missing.err


@pytest.mark.parametrize(("ident", "code", "said"), [
    ("dep-000002", Exit.OK, None),
    ("dep-000001", Exit.ROLLED_BACK, "deployment dep-000001 rolled_back: rolled back at"),
    ("dep-000003", Exit.PAUSED, "paused at canary:approval (running): `ctl deploy approve"),
])
async def test_status_wait_exits_with_how_the_deployment_stopped(
        deploy: Callable[..., Awaitable[Ran]], ident: str, code: Exit, said: str | None) -> None:
    ran = await deploy("status", ident, "--wait", "5")
    assert ran.code == code, ran.err
    assert (said in ran.err) if said else ran.err == ""


async def test_wait_follows_the_deployment_until_it_stops_or_the_bound_passes(
        deploy: Callable[..., Awaitable[Ran]], hub: tuple[StandIn, str]) -> None:
    stand_in, _ = hub
    running = {**views.complete(), "state": "wave"}
    stand_in.script["dep-000002"] = [running, running, views.complete()]
    ran = await deploy("status", "dep-000002", "--wait", "10", "--json")
    assert ran.code == Exit.OK and ran.json()["state"] == "complete"
    assert [p for m, p, _ in stand_in.asked].count("/api/deployments/dep-000002") == 3
    stand_in.script["dep-000002"] = [running] * 10_000
    late = await deploy("status", "dep-000002", "--wait", "0.2")
    assert late.code == Exit.IN_PROGRESS and "still wave after 0.2 s" in late.err


async def test_start_sends_the_request_its_flags_say_and_a_file_is_the_base(
        deploy: Callable[..., Awaitable[Ran]], hub: tuple[StandIn, str], tmp_path: Path) -> None:
    stand_in, _ = hub
    base = tmp_path / "req.yaml"
    base.write_text("strategy: {approval: manual, waves: {size: 3}}\nhealth: {window_s: 60}\n")
    ran = await deploy("start", "s" * 64, "--file", str(base), "--canary", "d1,d2",
                       "--telemetry", "level <= 5", "--min-cycles", "10",
                       "--abort-failure-pct", "10", "--target", '{"site": "north-field"}')
    assert ran.code == Exit.OK, ran.err
    assert "deployment dep-000009 started" in ran.out
    method, where, body = stand_in.asked[-1]
    assert (method, where) == ("POST", "/api/deployments")
    assert body == {"snapshot": "s" * 64, "target": {"site": "north-field"},
                    "strategy": {"approval": "manual", "waves": {"size": 3},
                                 "canary": {"devices": ["d1", "d2"]},
                                 "abort": {"failure_pct": 10.0}},
                    "health": {"window_s": 60, "telemetry": "level <= 5", "min_cycles": 10}}


async def test_actions_post_to_their_route_and_an_illegal_transition_is_a_conflict(
        deploy: Callable[..., Awaitable[Ran]], hub: tuple[StandIn, str]) -> None:
    stand_in, _ = hub
    approved = await deploy("approve", "dep-000003")
    assert approved.code == Exit.OK and "approve dep-000003: wave" in approved.out
    assert stand_in.asked[-1] == ("POST", "/api/deployments/dep-000003/approve", None)
    again = await deploy("approve", "dep-000002")
    assert again.code == Exit.CONFLICT
    assert "409 deployment dep-000002 is complete: approve is not allowed" in again.err
    back = await deploy("rollback", "dep-000003", "--reason", "level sensor suspect")
    assert back.code == Exit.OK
    assert stand_in.asked[-1] == ("POST", "/api/deployments/dep-000003/rollback",
                                  {"reason": "level sensor suspect"})
    assert (await deploy("rollback", "dep-000003")).code == Exit.USAGE  # --reason is required


async def test_list_shows_each_deployment_with_its_state_and_step(
        deploy: Callable[..., Awaitable[Ran]]) -> None:
    shown = await deploy("list")
    assert shown.code == Exit.OK and "deployments (3)" in shown.out
    row = next(ln for ln in shown.out.splitlines() if "dep-000003" in ln)
    assert "paused" in row and "canary:approval" in row and "900dfeed1111" in row


def test_a_flag_not_given_leaves_its_field_to_the_hubs_default() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    from fieldpact import ctl_deploy
    ctl_deploy.add_commands(lambda name, help, command: sub.add_parser(name.split()[1]))
    args = parser.parse_args(["start", "s1"])
    assert deployment_request(args) == {"snapshot": "s1"}
    args = parser.parse_args(["start", "s1", "--rate-per-min", "20", "--growth", "2",
                              "--canary-percent", "10", "--commissioning"])
    assert deployment_request(args) == {
        "snapshot": "s1", "health": {"commissioning": True},
        "strategy": {"canary": {"percent": 10.0}, "waves": {"rate_per_min": 20.0, "growth": 2.0}}}
