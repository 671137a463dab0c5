"""What the fleet view and `fieldpact ctl` cost the hub: the series endpoint over a full window,
and `ctl devices` / `ctl device` against a fleet, over real HTTP.

Run: .venv/bin/python -m bench.fleet_view [--devices 1000] [--points 32] [--requests 200] [--quick]

The hub app (real store file, uvicorn on 127.0.0.1:<ephemeral>) runs in its own thread with its own
event loop; the client side is this thread. The store holds `--devices` devices of 50 sites and one
device with a full series window: 1,000 INPUT entries of `--points` good float readings (the most
GET /api/devices/{id}/series ever reads: its limit is capped at 1,000), every point changing in
every entry (the worst case: a deadband journals only what moved). Measured for the page's default
window (500 entries) and the largest (1,000). Latencies are wall time per request, p50/p99 by
nearest rank, after 10 warm-up requests.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._common import figure, latencies_ms, percentile
from contracts import codec
from contracts.signing import sign_contract
from fieldpact import cli
from hub.api import create_app
from hub.auth import ApiRole, AuthConfig, Token, hash_token
from hub.publisher import MemoryPublisher
from hub.service import HubService
from hub.store import HubStore, JournalRow

TOKEN = "bench-viewer"
START_MS = 1_795_500_000_000
SITES = 50
SERIES_P99_MS = 100.0
"""The page fetches one series (the default window, 500 entries) per 2 s refresh: a p99 under
100 ms keeps it a small part of the refresh. The fold runs in the hub's worker thread, so the
event loop (and every other API call) does not wait for it."""


def _seed(store: HubStore, devices: int, points: int) -> str:
    for i in range(devices):
        store.devices.ensure(f"dev-{i:04d}", f"site-{i % SITES:02d}", START_MS)
    device = "dev-0000"
    rows = [JournalRow(device=device, seq=s, ts_ms=START_MS + 1000 * s, kind="input",
                       body=codec.canonical_dumps({"values": {
                           f"p{n:02d}": [round(s * 0.01 + n, 3), "good", None]
                           for n in range(points)}}),
                       prev_hash=b"\x00", hash=s.to_bytes(8, "big")) for s in range(1, 1001)]
    store.journal.insert(rows)
    store.devices.update(device, last_seq=1000)
    return device


@contextlib.contextmanager
def _hub(db: Path) -> Iterator[str]:
    """The hub app on the store file `db`, served from its own thread (which opens the store:
    a SQLite connection belongs to the thread that made it)."""
    auth = AuthConfig(tokens=(Token(name="bench", sha256=hash_token(TOKEN),
                                    role=ApiRole.VIEWER),))
    signer = functools.partial(sign_contract, key=Ed25519PrivateKey.generate())
    holder: dict[str, uvicorn.Server] = {}
    made = threading.Event()

    async def serve() -> None:
        with HubStore.open(db) as store:
            service = HubService(store, signer, MemoryPublisher(), lambda: START_MS)
            holder["server"] = uvicorn.Server(uvicorn.Config(
                create_app(service, auth), host="127.0.0.1", port=0, log_level="warning",
                lifespan="on"))
            made.set()
            await holder["server"].serve()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="bench-hub")
    thread.start()
    made.wait(timeout=10)
    server = holder["server"]
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a condition under a deadline
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _latencies(http: httpx.Client, path: str, n: int) -> list[float]:
    return latencies_ms(http, path, n, warm=10)


def _ctl_ms(url: str, *argv: str, n: int = 5) -> float:
    """Median wall time of `ctl ARGV --json` in this process (output discarded)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["ctl", "--hub", url, "--json", *argv])
        times.append((time.perf_counter() - t0) * 1000)
        assert code == 0, argv
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="100 devices, 50 requests")
    args = parser.parse_args()
    devices, requests = (100, 50) if args.quick else (args.devices, args.requests)
    os.environ["FIELDPACT_TOKEN"] = TOKEN  # what `fieldpact ctl` reads
    with tempfile.TemporaryDirectory() as tmp:
        with HubStore.open(Path(tmp) / "hub.db") as store:
            device = _seed(store, devices, args.points)
        with _hub(Path(tmp) / "hub.db") as url, httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            print(f"fleet view: {devices} devices, series of 1,000 entries x {args.points} points")
            for limit, target in ((500, SERIES_P99_MS), (1000, None)):
                path = f"/api/devices/{device}/series?limit={limit}"
                lat = _latencies(http, path, requests)
                p99 = percentile(lat, 0.99)
                figure(f"series ({limit} entries) p50", f"{percentile(lat, 0.5):.1f} ms")
                figure(f"series ({limit} entries) p99", f"{p99:.1f} ms",
                       f"< {target:g} ms" if target else None,
                       p99 < target if target else None)
                figure(f"series ({limit} entries) answer size",
                       f"{len(http.get(path).content) / 1024:.0f} KiB")
            figure(f"ctl devices --json ({devices} devices)", f"{_ctl_ms(url, 'devices'):.0f} ms")
            figure("ctl device ID --json", f"{_ctl_ms(url, 'device', device):.0f} ms")


if __name__ == "__main__":
    main()
