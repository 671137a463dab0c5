"""`GET /api/devices/{id}/series` latency, idle and under load, over real HTTP.

Run: .venv/bin/python -m bench.series [--points 32] [--requests 400] [--rate-hz 10] [--pages 8]

The hub app (real store file, uvicorn on 127.0.0.1:<ephemeral>) runs in a process of its own, as
in production, so the client's work does not share its interpreter. The store holds 1,000
devices of 50 sites; the charted device has a full window: 1,000 INPUT entries of `--points`
good float readings, every point changing in every entry (the worst case: a deadband journals
only what moved). The page's default window (500 entries) is measured:

- idle: nothing else happens; the journal does not move.
- loaded: the hub's store ingests what a fleet journals: the 1,000 devices at 1 Hz (8 points
  each) and the charted ones at `--rate-hz` (a writer with its own store connection inserting
  entries and moving each device's last_seq, as the sync side does, a transaction every 100 ms),
  so the measured window moves every 1 / rate-hz; `--pages` operators' pages (another process)
  each ask every 2 s for the device list and the series of a device of their own (a full window
  of 32 points, growing too).
- page poll: what the fleet view asks once it holds the window: `?after_seq=` the last answer's
  `to_seq`, so only the rows since (none, or one, at these rates) come back.
- floor: GET /health on the same connection, for what any request costs on this host now; and
  the hub process's CPU time per request (from /proc: 10 ms ticks, so a mean over the run), which
  the other sessions sharing the host's cores disturb far less than wall time.

Latency is wall time per request (connection kept), p50/p99 by nearest rank over `--requests`
after 20 warm-up requests. Target: p99 < 10 ms, idle and loaded.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx

from bench._common import figure, latencies_ms, percentile, proc_cpu_s
from contracts import codec
from hub.store import HubStore, JournalRow

TOKEN = "bench-viewer"
START_MS = 1_795_500_000_000
DEVICES, SITES, ENTRIES = 1000, 50, 1000
P99_TARGET_MS = 10.0
"""The page fetches one series per 2 s refresh; the hub answers many pages, and an answer that
waits for a fold of the whole window would hold every other page's refresh behind it."""
CHARTED = "dev-0000"
START_TIMEOUT_S = 30.0
PAGE_EVERY_S = 2.0
"""The operator page refreshes every 2 s (hub/static/app.js)."""


def _row(device: str, seq: int, points: int) -> JournalRow:
    return JournalRow(device=device, seq=seq, ts_ms=START_MS + 100 * seq, kind="input",
                      body=codec.canonical_dumps({"values": {
                          f"p{n:02d}": [round(seq * 0.01 + n, 3), "good", None]
                          for n in range(points)}}),
                      prev_hash=b"\x00", hash=seq.to_bytes(8, "big"))


def _seed(db: Path, points: int, charted: list[str]) -> None:
    with HubStore.open(db) as store:
        for i in range(DEVICES):
            store.devices.ensure(f"dev-{i:04d}", f"site-{i % SITES:02d}", START_MS)
        for device in charted:
            store.journal.insert([_row(device, s, points) for s in range(1, ENTRIES + 1)])
            store.devices.update(device, last_seq=ENTRIES)


def _serve(db: str, port: Any, stop: Event) -> None:
    """The hub app on `db` (in its own process); puts its port on `port`."""
    import functools

    import uvicorn
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from contracts.signing import sign_contract
    from hub.api import create_app
    from hub.auth import ApiRole, AuthConfig, Token, hash_token
    from hub.publisher import MemoryPublisher
    from hub.service import HubService

    async def main() -> None:
        with HubStore.open(db) as store:
            auth = AuthConfig(tokens=(Token(name="bench", sha256=hash_token(TOKEN),
                                            role=ApiRole.VIEWER),))
            service = HubService(store, functools.partial(
                sign_contract, key=Ed25519PrivateKey.generate()), MemoryPublisher(),
                lambda: START_MS)
            server = uvicorn.Server(uvicorn.Config(create_app(service, auth), host="127.0.0.1",
                                                   port=0, log_level="warning", lifespan="on"))
            task = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.01)  # polling a condition; the parent bounds the wait
            port.put(server.servers[0].sockets[0].getsockname()[1])
            while not stop.is_set():
                await asyncio.sleep(0.05)
            server.should_exit = True
            await task
    asyncio.run(main())


@contextlib.contextmanager
def _hub(db: Path) -> Iterator[tuple[str, int]]:
    ctx = multiprocessing.get_context("spawn")
    port, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(str(db), port, stop), name="bench-hub")
    proc.start()
    try:
        yield f"http://127.0.0.1:{port.get(timeout=START_TIMEOUT_S)}", int(proc.pid or 0)
    finally:
        stop.set()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()


def _poll(url: str, pages: int, devices: list[str], stop: Event, listing: bool) -> None:
    """`pages` operators' pages, each asking every PAGE_EVERY_S (spread out) for the device list
    and the series of a device of its own (`devices`), as the fleet view does."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        start = time.monotonic()
        for k in itertools.count():
            if stop.wait(max(0.0, start + k * PAGE_EVERY_S / pages - time.monotonic())):
                return
            if listing:
                http.get("/api/devices").raise_for_status()
            http.get(f"/api/devices/{devices[k % pages]}/series").raise_for_status()


def _write(db: str, charted: list[str], points: int, rate_hz: float, stop: Event) -> None:
    """The sync side's share: every 100 ms, a tenth of the fleet's devices journal an entry
    (the fleet at 1 Hz), and the charted devices one each at `rate_hz`, in one transaction."""
    fleet = [f"dev-{i:04d}" for i in range(len(charted), DEVICES)]
    seqs = dict.fromkeys(fleet, 0) | dict.fromkeys(charted, ENTRIES)
    with HubStore.open(db) as store:
        for k in itertools.count():
            if stop.wait(0.1):
                return
            due = fleet[(k % 10)::10] + (charted if k % max(1, round(10 / rate_hz)) == 0 else [])
            with store.tx():
                for device in due:
                    seqs[device] += 1
                    store.journal.insert([_row(device, seqs[device], 8 if device in fleet
                                               else points)])
                    store.devices.update(device, last_seq=seqs[device])


def _latencies(http: httpx.Client, path: str, n: int) -> list[float]:
    return latencies_ms(http, path, n, warm=20)


def _page_latencies(http: httpx.Client, path: str, n: int) -> list[float]:
    """The page's polls: each asks for what came after the last answer's `to_seq`."""
    to_seq = http.get(path).json()["to_seq"]
    out = []
    for i in range(n + 20):
        t0 = time.perf_counter()
        r = http.get(path, params={"after_seq": to_seq})
        r.raise_for_status()
        to_seq = r.json()["to_seq"]
        if i >= 20:
            out.append((time.perf_counter() - t0) * 1000)
    return out


def _report(label: str, lat: list[float], what: str = "series") -> None:
    p99 = percentile(lat, 0.99)
    figure(f"{what} p50, {label}", f"{percentile(lat, 0.5):.1f} ms")
    figure(f"{what} p99, {label}", f"{p99:.1f} ms", f"< {P99_TARGET_MS:g} ms",
           p99 < P99_TARGET_MS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--no-list", action="store_true",
                        help="the pages ask for the series only, not the device list too")
    args = parser.parse_args()
    others = [f"dev-{i:04d}" for i in range(1, args.pages + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "hub.db"
        _seed(db, args.points, [CHARTED, *others])
        path = f"/api/devices/{CHARTED}/series"
        with _hub(db) as (url, pid), httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            size = len(http.get(path).content)
            print(f"series: {DEVICES} devices, window 500 of {ENTRIES} entries x {args.points} "
                  f"points ({size / 1024:.0f} KiB)")
            cpu = proc_cpu_s(pid)
            floor = _latencies(http, "/health", args.requests)
            health_cpu, cpu = (proc_cpu_s(pid) - cpu) / (args.requests + 20), proc_cpu_s(pid)
            figure("floor: GET /health p50 / p99, idle",
                   f"{percentile(floor, 0.5):.1f} / {percentile(floor, 0.99):.1f} ms")
            _report("idle", _latencies(http, path, args.requests))
            series_cpu = (proc_cpu_s(pid) - cpu) / (args.requests + 20)
            figure("hub CPU per request, idle: series / health",
                   f"{series_cpu * 1000:.1f} / {health_cpu * 1000:.1f} ms")
            _report("idle", _page_latencies(http, path, args.requests), "page poll (after_seq)")
            ctx = multiprocessing.get_context("spawn")
            stop_polls, stop_writes = ctx.Event(), ctx.Event()
            pollers = ctx.Process(target=_poll, args=(url, args.pages, others, stop_polls,
                                                      not args.no_list), name="pages")
            writer = ctx.Process(target=_write, name="writer", args=(
                str(db), [CHARTED, *others], args.points, args.rate_hz, stop_writes))
            pollers.start()
            writer.start()
            try:
                lat = _latencies(http, path, args.requests)
                polls = _page_latencies(http, path, args.requests)
                floor = _latencies(http, "/health", args.requests)
            finally:
                stop_writes.set()
                stop_polls.set()
                writer.join(timeout=10)
                pollers.join(timeout=10)
            label = f"loaded ({args.rate_hz:g} Hz, fleet at 1 Hz, {args.pages} pages)"
            _report(label, lat)
            _report(label, polls, "page poll (after_seq)")
            figure(f"floor: GET /health p50 / p99, {label}",
                   f"{percentile(floor, 0.5):.1f} / {percentile(floor, 0.99):.1f} ms")


if __name__ == "__main__":
    main()
