"""bench.sync phase 2, reconcile: a device back after a long outage, from its birth to the hub's
reconciliation record.

Rules: the hub sees d1 live (birth, telemetry with an engine state), then its last will, on an
injected clock the outage's length in the past, so it projects the device; the clock moves to now;
d1 publishes a new birth and the outage's journal at 1 Hz. Timed from the birth to the record.
"""
from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from bench._common import figure
from bench.sync_hub import (
    DAY_MS, DEVICE, EXAMPLE, POLL_S, SITE, Clock, birth, device_client, hub_config, known, now_ms,
    thread_cpu_s, where,
)
from bench.sync_journal import batches, journal_sender, make_journal
from contracts.engine import Engine
from contracts.loader import check_mapping
from contracts.schema_serialize import format_time
from contracts.topics import Channel, topic
from contracts.wire import Telemetry
from hub.app import HubRuntime
from hub.states import DeviceState
from tests.waiting import eventually

RECONCILE_TARGET_S = 1.5
"""An operator watching a device come back should see the verdict at once."""


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
                                 "the reconciliation record", detail=lambda: where(hub),
                                 every_s=POLL_S)
                elapsed, cpu = time.perf_counter() - start, thread_cpu_s("hub-mqtt") - cpu
                rec = hub.store.reconciliations.find(device=DEVICE)[0]
        finally:
            hub.close()
    return elapsed, acked, f"divergent={rec.divergent} action={rec.action}", cpu


async def _go_offline(client: aiomqtt.Client, hub: HubRuntime, clock: Clock) -> None:
    """Birth, telemetry with the engine's initial state, then the last will: projected."""
    await birth(client, 0)
    await eventually(lambda: known(hub), 10, "the birth", every_s=POLL_S)
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
