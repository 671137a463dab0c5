"""The field case of issue 11, on a real tank simulator: the pump's register mistyped (holding 63
instead of 20 — mapped, so every write is answered) while `fill` commands pump_speed 1000. The level
falls instead of rising; the agent journals `model_divergence` long before the step's 600 s timeout.
The same contract with the right register runs without one (the check can tell the two apart)."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from agent.config import AgentConfig, ModbusConfig
from contracts.loader import check_mapping
from contracts.journal_replay import contracts_in, replay_entries
from contracts.schema import Contract
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import events, journal_entries, running_agent
from tests.waiting import eventually

TIME_SCALE = 5.0
"""The tank runs five times faster than the wall clock: fill 0.067 m/s at 1000 rpm, drain 0.01 m/s."""
FILL_RATE = 1000 / 1500 * 0.02 * TIME_SCALE


def _contract(tmp_path: Path, signer: Callable[[Contract], bytes], pump_address: int) -> Path:
    doc = tank_document(
        steps=[{"name": "fill", "do": {"valve_open": True, "pump_speed": 1000},
                "until": "level >= 5.5", "timeout_s": 600},
               {"name": "hold", "do": {"valve_open": False, "pump_speed": 0}, "for_s": 3600}],
        expect={"level": {"rate_per_s": FILL_RATE, "when": "pump_speed > 0 and valve_open"}},
        tolerance={"timing_s": 300, "values": {"level": 0.1}})
    for p in doc["points"]:
        if p["name"] == "pump_speed":
            p["address"] = pump_address
            del p["max_rate_per_s"]  # full speed at once: the model has no ramp
        if p["name"] == "level":
            p["frozen_after_ms"] = 5000
    path = tmp_path / "contract.cose"
    path.write_bytes(signer(check_mapping(doc)))
    return path


def _config(tmp_path: Path, keys: tuple[Path, Path], port: int, contract: Path) -> AgentConfig:
    return AgentConfig(device="d1", site="s1", journal=tmp_path / "journal.db", trusted_key=keys[1],
                       modbus=ModbusConfig(host="127.0.0.1", port=port, timeout_s=0.3),
                       contract=contract, model_divergence_after_s=1.0)


async def test_a_mistyped_pump_register_is_flagged_well_before_the_step_timeout(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", tick_ms=20, time_scale=TIME_SCALE, initial={"level": 3.0}) as sim:
        cfg = _config(tmp_path, keys, sim.port, _contract(tmp_path, signer, pump_address=63))
        async with running_agent(cfg):
            started = time.monotonic()
            found = await eventually(lambda: events(cfg.journal, "model_divergence"), 15,
                                     "a model_divergence event")
            took_s = time.monotonic() - started
            assert sim.values()["pump_speed"] == 0 and sim.values()["level"] < 3.0  # the field case
    body = found[0].body
    assert body["point"] == "level" and body["step"] == "fill" and body["actual"] < 3.0
    assert body["expected"] - body["actual"] > 0.1 and body["commanded"] == {
        "pump_speed": 1000, "valve_open": True}
    assert took_s < 10, f"flagged after {took_s:.1f} s; the step's timeout is 600 s"
    assert len(found) == 1  # raised once, not every cycle
    # The check is beside the engine, never in it: the journal still replays exactly.
    entries = journal_entries(cfg.journal)
    report = replay_entries(entries, contracts_in(entries).get)
    assert report.ok and report.segments == 1 and report.cycles > 0


async def test_the_right_register_fills_the_tank_without_a_divergence(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", tick_ms=20, time_scale=TIME_SCALE, initial={"level": 3.0}) as sim:
        cfg = _config(tmp_path, keys, sim.port, _contract(tmp_path, signer, pump_address=20))
        async with running_agent(cfg):
            await eventually(lambda: sim.values()["level"] > 3.0 + 0.1 + 2 * FILL_RATE, 15,
                             "the level rising beyond the tolerance plus two after_s of filling")
    assert events(cfg.journal, "model_divergence") == []
