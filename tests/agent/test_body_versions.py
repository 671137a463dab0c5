"""The journal body version rule on a real journal: an agent running two contracts on the real
tank simulator, first as the build before the rule wrote its journal (the contract tag in version
1 bodies, no `v` key), then restarted on the same journal by this build (tagged bodies of
version 2). The journal still verifies (`fieldpact journal verify`), and replays exactly per
contract across both (`fieldpact journal replay`)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.journal_cli import main as journal_main
from contracts import journal_bodies, journal_events, journal_occurrences
from contracts.journal_events import CONTRACT_TAG, VERSION_KEY
from contracts.schema import Contract
from simulators.server import SimDevice
from tests.agent.helpers import journal_entries, running_agent, signed_config
from tests.agent.test_multi_contract import (  # noqa: F401  (tank: the simulator fixture)
    _exact_replay, _pump, _valve, agent_cycles, tank,
)
from tests.waiting import eventually

pytestmark = pytest.mark.slow


def _before_the_rule(body: dict[str, Any], contract: str | None, *, later: bool = False
                     ) -> dict[str, Any]:
    """How the build before the version rule tagged a body: the tag, and no version."""
    assert not later  # that build had no version 2 fields either
    if contract is not None:
        body[CONTRACT_TAG] = contract
    return body


async def test_a_journal_tagged_before_the_rule_and_continued_after_it_verifies_and_replays(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes],
        tank: SimDevice, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    cfg = signed_config(tmp_path, keys, tank.port, signer, _pump(), _valve())
    with monkeypatch.context() as old:
        for module in (journal_bodies, journal_occurrences, journal_events):
            old.setattr(module, "versioned", _before_the_rule)
        async with running_agent(cfg) as agent:
            await eventually(lambda: sorted(agent.scan.segments) == ["tank-pump", "tank-valve"],
                             5, "both contracts running")
            await agent_cycles(agent, "tank-pump", 5)
    before = journal_entries(cfg.journal)
    async with running_agent(cfg) as agent:  # this build, on the same journal
        await eventually(lambda: sorted(agent.scan.segments) == ["tank-pump", "tank-valve"],
                         5, "both contracts resumed")
        await agent_cycles(agent, "tank-valve", 5)
    after = journal_entries(cfg.journal)[len(before):]
    old_tagged = [e for e in before if CONTRACT_TAG in e.body]
    new_tagged = [e for e in after if CONTRACT_TAG in e.body]
    assert old_tagged and all(VERSION_KEY not in e.body for e in old_tagged)
    assert new_tagged and all(e.body[VERSION_KEY] == 2 for e in new_tagged)
    assert all(VERSION_KEY not in e.body for e in after if CONTRACT_TAG not in e.body)
    reports = _exact_replay(cfg.journal)  # chain verified, each contract replayed exactly
    assert {cid: r.segments for cid, r in reports.items()} == {"tank-pump": 2, "tank-valve": 2}
    capsys.readouterr()
    assert journal_main(["journal", "verify", "--db", str(cfg.journal)]) == 0
    assert journal_main(["journal", "replay", "--db", str(cfg.journal)]) == 0
    out = capsys.readouterr().out
    assert "chain intact" in out and " 0 mismatches" in out, out
