"""The embedded broker in its own process (hub/broker_process.py): the hub starts it, devices log
in through it with the hub's ACL, and it never outlives the hub — not even a kill -9 of the hub."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import aiomqtt
import pytest

from contracts.topics import Channel, topic
from hub.app import HubRuntime
from hub.broker_process import BrokerProcess
from tests.hub.sync_helpers import PASSWORDS, SITE, hub_config
from tests.waiting import eventually, listening

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: only its exit status is left)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_the_hub_runs_its_broker_in_a_child_process_and_stops_it_with_itself(
        tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))
    try:
        async with hub.running():
            broker = hub.broker
            assert isinstance(broker, BrokerProcess) and broker.pid is not None
            pid, port = broker.pid, broker.port
            assert pid != os.getpid() and listening(port)
            async with aiomqtt.Client("127.0.0.1", port, identifier="fp-agent-d1",
                                      username="d1", password=PASSWORDS["d1"]) as client:
                await client.publish(topic(SITE, "d1", Channel.TELEMETRY), b"x", qos=1)
            with pytest.raises(aiomqtt.MqttError):  # the hub's ACL holds in the child too
                async with aiomqtt.Client("127.0.0.1", port, identifier="fp-agent-d1",
                                          username="d1", password="wrong") as client:
                    pass
    finally:
        hub.close()
    await eventually(lambda: not alive(pid), 10, "the broker process gone with the hub")
    assert not listening(port)


HUB_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from hub.app import HubRuntime
    from tests.hub.sync_helpers import hub_config

    async def main() -> None:
        hub = HubRuntime(hub_config(Path(sys.argv[1])))
        async with hub.running():
            print(hub.broker.pid, hub.broker.port, flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
""")


async def test_a_hub_killed_with_sigkill_leaves_no_broker_behind(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", HUB_SCRIPT, str(tmp_path),
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            pid, port = map(int, (await proc.stdout.readline()).split())
        assert alive(pid) and listening(port)
        proc.send_signal(signal.SIGKILL)  # no cleanup runs in the hub: only the kernel's
        await proc.wait()
        await eventually(lambda: not alive(pid), 10, "the orphaned broker exiting")
        assert not listening(port)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
