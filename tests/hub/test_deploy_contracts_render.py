"""What `fieldpact ctl status` shows of a deployment that gave a device two contracts: a row per
contract (the version issued, else the contract it will get), and the failed contract named in
the rollback's evidence and in a device's rollback alone (fieldpact/ctl_deploy_render.py)."""
from __future__ import annotations

from typing import Any

from rich.console import Console

from fieldpact.ctl_deploy_render import alone_text, deployment_view

from . import deployment_views as views


def _text(view: dict[str, Any]) -> str:
    console = Console(width=300, record=True, color_system=None)
    console.print(deployment_view(view))
    return console.export_text()


def test_each_contract_of_a_device_is_a_row_and_the_failed_one_is_named() -> None:
    view = views.rolled_back()
    ps7 = "pump-station-7"
    view["devices"] = [
        {**view["devices"][0], "name": "tank-fill.ps7", "contract": "tank-fill.ps7@3",
         "reason": None, "evidence": [], "restored": "tank-fill.ps7@4"},
        {**view["devices"][0], "name": "tank-aux.ps7", "contract": "tank-aux.ps7@3",
         "state": "failed", "reason": "latched: guard_trip", "restored": None},
        {**view["devices"][1], "name": "tank-aux.bs2", "contract": None}]
    view["rollback"]["evidence"][0]["contract"] = "tank-aux.ps7"
    text = _text(view)
    rows = [line for line in text.splitlines() if ps7 in line and "@" in line]
    assert any("tank-fill.ps7@3" in r and "restored as tank-fill.ps7@4" in r for r in rows)
    assert any("tank-aux.ps7@3" in r and "latched: guard_trip" in r for r in rows)
    assert any("booster-skid-2" in line and "tank-aux.bs2" in line for line in text.splitlines())
    assert f"{ps7} tank-aux.ps7 (telemetry)" in text
    alone = alone_text({"device": "well-9", "rollback": {
        "gate": "second_writer", "contract": "tank-fill.w9", "result": "restored",
        "restored": "tank-fill.w9@5", "initiated_by": "gate", "step": "wave:1:gate",
        "ts_ms": views.T0, "evidence": []}})
    assert alone.startswith("well-9 tank-fill.w9 rolled back alone")
