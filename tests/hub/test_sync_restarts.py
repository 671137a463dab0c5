"""Store-and-forward across restarts, with real brokers and real processes (issue 8).

Each test runs a real agent on a tank simulator whose journal grows every cycle, and checks that
the hub's copy converges to the agent's head — gapless, every entry stored once — after:
- the broker (Mosquitto, or the embedded amqtt broker in its own process) is killed -9 and
  restarted with nothing persisted, while both sides keep reconnecting;
- the hub process is killed -9 and restarted while the broker stays up; meanwhile the device is
  never shown `live` while the hub lacks journal the device had already written.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agent.process import Agent
from contracts.signing import generate_keypair
from hub.app import HubRuntime
from hub.auth import hash_token
from hub.acl.passwords import hash_password
from simulators.server import SimDevice
from tests.agent.test_uplink import agent_running, signed_contract
from tests.hub.broker_process import KINDS, REPO, BrokerProcess
from tests.hub.sync_helpers import PASSWORDS, SITE, acked, hub_config
from tests.waiting import eventually, free_port

pytestmark = pytest.mark.slow

CONVERGE_S = 60.0
"""Generous: the resend timer is 5 s and the machine is shared; convergence is a condition."""


async def head(agent: Agent) -> int:
    return (await agent.journal.head())[0]


def gapless(rows: list[int]) -> None:
    assert rows == list(range(1, len(rows) + 1)), "the hub's copy has holes"


async def stored_once(hub: HubRuntime) -> None:
    """The hub's ingest counter equals its stored rows at a moment between two batches (the agent
    keeps journaling, so the two are compared together, not read one after the other): an entry
    counted as stored twice would keep the counter ahead for good."""
    sync = hub.sync
    assert sync is not None
    await eventually(lambda: sync.entries_ingested == hub.store.journal.count(), 10,
                     "no entry stored twice",
                     detail=lambda: f"{sync.entries_ingested} counted, {hub.store.journal.count()} stored")


async def grows_by(agent: Agent, n: int, what: str) -> int:
    start = await head(agent)

    async def grown() -> int | None:
        h = await head(agent)
        return h if h >= start + n else None
    return await eventually(grown, 30, what)


@pytest.mark.parametrize("kind", KINDS)
async def test_broker_killed_and_restarted_without_persistence_mid_sync_converges(
        tmp_path: Path, kind: str) -> None:
    generate_keypair(tmp_path / "keys")
    with BrokerProcess(kind, tmp_path) as broker:
        hub = HubRuntime(hub_config(tmp_path, external=broker.url, hub_user=("hub", "hub-secret")))
        try:
            async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim, \
                    hub.running():
                async with agent_running(tmp_path, sim, broker.url,
                                         signed_contract(tmp_path)) as agent:
                    await eventually(lambda: acked(hub, "d1") > 20, 30, "sync under way")
                    broker.kill9()
                    await eventually(lambda: not agent.conn.online, 15, "agent saw the broker die")
                    await grows_by(agent, 15, "the agent journaling while the broker is gone")
                    broker.start()
                    await eventually(lambda: agent.conn.online, 30, "agent reconnected")
                    # Everything journaled while the broker was gone (>= 15 entries) and since; not
                    # more growth: a filled tank in `hold` journals little, and on a loaded
                    # machine the fill may be over by now.
                    target = await head(agent)
                    await eventually(lambda: acked(hub, "d1") >= target, CONVERGE_S,
                                     f"hub caught up to {target} after the {kind} restart")
                    rows = [r.seq for r in hub.store.journal.rows("d1", 0, 1_000_000)]
                    await stored_once(hub)
        finally:
            hub.close()
    gapless(rows)


# -- the hub process killed -9 ----------------------------------------------------------------


VIEWER = "viewer-secret"


def _hub_toml(tmp_path: Path, broker_url: str, api_port: int) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(
        f'db = "{tmp_path / "hub.db"}"\nkey = "{tmp_path / "keys" / "hub.key"}"\n'
        f'broker = "{broker_url}"\nsilence_timeout_s = 30\n'
        f'[listen]\nport = {api_port}\n[mqtt]\nusername = "hub"\npassword = "hub-secret"\n'
        f'[[tokens]]\nname = "viewer"\nsha256 = "{hash_token(VIEWER)}"\nrole = "viewer"\n'
        f'[[devices]]\nid = "d1"\nsite = "{SITE}"\npassword_hash = "{hash_password(PASSWORDS["d1"])}"\n')
    return path


@contextlib.contextmanager
def hub_process(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fieldpact.cli", "hub", "serve", "--config",
                                 str(config), "--log-level", "INFO"], cwd=REPO,
                                stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def shown(http: httpx.AsyncClient) -> tuple[str, int] | None:
    """(state, acked_seq) of d1 as the hub's API shows it; None while the hub is not serving."""
    try:
        r = await http.get("/api/devices/d1", headers={"Authorization": f"Bearer {VIEWER}"})
    except httpx.TransportError:
        return None
    if r.status_code != 200:
        return None
    body = r.json()
    return str(body["state"]), int(body["acked_seq"])


def hub_seqs(db: Path) -> list[int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
        return [int(r[0]) for r in c.execute(
            "SELECT seq FROM journal WHERE device = 'd1' ORDER BY seq")]


def transitions_since(db: Path, ts_ms: int) -> list[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
        return [(str(a), str(b), str(e)) for a, b, e in c.execute(
            'SELECT "from", "to", event FROM device_transitions WHERE device = \'d1\' '
            "AND ts_ms >= ? ORDER BY id", [ts_ms])]


@pytest.mark.parametrize("kind", KINDS)
async def test_hub_killed_and_restarted_with_the_broker_up_converges_and_is_not_live_meanwhile(
        tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fieldpact.agent.uplink")
    generate_keypair(tmp_path / "keys")
    db, log, port = tmp_path / "hub.db", tmp_path / "hub.log", free_port()
    with BrokerProcess(kind, tmp_path) as broker:
        config = _hub_toml(tmp_path, broker.url, port)
        async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            with hub_process(config, log) as first:
                await eventually(lambda: _serving(http), CONVERGE_S, "the first hub serving")
                async with agent_running(tmp_path, sim, broker.url,
                                         signed_contract(tmp_path)) as agent:
                    await _until(http, lambda r: r[0] == "live" and r[1] > 20,
                                 "device live and synced on the first hub")
                    first.kill()  # SIGKILL: no last words but the broker's last will
                    first.wait(timeout=10)
                    down_head = await grows_by(agent, 15, "the agent journaling, hub gone")
                    restarted_ms = _now_ms()
                    with hub_process(config, log):
                        samples = await _until(http, lambda r: r[1] >= down_head,
                                               f"hub holding seq {down_head}")
                        target = await head(agent)
                        await _until(http, lambda r: r[1] >= target, f"hub caught up to {target}")
                        await _until(http, lambda r: r[0] == "live", "live again")
                        seqs = hub_seqs(db)
                        moves = transitions_since(db, restarted_ms)
    shown_stale = [s for s in samples if s[0] == "live" and s[1] < down_head]
    assert not shown_stale, f"shown live while the hub lacked seq {down_head}: {shown_stale[:3]}"
    assert moves and moves[0] == ("live", "reconciling", "hub_restart"), moves
    gapless(seqs)
    heard = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("hub_offline") for m in heard)  # the dead hub's last will
    assert any(m.startswith("hub_birth") and "restarted=True" in m for m in heard)


async def _serving(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/health")).status_code == 200
    except httpx.TransportError:
        return False


async def _until(http: httpx.AsyncClient, check: Callable[[tuple[str, int]], bool],
                 what: str) -> list[tuple[str, int]]:
    """Poll the API until `check` holds; every (state, acked) it showed on the way."""
    samples: list[tuple[str, int]] = []

    async def poll() -> bool:
        row = await shown(http)
        if row is not None:
            samples.append(row)
        return row is not None and check(row)
    await eventually(poll, CONVERGE_S, what, every_s=0.05)
    return samples


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
