"""Replay reproduces a run from its journaled changes; divergence is located exactly."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.engine import Engine, EventKind, Mode, Write
from contracts.inputs import Command, CommandKind, Inputs, Quality, Reading
from contracts.replay import Cycle, expand, first_divergence, replay
from contracts.schema_parse import parse_contract

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
CONTRACT = parse_contract(yaml.safe_load((EXAMPLES / "tank-fill.yaml").read_text()))
T0 = CONTRACT.valid_from


def good(value: float | bool, ts: int) -> Reading:
    return Reading(value=value, quality=Quality.GOOD, ts_ms=ts)


def agent_run(levels: list[float], bad_at: int | None = None) -> tuple[list[Cycle], list[tuple[int, Write]],
                                                                      list[tuple[int, dict[str, Reading]]]]:
    """What an agent does: feed each cycle's view to the engine, journal writes and changes only."""
    engine, state = Engine(CONTRACT), Engine(CONTRACT).initial_state()
    cycles, writes, changes, last = [], [], [], None
    for k, level in enumerate(levels):
        now = T0 + k * 100
        lv = Reading(value=None, quality=Quality.BAD, ts_ms=now, reason="timeout") if k == bad_at \
            else good(level, now)
        view = {"level": lv, "high_level": good(False, now)}
        key = (lv.value, lv.quality)
        if key != last:
            changes.append((now, dict(view)))
            last = key
        cycle = Cycle(now_ms=now, inputs=Inputs(readings=view))
        result = engine.step(state, cycle.inputs, now)
        state = result.state
        cycles.append(cycle)
        writes.extend((now, w) for w in result.writes)
    return cycles, writes, changes


def test_replay_of_the_expanded_journal_reproduces_the_agents_writes() -> None:
    levels = [3.0] * 40 + [4.1] * 30 + [4.1] * 10
    cycles, writes, changes = agent_run(levels, bad_at=75)
    assert len(changes) == 4  # 3.0, 4.1, the BAD reading, 4.1 again
    result = replay(CONTRACT, expand(changes, T0, T0 + len(levels) * 100, 100))
    assert first_divergence(writes, result) is None
    assert result.final_state.mode is Mode.SAFE
    assert [c.inputs for c in expand(changes, T0, T0 + len(levels) * 100, 100)] == \
        [c.inputs for c in cycles]


def test_first_divergence_names_the_first_differing_write() -> None:
    _, writes, _ = agent_run([3.0] * 50)
    assert first_divergence(writes, list(writes)) is None
    tampered = list(writes)
    tampered[7] = (tampered[7][0], Write(point="pump_speed", value=999.0))
    assert first_divergence(writes, tampered) == 7
    assert first_divergence(writes, writes[:-2]) == len(writes) - 2
    assert first_divergence([], writes) == 0


def test_expand_holds_good_readings_fresh_and_bad_readings_as_recorded() -> None:
    bad = Reading(value=None, quality=Quality.BAD, ts_ms=T0 + 150, reason="timeout")
    changes = [(T0, {"level": good(1.0, T0)}), (T0 + 150, {"level": bad}),
               (T0 + 300, {"level": good(2.0, T0 + 300)})]
    cs = list(expand(changes, T0, T0 + 500, 100))
    assert [c.now_ms - T0 for c in cs] == [0, 100, 200, 300, 400]
    assert [c.inputs.readings["level"] for c in cs] == [
        good(1.0, T0), good(1.0, T0 + 100), bad, good(2.0, T0 + 300), good(2.0, T0 + 400)]


def test_expand_delivers_each_command_once_and_follows_connectivity() -> None:
    hold = Command(kind=CommandKind.HOLD, id="h1")
    cs = list(expand([], T0, T0 + 500, 100, commands=[(T0 + 150, hold)],
                     links=[(T0 + 250, False, T0 + 240), (T0 + 400, True, None)]))
    assert [c.inputs.commands for c in cs] == [(), (), (hold,), (), ()]
    assert [(c.inputs.online, c.inputs.last_contact_ms) for c in cs] == [
        (True, None), (True, None), (True, None), (False, T0 + 240), (True, None)]


def test_expand_rejects_changes_out_of_time_order() -> None:
    with pytest.raises(ValueError, match=r"changes\[1\]"):
        expand([(T0 + 5, {}), (T0, {})], T0, T0 + 100, 100)


def test_replay_continues_from_a_given_state() -> None:
    cycles, writes, _ = agent_run([3.0] * 30)
    head = replay(CONTRACT, cycles[:10])
    tail = replay(CONTRACT, cycles[10:], from_state=head.final_state)
    assert head.writes + tail.writes == writes
    assert [e.kind for e in head.events][:2] == [EventKind.STARTED, EventKind.STEP_ENTERED]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.sampled_from([1.0, 3.9, 4.0, 4.5, 7.0, None])),
                min_size=1, max_size=8))
def test_expanding_changes_gives_back_the_per_cycle_view(runs: list[tuple[int, float | None]]) -> None:
    levels = [level for n, level in runs for _ in range(n)]
    per_cycle, changes, last = [], [], object()
    for k, level in enumerate(levels):
        now = T0 + k * 100
        r = good(level, now) if level is not None else \
            Reading(value=None, quality=Quality.BAD, ts_ms=now, reason="timeout")
        if level != last:
            changes.append((now, {"level": r}))
            last = level
        per_cycle.append(r)
    cs = list(expand(changes, T0, T0 + len(levels) * 100, 100))
    expected = [r if r.quality is Quality.GOOD else next(
        ch["level"] for ts, ch in reversed(changes) if ts <= T0 + k * 100)
        for k, r in enumerate(per_cycle)]
    assert [c.inputs.readings["level"] for c in cs] == expected
