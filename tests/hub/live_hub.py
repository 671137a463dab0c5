"""A whole hub (embedded broker, MQTT sync, API under uvicorn) in its own thread and event loop.

For tests that must observe the hub from outside: a stalled hub loop cannot stall the test that
measures it (property-based fuzzers, which are synchronous, call it over real MQTT and HTTP)."""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import uvicorn

from hub.app import HubRuntime
from hub.auth import AuthConfig, Role, Token, hash_token
from tests.hub.sync_helpers import hub_config

START_TIMEOUT_S = 30.0
TOKEN = "live-hub-admin"


@dataclass(frozen=True, kw_only=True)
class LiveHub:
    api_url: str
    mqtt_port: int
    runtime: HubRuntime  # lives in the hub's thread: read it over the API (`headers`), not here
    headers: dict[str, str]


async def _serve(tmp_path: Path, ready: list[LiveHub], started: threading.Event,
                 stop: asyncio.Event) -> None:
    cfg = replace(hub_config(tmp_path), auth=AuthConfig(tokens=(
        Token(name="admin", sha256=hash_token(TOKEN), role=Role.ADMIN),)))
    runtime = HubRuntime(cfg)
    try:
        server = uvicorn.Server(uvicorn.Config(runtime.app(), host="127.0.0.1", port=0,
                                               log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve(), name="live-hub-api")
        async with asyncio.timeout(START_TIMEOUT_S):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)  # polling a condition under a deadline
        assert runtime.broker is not None
        port = server.servers[0].sockets[0].getsockname()[1]
        ready.append(LiveHub(api_url=f"http://127.0.0.1:{port}", mqtt_port=runtime.broker.port,
                             runtime=runtime, headers={"Authorization": f"Bearer {TOKEN}"}))
        started.set()
        await stop.wait()
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
    finally:
        runtime.close()
        started.set()


@contextlib.contextmanager
def live_hub(tmp_path: Path) -> Iterator[LiveHub]:
    """Start a hub in a thread; stop it (and join the thread) on exit."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready: list[LiveHub] = []
    started = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(_serve(tmp_path, ready, started, stop))
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="live-hub", daemon=True)
    thread.start()
    try:
        if not started.wait(START_TIMEOUT_S) or not ready:
            raise RuntimeError(f"hub did not start: {errors!r}")
        yield ready[0]
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=20)
    if errors:
        raise errors[0]
