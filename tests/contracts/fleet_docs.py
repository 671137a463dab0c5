"""Fleet configuration documents shared by the contract-language and hub tests: the tank-fill
example as a design, and bindings placing it on devices at different addresses."""
from __future__ import annotations

from typing import Any


def tank_design(version: int = 3, **changes: Any) -> dict[str, Any]:
    """The tank-fill example (contracts/examples/tank-fill.yaml) as a design: addresses out,
    the fill level and the pump's top speed as parameters."""
    return {
        "design": "tank-fill", "version": version,
        "parameters": {"fill_level": {"type": "number", "default": 4.0, "range": [0, 6]},
                       "max_rpm": {"type": "number", "range": [0, 1500]}},
        "scan_period_ms": 100,
        "points": [
            {"name": "level", "table": "input", "type": "float32", "unit": "m", "direction": "read",
             "stale_after_ms": 2000, "range": [0, 6]},
            {"name": "pump_speed", "table": "holding", "type": "uint16", "unit": "rpm",
             "scale": 0.1, "direction": "write", "limits": [0, "$max_rpm"], "max_rate_per_s": 300},
            {"name": "valve_open", "table": "coil", "type": "bool", "direction": "write"}],
        "safe_state": {"pump_speed": 0, "valve_open": False},
        "steps": [{"name": "fill", "do": {"valve_open": True, "pump_speed": "$max_rpm"},
                   "until": "level >= $fill_level", "timeout_s": 1800},
                  {"name": "hold", "do": {"valve_open": False, "pump_speed": 0}, "for_s": 3600}],
        "offline": {"autonomy_s": 14400, "then": "safe_state"},
        "expect": {"level": {"rate_per_s": 0.002, "when": "pump_speed > 0 and valve_open"}},
        **changes,
    }


def tank_binding(name: str, match: dict[str, Any], pump: Any = 20, *, unit_id: int = 1,
                 max_rpm: float = 1200, **changes: Any) -> dict[str, Any]:
    """A binding of the tank design; `pump` is the pump speed register (offset or Modicon)."""
    return {"binding": name, "design": "tank-fill", "match": match, "unit_id": unit_id,
            "points": {"level": {"address": 0}, "pump_speed": {"address": pump},
                       "valve_open": {"address": 12}},
            "parameters": {"max_rpm": max_rpm}, **changes}
