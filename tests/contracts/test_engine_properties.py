"""Engine properties under random readings, commands, connectivity and timing (hypothesis)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.codec import canonical_dumps, loads
from contracts.engine import Engine, EngineState, EventKind, StepResult
from contracts.inputs import Command, CommandKind, Inputs, Quality, Reading
from contracts.replay import Cycle, replay
from contracts.schema import Contract
from contracts.schema_parse import parse_contract

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
SETTINGS = settings(max_examples=200, deadline=None)


def contract() -> Contract:
    """Tank-fill, shrunk so random runs reach every mode: short steps, autonomy and validity,
    a point owned by another contract, and a step that moves on after its timeout."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "tank-fill.yaml").read_text())
    doc["valid_until"] = "2026-11-24T06:10:00Z"
    doc["offline"] = {"autonomy_s": 30, "then": "safe_state"}
    doc["points"].append({"name": "drain", "table": "coil", "address": 14, "direction": "write",
                          "owner": "other"})
    doc["steps"] = [
        {"name": "fill", "do": {"valve_open": True, "pump_speed": 1200},
         "until": "level >= 4.0 or high_level", "timeout_s": 20, "on_timeout": "next"},
        {"name": "trim", "do": {"pump_speed": 400}, "until": "step_time >= 3 and pump_speed < 500",
         "timeout_s": 15},
        {"name": "hold", "do": {"valve_open": False, "pump_speed": 0}, "for_s": 10},
    ]
    return parse_contract(doc)


CONTRACT = contract()
ENGINE = Engine(CONTRACT)
T0 = CONTRACT.valid_from
OWNED = {p.name: p for p in CONTRACT.write_points if p.owner == CONTRACT.contract}

commands = st.builds(
    Command, kind=st.sampled_from([*[CommandKind.WRITE] * 4, *[CommandKind.RESUME] * 4,
                                  CommandKind.HOLD, CommandKind.HOLD, CommandKind.ABORT]), id=st.just("c"),
    point=st.sampled_from(["pump_speed", "valve_open", "level", "drain", "nope", None]),
    value=st.one_of(st.sampled_from([None, True, False, -1, 0, 1500, 1501, 5000, -0.5]),
                    st.floats(-10, 2000, allow_nan=False)))


HEALTH = [("good", 0)] * 30 + [("good", 100), ("good", 2000), ("good", 2100), ("bad", 0), ("missing", 0)]
"""(quality, age in ms): mostly fresh and good, sometimes just fresh enough, stale, bad or absent."""
LINKS = [(True, None)] * 12 + [(False, 0), (False, 10_000), (False, 30_000), (False, 60_000)]
"""(online, ms since the last hub contact when offline)."""


def _reading(health: tuple[str, int], value: Any, now: int) -> Reading | None:
    kind, age = health
    if kind == "missing":
        return None
    bad = kind == "bad"
    return Reading(value=value, quality=Quality.BAD if bad else Quality.GOOD, ts_ms=now - age,
                   reason="timeout" if bad else None)


step_spec = st.tuples(
    st.sampled_from([100, 100, 100, 50, 1000, 7000, 40_000]),
    st.sampled_from(HEALTH), st.one_of(*[st.floats(0, 6)] * 4, st.floats(-1, 7)),
    st.sampled_from(HEALTH), st.sampled_from([False, False, False, True]),
    st.sampled_from(LINKS), st.one_of(*[st.just(())] * 8,
                                      st.lists(commands, max_size=2).map(tuple)))


@st.composite
def cycles(draw: st.DrawFn) -> list[Cycle]:
    now, out = T0 - 500, []
    for dt, lh, lv, hh, hv, (online, since), cmds in draw(st.lists(step_spec, min_size=10,
                                                                      max_size=60)):
        now += dt
        rs = {"level": _reading(lh, lv, now), "high_level": _reading(hh, hv, now)}
        out.append(Cycle(now_ms=now, inputs=Inputs(
            readings={k: v for k, v in rs.items() if v is not None}, online=online,
            last_contact_ms=None if since is None else now - since, commands=cmds)))
    return out


@dataclass
class Trace:
    results: list[StepResult]

    @property
    def final(self) -> EngineState:
        return self.results[-1].state


def run(cs: list[Cycle], state: EngineState | None = None) -> Trace:
    state = state if state is not None else ENGINE.initial_state()
    results = []
    for c in cs:
        r = ENGINE.step(state, c.inputs, c.now_ms)
        state = r.state
        results.append(r)
    return Trace(results)


@SETTINGS
@given(cycles())
def test_no_write_outside_owned_points_or_their_limits_and_no_engine_error(cs: list[Cycle]) -> None:
    for r in run(cs).results:
        assert all(e.kind is not EventKind.ENGINE_ERROR for e in r.events), r.events
        for w in r.writes:
            p = OWNED[w.point]
            if p.limits is not None:
                assert isinstance(w.value, (int, float)) and not isinstance(w.value, bool)
                assert p.limits[0] <= w.value <= p.limits[1]
            else:
                assert isinstance(w.value, bool)


@SETTINGS
@given(cycles())
def test_same_inputs_give_the_same_outputs(cs: list[Cycle]) -> None:
    assert run(cs).results == run(cs).results


@SETTINGS
@given(cycles())
def test_replay_of_a_recorded_run_equals_the_run(cs: list[Cycle]) -> None:
    trace = run(cs)
    replayed = replay(CONTRACT, cs)
    assert replayed.writes == [(c.now_ms, w) for c, r in zip(cs, trace.results) for w in r.writes]
    assert replayed.events == [e for r in trace.results for e in r.events]
    assert replayed.final_state == trace.final


@SETTINGS
@given(cycles(), st.data())
def test_state_restored_mid_run_continues_like_an_uninterrupted_run(cs: list[Cycle],
                                                                     data: st.DataObject) -> None:
    cut = data.draw(st.integers(1, len(cs)))
    whole = run(cs)
    head = run(cs[:cut])
    restored = EngineState.from_mapping(loads(canonical_dumps(head.final.to_mapping())))
    assert restored == head.final
    tail = run(cs[cut:], restored).results if cut < len(cs) else []
    assert head.results + tail == whole.results
