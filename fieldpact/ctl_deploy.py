"""`fieldpact ctl deploy …`: staged rollouts over the hub's deployment API (fixed interface I4).

The commands are a group, `ctl deploy start|list|status|pause|resume|approve|rollback|retry`,
because `ctl resume` already sends a contract's RESUME. Each is one or two API calls:

    start SNAPSHOT        POST /api/deployments (the request built from the flags, or --file)
    list                  GET  /api/deployments
    status ID             GET  /api/deployments/{id}
    pause|resume|approve|retry ID    POST /api/deployments/{id}/<verb> (no body)
    rollback ID --reason  POST /api/deployments/{id}/rollback {"reason"}

Rules:
- `--wait [S]` (start, status, resume, approve, retry) polls the deployment until it stops:
  complete is Exit.OK, rolled_back or failed is Exit.ROLLED_BACK with the rollback's reason,
  paused is Exit.PAUSED (an operator must approve or resume), and still under way after S seconds
  is Exit.IN_PROGRESS. Without --wait the answer is printed and the exit is OK: a read is not a
  verdict (`status ID --wait` on a finished deployment answers at once, for scripts).
- A 409 (an illegal transition: approving a deployment that is not paused) is Exit.CONFLICT with
  the hub's message, which names the state.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

from rich.console import Group

from fieldpact import ctl_deploy_render as render
from fieldpact.ctl_client import CtlError, Exit, HubClient
from fieldpact.ctl_commands import json_object, read_document

Output: TypeAlias = "tuple[Any, Any] | tuple[Any, Any, CtlError]"
Command: TypeAlias = "Callable[[HubClient, argparse.Namespace], Output]"
Add: TypeAlias = "Callable[[str, str, Command], argparse.ArgumentParser]"

GROUP_HELP = "staged rollouts: start, list, status, pause, resume, approve, rollback, retry"
DEFAULT_WAIT_S = 600.0
"""`--wait` with no number: ten minutes covers a canary's health window and a few waves; a
longer rollout is waited for with an explicit bound."""
POLL_S = 0.5
"""Between two reads while waiting: a wave step takes seconds; the hub answers in milliseconds."""
STOPPED = {"complete": Exit.OK, "rolled_back": Exit.ROLLED_BACK, "failed": Exit.ROLLED_BACK,
           "paused": Exit.PAUSED}
"""The states a deployment stays in without an operator (hub/states DEPLOYMENT, I4), and what a
script is told of each."""
ACTIONS = {
    "pause": "pause a deployment after its current step (operator)",
    "resume": "resume a paused deployment where it stopped (operator)",
    "approve": "approve the gate a manual-approval deployment waits at: the next wave starts",
    "retry": "retry a deployment's failed step (idempotent: a push already made is not repeated)",
}


def add_commands(add: Add) -> None:
    """Declare the `deploy` group's commands through `add("deploy <word>", help, command)`."""
    p = add("deploy start", "start a staged rollout of a snapshot: canary, waves, health gates",
            start)
    p.add_argument("snapshot", metavar="SNAPSHOT")
    _request_options(p)
    _wait_option(p)
    add("deploy list", "list deployments: state, wave, current step", list_)
    p = add("deploy status", "one deployment: waves, gate results with evidence, rollback reason, "
                             "devices", status)
    p.add_argument("id", metavar="ID")
    p.add_argument("--steps", action="store_true", help="also list its persisted steps")
    _wait_option(p)
    for verb, help in ACTIONS.items():
        p = add(f"deploy {verb}", help, _action(verb))
        p.add_argument("id", metavar="ID")
        if verb != "pause":
            _wait_option(p)
    p = add("deploy rollback", "roll a deployment back to each device's known-good contract",
            rollback)
    p.add_argument("id", metavar="ID")
    p.add_argument("--reason", required=True, help="why, for the audit trail (required)")


def _request_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", type=Path, metavar="FILE",
                   help="the request body (YAML or JSON) to start from; the flags override it")
    p.add_argument("--target", type=json_object, metavar="JSON",
                   help='which devices: {"site"?, "labels"?, "devices"?} as JSON (AND-ed)')
    canary = p.add_mutually_exclusive_group()
    canary.add_argument("--canary", metavar="DEVICES", help="canary devices, comma-separated")
    canary.add_argument("--canary-count", type=int, metavar="N", help="N canary devices")
    canary.add_argument("--canary-percent", type=float, metavar="P", help="P %% of the devices")
    waves = p.add_mutually_exclusive_group()
    waves.add_argument("--wave-size", type=int, metavar="N", help="devices per wave")
    waves.add_argument("--rate-per-min", type=float, metavar="R",
                       help="devices per minute in the first wave (grows by --growth)")
    p.add_argument("--growth", type=float, metavar="G", help="wave growth factor with --rate-per-min")
    p.add_argument("--approval", choices=("auto", "manual"),
                   help="manual: pause after each gate until approved")
    for flag, key, help in (("--pause-s", "pause_s", "seconds between waves"),
                            ("--reach-deadline-s", "reach_deadline_s",
                             "seconds a device has to accept before it counts as unreachable")):
        p.add_argument(flag, type=float, dest=key, metavar="S", help=help)
    p.add_argument("--abort-failure-pct", type=float, metavar="P",
                   help="stop expanding when this %% of the executed devices failed")
    p.add_argument("--abort-min-executed", type=int, metavar="M",
                   help="... once at least M devices executed")
    p.add_argument("--health-window-s", type=float, metavar="S",
                   help="how long a device must prove healthy")
    p.add_argument("--min-cycles", type=int, metavar="N", help="scan cycles to have run")
    p.add_argument("--step", dest="health_step", metavar="NAME", help="a step to have reached")
    p.add_argument("--telemetry", metavar="EXPR",
                   help="a condition over point values, e.g. 'level >= 1 and level <= 5'")
    p.add_argument("--commissioning", action="store_true", default=None,
                   help="canaries need a passing commissioning report")


def _wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, nargs="?", const=DEFAULT_WAIT_S, metavar="S",
                   help=f"wait until it completes, rolls back, fails or pauses (at most S s, "
                        f"default {DEFAULT_WAIT_S:g}); the exit status says which")


def deployment_request(args: argparse.Namespace, base: Mapping[str, Any] | None = None
                       ) -> dict[str, Any]:
    """The POST /api/deployments body: `base` (from --file) with the flags given laid over it.
    A flag not given leaves the field out, so the hub's defaults apply."""
    body: dict[str, Any] = {**(base or {}), "snapshot": args.snapshot}
    if args.target is not None:
        body["target"] = args.target
    strategy: dict[str, Any] = dict(body.get("strategy") or {})
    if args.canary is not None:
        strategy["canary"] = {"devices": [d for d in args.canary.split(",") if d]}
    elif args.canary_count is not None:
        strategy["canary"] = {"count": args.canary_count}
    elif args.canary_percent is not None:
        strategy["canary"] = {"percent": args.canary_percent}
    if args.wave_size is not None:
        strategy["waves"] = {"size": args.wave_size}
    elif args.rate_per_min is not None:
        strategy["waves"] = {"rate_per_min": args.rate_per_min,
                             **({"growth": args.growth} if args.growth is not None else {})}
    _put(strategy, approval=args.approval, pause_s=args.pause_s,
         reach_deadline_s=args.reach_deadline_s)
    abort = _put(dict(strategy.get("abort") or {}), failure_pct=args.abort_failure_pct,
                 min_executed=args.abort_min_executed)
    if abort:
        strategy["abort"] = abort
    health = _put(dict(body.get("health") or {}), window_s=args.health_window_s,
                  min_cycles=args.min_cycles, step=args.health_step, telemetry=args.telemetry,
                  commissioning=args.commissioning)
    body.update({k: v for k, v in (("strategy", strategy), ("health", health)) if v})
    return body


def _put(into: dict[str, Any], **values: Any) -> dict[str, Any]:
    into.update({k: v for k, v in values.items() if v is not None})
    return into


# ---- the commands -------------------------------------------------------------------------------

def start(client: HubClient, args: argparse.Namespace) -> Output:
    base = read_document(args.file) if args.file is not None else None
    if base is not None and not isinstance(base, dict):
        raise CtlError(Exit.REFUSED, f"{args.file}: expected a mapping (the request body)")
    view = client.post("/api/deployments", deployment_request(args, base))
    return _shown(client, view, args, f"deployment {view.get('id')} started")


def list_(client: HubClient, args: argparse.Namespace) -> Output:
    body = client.get("/api/deployments")
    rows = body.get("deployments") if isinstance(body, dict) else body
    return body, render.deployments_table(rows if isinstance(rows, list) else [])


def status(client: HubClient, args: argparse.Namespace) -> Output:
    return _shown(client, client.get("/api/deployments/{id}", id=args.id), args, None)


def _action(verb: str) -> Command:
    def action(client: HubClient, args: argparse.Namespace) -> Output:
        view = client.post(f"/api/deployments/{{id}}/{verb}", None, id=args.id)
        return _shown(client, view, args, f"{verb} {args.id}: {view.get('state')}")
    action.__name__ = verb
    return action


def rollback(client: HubClient, args: argparse.Namespace) -> Output:
    view = client.post("/api/deployments/{id}/rollback", {"reason": args.reason}, id=args.id)
    return _shown(client, view, args, f"rollback {args.id}: {view.get('state')}")


def _shown(client: HubClient, view: Any, args: argparse.Namespace, head: str | None) -> Output:
    """The view (after waiting, with --wait) as tables under `head`; with --wait, the verdict."""
    if not isinstance(view, dict):
        raise CtlError(Exit.HUB_ERROR, "the hub answered a deployment that is not an object")
    verdict = None
    if getattr(args, "wait", None) is not None:
        view, verdict = wait(client, view, args.wait)
    shown = render.deployment_view(view, steps=getattr(args, "steps", False))
    if head:
        shown = Group(head, shown)
    return (view, shown) if verdict is None else (view, shown, verdict)


def wait(client: HubClient, view: dict[str, Any], limit_s: float,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> tuple[dict[str, Any], CtlError | None]:
    """Read the deployment until it stops or `limit_s` passes; the last view and, unless it
    completed, the error a script sees (ROLLED_BACK, PAUSED or IN_PROGRESS)."""
    deadline = clock() + limit_s
    while view.get("state") not in STOPPED and clock() < deadline:
        sleep(POLL_S)
        view = client.get("/api/deployments/{id}", id=str(view.get("id")))
    return view, verdict(view, limit_s)


def verdict(view: Mapping[str, Any], limit_s: float) -> CtlError | None:
    state, ident = view.get("state"), view.get("id")
    code = STOPPED.get(str(state), Exit.IN_PROGRESS)
    if code is Exit.OK:
        return None
    if code is Exit.ROLLED_BACK:
        return CtlError(code, f"deployment {ident} {state}: "
                              f"{render.rollback_text(view.get('rollback')) or 'no rollback recorded'}")
    if code is Exit.PAUSED:
        step: Mapping[str, Any] = view.get("step") or {}
        gate = str(step.get("name", "")).endswith(":approval") and step.get("status") == "running"
        return CtlError(code, f"deployment {ident} paused at {render.step_text(step)}: "
                              f"`ctl deploy {'approve' if gate else 'resume'} {ident}`")
    return CtlError(code, f"deployment {ident} still {state} after {limit_s:g} s, at "
                          f"{render.step_text(view.get('step'))}")
