"""`fieldpact ctl` as an operator runs it: its own process, the hub and token from the environment,
against a whole hub in another process (tests/hub/live_hub.py: embedded broker, MQTT sync, API)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fieldpact.ctl_client import Exit
from tests.hub.live_hub import ROOT, TOKEN, live_hub

CTL_TIMEOUT_S = 30.0


def _ctl(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FIELDPACT_HUB": url, "FIELDPACT_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "fieldpact.cli", "ctl", *argv], env=env,
                          capture_output=True, text=True, timeout=CTL_TIMEOUT_S, check=False)


@pytest.mark.slow
def test_ctl_process_reads_a_registered_device_from_a_live_hub_and_names_a_missing_one(
        tmp_path: Path) -> None:
    with live_hub(tmp_path) as hub:
        r = httpx.post(f"{hub.api_url}/api/devices", headers=hub.headers, timeout=10,
                       json={"id": "pump-station-7", "site": "north-field",
                             "labels": {"line": "2"}})
        assert r.status_code == 201, r.text
        shown = _ctl(hub.api_url, "device", "pump-station-7", "--json")
        assert shown.returncode == Exit.OK, shown.stderr
        assert json.loads(shown.stdout)["site"] == "north-field"
        table = _ctl(hub.api_url, "devices")
        assert table.returncode == Exit.OK and "pump-station-7" in table.stdout
        missing = _ctl(hub.api_url, "device", "no-such-pump")
        assert missing.returncode == Exit.NOT_FOUND
        assert "error: GET /api/devices/no-such-pump: 404" in missing.stderr
