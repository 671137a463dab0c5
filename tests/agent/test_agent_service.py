"""The agent as a service: systemd notifications from a real process, activation on time."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import AgentConfig, ModbusConfig
from agent.process import Agent
from contracts.engine_state import Mode
from contracts.loader import check_mapping
from contracts.schema import Contract
from contracts.schema_serialize import format_time
from simulators.server import SimDevice
from tests.agent.conftest import now_ms, tank_document
from tests.agent.helpers import events, running_agent
from tests.agent.test_agent_crash import write_config
from tests.waiting import eventually


def _recv_all(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.mark.slow
async def test_agent_under_systemd_sends_ready_watchdog_and_stopping(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    contract = tmp_path / "c.cose"
    contract.write_bytes(signer(check_mapping(tank_document())))
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify_path))
        sock.setblocking(False)
        async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
            cfg = write_config(tmp_path, keys, sim.port, contract)
            env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fieldpact.cli", "agent", "run", "--config", str(cfg),
                env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            got: list[str] = []
            try:
                await eventually(lambda: (got.extend(_recv_all(sock)) or
                                          sum("WATCHDOG=1" in m for m in got) >= 3), 20,
                                 "READY=1 and three watchdog pets")
                proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(10):
                    rc = await proc.wait()
                got.extend(_recv_all(sock))
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    ready = [m for m in got if m.startswith("READY=1")]
    assert ready and "STATUS=tank-fill@3" in ready[0]
    assert got.index(ready[0]) < next(i for i, m in enumerate(got) if m == "WATCHDOG=1")
    assert "STOPPING=1" in got and rc == 0


async def test_contract_waits_for_valid_from_then_activates_on_time(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    start = now_ms() + 1500
    path = tmp_path / "future.cose"
    path.write_bytes(signer(check_mapping(tank_document(valid_from=format_time(start)))))
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as tank:
        cfg = AgentConfig(device="d1", site="s1", journal=tmp_path / "j.db", trusted_key=keys[1],
                          modbus=ModbusConfig(host="127.0.0.1", port=tank.port, timeout_s=0.3),
                          contract=path)
        async with running_agent(cfg) as agent:
            await eventually(lambda: _pending_for(agent, cycles=5), 5,
                             "five scans with the contract loaded and pending")
            early = tank.values()
            await eventually(lambda: tank.values()["valve_open"], 5, "valve opened after valid_from")
            marks = await eventually(lambda: events(cfg.journal, "activation_due"), 3, "the mark")
    assert not early["valve_open"] and early["pump_speed"] == 0
    entered = events(cfg.journal, "step_entered")[0]
    assert entered.ts_ms >= start and entered.ts_ms - start <= 200  # within two scan periods
    assert abs(marks[0].ts_ms - start) < 1000


def _pending_for(agent: Agent, *, cycles: int) -> bool:
    """The agent has run `cycles` scans with its contract loaded but not yet valid: whatever it
    would have written early, it has had the time to."""
    seg = agent.scan.segment
    return (seg is not None and seg.state.mode is Mode.PENDING
            and agent.scan.stats.cycles >= cycles)
