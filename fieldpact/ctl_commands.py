"""The `fieldpact ctl` commands: what each reads off the command line, which routes it calls, what
it shows. `add_commands(add)` declares them in help order (README's ctl table lists the same).

Every command returns (the hub's JSON, what a person sees); fieldpact/ctl.py prints one of them.
The reasons given with --reason are audited by the hub with the caller's token name.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeAlias

from rich.console import Group, RenderableType
from rich.text import Text

from contracts.errors import DocumentError
from contracts.loader import load_document
from fieldpact import ctl_render as render
from fieldpact.ctl_client import CtlError, Exit, HubClient
from hub.alarms import AlarmKind
from hub.states import ContractStatus, DeviceState

Output: TypeAlias = "tuple[Any, RenderableType | str] | tuple[Any, RenderableType | str, CtlError]"
"""What a command gives back: the hub's JSON (printed by --json), what a person sees and, when the
answer itself is a failure for a script (`drift --check`), the error reported after it."""
Command: TypeAlias = "Callable[[HubClient, argparse.Namespace], Output]"
Add: TypeAlias = "Callable[[str, str, Command], argparse.ArgumentParser]"

GROUPS = {"snapshot": "fleet snapshots: create, list, show, diff",
          "desired": "a device's desired snapshot: set, clear"}
# argparse checks these (hub/states.py, hub/alarms.py), so a typo is a usage error naming the
# choices rather than the hub's 400.
DEVICE_STATES = tuple(s.value for s in DeviceState)
CONTRACT_STATUSES = tuple(s.value for s in ContractStatus)
ALARM_KINDS = tuple(k.value for k in AlarmKind)


def add_commands(add: Add) -> None:
    """Declare every ctl command through `add(name, help, command)`."""
    p = add("devices", "list devices: state, contract, last seen, journal, alarms", devices)
    p.add_argument("--state", choices=DEVICE_STATES, metavar="STATE",
                   help=f"only devices in this state ({', '.join(DEVICE_STATES)})")
    p.add_argument("--site", help="only devices of this site")
    p = add("device", "one device: state, contract, values with age, drift, alarms", device)
    p.add_argument("id", metavar="ID")
    p = add("contracts", "list contract versions with status and engine mode", contracts)
    p.add_argument("--device", help="only this device's contracts")
    p.add_argument("--status", choices=CONTRACT_STATUSES, metavar="STATUS",
                   help=f"only contracts in this status ({', '.join(CONTRACT_STATUSES)})")
    p = add("alarms", "list active alarms (or --cleared)", alarms)
    p.add_argument("--device", help="only this device")
    p.add_argument("--kind", choices=ALARM_KINDS, metavar="KIND",
                   help=f"only this alarm kind ({', '.join(ALARM_KINDS)})")
    p.add_argument("--cleared", action="store_true", help="cleared alarms instead of active")
    p.add_argument("--unacked", action="store_true", help="only alarms nobody acknowledged")
    p = add("ack", "acknowledge an alarm (operator; it stays active until it clears)", ack)
    p.add_argument("alarm", metavar="ALARM_ID")
    for verb, needs in (("resume", "required"), ("hold", "optional"), ("abort", "optional")):
        p = add(verb, _ACTION_HELP[verb], _contract_action(verb))
        p.add_argument("contract", metavar="CONTRACT", help="name@version")
        p.add_argument("--reason", required=needs == "required",
                       help=f"why, for the audit trail ({needs})")
    _add_fleet_commands(add)


_ACTION_HELP = {
    "resume": "send RESUME for a tripped or held contract (the agent decides; reason required)",
    "hold": "send HOLD: outputs stay, steps stop advancing",
    "abort": "send ABORT: outputs go to the contract's safe state and the contract ends",
}


def _add_fleet_commands(add: Add) -> None:
    p = add("designs", "list designs (contract templates), or show one by NAME", designs)
    p.add_argument("name", nargs="?", metavar="NAME")
    p = add("snapshot create", "make an immutable snapshot from a YAML or JSON file", snap_create)
    p.add_argument("file", type=Path, metavar="FILE")
    add("snapshot list", "list snapshots, newest first", snap_list)
    p = add("snapshot show", "one snapshot: designs, bindings, target", snap_show)
    p.add_argument("id", metavar="ID")
    p = add("snapshot diff", "per device, which contract fields change from A to B", snap_diff)
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p = add("plan", "dry run: per device what it runs, what it would get, eligibility", plan)
    p.add_argument("snapshot", metavar="SNAPSHOT")
    p.add_argument("--target", type=json_object, metavar="JSON",
                   help='narrow the snapshot\'s target: {"devices"?, "sites"?, "labels"?} as JSON, '
                        'e.g. \'{"sites": ["north-field"]}\'')
    p.add_argument("--documents", action="store_true",
                   help="include each would-get contract in full (with --json)")
    p = add("desired set", "set the snapshot a device should run (admin; audited)", desired_set)
    p.add_argument("id", metavar="ID")
    p.add_argument("snapshot", metavar="SNAPSHOT")
    p = add("desired clear", "clear a device's desired snapshot: its drift rows go (admin; "
                             "audited)", desired_clear)
    p.add_argument("id", metavar="ID")
    p = add("drift", "per device: desired snapshot vs what it reports it runs", drift)
    p.add_argument("--site", help="only devices of this site")
    p.add_argument("--check", action="store_true",
                   help=f"exit {int(Exit.DRIFT)} when any device drifts (for scripts)")


# ---- the commands -------------------------------------------------------------------------------

def devices(client: HubClient, args: argparse.Namespace) -> Output:
    rows = client.get("/api/devices", _params(state=args.state))
    if args.site is not None:
        rows = [d for d in rows if d.get("site") == args.site]
    active: dict[str, list[Any]] = {}  # the list is cached without alarms: one more call
    for a in client.get("/api/alarms"):
        active.setdefault(a.get("device"), []).append(a)
    return rows, render.devices_table([{**d, "alarms": active.get(d.get("id"), [])}
                                       for d in rows])


def device(client: HubClient, args: argparse.Namespace) -> Output:
    body = client.get("/api/devices/{device}", device=args.id)
    return body, render.device_view(body)


def contracts(client: HubClient, args: argparse.Namespace) -> Output:
    rows = client.get("/api/contracts", _params(device=args.device, status=args.status))
    return rows, render.contracts_table(rows)


def alarms(client: HubClient, args: argparse.Namespace) -> Output:
    rows = client.get("/api/alarms", _params(
        device=args.device, kind=args.kind, active="false" if args.cleared else None,
        acknowledged="false" if args.unacked else None))
    return rows, render.alarms_table(rows)


def ack(client: HubClient, args: argparse.Namespace) -> Output:
    body = client.post("/api/alarms/{alarm}/ack", {}, alarm=args.alarm)
    return body, f"alarm {body.get('id')} ({body.get('kind')} on {body.get('device')}): " \
                 f"acknowledged by {body.get('acked_by')}"


def _contract_action(verb: str) -> Command:
    def action(client: HubClient, args: argparse.Namespace) -> Output:
        body = {"reason": args.reason} if args.reason is not None else {}
        answer = client.post(f"/api/contracts/{{contract}}/{verb}", body, contract=args.contract)
        return answer, render.result_line(f"{verb} {args.contract}", answer)
    action.__name__ = verb
    return action


def designs(client: HubClient, args: argparse.Namespace) -> Output:
    if args.name is not None:
        body = client.get("/api/designs/{name}", name=args.name)
        return body, render.rows_table(f"design {args.name}", _listed(body, "versions"),
                                       ("version", "created_ms", "actor", "document"))
    body = client.get("/api/designs")
    return body, render.rows_table("designs", _listed(body, "designs"),
                                   ("design", "versions", "latest"))


def snap_create(client: HubClient, args: argparse.Namespace) -> Output:
    body = client.post("/api/snapshots", read_document(args.file))
    return body, render.rows_table("snapshot created", body)


def snap_list(client: HubClient, args: argparse.Namespace) -> Output:
    body = client.get("/api/snapshots")
    return body, render.rows_table("snapshots", _listed(body, "snapshots"),
                                   ("id", "created_ms", "actor", "source", "bytes"))


def snap_show(client: HubClient, args: argparse.Namespace) -> Output:
    body = client.get("/api/snapshots/{snapshot}", snapshot=args.id)
    return body, render.rows_table(f"snapshot {args.id}", body)


def snap_diff(client: HubClient, args: argparse.Namespace) -> Output:
    body = client.get("/api/snapshots/{a}/diff/{b}", a=args.a, b=args.b)
    return body, _with_summary(body, render.rows_table(
        f"snapshot {args.a} -> {args.b}: devices that change", _listed(body, "devices"),
        ("device", "contract", "change", "design", "fields", "issues")))


def plan(client: HubClient, args: argparse.Namespace) -> Output:
    request: dict[str, Any] = {"snapshot": args.snapshot}
    if args.target is not None:
        request["target"] = args.target
    if args.documents:
        request["documents"] = True
    body = client.post("/api/plans", request)
    return body, _with_summary(body, render.rows_table(
        f"plan for {args.snapshot} (dry run: nothing changed)", _listed(body, "devices"),
        ("device", "site", "state", "contract", "action", "eligible", "ineligible", "current",
         "would_get", "changes")))


def desired_set(client: HubClient, args: argparse.Namespace) -> Output:
    body = client.put("/api/devices/{device}/desired", {"snapshot": args.snapshot},
                      device=args.id)
    return body, f"{args.id}: desired snapshot {body.get('snapshot')}"


def desired_clear(client: HubClient, args: argparse.Namespace) -> Output:
    body = client.delete("/api/devices/{device}/desired", device=args.id)
    cleared = body.get("cleared")
    return body, (f"{args.id}: desired snapshot {cleared} cleared" if cleared
                  else f"{args.id}: no desired snapshot was set (nothing changed)")


def drift(client: HubClient, args: argparse.Namespace) -> Output:
    body = client.get("/api/drift")
    rows = [r for r in _listed(body, "entries") if isinstance(r, dict)
            and (args.site is None or r.get("site") == args.site)]
    if args.site is not None and isinstance(body, dict):
        body = {**body, "entries": rows}
    shown = _with_summary(body, render.rows_table("drift", [_drift_row(r) for r in rows],
                                                  DRIFT_COLUMNS))
    drifting = [r for r in rows if not r.get("in_sync")]
    if args.check and drifting:
        devices = len({r.get("device") for r in drifting})
        return body, shown, CtlError(
            Exit.DRIFT, f"{len(drifting)} contract(s) on {devices} device(s) drift from the "
                        f"desired snapshot",
            tuple((f"{r.get('device')} {r.get('contract')}", str(r.get("why")))
                  for r in drifting))
    return body, shown


DRIFT_COLUMNS = ("device", "site", "contract", "in_sync", "why", "since_ms", "alarm_at_ms",
                 "desired", "observed")
SNAPSHOT_ID_CHARS = 12
"""A snapshot id is a content hash: its first 12 hex digits tell snapshots apart in a table."""


def _drift_row(r: dict[str, Any]) -> dict[str, Any]:
    """A drift entry for the table: the desired snapshot (short id) and the observed contract
    instead of their whole objects (--json has them)."""
    desired, observed = r.get("desired"), r.get("observed")
    return {**r, "desired": str(desired.get("snapshot"))[:SNAPSHOT_ID_CHARS]
            if isinstance(desired, dict) else desired,
            "observed": observed.get("contract") or "nothing reported"
            if isinstance(observed, dict) else observed}


# ---- helpers ------------------------------------------------------------------------------------

def _params(**values: str | None) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}


def _with_summary(body: Any, table: RenderableType) -> RenderableType:
    """The table and, under it, the answer's `summary` counts when it has them."""
    summary = body.get("summary") if isinstance(body, dict) else None
    if not isinstance(summary, dict):
        return table
    return Group(table, Text("summary: " + ", ".join(f"{k} {render.cell(v)}"
                                                      for k, v in summary.items())))


def _listed(body: Any, key: str) -> Any:
    """The rows of an answer that is a list, or an object holding its list under `key`."""
    if isinstance(body, dict) and isinstance(body.get(key), list):
        return body[key]
    return body


def json_object(text: str) -> dict[str, Any]:
    """A command-line JSON object. Raises argparse.ArgumentTypeError (argparse prints it)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not a JSON object")
    return value


def read_document(file: Path) -> Any:
    """A YAML or JSON file (by suffix, with the contract loader's bounds) as JSON-able data.
    Raises CtlError (REFUSED) naming the file and where it is wrong."""
    try:
        doc = load_document(file)
    except DocumentError as exc:
        raise CtlError(Exit.REFUSED, str(exc)) from exc
    except OSError as exc:
        raise CtlError(Exit.REFUSED, f"{file}: {exc.strerror}") from exc
    return json.loads(json.dumps(doc, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
