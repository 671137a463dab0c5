"""`fieldpact commission` against real simulators (pymodbus on loopback): swapped words, a frozen
value, an illegal address — and a healthy device, which must pass. Driven through fieldpact.cli.main
in a worker thread, so the simulator keeps serving on the test's event loop."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fieldpact.cli import main
from simulators.faults import Fault
from simulators.server import SimDevice

TANK = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "tank-fill.yaml"


def _files(tmp_path: Path, port: int, extra_points: list[dict[str, Any]] = ()) -> list[str]:  # type: ignore[assignment]
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'device = "pump-station-7"\nsite = "north-field"\njournal = "j.db"\n'
                   f'trusted_key = "hub.pub"\n[modbus]\nhost = "127.0.0.1"\nport = {port}\n'
                   f'timeout_s = 0.3\n')
    doc = yaml.safe_load(TANK.read_text())
    doc["points"].extend(extra_points)
    doc["safe_state"].update({p["name"]: 0 for p in extra_points if p["direction"] == "write"})
    contract = tmp_path / "contract.yaml"
    contract.write_text(yaml.safe_dump(doc))
    return ["commission", "--config", str(cfg), "--contract", str(contract), "--seconds", "1",
            "--interval", "0.05"]


async def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = await asyncio.wait_for(asyncio.to_thread(main, args), timeout=30)
    captured = capsys.readouterr()
    assert captured.err == ""
    return status, captured.out


def _points(out: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in json.loads(out)["points"]}


async def test_a_healthy_tank_is_right_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with SimDevice("tank", tick_ms=20, time_scale=20, initial={"level": 3.0}) as sim:
        status, out = await _run([*_files(tmp_path, sim.port), "--json"], capsys)
        assert sim.write_log == []
    report = json.loads(out)
    assert status == 0 and report["ok"], out
    points = _points(out)
    assert points["level"]["motion"] == "moving" and points["level"]["unit"] == "m"
    assert points["level"]["range"] == "ok" and 2.5 < points["level"]["value"] <= 3.0
    assert points["pump_speed"]["readback"] is True and points["valve_open"]["readback"] is True
    (endpoint,) = report["endpoints"]
    assert endpoint["endpoint"] == "default" and endpoint["failed"] == 0
    assert 0 < endpoint["median_ms"] <= endpoint["p99_ms"] < 300


async def test_swapped_words_and_an_illegal_address_are_not_right(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ghost = {"name": "pump_speed_2", "unit_id": 1, "table": "holding", "address": 100,
             "type": "uint16", "unit": "rpm", "direction": "write", "owner": "tank-fill"}
    async with SimDevice("tank", tick_ms=20, initial={"level": 2.5}) as sim:
        sim.faults.enable(Fault.SWAP_WORDS)
        status, out = await _run([*_files(tmp_path, sim.port, [ghost]), "--json"], capsys)
        assert sim.write_log == []
    assert status == 1
    points = _points(out)
    level = points["level"]
    assert level["verdict"] == "fail"
    assert any(h.startswith("probably swapped word order (word_order: little): as CDAB it reads 2.49")
               for h in level["hints"]), level["hints"]
    assert any(h.startswith("under each order: ABCD ") for h in level["hints"])
    g = points["pump_speed_2"]
    assert (g["verdict"], g["readback"]) == ("fail", False)
    assert g["error"] == "exception 2 (illegal data address) at holding 100"
    assert "the device has no holding 100: check the address" in g["hints"][0]
    assert points["pump_speed"]["verdict"] == "ok"


async def test_a_frozen_level_is_a_warning_and_the_table_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # rich folds a table to the terminal's width
    async with SimDevice("tank", tick_ms=20, time_scale=20, initial={"level": 3.0}) as sim:
        sim.faults.enable(Fault.FROZEN)
        status, out = await _run(_files(tmp_path, sim.port), capsys)
    assert status == 0, out
    level = next(line for line in out.splitlines() if line.startswith("│ level "))
    assert "frozen" in level and "warn" in level and "3 m" in level
    assert "frozen: the same words in all" in out and "every point is right" in out


async def test_a_device_that_is_not_there_is_not_right(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with SimDevice("tank") as sim:
        port = sim.port
    status, out = await _run([*_files(tmp_path, port), "--json"], capsys)
    assert status == 1
    assert {p["error"] for p in _points(out).values()} == {"disconnected"}
