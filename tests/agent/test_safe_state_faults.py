"""Safe state on the device through real faults, end to end: a real agent (in-process, real
ModbusLink, real SQLite journal) against a real simulator that hangs (fault `hang`), is SIGSTOPped
as its own process, or is cut off by a real TCP proxy (netcut). In each case, once the device
answers again, its own registers — read by the test straight from the simulator, never through
the agent — show safe_state within 2 scan periods + 1 Modbus timeout (measured, then asserted
against that bound), and stay there until an operator resumes.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agent.config import AgentConfig, ModbusConfig
from contracts.journal_replay import contracts_in, replay_entries
from contracts.inputs import Command, CommandKind
from contracts.loader import check_mapping
from contracts.schema import Contract
from simulators.faults import Fault
from simulators.netcut import NetCut
from simulators.process import SimProcess
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import events, journal_entries, next_scans, running_agent
from tests.agent.tank_outputs import Probe, in_process, over_modbus, running, safe
from tests.waiting import eventually

pytestmark = pytest.mark.slow

PERIOD_S = 0.2
TIMEOUT_S = 0.3
BOUND_S = 2 * PERIOD_S + TIMEOUT_S
"""The target: device answering again -> safe_state in its registers."""
POLL_S = 0.02
ALLOWANCE_S = 0.1
"""Our own polling granularity and event-loop scheduling on a loaded machine, on top of the bound."""


def _config(tmp_path: Path, keys: tuple[Path, Path], port: int,
            signer: Callable[[Contract], bytes]) -> AgentConfig:
    path = tmp_path / "contract.cose"
    path.write_bytes(signer(check_mapping(tank_document(scan_period_ms=int(PERIOD_S * 1000)))))
    return AgentConfig(device="d1", site="s1", journal=tmp_path / "journal.db", trusted_key=keys[1],
                       modbus=ModbusConfig(host="127.0.0.1", port=port, timeout_s=TIMEOUT_S),
                       contract=path)


async def _fault_then_recover(cfg: AgentConfig, probe: Probe, fault: Callable[[], Awaitable[None]],
                              recover: Callable[[], None]) -> float:
    """Run the agent into a fill, fault the device until the agent tripped, recover, and return
    the seconds from recovery to safe_state in the device's registers."""
    async with running_agent(cfg) as agent:
        await eventually(lambda: running(probe), 15, "pump running, valve open")
        await fault()
        await eventually(lambda: events(cfg.journal, "guard_trip"), 15, "the guard trip")
        await eventually(lambda: "safe_unconfirmed=pump_speed,valve_open" in agent.status(), 5,
                         "the systemd STATUS line naming the unconfirmed points")
        # Stay down until the agent has been looking for the device for a while (probes cycling).
        await eventually(lambda: getattr(agent.link, "probes", 0) >= 3, 15, "three probes")
        recovered = time.monotonic()
        recover()
        await eventually(lambda: safe(probe), 15, "safe_state on the device", every_s=POLL_S)
        measured = time.monotonic() - recovered
        for _ in range(5):  # it stays there: sample it after each of the next five scans
            await next_scans(agent)
            assert await safe(probe)
        confirmed = await eventually(lambda: events(cfg.journal, "safe_confirmed"), 10, "confirmed")
        assert "safe_unconfirmed" not in agent.status()
        agent.scan.commands.append(Command(kind=CommandKind.RESUME, id="operator-1"))
        await eventually(lambda: running(probe), 15, "running again after the resume")
    assert confirmed[0].body["elapsed_ms"] > 0
    assert events(cfg.journal, "second_writer") == []  # our failed safe writes were no other master
    assert events(cfg.journal, "output_reassert")
    entries = journal_entries(cfg.journal)
    report = replay_entries(entries, contracts_in(entries).get)
    assert report.ok and report.cycles > 0
    print(f"recovered_to_safe_s={measured:.3f} bound_s={BOUND_S}")
    assert measured <= BOUND_S + ALLOWANCE_S, f"{measured:.3f} s > {BOUND_S} s (+{ALLOWANCE_S} s)"
    return measured


async def test_hung_device_is_put_in_safe_state_as_soon_as_it_answers_again(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", tick_ms=20, initial={"level": 1.0}) as tank:
        async def hang() -> None:
            tank.faults.enable(Fault.HANG)
        await _fault_then_recover(_config(tmp_path, keys, tank.port, signer), in_process(tank),
                                  hang, lambda: tank.faults.disable(Fault.HANG))


async def test_sigstopped_simulator_process_is_put_in_safe_state_after_sigcont(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    with SimProcess("tank", tick_ms=50, initial={"level": 1.0}) as sim:
        async def stop() -> None:
            sim.pause()
        await _fault_then_recover(_config(tmp_path, keys, sim.port, signer), over_modbus(sim.port),
                                  stop, sim.resume)


async def test_cut_link_is_followed_by_safe_state_on_the_device_when_restored(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", tick_ms=20, initial={"level": 1.0}) as tank, \
            NetCut("127.0.0.1", tank.port) as cut:
        await _fault_then_recover(_config(tmp_path, keys, cut.port, signer), in_process(tank),
                                  cut.cut, cut.restore)


async def test_forced_safe_state_while_the_journal_is_down_is_reasserted_until_the_device_shows_it(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    from agent.errors import JournalFull
    from contracts.chain import EntryKind
    async with SimDevice("tank", tick_ms=20, initial={"level": 1.0}) as tank:
        cfg = _config(tmp_path, keys, tank.port, signer)
        async with running_agent(cfg) as agent:
            await eventually(lambda: tank.values()["valve_open"], 10, "valve open in fill")
            tank.faults.enable(Fault.HANG)  # the device hangs, then the disk fills up
            journal = agent.journal
            pages = await journal._call(
                lambda: journal.sync.db.execute("PRAGMA page_count").fetchone()[0])
            await journal._call(lambda: journal.sync.db.execute(f"PRAGMA max_page_count = {pages}"))
            for size in (2000, 200, 20):  # a real SQLITE_FULL, to the last byte
                for i in range(500):
                    try:
                        await journal.append(EntryKind.EVENT, {"event": "padding", "pad": "x" * size}, i)
                    except JournalFull:
                        break
            await eventually(lambda: agent.scan.segment is not None
                             and agent.scan.segment.forced_safe is not None, 10, "forced safe")
            assert tank.values()["valve_open"]  # the forced safe writes could not reach it
            tank.faults.disable(Fault.HANG)
            await eventually(lambda: not tank.values()["valve_open"]
                             and tank.values()["pump_speed"] == 0, 10, "safe on the device")
            assert agent.scan.segment.forced_safe is not None  # the journal is still down
            await eventually(lambda: "confirmed_ms" in agent.scan.segment.forced_safe, 5, "confirmed")
