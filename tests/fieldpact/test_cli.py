"""The command line end to end: journal show/verify/replay on a real agent journal, `hub serve`."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from contracts.loader import check_mapping
from contracts.schema import Contract
from fieldpact.cli import build_parser, main
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import running_agent
from tests.agent.test_agent_e2e import agent_config
from tests.hub.live_hub import CLI_VIEWER_TOKEN, cli_hub
from tests.waiting import eventually

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
async def recorded_journal(tmp_path: Path, keys: tuple[Path, Path],
                           signer: Callable[[Contract], bytes]) -> Path:
    contract = tmp_path / "c.cose"
    contract.write_bytes(signer(check_mapping(tank_document())))
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as tank:
        cfg = agent_config(tmp_path, keys, tank.port, contract)
        async with running_agent(cfg):
            await eventually(lambda: tank.values()["pump_speed"] >= 1200, 8, "ramp done")
    return cfg.journal


def test_journal_verify_and_replay_pass_on_a_real_journal_and_fail_when_tampered(
        recorded_journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal", "verify", "--db", str(recorded_journal)]) == 0
    assert main(["journal", "replay", "--db", str(recorded_journal)]) == 0
    assert "0 mismatches" in capsys.readouterr().out
    assert main(["journal", "show", "--db", str(recorded_journal), "--kind", "output"]) == 0
    with sqlite3.connect(recorded_journal) as db:  # an attacker edits one recorded write
        seq, = db.execute("SELECT seq FROM entries WHERE kind = 'output' LIMIT 1").fetchone()
        db.execute("UPDATE entries SET body = (SELECT body FROM entries WHERE kind = 'input' LIMIT 1)"
                   " WHERE seq = ?", [seq])
    assert main(["journal", "verify", "--db", str(recorded_journal)]) == 1
    assert f"seq {seq}" in capsys.readouterr().out


@pytest.mark.slow
def test_hub_serve_answers_health_and_requires_a_token(tmp_path: Path) -> None:
    with cli_hub(tmp_path) as hub:
        assert httpx.get(hub.api_url + "/api/devices").status_code == 401
        ok = httpx.get(hub.api_url + "/api/devices",
                       headers={"Authorization": f"Bearer {CLI_VIEWER_TOKEN}"})
        assert ok.status_code == 200 and ok.json() is not None
        assert (tmp_path / "keys" / "hub.pub").exists()  # key generated on first start


def test_every_cli_command_is_documented_in_the_readme() -> None:
    text = README.read_text()
    parser = build_parser()
    missing = [f"fieldpact {' '.join(path)}" for path in _commands(parser)
               if f"fieldpact {' '.join(path)}" not in text]
    assert missing == []


def _commands(parser: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import argparse
    out: list[tuple[str, ...]] = []
    for action in getattr(parser, "_actions", []):
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, prefix + (name,))
                out.extend(nested or [prefix + (name,)])
    return out
