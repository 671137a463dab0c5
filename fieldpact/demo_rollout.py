"""`fieldpact demo`'s rollout story (issue 13): a staged rollout that trusts proof.

Three more tanks join the site: one canary and a wave of two, all simulated 20 times faster than
real time so a fill is seconds, not minutes (their contract's `expect` model says so too). They
first run a baseline contract of the tank design (fill to 4 m), pushed as the plan of its
snapshot gives it: that is each device's known-good contract. Then, through the deployment API:

1. a snapshot with a bad setpoint (fill to 5.8 m, over the 5 m the process allows) goes to the
   canary behind a telemetry gate `level >= 0.5 and level <= 5`; the canary's level passes 5 m,
   the gate fails with its journal evidence, the hub rolls back by itself to the known-good
   contract with a typed reason, and the wave never gets the snapshot;
2. a good snapshot (fill to 3.5 m) then completes over the canary and one wave.

Every claim is a check (demo.Demo.check) on what the API and the devices show; the demo exits 0
only when each held.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import io
from typing import TYPE_CHECKING, Any

from fieldpact.ctl_client import Exit
from fieldpact.loopback import DeviceSpec
from hub.states import ContractStatus
from hub.store import NotFound

if TYPE_CHECKING:
    from fieldpact.demo import Demo

TIME_SCALE = 20.0
CANARY = "tank-canary"
WAVE = ("tank-w1", "tank-w2")
ROLLOUT_DEVICES = (
    DeviceSpec(id=CANARY, model="tank", initial={"level": 1.0}, time_scale=TIME_SCALE),
    DeviceSpec(id=WAVE[0], model="tank", initial={"level": 1.5}, time_scale=TIME_SCALE),
    DeviceSpec(id=WAVE[1], model="tank", initial={"level": 2.0}, time_scale=TIME_SCALE),
)
DESIGN = "tank-fill"
BASELINE_M, BAD_M, GOOD_M = 4.0, 5.8, 3.5
"""The fill setpoints of the design's three versions: known-good, bad, good."""
MAX_LEVEL_M = 5.0
"""What the process allows; the gate's telemetry condition says it."""
FILL_M_PER_S = 0.016 * TIME_SCALE
"""The simulated tank's fill rate at 1200 rpm (simulators/models.py: 0.02 m/s at 1500 rpm)."""
HEALTH = {"window_s": 12, "min_cycles": 10,
          "telemetry": f"level >= 0.5 and level <= {MAX_LEVEL_M:g}"}
STRATEGY = {"canary": {"devices": [CANARY]}, "waves": {"size": len(WAVE)}, "approval": "auto",
            "pause_s": 0, "reach_deadline_s": 20, "abort": {"failure_pct": 10, "min_executed": 1}}
ENDED = ("complete", "rolled_back", "failed")
DEPLOY_TIMEOUT_S = 120.0
"""A canary window and a wave window of 12 s each, pushes and acceptances: well under a minute on
an idle machine; two minutes tolerates a loaded one."""


def design(version: int, fill_level: float) -> dict[str, Any]:
    """The tank-fill example as a design: addresses out (the bindings have them), the fill
    setpoint a parameter whose default this version sets."""
    return {
        "design": DESIGN, "version": version,
        "parameters": {"fill_level": {"type": "number", "default": fill_level, "range": [0, 6]}},
        "scan_period_ms": 100,
        "points": [
            {"name": "level", "table": "input", "type": "float32", "unit": "m",
             "direction": "read", "stale_after_ms": 2000, "range": [0, 6]},
            {"name": "pump_speed", "table": "holding", "type": "uint16", "unit": "rpm",
             "scale": 0.1, "direction": "write", "limits": [0, 1500], "max_rate_per_s": 3000},
            {"name": "valve_open", "table": "coil", "type": "bool", "direction": "write"}],
        "safe_state": {"pump_speed": 0, "valve_open": False},
        "steps": [{"name": "fill", "do": {"valve_open": True, "pump_speed": 1200},
                   "until": "level >= $fill_level", "timeout_s": 600},
                  {"name": "hold", "do": {"valve_open": False, "pump_speed": 0}, "for_s": 3600}],
        "offline": {"autonomy_s": 3600, "then": "safe_state"},
        "expect": {"level": {"rate_per_s": FILL_M_PER_S, "when": "pump_speed > 0 and valve_open"}},
    }


def binding(device: str) -> dict[str, Any]:
    """The design on one simulated tank, at the simulator's registers (simulators/models.py)."""
    return {"binding": f"rollout-{device}", "design": DESIGN, "match": {"device": device},
            "unit_id": 1, "points": {"level": {"address": 0}, "pump_speed": {"address": 20},
                                     "valve_open": {"address": 13}}}


def deployment(snapshot: str) -> dict[str, Any]:
    return {"snapshot": snapshot, "target": {"devices": [CANARY, *WAVE]},
            "strategy": STRATEGY, "health": HEALTH}


# ---- the story ----------------------------------------------------------------------------------

async def rollout_story(d: Demo) -> None:
    """Configure, put the baseline on, then the bad deployment and the good one (module doc)."""
    baseline, bad, good = await _configure(d)
    known_good = await _baseline(d, baseline)
    await _bad_rollout(d, bad, known_good)
    await d.wait(f"{CANARY} back under {MAX_LEVEL_M:g} m (the tank drains in hold)",
                 lambda: _level(d, CANARY) < MAX_LEVEL_M - 0.2, 60)
    await _good_rollout(d, good)


async def _configure(d: Demo) -> tuple[str, str, str]:
    for version, fill in ((1, BASELINE_M), (2, BAD_M), (3, GOOD_M)):
        await d.api("POST", "/api/designs", json=design(version, fill))
    for device in (CANARY, *WAVE):
        await d.api("POST", "/api/bindings", json=binding(device))
    sids = []
    for version in (1, 2, 3):
        snap = await d.api("POST", "/api/snapshots", json={
            "designs": {DESIGN: version}, "bindings": [binding(x)["binding"]
                                                       for x in (CANARY, *WAVE)],
            "target": {"devices": [CANARY, *WAVE]}})
        sids.append(str(snap["id"]))
    d.say(f"snapshots of design {DESIGN}: baseline {sids[0][:12]} (fill {BASELINE_M:g} m), "
          f"bad {sids[1][:12]} (fill {BAD_M:g} m), good {sids[2][:12]} (fill {GOOD_M:g} m)")
    return sids[0], sids[1], sids[2]


async def _baseline(d: Demo, sid: str) -> dict[str, str]:
    """Each rollout tank runs the baseline as its plan gives it; returns device -> contract id."""
    plan = await d.api("POST", "/api/plans", json={"snapshot": sid, "documents": True})
    ids = {}
    for row in plan["devices"]:
        body = await d.api("POST", "/api/contracts", json=row["would_get"]["document"])
        ids[row["device"]] = f"{body['contract']}@{body['version']}"
    for device, cid in ids.items():
        await d.wait(f"{cid} active on {device}", functools.partial(_is_active, d, cid), 30)
    for device in ids:  # the baseline filled each tank and holds it: the process at rest
        sim = d.site.devices[device].sim
        await d.wait(f"{device} holding at {BASELINE_M:g} m",
                     functools.partial(_holding, sim, BASELINE_M), 60)
    d.check("rollout tanks run the known-good baseline", set(ids) == {CANARY, *WAVE},
            ", ".join(f"{k}: {v}, level {_level(d, k):.2f} m" for k, v in sorted(ids.items())))
    return ids


async def _bad_rollout(d: Demo, sid: str, known_good: dict[str, str]) -> None:
    dep = await d.api("POST", "/api/deployments", json=deployment(sid))
    d.say(f"[bold]deployment {dep['id']}[/]: the bad snapshot, canary {CANARY} then "
          f"{len(WAVE)} devices, gate: {HEALTH['telemetry']} for {HEALTH['window_s']} s")
    view = await _until_ended(d, dep["id"])
    rb = view.get("rollback") or {}
    d.check("the canary's gate failed and the rollout rolled back by itself",
            view["state"] == "rolled_back" and rb.get("initiated_by") == "gate",
            f"state {view['state']}; {_reason(rb)}")
    d.check("the rollback names its gate, its devices and its journal evidence",
            bool(rb.get("gate")) and rb.get("devices") == [CANARY] and bool(rb.get("evidence")),
            _evidence(rb.get("evidence")))
    await _ctl_says(d, dep["id"], Exit.ROLLED_BACK, f"gate {view['rollback'].get('gate')}"
                    if view.get("rollback") else "rolled back")
    await _never_expanded(d, view, known_good)
    row = next(x for x in view["devices"] if x["device"] == CANARY)
    restored = row.get("restored")  # the known-good configuration, re-issued as a new version
    await d.wait(f"{CANARY} running {restored}, its known-good configuration",
                 lambda: restored is not None and _running(d, CANARY) == restored, 30)
    sim = d.site.devices[CANARY].sim
    await d.wait(f"{CANARY}'s pump stopped (read from the simulator)",
                 lambda: not sim.values()["valve_open"] and sim.values()["pump_speed"] == 0, 30)
    d.check(f"{CANARY} back on known-good {known_good[CANARY]}: fill stopped", True,
            f"runs {restored} (the known-good configuration), level {_level(d, CANARY):.2f} m, "
            "valve closed, pump 0 rpm")


async def _never_expanded(d: Demo, view: dict[str, Any], known_good: dict[str, str]) -> None:
    pushed = [row for device in WAVE
              for row in await d.api("GET", "/api/contracts", params={"device": device})
              if row["id"] != known_good[device]]
    states = {x["device"]: x["state"] for x in view.get("devices", []) if x["device"] in WAVE}
    d.check("the rollout never expanded past the canary", not pushed,
            f"wave devices {states}; contracts pushed to them since the baseline: "
            f"{[r['id'] for r in pushed] or 'none'}")


async def _good_rollout(d: Demo, sid: str) -> None:
    dep = await d.api("POST", "/api/deployments", json=deployment(sid))
    d.say(f"[bold]deployment {dep['id']}[/]: the good snapshot over the same devices")
    view = await _until_ended(d, dep["id"])
    waves = [f"{w['kind']} {w['index']}: {w['gate']['status']} {w['gate']['counts']}"
             for w in view.get("waves", [])]
    healthy = all(x["state"] == "healthy" for x in view.get("devices", []))
    d.check("the good snapshot completed over the canary and one wave",
            view["state"] == "complete" and len(view.get("waves", [])) == 2 and healthy,
            f"state {view['state']}; " + "; ".join(waves))
    await _ctl_says(d, dep["id"], Exit.OK, "")
    running = {x: _running(d, x) for x in (CANARY, *WAVE)}
    d.check("every rollout tank runs the contract the deployment issued it",
            all(running[x["device"]] == x["contract"] for x in view["devices"]),
            ", ".join(f"{k}: {v}" for k, v in sorted(running.items())))


async def _ctl_says(d: Demo, dep: str, code: Exit, words: str) -> None:
    """`fieldpact ctl deploy status DEP --wait` as a script runs it: its exit status and message
    (its tables, printed to a buffer, are the API's view again)."""
    from fieldpact import cli  # cli imports this module (through demo): imported when used
    token = d.site.workdir / "ctl.token"
    token.write_text(d.site.viewer_token + "\n")
    argv = ["ctl", "--hub", d.site.api_url, "--token-file", str(token), "deploy", "status", dep,
            "--wait", "10"]
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return cli.main(argv)
    got = await asyncio.to_thread(run)
    said = " ".join(err.getvalue().split())
    d.check(f"`ctl deploy status {dep} --wait` exits {int(code)} ({code.name})",
            got == code and words in said, f"exit {got}" + (f": {said[:200]}" if said else ""))


async def _until_ended(d: Demo, dep: str) -> dict[str, Any]:
    last: dict[str, Any] = {}

    async def ended() -> bool:
        last.update(await d.api("GET", f"/api/deployments/{dep}"))
        return last.get("state") in ENDED
    await d.wait_async(f"deployment {dep} to end", ended, DEPLOY_TIMEOUT_S)
    d.say(f"deployment {dep}: {last['state']} after step {(last.get('step') or {}).get('name')}")
    return last


def _reason(rb: dict[str, Any]) -> str:
    if not rb:
        return "no rollback recorded"
    return (f"initiated by {rb.get('initiated_by')}, gate {rb.get('gate')}, devices "
            f"{rb.get('devices')}")


def _evidence(evidence: Any) -> str:
    """The hub's rollback evidence, per failed device (hub/rollout_flow.py)."""
    return " | ".join(f"{g.get('device')}: gate {g.get('gate')}, " + "; ".join(
        f"{e.get('what')}" + (f" = {_value(e['value'])}" if e.get("value") is not None else "")
        + (f" at journal seq {e['seq']}" if e.get("seq") is not None else "")
        for e in g.get("evidence") or []) for g in evidence or []) or "none"


def _value(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _is_active(d: Demo, cid: str) -> bool:
    assert d.site.hub is not None
    try:
        return d.site.hub.store.contracts.get(cid).status is ContractStatus.ACTIVE
    except NotFound:
        return False


def _running(d: Demo, device: str) -> str | None:
    """The contract the device reports running (its telemetry, as the hub keeps it)."""
    assert d.site.hub is not None
    rec = d.site.hub.store.devices.get(device)
    return f"{rec.contract}@{rec.version}" if rec.contract else None


def _holding(sim: Any, level_m: float) -> bool:
    """Filled to about `level_m` and stopped (in `hold` the tank drains slowly: 0.04 m/s here)."""
    v = sim.values()
    return bool(v["level"] >= level_m - 0.5 and not v["valve_open"] and v["pump_speed"] == 0)


def _level(d: Demo, device: str) -> float:
    return float(d.site.devices[device].sim.values()["level"])
