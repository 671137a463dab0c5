"""Benchmark of the hub's sync side over a real broker, store and HTTP API. Prints, never asserts.

Run: .venv/bin/python -m bench.sync [--entries 100000] [--devices 1000] [--quick]

1. ingest: a HubRuntime (embedded amqtt on port 0, SQLite hub db in a temp dir); device `d1` logs
   in over aiomqtt with its own password and publishes a pre-built hash-chained journal as
   JournalBatch messages of BATCH entries (QoS 1, resent from the hub's ack if the broker drops
   any, as the agent does). Timed from the first publish to acked_seq == E in the store. Then the
   in-process path alone (decode, DeviceIngest.add, rows, store.journal.insert), to show where the
   time goes.
2. reconcile: the hub sees d1 live (birth, telemetry with an engine state), then its last will, on
   an injected clock 24 h in the past, so it projects the device; the clock moves to now; d1
   publishes a new birth and 24 h of journal at 1 Hz (86,400 entries). Timed from the birth to the
   reconciliation record.
3. fleet: 1,000 devices' births and 1 Hz telemetry over MQTT from a load generator in ANOTHER
   process (a few aiomqtt clients with a hub-role login on a broker we start), while this process
   times GET /api/devices/{id} and GET /api/devices over real HTTP. RSS is this process's: the hub
   plus the HTTP client, not the load generator.
"""
from __future__ import annotations

import argparse
import shutil
import asyncio
import contextlib
import json
import logging
import os
import pickle
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import yaml

from agent.config import DEFAULT_ACK_TIMEOUT_S as ACK_TIMEOUT_S
from bench._common import figure, percentile, rss_mb
from contracts.chain import GENESIS, Entry, EntryKind, encode_body, make_entry
from contracts.engine import Engine
from contracts.loader import check_mapping
from contracts.schema_serialize import format_time
from contracts.topics import Channel, topic
from contracts.chain_rows import row_of
from contracts.journal_wire import ROWS_VERSION, JournalRows, decode_journal
from contracts.wire import Ack, Birth, JournalBatch, Telemetry
from hub.app import HUB_USER, HubRuntime, broker_users
from hub.auth import AuthConfig, ApiRole, Token, hash_token
from hub.acl.mosquitto import mosquitto_acl
from hub.acl.passwords import hash_password, mosquitto_password_line
from hub.acl.policy import BrokerRole, UserSpec
from hub.broker import EmbeddedBroker
from hub.broker_process import BrokerProcess
from hub.config import BrokerConfig, BrokerMode, DeviceCredential, HubConfig
from hub.ingest import Cursor, DeviceIngest
from hub.states import DeviceState
from hub.store import HubStore, NotFound
from hub.sync import MAX_BATCH_ENTRIES
from transport.mqtt import SOCKET_OPTIONS
from tests.hub.serving import serving
from tests.waiting import eventually, free_port, listening

INGEST_TARGET_PER_S = 100_000.0
"""A site of 100 agents resending a day's backlog each must catch up in minutes, not hours."""
INGEST_FLOOR_SHARE = 0.20
"""...and ingest must not waste the disk: at least 20 % of SQLite's own batched insert rate,
measured in the same run (the same host, the same load)."""
RECONCILE_TARGET_S = 1.5
"""An operator watching a device come back should see the verdict at once."""
API_P99_TARGET_MS = 50.0
"""The web UI polls the device list; 50 ms keeps it feeling immediate."""
API_ONE_P99_TARGET_MS = 10.0
"""One device's view is what an operator opens before acting on it."""
TELEMETRY_SHARE = 0.99
"""'All' telemetry handled: at least 99 % of what the load generator sent per second."""
BATCH = 500
"""agent/config.py DEFAULT_BATCH_MAX: entries per JournalBatch message."""
SITE, DEVICE = "s1", "d1"
DAY_MS = 24 * 3600 * 1000
LOADGEN_CLIENTS = 4
EXAMPLE = Path(__file__).parents[1] / "contracts" / "examples" / "tank-fill.yaml"
POLL_S = 0.005
"""Some figures are timed by these waits: poll finer than the tests' default (50 ms)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- journal fixtures --------------------------------------------------------------------------

def _body(i: int, level: float) -> tuple[EntryKind, dict[str, Any]]:
    """A tank-fill agent's mix: level changes, a keyframe a minute, pump writes now and then."""
    if i % 60 == 0:
        return EntryKind.KEYFRAME, {
            "values": {"level": [level, "good", None], "high_level": [False, "good", None]},
            "outputs": {"pump_speed": 1200, "valve_open": True}, "mode": "running", "step": "fill"}
    if i % 97 == 0:
        return EntryKind.OUTPUT, {"writes": {"pump_speed": 1200}}
    return EntryKind.INPUT, {"values": {"level": [level, "good", None]}}


def make_journal(n: int, t0_ms: int, period_ms: int) -> list[Entry]:
    """`n` chained entries from seq 1, one per `period_ms` from `t0_ms`."""
    entries, prev = [], GENESIS
    for i in range(n):
        kind, body = _body(i, round(1.0 + 3.0 * i / max(1, n), 4))
        e = make_entry(prev, i + 1, t0_ms + i * period_ms, kind, body)
        entries.append(e)
        prev = e.hash
    return entries


OWN_PROCESS = [True]
"""The embedded broker in its own process (the default), or on the hub's MQTT thread
(--inproc-broker, as before) for the ingest and reconcile runs."""

WIRE = [ROWS_VERSION]
"""The journal batch form the bench sends (--wire): 2, rows, what agents send; 1, entry maps,
what older agents send and the hub still takes."""


def batches(device: str, entries: list[Entry]) -> list[bytes]:
    if WIRE[0] == 1:
        return [JournalBatch(device=device, from_seq=c[0].seq, to_seq=c[-1].seq,
                             prev_hash=c[0].prev_hash,
                             entries=tuple(e.to_mapping() for e in c)).to_bytes()
                for k in range(0, len(entries), BATCH) for c in [entries[k:k + BATCH]]]
    return [JournalRows(device=device, from_seq=c[0].seq, to_seq=c[-1].seq,
                        prev_hash=c[0].prev_hash, rows=tuple(row_of(e) for e in c)).to_bytes()
            for k in range(0, len(entries), BATCH) for c in [entries[k:k + BATCH]]]


# -- hub and device plumbing -------------------------------------------------------------------

@dataclass
class Clock:
    """The hub's clock: wall time plus an offset the bench moves."""

    offset_ms: int = 0

    def __call__(self) -> int:
        return now_ms() + self.offset_ms


def hub_config(work: Path, secret: str, **broker: Any) -> HubConfig:
    """Hub config in `work`; `secret` is both d1's MQTT password and the API token."""
    token = Token(name="bench", sha256=hash_token(secret), role=ApiRole.ADMIN)
    return HubConfig(db_path=work / "hub.db", key_path=work / "keys" / "hub.key",
                     broker=BrokerConfig(**({"listen_port": 0, "own_process": OWN_PROCESS[0]}
                                            | broker)),
                     auth=AuthConfig(tokens=(token,)),
                     devices=(DeviceCredential(id=DEVICE, site=SITE,
                                               password_hash=hash_password(secret)),))


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


@contextlib.asynccontextmanager
async def device_client(hub: HubRuntime, password: str) -> AsyncIterator[aiomqtt.Client]:
    assert hub.mqtt_url is not None
    host, port = _host_port(hub.mqtt_url)
    async with aiomqtt.Client(host, port, identifier=f"fp-agent-{DEVICE}/bench", username=DEVICE,
                              password=password, max_queued_outgoing_messages=0,
                              socket_options=SOCKET_OPTIONS) as client:
        yield client


@contextlib.asynccontextmanager
async def journal_sender(hub: HubRuntime, password: str, msgs: list[bytes], last_seq: int,
                         tmp: Path) -> AsyncIterator[Callable[[float], Awaitable[int]]]:
    """A device process that will publish `msgs` (as an agent does, from ANOTHER process: in
    the hub's, its MQTT client would compete with the hub for the interpreter lock). Yields
    `go(timeout_s)`: start sending, return once the hub's store has acked `last_seq`, with the
    number of batches the sender resent after a stalled ack."""
    assert hub.mqtt_url is not None
    path = tmp / "msgs.pickle"
    path.write_bytes(pickle.dumps(msgs))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sync", "--journal-sender", hub.mqtt_url, "--msgs-file",
        str(path), "--last-seq", str(last_seq), env={**os.environ, "BENCH_MQTT_PASSWORD": password},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            if (await proc.stdout.readline()).strip() != b"ready":
                raise RuntimeError("journal sender did not start")

        async def go(timeout_s: float) -> int:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            await eventually(lambda: hub.store.devices.get(DEVICE).acked_seq >= last_seq, timeout_s,
                             "the journal acked", detail=lambda: _where(hub), every_s=0.002)
            async with asyncio.timeout(30):
                return int(json.loads(await proc.stdout.readline()))

        yield go
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def run_journal_sender(url: str, msgs_file: Path, last_seq: int) -> None:
    """The sender process: publish every batch, resend from the ack after ACK_TIMEOUT_S without
    progress (as the agent does), print the resends once the ack reaches `last_seq`."""
    msgs: list[bytes] = pickle.loads(msgs_file.read_bytes())
    host, port = _host_port(url)
    jtopic, resends, acked = topic(SITE, DEVICE, Channel.JOURNAL), 0, 0
    async with aiomqtt.Client(host, port, identifier=f"fp-agent-{DEVICE}/bench-sender", username=DEVICE,
                              password=os.environ["BENCH_MQTT_PASSWORD"],
                              max_queued_outgoing_messages=0,
                              socket_options=SOCKET_OPTIONS) as client:
        atopic = topic(SITE, DEVICE, Channel.ACK)
        await client.subscribe(atopic, qos=1)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for m in msgs:
            await client.publish(jtopic, m, qos=1)
        while acked < last_seq:
            try:
                async with asyncio.timeout(ACK_TIMEOUT_S):
                    message = await anext(aiter(client.messages))
                if str(message.topic) == atopic:  # anything else (a retained birth) is not ours
                    acked = max(acked, Ack.from_bytes(bytes(message.payload)).seq)
            except TimeoutError:  # no ack in time: resend from it
                for m in msgs[acked // BATCH:]:
                    await client.publish(jtopic, m, qos=1)
                    resends += 1
    print(json.dumps(resends), flush=True)


async def birth(client: aiomqtt.Client, last_seq: int) -> None:
    b = Birth(device=DEVICE, site=SITE, boot_id=secrets.token_hex(8), contract="tank-fill",
              version=3, last_seq=last_seq)
    await client.publish(topic(SITE, DEVICE, Channel.STATUS), b.to_bytes(), qos=1, retain=True)


# -- 1. ingest ---------------------------------------------------------------------------------

async def bench_ingest(n: int, repeats: int) -> None:
    print(f"1. journal ingest through the broker: {n:,} entries in batches of {BATCH} (wire "
          f"v{WIRE[0]}), device {DEVICE} over aiomqtt, QoS 1; {repeats} run(s)", flush=True)
    started = time.perf_counter()
    entries = make_journal(n, now_ms() - n * 100, 100)
    msgs = batches(DEVICE, entries)
    figure("pre-built (make_entry + encode, not timed)", f"{time.perf_counter() - started:.1f} s, "
           f"{sum(map(len, msgs)) / n:.0f} B/entry on the wire")
    rates, floors, cpus = [], [], []
    for _ in range(repeats):  # interleaved, so both see the same load
        rate, cpu_s = await _ingest_once(msgs, n)
        rates.append(rate)
        cpus.append(cpu_s / n * 1e6)
        floors.append(sqlite_floor(entries))
    med, floor = sorted(rates)[len(rates) // 2], sorted(floors)[len(floors) // 2]
    figure("SQLite batched insert floor, median", f"{floor:,.0f} rows/s "
           f"(runs: {', '.join(f'{r:,.0f}' for r in floors)})")
    figure("through broker into SQLite, median", f"{med:,.0f} entries/s "
           f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})",
           f">= {INGEST_TARGET_PER_S:,.0f}/s", med >= INGEST_TARGET_PER_S)
    figure("  as a share of the floor", f"{100 * med / floor:.1f} %",
           f">= {100 * INGEST_FLOOR_SHARE:.0f} %", med >= INGEST_FLOOR_SHARE * floor)
    figure("  hub MQTT thread CPU, median", f"{sorted(cpus)[len(cpus) // 2]:.1f} us/entry "
           f"(runs: {', '.join(f'{c:.1f}' for c in cpus)}; a loaded host stretches the wall "
           "time, much less this)")
    _ingest_in_process(msgs, n)


def sqlite_floor(entries: list[Entry]) -> float:
    """Rows/s of one executemany of ready tuples into the hub's journal table, one transaction,
    the hub's pragmas (WAL, synchronous=FULL): what SQLite itself costs, with no decoding."""
    rows = [(DEVICE, e.seq, e.ts_ms, e.kind.value, encode_body(e.body), e.prev_hash, e.hash)
            for e in entries]
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp, \
            HubStore.open(Path(tmp) / "hub.db") as store:
        start = time.perf_counter()
        store.begin_batch()
        store.db.conn.executemany("INSERT OR IGNORE INTO journal VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        store.commit_batch()
        return len(rows) / (time.perf_counter() - start)


async def _ingest_once(msgs: list[bytes], n: int) -> tuple[float, float]:
    """(entries/s, CPU seconds the hub's MQTT thread spent meanwhile)."""
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        hub = HubRuntime(hub_config(Path(tmp), password))
        try:
            async with hub.running(), device_client(hub, password) as client:
                await birth(client, 0)
                await eventually(lambda: _known(hub), 10, "the birth", every_s=POLL_S)
                async with journal_sender(hub, password, msgs, n, Path(tmp)) as go:
                    start, cpu = time.perf_counter(), thread_cpu_s("hub-mqtt")
                    resends = await go(120)
                    elapsed, cpu = time.perf_counter() - start, thread_cpu_s("hub-mqtt") - cpu
        finally:
            hub.close()
    if resends:
        figure("  batches resent after a stalled ack", str(resends))
    return n / elapsed, cpu


def thread_cpu_s(name: str) -> float:
    """CPU seconds (user + system) of this process's thread `name` so far (/proc, Linux)."""
    thread = next(t for t in threading.enumerate() if t.name == name)
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def _known(hub: HubRuntime) -> bool:
    try:
        hub.store.devices.get(DEVICE)
    except NotFound:
        return False
    return True


def _ingest_in_process(msgs: list[bytes], n: int) -> None:
    """Decode (either wire form, as rows) → DeviceIngest.add (chain verification over the body
    bytes) → insert, committed every MAX_BATCH_ENTRIES as the hub's sync side does."""
    t = dict.fromkeys(("decode", "ingest", "insert+commit"), 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, \
            HubStore.open(Path(tmp) / "hub.db") as store:
        store.devices.ensure(DEVICE, SITE, now_ms(), {})
        ing, uncommitted = DeviceIngest(Cursor()), 0
        for i, m in enumerate(msgs):
            t0 = time.perf_counter()
            rows = decode_journal(m).rows
            t1 = time.perf_counter()
            result = ing.add(rows)
            t2 = time.perf_counter()
            store.begin_batch()
            store.journal.insert_rows(DEVICE, result.store)
            store.devices.update(DEVICE, acked_seq=result.cursor.seq, last_hash=result.cursor.hash)
            uncommitted += len(result.store)
            if uncommitted >= MAX_BATCH_ENTRIES or i == len(msgs) - 1:
                store.commit_batch()
                uncommitted = 0
            t3 = time.perf_counter()
            for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2)):
                t[k] += dt
    total = sum(t.values())
    figure("in-process path alone", f"{n / total:,.0f} entries/s")
    figure("  where the time goes (us/entry)",
           ", ".join(f"{k} {v / n * 1e6:.1f}" for k, v in t.items()))


# -- 2. reconcile ------------------------------------------------------------------------------

def tank_doc(t0_ms: int) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc.update(device=DEVICE, site=SITE, valid_from=format_time(t0_ms - 60_000),
               valid_until=format_time(t0_ms + DAY_MS + 3_600_000))
    return doc


async def bench_reconcile(n: int, repeats: int) -> None:
    print(f"2. reconnect -> reconciled after {n * 1000 // 3_600_000} h offline at 1 Hz "
          f"({n:,} entries); {repeats} run(s)", flush=True)
    runs = [await _reconcile_once(n) for _ in range(repeats)]
    secs = sorted(r[0] for r in runs)
    med = secs[len(secs) // 2]
    figure("birth -> reconciliation record, median", f"{med:.2f} s "
           f"(runs: {', '.join(f'{s:.2f}' for s in secs)})",
           f"< {RECONCILE_TARGET_S:g} s", med < RECONCILE_TARGET_S)
    figure("  of which journal caught up (acked)", f"{runs[0][1]:.2f} s")
    cpus = sorted(r[3] for r in runs)
    figure("  hub MQTT thread CPU meanwhile, median", f"{cpus[len(cpus) // 2]:.2f} s "
           f"(runs: {', '.join(f'{c:.2f}' for c in cpus)})")
    figure("  reconciliation verdict", runs[0][2])


async def _reconcile_once(n: int) -> tuple[float, float, str, float]:
    password, clock = secrets.token_urlsafe(12), Clock()
    t0 = now_ms() - n * 1000
    entries = make_journal(n, t0, 1000)
    msgs = batches(DEVICE, entries)
    with tempfile.TemporaryDirectory(prefix="bench-recon-") as tmp:
        hub = HubRuntime(hub_config(Path(tmp), password), clock=clock)
        try:
            async with hub.running(), device_client(hub, password) as client:
                clock.offset_ms = t0 - now_ms()
                await hub.service.submit_contract(tank_doc(t0), "bench")
                await _go_offline(client, hub, clock)
                clock.offset_ms = 0
                async with journal_sender(hub, password, msgs, n, Path(tmp)) as go:
                    start, cpu = time.perf_counter(), thread_cpu_s("hub-mqtt")
                    await birth(client, n)
                    await go(120)
                    acked = time.perf_counter() - start
                await eventually(lambda: bool(hub.store.reconciliations.find(device=DEVICE)), 120,
                                 "the reconciliation record", detail=lambda: _where(hub),
                                 every_s=POLL_S)
                elapsed, cpu = time.perf_counter() - start, thread_cpu_s("hub-mqtt") - cpu
                rec = hub.store.reconciliations.find(device=DEVICE)[0]
        finally:
            hub.close()
    return elapsed, acked, f"divergent={rec.divergent} action={rec.action}", cpu


def _where(hub: HubRuntime) -> str:
    d = hub.store.devices.get(DEVICE)
    return f"device {d.state.value}, acked {d.acked_seq}, last_seq {d.last_seq}"


async def _go_offline(client: aiomqtt.Client, hub: HubRuntime, clock: Clock) -> None:
    """Birth, telemetry with the engine's initial state, then the last will: projected."""
    await birth(client, 0)
    await eventually(lambda: _known(hub), 10, "the birth", every_s=POLL_S)
    state = Engine(check_mapping(tank_doc(clock()))).initial_state().to_mapping()
    tel = Telemetry(ts_ms=clock(), values=(("level", 1.0), ("pump_speed", 0)), mode="running",
                    step="fill", seq=0, contract="tank-fill", version=3, state=state)
    await client.publish(topic(SITE, DEVICE, Channel.TELEMETRY), tel.to_bytes(), qos=1)
    await eventually(lambda: hub.store.devices.get(DEVICE).state is DeviceState.LIVE, 10, "live",
                     every_s=POLL_S)
    await client.publish(topic(SITE, DEVICE, Channel.STATUS), b"offline", qos=1, retain=True)
    await eventually(lambda: hub.store.devices.get(DEVICE).state is DeviceState.PROJECTED, 30,
                     "projected", every_s=POLL_S)
    # A real 24 h outage spans many live-value flushes (FLUSH_S); wait for one, so the telemetry
    # sent before the will is not still pending. Pending, it overwrites the projection when the
    # device returns (hub/sync.py flush_live skips PROJECTED, not RECONCILING: reported bug).
    sync = hub.sync
    assert sync is not None
    await eventually(lambda: DEVICE not in sync._dirty, 10, "a live-value flush",
                     every_s=POLL_S)


# -- 3. fleet ----------------------------------------------------------------------------------

class FleetHub(HubRuntime):
    """The hub with its embedded broker, as `hub serve` runs it (on the MQTT side's own loop and
    thread), plus a hub-role login for the load generator on that broker."""

    def __init__(self, cfg: HubConfig, loadgen_password: str) -> None:
        super().__init__(cfg)
        self._loadgen_password = loadgen_password

    async def _broker(self, stack: contextlib.AsyncExitStack) -> tuple[str, str | None, str | None]:
        b, password = self.cfg.broker, secrets.token_urlsafe(24)
        users = broker_users(self.cfg, password) | {"loadgen": UserSpec(
            password_hash=hash_password(self._loadgen_password), role=BrokerRole.HUB, site=None,
            device=None)}
        broker = (BrokerProcess(b.listen_host, b.listen_port, users=users) if b.own_process
                  else EmbeddedBroker(b.listen_host, b.listen_port, users=users))
        self.broker = await stack.enter_async_context(broker)
        return broker.url, HUB_USER, password


@contextlib.asynccontextmanager
async def fleet_hub(kind: str, tmp: Path, password: str) -> AsyncIterator[HubRuntime]:
    """The hub for the fleet run (not started), its FLEET devices registered (only registered
    devices exist: hub/registry.py): with its embedded amqtt, or in external mode on a Mosquitto
    process with our rendered ACL and passwords."""
    if kind in ("amqtt", "amqtt-inproc"):
        hub: HubRuntime = FleetHub(hub_config(tmp, password, own_process=kind == "amqtt"),
                                   password)
        try:
            yield _registered(hub)
        finally:
            hub.close()
        return
    broker = mosquitto(tmp, password) if kind == "mosquitto" else amqtt_process(password)
    async with broker as url:
        hub = HubRuntime(hub_config(tmp, password, mode=BrokerMode.EXTERNAL, url=url,
                                    username="hub", password=password))
        try:
            yield _registered(hub)
        finally:
            hub.close()


def fleet_ids(devices: int) -> list[str]:
    return [f"dev-{i:04d}" for i in range(devices)]


FLEET = [1000]
"""How many devices the fleet run registers (--devices)."""


def _registered(hub: HubRuntime) -> HubRuntime:
    """The fleet's devices added as an admin would (the API's registrations table), then the
    registry re-read once."""
    with hub.store.tx():
        for d in fleet_ids(FLEET[0]):
            hub.store.registry.add(d, SITE, {}, now_ms(), "bench")
            hub.store.devices.ensure(d, SITE, now_ms(), {})
    hub.registry._reload()  # one read for all of them (register() re-reads after each)
    return hub


def _born(hub: HubRuntime) -> int:
    return sum(d.state is not DeviceState.UNKNOWN for d in hub.store.devices.find())


def _fleet_users(password: str) -> dict[str, UserSpec]:
    return {name: UserSpec(password_hash=hash_password(password), role=BrokerRole.HUB, site=None,
                           device=None) for name in ("hub", "loadgen")}


@contextlib.asynccontextmanager
async def amqtt_process(password: str) -> AsyncIterator[str]:
    """The embedded amqtt broker in a process of its own (its own interpreter lock), to measure
    what taking it out of the hub's process would give."""
    port = free_port()
    async with _listening_process([sys.executable, "-m", "bench.sync", "--amqtt-broker", str(port)],
                                  port, 30, env={**os.environ, "BENCH_MQTT_PASSWORD": password}):
        yield f"mqtt://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def _listening_process(argv: list[str], port: int, timeout_s: float,
                             **kw: Any) -> AsyncIterator[None]:
    """`argv` as a child process, once it listens on 127.0.0.1:`port`; terminated after."""
    proc = await asyncio.create_subprocess_exec(*argv, **kw)
    try:
        await eventually(lambda: listening(port), timeout_s, f"{argv[0]} listening on {port}",
                         every_s=POLL_S)
        yield
    finally:
        proc.terminate()
        await proc.wait()


async def run_amqtt(port: int) -> None:
    users = _fleet_users(os.environ["BENCH_MQTT_PASSWORD"])
    async with EmbeddedBroker("127.0.0.1", port, users=users):
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def mosquitto(tmp: Path, password: str) -> AsyncIterator[str]:
    users = _fleet_users(password)
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if binary is None:
        raise SystemExit("--broker mosquitto: no mosquitto binary (apt-get install mosquitto)")
    port = free_port()
    (tmp / "passwd").write_text("".join(mosquitto_password_line(u, password) + "\n" for u in users))
    (tmp / "acl").write_text(mosquitto_acl(users))
    (tmp / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                                f"password_file {tmp / 'passwd'}\nacl_file {tmp / 'acl'}\n"
                                "persistence false\nuser root\nmax_queued_messages 100000\n")
    for f in ("passwd", "acl"):
        os.chmod(tmp / f, 0o600)
    async with _listening_process([binary, "-c", str(tmp / "m.conf")], port, 10,
                                  stdout=asyncio.subprocess.DEVNULL,
                                  stderr=asyncio.subprocess.DEVNULL):
        yield f"mqtt://127.0.0.1:{port}"


async def bench_fleet(devices: int, seconds: float, broker_kind: str = "amqtt") -> None:
    print(f"3. hub with {devices:,} devices: births + telemetry at 1 Hz over MQTT from a load "
          f"generator process, broker {broker_kind}; API timed for {seconds:g} s", flush=True)
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        async with fleet_hub(broker_kind, Path(tmp), password) as hub, serving(hub.app()) as base:
            assert hub.mqtt_url is not None
            idle_rss, handled = rss_mb()[1], count_telemetry(hub)
            async with loadgen(hub.mqtt_url, password, devices) as gen:
                await eventually(lambda: _born(hub) >= devices, 60, f"{devices} births",
                                 every_s=0.5, detail=lambda: f"{_born(hub)} born")
                n0, s0, t0 = handled[0], sum(SENT.values()), time.monotonic()
                lat, api_cpu = await timed_api(base, password, devices, seconds)
                elapsed = time.monotonic() - t0
                sent, published = (handled[0] - n0) / elapsed, (sum(SENT.values()) - s0) / elapsed
                gen_alive = gen.returncode is None
            await eventually(_quiet(handled), 30, "telemetry drained", every_s=0.5)
            idle_lat, idle_cpu = await timed_api(base, password, devices, min(seconds, IDLE_API_S))
    targets = {"/api/devices/{id}": API_ONE_P99_TARGET_MS, "/api/devices": API_P99_TARGET_MS}
    for name, xs in lat.items():
        p50, p99 = percentile(xs, 0.5) * 1e3, percentile(xs, 0.99) * 1e3
        figure(f"GET {name} p50 / p99 ({len(xs)} requests)", f"{p50:.1f} / {p99:.1f} ms",
               f"p99 < {targets[name]:g} ms", p99 < targets[name])
    for when, xs_by, cpu in (("under load", lat, api_cpu), ("idle after", idle_lat, idle_cpu)):
        answered = sum(len(xs) for xs in xs_by.values())
        one = xs_by["/api/devices/{id}"]
        figure(f"hub API thread CPU per request, {when} (both routes)",
               f"{cpu / answered * 1e3:.2f} ms ({answered:,} requests; GET /api/devices/{{id}} "
               f"p50 / p99 {percentile(one, 0.5) * 1e3:.1f} / {percentile(one, 0.99) * 1e3:.1f} ms)")
    figure("telemetry handled while timing the API", f"{sent:.0f} msgs/s of {devices:,} sent "
           f"(load generator {'running' if gen_alive else 'EXITED'}, published {published:.0f}/s)",
           f">= {TELEMETRY_SHARE:.0%} of sent", sent >= TELEMETRY_SHARE * devices)
    peak, current = rss_mb()
    figure("hub process VmRSS idle -> under load", f"{idle_rss:.1f} -> {current:.1f} MB "
           f"(peak {peak:.1f} MB)")


IDLE_API_S = 5.0
"""How long the API is timed again once the load generator has stopped (at most --api-seconds):
the API's own cost per request, without the MQTT thread competing for the interpreter lock."""


async def timed_api(base: str, token: str, devices: int,
                    seconds: float) -> tuple[dict[str, list[float]], float]:
    """`api_poller`'s latencies, and the CPU seconds the hub's API thread (this one: uvicorn
    serves on this loop) spent meanwhile."""
    api = threading.current_thread().name
    cpu = thread_cpu_s(api)
    lat = await api_poller(base, token, devices, seconds)
    return lat, thread_cpu_s(api) - cpu


def _quiet(handled: list[int]) -> Callable[[], bool]:
    """A condition: no telemetry handled since the last time it was asked."""
    last = [-1]

    def quiet() -> bool:
        was, last[0] = last[0], handled[0]
        return was == handled[0]

    return quiet


@contextlib.asynccontextmanager
async def loadgen(url: str, password: str, devices: int) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "BENCH_MQTT_PASSWORD": password}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.sync", "--loadgen", url,
                                                "--devices", str(devices), env=env,
                                                stdout=asyncio.subprocess.PIPE)
    reader = asyncio.create_task(_read_sent(proc, SENT))
    try:
        yield proc
    finally:
        reader.cancel()
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


SENT: dict[int, int] = {}
"""Telemetry messages each load generator client has published so far (its stdout lines)."""


async def _read_sent(proc: asyncio.subprocess.Process, sent: dict[int, int]) -> None:
    assert proc.stdout is not None
    sent.clear()
    while line := await proc.stdout.readline():
        k, n = json.loads(line)
        sent[k] = n


async def api_poller(base: str, token: str, devices: int, seconds: float) -> dict[str, list[float]]:
    """Time the API from ANOTHER process, as an operator's browser would: an HTTP client in the
    hub's process would compete with the hub for the interpreter lock and inflate the figures."""
    env = {**os.environ, "BENCH_API_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sync", "--api-poller", base, "--devices", str(devices),
        "--api-seconds", str(seconds), env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"API poller exited {proc.returncode}")
    lat: dict[str, list[float]] = json.loads(out)
    return lat


async def _time_api(base: str, token: str, devices: int, seconds: float) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {"/api/devices/{id}": [], "/api/devices": []}
    rng = random.Random(0)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for name, path in (("/api/devices/{id}", f"/api/devices/dev-{rng.randrange(devices):04d}"),
                               ("/api/devices", "/api/devices")):
                t = time.perf_counter()
                r = await http.get(path)
                lat[name].append(time.perf_counter() - t)
                r.raise_for_status()
    return lat


def count_telemetry(hub: HubRuntime) -> list[int]:
    """Count the telemetry messages HubSync handles (wraps its handler; the dispatch looks the
    handler up on the instance per message). Returns the one-element counter."""
    assert hub.sync is not None
    counter, handler = [0], hub.sync._on_telemetry

    async def counted(parts: Any, payload: bytes) -> None:
        counter[0] += 1
        await handler(parts, payload)

    hub.sync._on_telemetry = counted  # type: ignore[method-assign]
    return counter


# -- the load generator (child process) --------------------------------------------------------

async def run_loadgen(url: str, devices: int) -> None:
    """LOADGEN_CLIENTS hub-role clients share `devices`: each publishes births, then telemetry
    for each of its devices once a second, until killed."""
    host, port = _host_port(url)
    ids = fleet_ids(devices)
    async with asyncio.TaskGroup() as tg:
        for k in range(LOADGEN_CLIENTS):
            tg.create_task(_loadgen_client(host, port, ids[k::LOADGEN_CLIENTS], k), name=f"gen-{k}")


async def _loadgen_client(host: str, port: int, ids: list[str], k: int) -> None:
    async with aiomqtt.Client(host, port, identifier=f"fieldpact-hub/loadgen-{k}", username="loadgen",
                              password=os.environ["BENCH_MQTT_PASSWORD"],
                              max_queued_outgoing_messages=0,
                              socket_options=SOCKET_OPTIONS) as client:
        for d in ids:
            b = Birth(device=d, site=SITE, boot_id=secrets.token_hex(8), contract=None, version=None,
                      last_seq=0)
            await client.publish(topic(SITE, d, Channel.STATUS), b.to_bytes(), qos=1, retain=True)
        tick, sent = time.monotonic(), 0
        while True:
            # Each device publishes on its own (a fleet is 1,000 independent clients): one
            # publish after the other, each waiting for its socket write, a loaded host sent
            # only a few hundred a second and the figure measured the load generator.
            ts = now_ms()
            await asyncio.gather(*(client.publish(topic(SITE, d, Channel.TELEMETRY), Telemetry(
                ts_ms=ts, values=(("level", 2.0), ("pump_speed", 1200)), mode="running",
                step="fill", seq=0).to_bytes(), qos=0) for d in ids))
            sent += len(ids)
            print(json.dumps([k, sent]), flush=True)
            tick += 1.0
            await asyncio.sleep(max(0.0, tick - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="journal ingest size")
    parser.add_argument("--offline-hours", type=float, default=24.0)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--api-seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10k entries, 1 h offline, 100 devices")
    parser.add_argument("--only", choices=["ingest", "reconcile", "fleet"])
    parser.add_argument("--broker", choices=["amqtt", "amqtt-inproc", "mosquitto", "amqtt-process"],
                        default="amqtt",
                        help="broker for the fleet run (amqtt = the embedded default, in its own "
                             "process; amqtt-inproc = on the hub's MQTT thread, as before)")
    parser.add_argument("--wire", type=int, choices=[1, 2], default=ROWS_VERSION,
                        help="journal batch form to send (2: rows, as agents do; 1: older agents)")
    parser.add_argument("--inproc-broker", action="store_true",
                        help="ingest/reconcile: the embedded broker on the hub's MQTT thread")
    parser.add_argument("--loadgen", metavar="MQTT_URL", help=argparse.SUPPRESS)
    parser.add_argument("--api-poller", metavar="BASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--amqtt-broker", metavar="PORT", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--journal-sender", metavar="MQTT_URL", help=argparse.SUPPRESS)
    parser.add_argument("--msgs-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--last-seq", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    WIRE[0], OWN_PROCESS[0], FLEET[0] = args.wire, not args.inproc_broker, args.devices
    logging.basicConfig(level=logging.ERROR)  # figures only; the hub's info/warnings are noise here
    # aiomqtt's "mqtt" logger sets its own level (WARNING), so the root's does not reach it: the
    # load generator's 250 concurrent publishes per client logged "There are N pending publish
    # calls" ~1,000 times a second to stderr, burying the figures.
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    if args.loadgen:
        asyncio.run(run_loadgen(args.loadgen, args.devices))
        return
    if args.journal_sender:
        asyncio.run(run_journal_sender(args.journal_sender, args.msgs_file, args.last_seq))
        return
    if args.amqtt_broker:
        asyncio.run(run_amqtt(args.amqtt_broker))
        return
    if args.api_poller:
        print(json.dumps(asyncio.run(_time_api(args.api_poller, os.environ["BENCH_API_TOKEN"],
                                               args.devices, args.api_seconds))))
        return
    if args.quick:
        args.entries, args.offline_hours, args.devices, args.api_seconds, args.repeats = \
            10_000, 1.0, 100, 5.0, 1
    started = time.monotonic()
    if args.only in (None, "ingest"):
        asyncio.run(bench_ingest(args.entries, args.repeats))
    if args.only in (None, "reconcile"):
        asyncio.run(bench_reconcile(int(args.offline_hours * 3600), args.repeats))
    if args.only == "fleet":
        asyncio.run(bench_fleet(args.devices, args.api_seconds, args.broker))
    elif args.only is None:  # a fresh process, so its RSS is not the ingest fixtures' peak
        subprocess.run([sys.executable, "-m", "bench.sync", "--only", "fleet", "--devices",
                        str(args.devices), "--api-seconds", str(args.api_seconds),
                        "--broker", args.broker], check=True)
    print(f"done in {time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
