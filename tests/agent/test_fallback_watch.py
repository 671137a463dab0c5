"""The fallback's watch over a real journal (SQLite on disk): a BOOT opens the window, journaled
causes are judged as they commit, and a safe state still unconfirmed a scan after it was demanded
(which the keeper journals only once per episode) is judged per cycle. The scan loop is stood in
for by its segments' parts the watch reads: each segment's contract and its real SafeKeeper."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.fallback import Fallback, WatchedJournal
from agent.fallback_rules import Status
from agent.safe_state import SafeKeeper
from agent.scan import CycleReport
from agent.segment import ActiveContract
from contracts.engine import Engine, StepResult
from contracts.inputs import Quality, Reading
from contracts.journal_events import AgentEvent, BootBody, agent_event_body, item, tag_items
from tests.contracts.test_engine import tank

ROLLOUT = {"deployment": "dep-1", "health_window_s": 10, "known_good": "ab" * 32}


def _parts(tmp_path: Path) -> tuple[WatchedJournal, Fallback, ActiveContract, SimpleNamespace]:
    journal = WatchedJournal(tmp_path / "journal.db")
    c = tank(rollout=ROLLOUT)
    active = ActiveContract(contract=c, signed=b"", hash="cd" * 32)
    keeper = SafeKeeper(c.write_points)
    seg = SimpleNamespace(active=active, actuator=SimpleNamespace(keeper=keeper))
    fallback = Fallback(journal, SimpleNamespace(segments={c.contract: seg}),  # type: ignore[arg-type]
                        lambda: c.valid_from)
    fallback.store = SimpleNamespace(known={active.hash: active})  # type: ignore[assignment]
    return journal, fallback, active, seg


async def _boot(journal: WatchedJournal, active: ActiveContract, ts: int) -> None:
    state = Engine(active.contract).initial_state()
    await journal.append_many([item(BootBody(
        boot_id="b1", t0_ms=ts, period_ms=100, contract=active.contract.contract,
        version=active.contract.version, hash=active.hash, state=state, resumed=False), ts)])


def _report(contract: str, now: int) -> CycleReport:
    state = Engine(tank()).initial_state()
    return CycleReport(now_ms=now, late_ms=0.0, duration_ms=0.0,
                       result=StepResult(state=state, writes=(), events=()), view={},
                       healthy=True, contract=contract)


async def test_a_safe_state_unconfirmed_a_scan_on_is_a_cause_judged_per_cycle(
        tmp_path: Path) -> None:
    journal, fallback, active, seg = _parts(tmp_path)
    t0 = active.contract.valid_from
    async with journal:
        await _boot(journal, active, t0)
        window = fallback.windows[active.hash]
        assert window.status is Status.OPEN and window.deadline_ms == t0 + 10_000
        bad: dict[str, Any] = {n.name: Reading(value=None, quality=Quality.BAD, ts_ms=t0,
                                               reason="timeout") for n in active.contract.points}
        targets = {"pump_speed": 0, "valve_open": False}
        _, found = seg.actuator.keeper.cycle(targets, bad, t0 + 100)  # the episode's 1st attempt
        entries = await journal.append_many(tag_items(list(found), "tank-fill"))
        fallback.on_cycle(_report("tank-fill", t0 + 100))
        assert fallback.windows[active.hash].status is Status.OPEN  # confirmed at once, usually
        seg.actuator.keeper.cycle(targets, bad, t0 + 200)  # still not: nothing more journaled
        fallback.on_cycle(_report("tank-fill", t0 + 200))
    w = fallback.windows[active.hash]
    assert (w.status, w.cause, w.cause_seq) == (Status.FALLING, "safe_unconfirmed", entries[0].seq)


async def test_a_journaled_cause_after_the_window_closes_it(tmp_path: Path) -> None:
    journal, fallback, active, _ = _parts(tmp_path)
    t0 = active.contract.valid_from
    async with journal:
        await _boot(journal, active, t0)
        await journal.append_many(tag_items([item(agent_event_body(
            AgentEvent.SECOND_WRITER, point="pump_speed", expected=0, actual=10), t0 + 10_001)],
            "tank-fill"))
    assert fallback.windows[active.hash].status is Status.CLOSED
