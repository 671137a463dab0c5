"""bench.sync phase 3, fleet: the hub with its devices' births and 1 Hz telemetry from a load
generator process, while an API poller process times GET /api/devices/{id} and GET /api/devices.

Rules: the API is timed under load, then again idle (the load generator stopped, the telemetry
drained) for the API's own cost per request; RSS is this process's (the hub plus its HTTP server),
not the load generator's.
"""
from __future__ import annotations

import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import figure, percentile, rss_mb
from bench.sync_fleet_hub import fleet_hub
from bench.sync_hub import thread_cpu_s
from bench.sync_load import SENT, api_poller, loadgen
from hub.app import HubRuntime
from hub.states import DeviceState
from tests.hub.serving import serving
from tests.waiting import eventually

API_P99_TARGET_MS = 50.0
"""The web UI polls the device list; 50 ms keeps it feeling immediate."""
API_ONE_P99_TARGET_MS = 10.0
"""One device's view is what an operator opens before acting on it."""
TELEMETRY_SHARE = 0.99
"""'All' telemetry handled: at least 99 % of what the load generator sent per second."""


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


def _born(hub: HubRuntime) -> int:
    return sum(d.state is not DeviceState.UNKNOWN for d in hub.store.devices.find())
