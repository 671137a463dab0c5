"""bench.sync phase 3's other processes: the MQTT load generator and the API poller.

Rules: both run in ANOTHER process than the hub (each is `python -m bench.sync` with a hidden flag),
so neither competes with the hub for the interpreter lock; the load generator's LOADGEN_CLIENTS
hub-role clients share the devices, publish their births, then each device's telemetry once a
second, and print how many they have sent (read into SENT); the poller prints its latencies.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import sys
import time
from collections.abc import AsyncIterator

import aiomqtt
import httpx

from bench.sync_hub import SITE, fleet_ids, host_port, now_ms
from contracts.topics import Channel, topic
from contracts.wire import Birth, Telemetry
from transport.mqtt import SOCKET_OPTIONS

LOADGEN_CLIENTS = 4


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


async def poll_api(base: str, token: str, devices: int, seconds: float) -> dict[str, list[float]]:
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


# -- the load generator (child process) --------------------------------------------------------

async def run_loadgen(url: str, devices: int) -> None:
    """LOADGEN_CLIENTS hub-role clients share `devices`: each publishes births, then telemetry
    for each of its devices once a second, until killed."""
    host, port = host_port(url)
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
