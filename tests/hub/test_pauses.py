"""The hub keeps the collector's pauses short: once it is up, what it holds is frozen, so a full
collection walks only what was made since (hub/pauses.py). Run in a fresh interpreter: the
collector is the process's, and settling is once per process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

SCRIPT = """
import asyncio, gc, sys
from pathlib import Path
from hub.app import HubRuntime
from tests.hub.sync_helpers import hub_config

async def main() -> None:
    hub = HubRuntime(hub_config(Path(sys.argv[1])))
    try:
        async with hub.running():
            walked = {id(o) for o in gc.get_objects()}
            print(id(hub.registry) in walked, id(hub.store) in walked, gc.get_freeze_count() > 0)
    finally:
        hub.close()

asyncio.run(main())
"""


def test_a_running_hub_has_frozen_what_it_built_so_full_collections_skip_it(
        tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False", "True"]
