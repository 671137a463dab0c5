"""The device view's `contracts` list — pure: each contract's live telemetry (its version, its
points with a failing read's fault in words), or, while the device is projected, each contract's
projection; a projection stored before projection per contract still shows its one contract."""
from __future__ import annotations

from typing import Any

from hub.live import LiveValues
from hub.states import DeviceState
from hub.store import DeviceRecord
from hub.views import contracts_view

NOW, SILENCE = 10_000, 5_000
WORDS = "exception 2 (illegal data address) at input 70"


def _projection(cid: str, step: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"source": "projection", "inputs": {"contract_id": cid, "start_ms": 4_000},
            "ts_ms": 4_000, "step": step, "mode": "running", "values": values,
            "confidence": 0.75}


def _projected(blob: dict[str, Any]) -> DeviceRecord:
    return DeviceRecord(id="d1", site="s1", state=DeviceState.PROJECTED, state_since_ms=4_000,
                        projection=blob)


def test_each_contract_shows_its_version_and_a_failing_points_fault_in_words() -> None:
    pump = LiveValues(ts_ms=9_000, received_ms=9_500, mode="safe", step="run", version=3,
                      values={"level": 1.5}, faults={"flow": WORDS}, trip="bad_quality:flow")
    valve = LiveValues(ts_ms=9_000, received_ms=9_500, mode="running", step="open", version=1,
                       values={"valve_open": True})
    shown = contracts_view({"tank-pump": pump, "tank-valve": valve}, NOW, SILENCE)
    assert [(c["contract"], c["version"], c["source"], c["live"]) for c in shown] == [
        ("tank-pump", 3, "live", True), ("tank-valve", 1, "live", True)]
    rows = {r["name"]: r for r in shown[0]["values"]}
    assert rows["flow"]["fault"] == WORDS and rows["flow"]["value"] is None
    assert "fault" not in rows["level"] and rows["level"]["value"] == 1.5
    assert not any("fault" in r for r in shown[1]["values"])


def test_a_projected_device_shows_each_contracts_projection_not_its_old_telemetry() -> None:
    stale = {"tank-pump": LiveValues(ts_ms=1, received_ms=1, mode="running", step="run")}
    blob = {**_projection("tank-pump@3", "run", {"pump_speed": 1000}),
            "contracts": {"tank-pump": _projection("tank-pump@3", "run", {"pump_speed": 1000}),
                          "tank-valve": _projection("tank-valve@1", "open", {"valve_open": True})}}
    shown = contracts_view(stale, NOW, SILENCE, _projected(blob))
    assert [(c["contract"], c["version"], c["source"], c["step"], c["confidence"], c["live"])
            for c in shown] == [("tank-pump", 3, "projection", "run", 0.75, False),
                                ("tank-valve", 1, "projection", "open", 0.75, False)]
    assert [(r["name"], r["value"]) for r in shown[1]["values"]] == [("valve_open", True)]


def test_a_projection_stored_before_projection_per_contract_shows_its_one_contract() -> None:
    shown = contracts_view({}, NOW, SILENCE,
                           _projected(_projection("tank-fill@3", "fill", {"level": 2.0})))
    assert [(c["contract"], c["version"], c["step"]) for c in shown] == [("tank-fill", 3, "fill")]
