"""kill -9 the real agent process mid-run, restart it: chain intact, no seq gap, contract resumed."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from contracts.chain import GENESIS, Entry, EntryKind, verify_chain
from contracts.loader import check_mapping
from contracts.schema import Contract
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import events, journal_entries, write_config
from tests.waiting import eventually

FIELDPACT = [sys.executable, "-m", "fieldpact.cli"]


async def _start(cfg: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as err:  # the child keeps its own descriptor
        return await asyncio.create_subprocess_exec(
            *FIELDPACT, "agent", "run", "--config", str(cfg), stdout=asyncio.subprocess.DEVNULL,
            stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def _stop(proc: asyncio.subprocess.Process, sig: int) -> None:
    if proc.returncode is None:
        proc.send_signal(sig)
        async with asyncio.timeout(10):
            await proc.wait()


@pytest.mark.slow
async def test_kill_9_mid_run_then_restart_keeps_chain_and_resumes_the_step(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    contract = tmp_path / "contract.cose"
    contract.write_bytes(signer(check_mapping(tank_document())))
    journal, log = tmp_path / "journal.db", tmp_path / "agent.log"
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as tank:
        cfg = write_config(tmp_path, keys, tank.port, contract)
        proc = await _start(cfg, log)
        try:
            await eventually(lambda: journal.exists() and tank.values()["pump_speed"] >= 600, 20,
                             f"agent running the fill step (log: {log})")
            ramp = len(journal_entries(journal, {EntryKind.OUTPUT}))
            await eventually(lambda: len(journal_entries(journal, {EntryKind.OUTPUT})) >= ramp + 3,
                             10, "three more ramp writes journaled")  # killed mid-ramp, mid-chain
            await _stop(proc, signal.SIGKILL)
            before = journal_entries(journal)
            first_boot = [e for e in before if e.kind is EntryKind.BOOT]
            proc = await _start(cfg, log)
            resumed = await eventually(
                lambda: [e for e in journal_entries(journal, {EntryKind.BOOT})
                         if e.body.get("resumed")], 20, "a resumed scan segment")
            await eventually(lambda: _after(journal_entries(journal), resumed[0].seq) >= 3, 10,
                             "the resumed agent journaling its cycles")
        finally:
            await _stop(proc, signal.SIGTERM)
    after = journal_entries(journal)
    assert verify_chain(after, GENESIS, 0) is None
    assert [e.seq for e in after] == list(range(1, len(after) + 1))
    assert after[: len(before)] == before  # nothing committed before the kill was lost or changed
    state = resumed[0].body["state"]
    assert state["step_index"] == 0 and state["mode"] == "running"
    assert state["step_started_ms"] == first_boot[0].body["state"]["step_started_ms"] or \
        state["step_started_ms"] == _first_step_entry(after)
    assert [e.body["step"] for e in events(journal, "step_entered")] == ["fill"]


def _after(entries: list[Entry], seq: int) -> int:
    return sum(1 for e in entries if e.seq > seq)


def _first_step_entry(entries: list[Entry]) -> int:
    return next(e.ts_ms for e in entries if e.body.get("event") == "step_entered")
