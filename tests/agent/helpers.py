"""What agent tests share: read a live journal read-only, write an agent's configuration, run an
in-process agent, wait for its scans."""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import AgentConfig, ModbusConfig
from agent.journal_sqlite import SELECT_ENTRIES, row_to_entry
from agent.modbus import ModbusLink
from agent.process import Agent
from transport.backoff import Backoff
from contracts.chain import Entry, EntryKind
from contracts.loader import check_mapping
from contracts.schema import Contract
from tests.waiting import eventually

if TYPE_CHECKING:
    from tests.conftest import BrokerEndpoint


def journal_entries(path: Path, kinds: set[EntryKind] | None = None) -> list[Entry]:
    """Every entry of a journal another connection is writing (WAL allows a concurrent reader)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute(f"{SELECT_ENTRIES} ORDER BY seq").fetchall()
    entries = [row_to_entry(r) for r in rows]
    return [e for e in entries if kinds is None or e.kind in kinds]


def events(path: Path, name: str) -> list[Entry]:
    """Entries whose body names `event` = name."""
    return [e for e in journal_entries(path) if e.body.get("event") == name]


def write_config(tmp_path: Path, keys: tuple[Path, Path], port: int, contract: Path, *,
                 broker: BrokerEndpoint | None = None) -> Path:
    """`agent.toml` for device d1 of site s1 running `contract` on the Modbus TCP device at
    127.0.0.1:`port`, connected to `broker` as d1 if given (standalone otherwise)."""
    cfg = tmp_path / "agent.toml"
    text = f'''device = "d1"
site = "s1"
journal = "{tmp_path / 'journal.db'}"
trusted_key = "{keys[1]}"
contract = "{contract}"
[modbus]
host = "127.0.0.1"
port = {port}
timeout_s = 0.3
'''
    if broker is not None:
        text += f'''[broker]
url = "{broker.url}"
username = "d1"
password = "{broker.users['d1'].password}"
'''
    cfg.write_text(text)
    return cfg


def signed_config(tmp_path: Path, keys: tuple[Path, Path], port: int,
                  sign: Callable[[Contract], bytes], *docs: dict[str, Any]) -> AgentConfig:
    """An AgentConfig for device d1 of site s1 running each of `docs`, signed by `sign` into a
    file of its own, on the Modbus TCP device at 127.0.0.1:`port`."""
    paths = []
    for doc in docs:
        path = tmp_path / f"{doc['contract']}.cose"
        path.write_bytes(sign(check_mapping(doc)))
        paths.append(path)
    return AgentConfig(device="d1", site="s1", journal=tmp_path / "journal.db",
                       trusted_key=keys[1], contracts=tuple(paths),
                       modbus=ModbusConfig(host="127.0.0.1", port=port, timeout_s=0.3))


async def next_scans(agent: Agent, n: int = 1, timeout_s: float = 5.0) -> None:
    """Wait until `agent` has run `n` more scan cycles; WaitTimeout after `timeout_s`."""
    seen = agent.scan.stats.cycles
    await eventually(lambda: agent.scan.stats.cycles >= seen + n, timeout_s, f"{n} more scans")


@contextlib.asynccontextmanager
async def running_agent(cfg: AgentConfig, *,
                        reconnect: Backoff | None = None) -> AsyncIterator[Agent]:
    """An in-process Agent on a real ModbusLink, started and (on exit) cancelled."""
    agent = Agent(cfg, link=ModbusLink(cfg.modbus.host, cfg.modbus.port,
                                       timeout_s=cfg.modbus.timeout_s), reconnect=reconnect)
    task = asyncio.create_task(agent.run(), name="agent-under-test")
    try:
        async with asyncio.timeout(10):
            await agent.started.wait()
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
