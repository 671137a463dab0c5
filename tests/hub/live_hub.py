"""A whole hub (embedded broker, MQTT sync, API under uvicorn) in its own process: ours
(`live_hub`), or the real CLI's (`cli_hub`).

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
from typing import Any

import httpx

from hub.app import HubRuntime
from hub.auth import AuthConfig, ApiRole, Token, hash_token
from tests.hub.serving import serving
from tests.hub.sync_helpers import hub_config
from tests.waiting import eventually_blocking, free_port, stop_process

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
        async with serving(runtime.app(), timeout_s=START_TIMEOUT_S, name="live-hub-api") as url:
            assert runtime.broker is not None
            print(json.dumps({"api_url": url, "mqtt_port": runtime.broker.port}), flush=True)
            await stop.wait()
    finally:
        runtime.close()


@contextlib.contextmanager
def hub_child(module: str, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], Any]]:
    """Run `python -m module workdir` (a hub that prints one JSON line when ready) and yield the
    process with that line decoded; on exit stop it (kill if it does not stop, e.g. stalled by
    the input under test) unless the test has killed it already."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", module, str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        yield proc, json.loads(_first_line(proc))
    finally:
        stop_process(proc, 15)
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def live_hub(workdir: Path) -> Iterator[LiveHub]:
    """Start a hub process; terminate it (kill if it does not stop) on exit."""
    with hub_child("tests.hub.live_hub", workdir) as (_, ready):
        yield LiveHub(api_url=ready["api_url"], mqtt_port=ready["mqtt_port"],
                      headers={"Authorization": f"Bearer {TOKEN}"})


@dataclass(frozen=True, kw_only=True)
class CliHub:
    api_url: str
    mqtt_port: int


CLI_VIEWER_TOKEN = "ops-token"


@contextlib.contextmanager
def cli_hub(tmp_path: Path, *, log_level: str = "warning",
            log: Path | None = None) -> Iterator[CliHub]:
    """The real `fieldpact hub serve` as a process, with a minimal hub.toml in tmp_path (db, key,
    API and MQTT ports, one viewer token CLI_VIEWER_TOKEN) and its stderr in `log`. Yields once
    /health answers 200; raises if it exits first. SIGTERM on exit."""
    port, mqtt = free_port(), free_port()
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'''db = "{tmp_path / 'hub.db'}"
key = "{tmp_path / 'keys' / 'hub.key'}"
[listen]
host = "127.0.0.1"
port = {port}
[mqtt]
listen_port = {mqtt}
[[tokens]]
name = "ops"
sha256 = "{hash_token(CLI_VIEWER_TOKEN)}"
role = "viewer"
''')
    with (log or Path(os.devnull)).open("ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "fieldpact.cli", "hub", "serve", "--config",
                                 str(cfg), "--log-level", log_level], stdout=subprocess.DEVNULL,
                                stderr=err, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        eventually_blocking(lambda: _healthy(proc, url), START_TIMEOUT_S, f"{url}/health")
        yield CliHub(api_url=url, mqtt_port=mqtt)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def _healthy(proc: subprocess.Popen[bytes], url: str) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"hub serve exited {proc.returncode} before /health answered")
    try:
        return httpx.get(f"{url}/health").status_code == 200
    except httpx.TransportError:
        return False


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
