"""A whole hub in its own process for the rollout tests that kill it (-9) and start it again on the
same database: embedded broker, MQTT sync, the API under uvicorn with the rollout engine, and
six registered devices (FLEET) with broker logins. Run as `python -m tests.hub.rollout_hub DIR`;
it prints one JSON line {api_url, mqtt_port} when ready."""
from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from hub.acl.passwords import hash_password
from hub.app import HubRuntime
from hub.auth import ApiRole, AuthConfig, Token, hash_token
from hub.config import DeviceCredential
from tests.hub.live_hub import hub_child
from tests.hub.serving import serving
from tests.hub.sync_helpers import SITE, hub_config

TOKEN = "rollout-admin"
FLEET = {f"r{i}": f"r{i}-secret" for i in range(1, 7)}


@dataclass(frozen=True, kw_only=True)
class HubProcess:
    proc: subprocess.Popen[bytes]
    api_url: str
    mqtt_port: int
    headers: dict[str, str]


async def _serve(workdir: Path) -> None:
    devices = tuple(DeviceCredential(id=d, site=SITE, password_hash=hash_password(p))
                    for d, p in FLEET.items())
    cfg = replace(hub_config(workdir), devices=devices, auth=AuthConfig(tokens=(
        Token(name="admin", sha256=hash_token(TOKEN), role=ApiRole.ADMIN),)))
    runtime = HubRuntime(cfg)
    try:
        async with serving(runtime.app(), timeout_s=30, name="rollout-hub-api") as url:
            assert runtime.broker is not None
            print(json.dumps({"api_url": url, "mqtt_port": runtime.broker.port}), flush=True)
            await asyncio.Event().wait()  # until killed
    finally:
        runtime.close()


@contextlib.contextmanager
def hub_process(workdir: Path) -> Iterator[HubProcess]:
    """Start the hub; on exit stop it (if the test has not killed it)."""
    with hub_child("tests.hub.rollout_hub", workdir) as (proc, ready):
        yield HubProcess(proc=proc, api_url=ready["api_url"], mqtt_port=ready["mqtt_port"],
                         headers={"Authorization": f"Bearer {TOKEN}"})


if __name__ == "__main__":
    asyncio.run(_serve(Path(sys.argv[1])))
