"""The health proof keyframe (agent/health_proof.py), end to end: a real agent (in-process, real
ModbusLink, real SQLite journal) on the tank simulator runs a contract with a `rollout` key. Its
first cycle at or after the health window's end journals a KEYFRAME, within one scan period of the
end (not at the next minute's keyframe), the hub's health rule (contracts/rollout_health.py) takes
it as the window's proof, and replay of the journal stays exact. A restart inside the window does
not reopen it; a contract without `rollout` journals no such keyframe."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, ModbusConfig
from contracts.chain import Entry, EntryKind
from contracts.codec import content_hash
from contracts.journal_events import CONTRACT_TAG, decode_entry
from contracts.loader import check_mapping
from contracts.rollout_health import Health, HealthSpec, judge
from contracts.schema import Contract
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import journal_entries, running_agent
from tests.agent.test_multi_contract import _exact_replay
from tests.waiting import eventually

pytestmark = pytest.mark.slow

PERIOD_MS = 50
WINDOW_S = 1.5
ALLOWANCE_MS = 250
"""Our polling and the event loop on a loaded machine, on top of the one scan period."""


def _doc(**extra: Any) -> dict[str, Any]:
    return tank_document(scan_period_ms=PERIOD_MS, **extra)


def _rollout() -> dict[str, Any]:
    return {"deployment": "dep-000001", "health_window_s": WINDOW_S}


def _config(tmp_path: Path, keys: tuple[Path, Path], port: int, sign: Callable[[Contract], bytes],
            doc: dict[str, Any]) -> tuple[AgentConfig, Contract]:
    contract = check_mapping(doc)
    path = tmp_path / "contract.cose"
    path.write_bytes(sign(contract))
    return AgentConfig(device="d1", site="s1", journal=tmp_path / "journal.db",
                       trusted_key=keys[1], contract=path,
                       modbus=ModbusConfig(host="127.0.0.1", port=port, timeout_s=0.3)), contract


def _keyframes(path: Path) -> list[Entry]:
    return journal_entries(path, {EntryKind.KEYFRAME})


def _first_boot_ms(path: Path) -> int:
    return int(journal_entries(path, {EntryKind.BOOT})[0].body["t0_ms"])


async def test_a_rollout_contract_journals_a_keyframe_within_a_period_of_its_windows_end(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as tank:
        cfg, contract = _config(tmp_path, keys, tank.port, signer, _doc(rollout=_rollout()))
        pushed_ms = time.time_ns() // 1_000_000
        async with running_agent(cfg):
            await eventually(lambda: journal_entries(cfg.journal, {EntryKind.BOOT}), 5, "the BOOT")
            end_ms = _first_boot_ms(cfg.journal) + int(WINDOW_S * 1000)
            found = await eventually(lambda: len(_keyframes(cfg.journal)) >= 2, WINDOW_S + 5,
                                     "the proof keyframe", every_s=0.005)
            seen_ms = time.time_ns() // 1_000_000
            assert found
    boot_kf, proof = _keyframes(cfg.journal)[:2]
    assert boot_kf.ts_ms < end_ms  # the segment's first cycle: its usual keyframe
    assert proof.body[CONTRACT_TAG] == contract.contract
    assert end_ms <= proof.ts_ms < end_ms + PERIOD_MS, (proof.ts_ms - end_ms)
    late_ms = seen_ms - end_ms
    print(f"proof_keyframe_after_window_end_ms={proof.ts_ms - end_ms} seen_after_ms={late_ms} "
          f"bound_ms={PERIOD_MS}")
    assert late_ms <= PERIOD_MS + ALLOWANCE_MS
    assert len(_keyframes(cfg.journal)) == 2  # one proof, not one per cycle after the end
    # the hub's rule proves the window with it (or with an entry of the same cycle before it)
    entries = journal_entries(cfg.journal)
    records = [(e.seq, e.ts_ms, decode_entry(e)) for e in entries]
    verdict = judge(records, contract=contract.contract, content_hash=content_hash(contract),
                    spec=HealthSpec(window_ms=int(WINDOW_S * 1000)), pushed_ms=pushed_ms,
                    now_ms=max(seen_ms, pushed_ms + int(WINDOW_S * 1000)))
    assert verdict.health is Health.HEALTHY, verdict
    window = [ev for ev in verdict.evidence if ev.what == "window"]
    assert window and window[0].ts_ms == proof.ts_ms, verdict.evidence
    _exact_replay(cfg.journal)


async def test_a_restart_inside_the_window_keeps_its_end_and_proves_it_once(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as tank:
        cfg, _ = _config(tmp_path, keys, tank.port, signer, _doc(rollout=_rollout()))
        async with running_agent(cfg):
            await eventually(lambda: _keyframes(cfg.journal), 5, "the first keyframe")
        end_ms = _first_boot_ms(cfg.journal) + int(WINDOW_S * 1000)
        assert time.time_ns() // 1_000_000 < end_ms, "restarted inside the window"
        async with running_agent(cfg):
            await eventually(lambda: len(journal_entries(cfg.journal, {EntryKind.BOOT})) == 2, 5,
                             "the resumed BOOT")
            await eventually(lambda: any(e.ts_ms >= end_ms for e in _keyframes(cfg.journal)),
                             WINDOW_S + 5, "the proof keyframe", every_s=0.005)
        async with running_agent(cfg):  # after the window: no second proof
            await eventually(lambda: len(journal_entries(cfg.journal, {EntryKind.BOOT})) == 3, 5,
                             "the second resumed BOOT")
            await eventually(lambda: len(_keyframes(cfg.journal)) >= 4, 5, "its first keyframe")
            boots = journal_entries(cfg.journal, {EntryKind.BOOT})
            third_t0 = int(boots[2].body["t0_ms"])
            await eventually(lambda: time.time_ns() // 1_000_000 > third_t0 + 4 * PERIOD_MS, 5,
                             "a few cycles of the third run")
    kfs = _keyframes(cfg.journal)
    after = [e for e in kfs if e.ts_ms >= end_ms and e.ts_ms < int(boots[2].body["t0_ms"])]
    assert len(after) == 1 and after[0].ts_ms < end_ms + PERIOD_MS, [e.ts_ms - end_ms for e in kfs]
    # the restarts' own first-cycle keyframes, and the one proof: 2 + 1 + 1
    assert len(kfs) == 4, [e.ts_ms - end_ms for e in kfs]
    _exact_replay(cfg.journal)


async def test_a_contract_without_rollout_journals_no_proof_keyframe(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as tank:
        cfg, _ = _config(tmp_path, keys, tank.port, signer, _doc())
        async with running_agent(cfg):
            await eventually(lambda: journal_entries(cfg.journal, {EntryKind.BOOT}), 5, "the BOOT")
            end_ms = _first_boot_ms(cfg.journal) + int(WINDOW_S * 1000)
            await eventually(lambda: time.time_ns() // 1_000_000 > end_ms + 4 * PERIOD_MS,
                             WINDOW_S + 5, "past where a window would end")
    assert len(_keyframes(cfg.journal)) == 1
