"""A whole hub (embedded broker, MQTT sync, API under uvicorn) in its own process.

For tests that observe the hub from outside: a hub stalled in C code (a giant repr holds the GIL)
cannot stall the test that measures it, and the test can always stop it. Run as
`python -m tests.hub.live_hub DIR`: it prints one JSON line {api_url, mqtt_port} when ready and
stops on SIGTERM."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import uvicorn

from hub.app import HubRuntime
from hub.auth import AuthConfig, ApiRole, Token, hash_token
from tests.hub.sync_helpers import hub_config

START_TIMEOUT_S = 30.0
TOKEN = "live-hub-admin"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, kw_only=True)
class LiveHub:
    api_url: str
    mqtt_port: int
    headers: dict[str, str]  # an admin token


async def _serve(workdir: Path) -> None:
    cfg = replace(hub_config(workdir), auth=AuthConfig(tokens=(
        Token(name="admin", sha256=hash_token(TOKEN), role=ApiRole.ADMIN),)))
    runtime = HubRuntime(cfg)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        server = uvicorn.Server(uvicorn.Config(runtime.app(), host="127.0.0.1", port=0,
                                               log_level="warning", lifespan="on"))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.create_task(server.serve(), name="live-hub-api")
        async with asyncio.timeout(START_TIMEOUT_S):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)  # polling a condition under a deadline
        assert runtime.broker is not None
        port = server.servers[0].sockets[0].getsockname()[1]
        print(json.dumps({"api_url": f"http://127.0.0.1:{port}",
                          "mqtt_port": runtime.broker.port}), flush=True)
        await stop.wait()
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
    finally:
        runtime.close()


@contextlib.contextmanager
def live_hub(workdir: Path) -> Iterator[LiveHub]:
    """Start a hub process; terminate it (kill if it does not stop) on exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.hub.live_hub", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        ready = json.loads(_first_line(proc))
        yield LiveHub(api_url=ready["api_url"], mqtt_port=ready["mqtt_port"],
                      headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()  # e.g. a hub stalled by the input under test
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def _first_line(proc: subprocess.Popen[bytes]) -> str:
    import selectors
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=START_TIMEOUT_S):
            raise RuntimeError(f"hub did not start within {START_TIMEOUT_S} s")
    line = proc.stdout.readline().decode()
    if not line:
        raise RuntimeError(f"hub exited {proc.wait()} before it was ready")
    return line


if __name__ == "__main__":
    asyncio.run(_serve(Path(sys.argv[1])))
