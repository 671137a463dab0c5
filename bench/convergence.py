"""Convergence after restarts and partitions: time from heal until the hub holds, gapless,
everything the agent journaled up to the heal (issue 8).

Scenarios, each repeated `--repeats` (3) times on a fresh site, median printed next to its target
(< 10 s each):
- broker restart: the broker process (Mosquitto by default; `--broker amqtt` runs the embedded
  amqtt broker in its own process) is killed -9, stays down `--outage-s` (5), and is started again
  on the same port with nothing persisted. Heal = the broker listens again.
- hub restart: the hub (in this process, external-broker mode) is stopped, stays down
  `--outage-s`, and a new hub process-state is opened on the same database. Heal = the new hub
  is connected. (The kill -9 variant is a test: tests/hub/test_sync_restarts.py.)
- partition: the agent's TCP path to the broker is cut (simulators.netcut, a dead route) for
  `--partition-s` (60). Heal = the route is restored.
Gapless = the hub's acked seq reaches the agent's journal head read at the heal, and the hub's
rows are 1..acked with no hole. The agent runs the tank-fill example against the tank simulator,
so its journal keeps growing throughout.

Run: `.venv/bin/python -m bench.convergence [--quick] [--broker mosquitto|amqtt]`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from agent.config import AgentConfig, BrokerConfig as AgentBroker, ModbusConfig
from agent.modbus import ModbusLink
from agent.process import Agent
from bench._common import figure, signed_contract, window_around_now
from transport.backoff import Backoff
from hub.app import HubRuntime
from hub.auth import AuthConfig
from hub.acl.mosquitto import mosquitto_acl
from hub.acl.passwords import hash_password, mosquitto_password_line
from hub.acl.policy import BrokerRole, UserSpec
from hub.config import BrokerConfig, BrokerMode, DeviceCredential, HubConfig
from hub.store import NotFound
from simulators.netcut import NetCut
from simulators.server import SimDevice
from tests.waiting import WaitTimeout, eventually, free_port, listening

EXAMPLE = Path(__file__).parents[1] / "contracts" / "examples" / "tank-fill.yaml"
TARGET_S = 10.0
CONVERGE_LIMIT_S = 120.0
"""A run that has not converged after this long is reported as such (a stall), not waited on."""
SITE, DEVICE = "north-field", "pump-station-7"
PASSWORDS = {"hub": "hub-bench-secret", DEVICE: "device-bench-secret"}


class BrokerProcess:
    """A broker in its own process on a fixed port, killable with SIGKILL and restartable."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind, self.tmp, self.port = kind, tmp, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        users = {"hub": UserSpec(password_hash="-", role=BrokerRole.HUB),
                 DEVICE: UserSpec(password_hash="-", role=BrokerRole.DEVICE, site=SITE, device=DEVICE)}
        if kind == "mosquitto":
            self.argv = [_mosquitto(), "-c", str(_mosquitto_conf(tmp, self.port, users))]
        else:
            (tmp / "users.json").write_text(json.dumps(PASSWORDS))
            self.argv = [sys.executable, "-m", "bench.convergence", "--serve-amqtt",
                         str(self.port), str(tmp / "users.json")]

    async def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[1])
        await eventually(lambda: listening(self.port), 20, f"{self.kind} listening")

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class Site:
    """Broker process + hub (in process) + one agent behind a NetCut, on a tank simulator."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.tmp, self.broker = tmp, BrokerProcess(kind, tmp)
        self.hub: HubRuntime | None = None
        self._hub_stack: contextlib.AsyncExitStack | None = None
        self.agent: Agent | None = None
        self.cut: NetCut | None = None

    def hub_config(self) -> HubConfig:
        device = DeviceCredential(id=DEVICE, site=SITE, password_hash=hash_password(PASSWORDS[DEVICE]))
        return HubConfig(db_path=self.tmp / "hub.db", key_path=self.tmp / "keys" / "hub.key",
                         broker=BrokerConfig(mode=BrokerMode.EXTERNAL, url=self.broker.url,
                                             username="hub", password=PASSWORDS["hub"]),
                         auth=AuthConfig(tokens=()), devices=(device,), silence_timeout_ms=30_000)

    async def start_hub(self) -> None:
        self._hub_stack = contextlib.AsyncExitStack()
        self.hub = HubRuntime(self.hub_config())
        self._hub_stack.callback(self.hub.close)
        await self._hub_stack.enter_async_context(self.hub.running())

    async def stop_hub(self) -> None:
        if self._hub_stack is not None:
            await self._hub_stack.aclose()
            self._hub_stack = None

    def acked(self) -> int:
        assert self.hub is not None
        try:
            return self.hub.store.devices.get(DEVICE).acked_seq
        except NotFound:  # not registered yet
            return 0

    def gapless(self, through: int) -> bool:
        assert self.hub is not None
        seqs = [r.seq for r in self.hub.store.journal.rows(DEVICE, 0, through + 10_000)]
        return seqs[:through] == list(range(1, through + 1))

    async def head(self) -> int:
        assert self.agent is not None
        return (await self.agent.journal.head())[0]


@contextlib.asynccontextmanager
async def site(kind: str) -> AsyncIterator[Site]:
    with tempfile.TemporaryDirectory(prefix="fp-convergence-") as tmpdir:
        s = Site(kind, Path(tmpdir))
        doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
        window_around_now(doc)
        (s.tmp / "keys").mkdir()
        public = signed_contract(doc, s.tmp / "keys", s.tmp / "contract.cose")
        await s.broker.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                await s.start_hub()
                stack.push_async_callback(s.stop_hub)
                sim = await stack.enter_async_context(SimDevice("tank", port=0, tick_ms=50))
                s.cut = await stack.enter_async_context(NetCut("127.0.0.1", s.broker.port))
                s.agent = _agent(s, sim.port, public)
                task = asyncio.create_task(s.agent.run(), name="bench-agent")
                stack.push_async_callback(_cancel, task)
                await eventually(lambda: s.acked() > 20, 60, "the agent synced")
                yield s
        finally:
            s.broker.kill9()


def _agent(s: Site, sim_port: int, public: Path) -> Agent:
    assert s.cut is not None
    cfg = AgentConfig(device=DEVICE, site=SITE, journal=s.tmp / "agent.db", trusted_key=public,
                      modbus=ModbusConfig(host="127.0.0.1", port=sim_port),
                      broker=AgentBroker(url=s.cut.url, username=DEVICE, password=PASSWORDS[DEVICE]),
                      contract=s.tmp / "contract.cose")
    return Agent(cfg, link=ModbusLink("127.0.0.1", sim_port, timeout_s=0.5),
                 reconnect=Backoff(initial_s=0.2, max_s=5.0, jitter=0.3))


# -- scenarios ------------------------------------------------------------------------------


async def broker_restart(s: Site, outage_s: float) -> None:
    s.broker.kill9()
    await asyncio.sleep(outage_s)  # the outage being measured, not a settle delay
    await s.broker.start()


async def hub_restart(s: Site, outage_s: float) -> None:
    await s.stop_hub()
    await asyncio.sleep(outage_s)
    await s.start_hub()


async def partition(s: Site, outage_s: float) -> None:
    assert s.cut is not None
    await s.cut.cut()
    await asyncio.sleep(outage_s)
    s.cut.restore()


async def measure(kind: str, fault: Callable[[Site, float], Awaitable[None]],
                  outage_s: float) -> float | None:
    """Seconds from heal to gapless, or None if it did not converge within the limit."""
    async with site(kind) as s:
        await fault(s, outage_s)
        healed, head = time.monotonic(), await s.head()
        try:
            await eventually(lambda: s.acked() >= head, CONVERGE_LIMIT_S, "gapless")
        except WaitTimeout:
            return None
        elapsed = time.monotonic() - healed
        return elapsed if s.gapless(head) else None


async def main(args: argparse.Namespace) -> None:
    print(f"convergence: broker {args.broker}, {args.repeats} runs each, outage {args.outage_s:g} s, "
          f"partition {args.partition_s:g} s; loadavg {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs", flush=True)
    for label, fault, outage in (("broker restart (kill -9, no persistence)", broker_restart,
                                  args.outage_s),
                                 ("hub restart", hub_restart, args.outage_s),
                                 (f"partition {args.partition_s:g} s", partition, args.partition_s)):
        runs = [await measure(args.broker, fault, outage) for _ in range(args.repeats)]
        report(label, runs)


def report(label: str, runs: list[float | None]) -> None:
    if any(r is None for r in runs):
        figure(f"{label}: heal -> gapless", f"STALLED in {runs.count(None)}/{len(runs)} runs "
               f"(> {CONVERGE_LIMIT_S:g} s)", f"< {TARGET_S:g} s", False)
        return
    done = [r for r in runs if r is not None]
    med = statistics.median(done)
    figure(f"{label}: heal -> gapless", f"{med:.2f} s median ({', '.join(f'{r:.2f}' for r in done)})",
           f"< {TARGET_S:g} s", med < TARGET_S)


# -- plumbing ------------------------------------------------------------------------------


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _mosquitto() -> str:
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if binary is None:
        raise SystemExit("no mosquitto binary (apt-get install mosquitto), or use --broker amqtt")
    return binary


def _mosquitto_conf(tmp: Path, port: int, users: dict[str, UserSpec]) -> Path:
    (tmp / "passwd").write_text("".join(mosquitto_password_line(u, PASSWORDS[u]) + "\n"
                                        for u in users))
    (tmp / "acl").write_text(mosquitto_acl(users))
    for name in ("passwd", "acl"):
        os.chmod(tmp / name, 0o600)
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
                    f"password_file {tmp / 'passwd'}\nacl_file {tmp / 'acl'}\nuser root\n")
    return conf


async def _serve_amqtt(port: int, users_file: Path) -> None:
    from hub.broker import EmbeddedBroker
    passwords = json.loads(users_file.read_text())
    users = {"hub": UserSpec(password_hash=hash_password(passwords["hub"]), role=BrokerRole.HUB),
             DEVICE: UserSpec(password_hash=hash_password(passwords[DEVICE]), role=BrokerRole.DEVICE,
                              site=SITE, device=DEVICE)}
    async with EmbeddedBroker("127.0.0.1", port, users=users):
        await asyncio.Event().wait()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", choices=["mosquitto", "amqtt"], default="mosquitto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--outage-s", type=float, default=5.0)
    p.add_argument("--partition-s", type=float, default=60.0)
    p.add_argument("--quick", action="store_true", help="1 run each, a 10 s partition")
    p.add_argument("--serve-amqtt", nargs=2, metavar=("PORT", "USERS_JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.partition_s = 1, 10.0
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.serve_amqtt:
        asyncio.run(_serve_amqtt(int(ARGS.serve_amqtt[0]), Path(ARGS.serve_amqtt[1])))
    else:
        logging.basicConfig(level=logging.ERROR)  # figures only; reconnect warnings are expected
        asyncio.run(main(ARGS))
