"""`fieldpact demo`: the main job on embedded defaults, end to end, on loopback.

Starts the embedded broker and the hub, six simulated devices and six agents; pushes contracts
through the HTTP API; cuts one agent off the broker and shows it projected; reconnects it; shows
the reconciliation and the replan it triggered; then a staged rollout (fieldpact/demo_rollout.py):
a bad setpoint stopped at its canary by a health gate and rolled back, a good one completed over
canary and wave; prints a timeline and where to look. Exits 0 only when every check held.

The terminal shows only the demo's own story: every log record — ours, and the libraries' (pymodbus
frame dumps and errors from the links the demo cuts on purpose, uvicorn, amqtt, paho) — and every
Python warning goes to `demo.log` in the work directory, which the closing lines name.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from agent.journal import SqliteJournal
from agent.journal_signing import verify_seals
from contracts.journal_replay import contracts_in, replay_entries
from contracts.schema_serialize import format_time
from runtime.files import private_dir
from runtime.logs import log_to_file
from fieldpact.demo_rollout import ROLLOUT_DEVICES, rollout_story
from fieldpact.loopback import DeviceSpec, LocalSite
from hub.states import ContractStatus, DeviceState

EXAMPLES = Path(__file__).resolve().parent.parent / "contracts" / "examples"
LOG_NAME = "demo.log"
CUT_DEVICE = "pump-station-7"
DEVICES = (
    # The cut tank runs 20x faster than its contract's `expect` model: while offline it really
    # reaches 4 m and moves on to `hold`, which the hub's projection does not foresee.
    DeviceSpec(id=CUT_DEVICE, model="tank", initial={"level": 1.0}, time_scale=20.0),
    DeviceSpec(id="pump-station-8", model="tank", initial={"level": 2.0}),
    DeviceSpec(id="booster-skid-2", model="pump_skid"),
)
CONTRACTS = {CUT_DEVICE: ("tank-fill.yaml", "tank-fill"),
             "pump-station-8": ("tank-fill.yaml", "tank-fill-ps8"),  # (contract, version) is fleet-unique
             "booster-skid-2": ("pump-skid.yaml", "booster-run")}

WAIT_POLL_S = 0.25
"""Between two API reads while waiting: a deployment step takes seconds."""

console = Console(highlight=False)


@dataclass
class Demo:
    site: LocalSite
    http: httpx.AsyncClient
    t0: float = field(default_factory=time.monotonic)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def say(self, text: str) -> None:
        console.print(f"[dim]{time.monotonic() - self.t0:6.1f}s[/] {text}")

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, ok, detail))
        mark = "[green]✔[/]" if ok else "[red]✘[/]"
        self.say(f"{mark} {name}" + (f" — {detail}" if detail else ""))
        return ok

    async def wait(self, name: str, cond: Callable[[], Any], timeout_s: float) -> Any:
        try:
            return await self.site.wait_for(name, cond, timeout_s)
        except TimeoutError as exc:
            self.check(name, False, str(exc))
            raise _Failed(name) from None

    async def wait_async(self, name: str, cond: Callable[[], Awaitable[bool]],
                         timeout_s: float) -> None:
        """As `wait`, for a condition that must itself await (an API read)."""
        try:
            async with asyncio.timeout(timeout_s):
                while not await cond():
                    await asyncio.sleep(WAIT_POLL_S)
        except TimeoutError:
            self.check(name, False, f"timed out after {timeout_s:g} s")
            raise _Failed(name) from None

    async def api(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise _Failed(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()


class _Failed(Exception):
    pass


def _document(device: str, version: int) -> dict[str, Any]:
    file, contract = CONTRACTS[device]
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / file).read_text())
    now = time.time_ns() // 1_000_000
    doc.update(contract=contract, device=device, site="north-field", version=version,
               valid_from=format_time(now - 1000), valid_until=format_time(now + 86_400_000))
    scale = next(spec.time_scale for spec in DEVICES if spec.id == device)
    for p in doc["points"]:
        if p.get("direction") == "write":
            p["owner"] = doc["contract"]
        if p.get("max_rate_per_s") is not None:
            # A process run `scale` times faster changes `scale` times faster: the spike guard's
            # "physically impossible" rate scales with it (unscaled, the 20x tank fills at 80 % of
            # the limit, and simulator jitter under load read as a spike and tripped the demo).
            p["max_rate_per_s"] = p["max_rate_per_s"] * scale
    return doc


def _is_status(d: Demo, cid: str, status: ContractStatus) -> bool:
    return _hub_status(d, cid) is status


def _is_state(d: Demo, device: str, state: DeviceState) -> bool:
    return d.site.device_state(device) is state


def _hub_status(d: Demo, cid: str) -> ContractStatus | None:
    assert d.site.hub is not None
    try:
        return d.site.hub.store.contracts.get(cid).status
    except Exception:
        return None


async def _push_contracts(d: Demo) -> dict[str, str]:
    ids = {}
    for spec in DEVICES:
        body = await d.api("POST", "/api/contracts", json=_document(spec.id, 3))
        ids[spec.id] = body.get("id") or f"{body['contract']}@{body['version']}"
        d.say(f"pushed {ids[spec.id]} to {spec.id} via POST /api/contracts")
    for device, cid in ids.items():
        await d.wait(f"{cid} active on {device}",
                     functools.partial(_is_status, d, cid, ContractStatus.ACTIVE), 30)
        await d.wait(f"{device} live",
                     functools.partial(_is_state, d, device, DeviceState.LIVE), 30)
    return ids


async def _offline_episode(d: Demo) -> None:
    dev = d.site.devices[CUT_DEVICE]
    await dev.cut.cut()
    d.say(f"[bold]cut {CUT_DEVICE} off the broker[/] (TCP link dropped; the broker publishes its will)")
    await d.wait("projected", lambda: d.site.device_state(CUT_DEVICE) is DeviceState.PROJECTED, 20)
    view = await d.api("GET", f"/api/devices/{CUT_DEVICE}")
    vals = view.get("values") or {}
    d.check(f"{CUT_DEVICE} projected by the hub", view.get("state") == "projected",
            f"source={vals.get('source')} confidence={vals.get('confidence') or 0:.2f} "
            f"level≈{(vals.get('values') or {}).get('level', float('nan')):.2f} m")
    await d.wait("agent reaching `hold` while offline", lambda: dev.agent.scan.segment is not None
                 and dev.agent.scan.segment.step_name() == "hold", 60)
    d.check("agent kept running its contract offline", True,
            "level reached 4 m and the agent moved fill → hold on its own")
    dev.cut.restore()
    d.say(f"[bold]reconnected {CUT_DEVICE}[/]")


async def _reconcile_episode(d: Demo) -> None:
    assert d.site.hub is not None
    store = d.site.hub.store
    await d.wait("reconciliation", lambda: store.reconciliations.find(device=CUT_DEVICE), 40)
    rec = store.reconciliations.find(device=CUT_DEVICE)[0]  # newest first
    d.check("journal caught up and reconciled", True,
            f"divergent={rec.divergent}: " + "; ".join(rec.report.get("reasons", [])))
    d.check("divergence triggered the configured replan", rec.divergent and rec.action == "retry",
            f"policy for category {rec.report.get('category')}: {rec.action}")
    await d.wait("replan accepted", lambda: _hub_status(d, "tank-fill@4") in
                 (ContractStatus.ACCEPTED, ContractStatus.ACTIVE), 30)
    steps = [s["name"] for s in store.contracts.get("tank-fill@4").document["steps"]]
    d.check("agent accepted the re-issued contract tank-fill@4", True, f"steps {steps}")
    await d.wait("live again", lambda: d.site.device_state(CUT_DEVICE) is DeviceState.LIVE, 30)
    d.check(f"{CUT_DEVICE} live again", True)


async def _journals(d: Demo) -> None:
    assert d.site.hub is not None
    for device, dev in d.site.devices.items():
        pinned = d.site.hub.registry.journal_key(device)  # enrolled by the site harness
        with SqliteJournal(dev.journal) as j:
            broken, entries, head = j.verify(), j.read(1, 10_000_000), j.head()[0]
            seals = verify_seals(j, pinned) if pinned is not None else None
        report = replay_entries(entries, contracts_in(entries).get)
        hub_rows = d.site.hub.store.journal.rows(device, 0, 10_000_000)
        seqs = [r.seq for r in hub_rows]
        contiguous = seqs == list(range(1, len(seqs) + 1))
        d.check(f"{device}: journal chain intact, replay exact, hub copy gapless",
                broken is None and report.ok and contiguous,
                f"{head} entries ({'chain intact' if broken is None else f'BROKEN at {broken.seq}'}), "
                f"{report.writes_checked} writes replayed with {len(report.mismatches)} mismatches, "
                f"hub holds 1..{len(seqs)}{'' if contiguous else ' WITH GAPS'}")
        d.check(f"{device}: journal signed by the agent's enrolled key",
                seals is not None and seals.broken is None and seals.checked > 0,
                "no key enrolled" if seals is None else
                f"{seals.checked} signed chain heads verify, last at seq {seals.last_sealed}"
                if seals.broken is None else f"BROKEN at {seals.broken.seq}: {seals.broken.reason}")


def _timeline(d: Demo) -> None:
    assert d.site.hub is not None
    store = d.site.hub.store
    rows: list[tuple[int, str, str]] = []
    for dev in d.site.devices:
        rows += [(t.ts_ms, dev, f"device {t.from_state or '-'} → {t.to_state} ({t.event})")
                 for t in store.devices.transitions(dev)]
    rows += [(a.ts_ms, a.device or "-", f"{a.actor}: {a.action} {a.contract or ''} {a.outcome}"
              + (f" — {a.reason}" if a.reason else "")) for a in store.audit.find(limit=500)]
    table = Table(title="timeline", show_lines=False)
    for col in ("time (UTC)", "device", "what"):
        table.add_column(col)
    for ts, dev, what in sorted(rows):
        table.add_row(datetime.fromtimestamp(ts / 1000, UTC).strftime("%H:%M:%S.%f")[:-3], dev, what)
    console.print(table)


def _where_to_look(d: Demo, workdir: Path, log_path: Path) -> None:
    console.print(f"\n[bold]Where to look[/]\n  API      {d.site.api_url}/api/devices  "
                  f"(Authorization: Bearer {d.site.token})\n"
                  f"  OpenAPI  {d.site.api_url}/openapi.json   metrics {d.site.api_url}/metrics\n"
                  f"  rollouts FIELDPACT_TOKEN=… fieldpact ctl --hub {d.site.api_url} deploy list "
                  f"(then: deploy status ID); the operator page {d.site.api_url}/\n"
                  f"  hub db   {workdir / 'hub.db'}\n"
                  f"  journals fieldpact journal show --db {workdir}/agents/<device>/journal.db "
                  "(also: verify, replay)\n"
                  f"  logs     {log_path}  (hub, agents, broker and library logs)")


async def run_demo(workdir: Path, linger_s: float, log_path: Path) -> int:
    """Run the demo in `workdir` (which `log_path` may be in); return 0 when every check held."""
    n = len(DEVICES) + len(ROLLOUT_DEVICES)
    console.print(f"[bold]fieldpact demo[/]: hub + embedded broker + {n} simulated devices + "
                  f"{n} agents")
    async with LocalSite(workdir, (*DEVICES, *ROLLOUT_DEVICES), silence_timeout_s=15) as site:
        async with httpx.AsyncClient(base_url=site.api_url, timeout=10,
                                     headers={"Authorization": f"Bearer {site.token}"}) as http:
            d = Demo(site=site, http=http)
            d.say(f"hub API on {site.api_url}, broker on 127.0.0.1:{site.hub.broker.port}")  # type: ignore[union-attr]
            try:
                for step in (_push_contracts, _offline_episode, _reconcile_episode,
                             rollout_story, _journals):
                    await step(d)
            except _Failed as exc:
                d.check("demo step", False, str(exc))
            _timeline(d)
            _where_to_look(d, workdir, log_path)
            if linger_s > 0:
                console.print(f"\nhub stays up for {linger_s:g} s (Ctrl-C to stop)")
                await asyncio.sleep(linger_s)
    failed = [c for c in d.checks if not c[1]]
    console.print(f"\n[bold]{len(d.checks) - len(failed)} passed, {len(failed)} failed[/]")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="run the end-to-end demo on loopback")
    p.add_argument("--workdir", type=Path, default=Path("var/demo"),
                   help="where the hub database and agent journals go (recreated)")
    p.add_argument("--linger", type=float, default=0.0,
                   help="keep the hub up this many seconds after the checks, to explore the API")
    p.add_argument("--log-level", default="INFO", help=f"level of WORKDIR/{LOG_NAME}")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir
    if workdir.exists():
        shutil.rmtree(workdir)
    log_path = private_dir(workdir) / LOG_NAME
    handler = log_to_file(log_path, args.log_level)
    logging.captureWarnings(True)  # a library's warnings.warn goes to the file, not the terminal
    try:
        return asyncio.run(run_demo(workdir, args.linger, log_path))
    finally:
        logging.captureWarnings(False)
        logging.getLogger().removeHandler(handler)
        handler.close()


