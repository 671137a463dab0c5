"""Reconciliation — pure: what the device actually did against what the hub projected.

When a device's journal has caught up after it was offline, its actual history replaces the
projection, and the difference is measured on five axes, each compared with the contract's
`tolerance`:
  step     the step the device is in now vs the projected one;
  timing   for each step both entered, |actual - projected| entry time (tolerance.timing_s);
  outputs  final commanded outputs (exact for bools, half a scale step for numbers);
  values   modelled inputs at the end (tolerance.values per point);
  faults   guard trips, adapter faults and refusals (the projection has none);
  outcome  the contract's mode (running, completed, failed, safe, ...).
The report also keeps the outage's value trajectories, projected and actual, sampled for the
fleet view's chart (hub/trajectory.py; the fold samples as it goes). A divergent report carries a failure category for the planner's policy (runtime, adapters,
network, config, trip). A device that ended the outage latched in safe_state is `trip`, whatever
tripped it: its default policy is hold, because a re-issue would clear the latch.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.chain import Entry, EntryKind, checked_entry
from contracts.chain_rows import Row
from contracts.codec import loads_maps
from contracts.engine_modes import mode_after
from contracts.engine_state import EventKind, Mode
from contracts.guards import TripReason
from contracts.inputs import reading_from_wire
from contracts.journal_events import (
    AdapterFaultBody, BodyError, EventBody, InputBody, KeyframeBody, Occurrence, OutputBody,
    CONTRACT_TAG, TAGGED_VERSION, VERSION_KEY, RefusalBody, StepBody, TripBody, WireReading,
    belongs_to, decode_entry,
)
from contracts.projection import Projection
from contracts.schema import Contract
from contracts.types import EpochMs, Value
from hub.policy import FailureCategory as Category
from hub.trajectory import Trail, trajectory


_TRIP_CATEGORY = {
    TripReason.STALE: Category.ADAPTERS, TripReason.BAD_QUALITY: Category.ADAPTERS,
    TripReason.OUT_OF_RANGE: Category.ADAPTERS,
    "frozen": Category.ADAPTERS, "spike": Category.ADAPTERS,  # the agent's reading guards' reasons
    TripReason.AUTONOMY: Category.NETWORK, TripReason.ENGINE_ERROR: Category.RUNTIME,
    TripReason.INTERLOCK: Category.RUNTIME,  # another contract's trip, decided on the agent
}


@dataclass(frozen=True, kw_only=True)
class StepMark:
    step: str
    ts_ms: EpochMs


@dataclass(kw_only=True)
class Actual:
    steps: list[StepMark] = field(default_factory=list)
    step: str | None = None  # the latest step known: entered, or named by a keyframe
    mode: Mode | None = None
    outputs: dict[str, Value] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    trip: str | None = None
    unreadable: int = 0  # entries whose body does not decode (device input): passed by
    trail: Trail = field(default_factory=Trail)  # values sampled for the chart (hub/trajectory.py)


_TRIP_EVENTS: dict[EventKind, TripReason | None] = {
    EventKind.GUARD_TRIP: None, EventKind.AUTONOMY_EXHAUSTED: TripReason.AUTONOMY,
    EventKind.ENGINE_ERROR: TripReason.ENGINE_ERROR}
"""Trip events and the reason to use when the body carries none: AUTONOMY_EXHAUSTED has no
`reason` field, and the budget running out is a network failure."""


def actual_from_entries(entries: Sequence[Entry]) -> Actual:
    """Fold journal entries (seq order) into the device's actual history."""
    return fold_entries(Actual(), entries)


def fold_entries(a: Actual, entries: Sequence[Entry]) -> Actual:
    """Fold more entries (seq order, following those already folded) into `a`; returns it. A
    left fold: folding a journal batch by batch gives what folding it at once gives."""
    trail = a.trail
    for e in entries:
        _fold(a, e)
        if e.ts_ms >= trail.next_ms:
            trail.take(e.ts_ms, a.values)
    return a


def fold_rows(a: Actual, rows: Sequence[Row], contract: str | None = None) -> Actual:
    """`fold_entries` over stored rows (hub/store/journal.py `stored`), only those that can be
    part of `contract`'s run when one is named (journal_events.belongs_to: several contracts per
    agent). The bodies are decoded strictly here, where they are read (all of a batch through one
    decoder, contracts.codec.loads_maps); one that does not decode is counted as unreadable. An
    all-good INPUT row, most of a day's, is folded from its body without an Entry."""
    values, trail, input_kind, tag_key = a.values, a.trail, EntryKind.INPUT, CONTRACT_TAG
    for row, body in zip(rows, loads_maps([r.body for r in rows]), strict=True):
        if body is None:
            a.unreadable += 1
            continue
        good = _good_inputs(body) if row.kind is input_kind else None
        if good is not None:  # its tag, if any, is a str (belongs_to of an INPUT row)
            tag = body.get(tag_key)
            if contract is not None and tag is not None and tag != contract:
                continue
            values.update(good)
        else:
            e = checked_entry(row.seq, row.ts_ms, row.kind, body, row.prev_hash, row.hash)
            if contract is not None and not belongs_to(e, contract):
                continue
            _fold(a, e)
        if row.ts_ms >= trail.next_ms:
            trail.take(row.ts_ms, values)
    return a


def _good_inputs(body: dict[str, Any]) -> dict[str, Any] | None:
    """name -> value of an INPUT body `{"values": {name: [value, "good", None]}}` (with or without
    its contract tag) whose readings are all good — what `_fold` takes from it, without building
    the typed record (most of a day's 86,400 entries). None for any other body: the full decode
    decides."""
    tagged = CONTRACT_TAG in body  # a tagged body is of version 2 (contracts/journal_events.py)
    if len(body) != 1 + 2 * tagged or (tagged and (type(body[CONTRACT_TAG]) is not str
                                                   or body.get(VERSION_KEY) != TAGGED_VERSION)):
        return None
    values = body.get("values")
    if type(values) is not dict:
        return None
    out = {}
    for name, w in values.items():
        if (type(name) is not str or type(w) is not list or len(w) != 3 or w[1] != "good"
                or w[0] is None):
            return None
        out[name] = w[0]
    return out


def _fold(a: Actual, e: Entry) -> None:
    try:
        body = decode_entry(e)
    except BodyError:
        a.unreadable += 1  # a malformed body is no fact about the device's run
        return
    if isinstance(body, (InputBody, KeyframeBody)):  # most entries: tested first
        for name, wire in body.values.items():
            if _good(wire, e.ts_ms):
                a.values[name] = wire[0]
        if isinstance(body, KeyframeBody):
            _fold_keyframe(a, body)
    elif isinstance(body, (StepBody, TripBody, EventBody)):
        _fold_occurrence(a, body, e.ts_ms)
    elif isinstance(body, OutputBody):
        a.outputs.update(body.writes)
    elif isinstance(body, AdapterFaultBody):
        a.faults.append({"ts_ms": e.ts_ms, "kind": e.kind.value, "reason": str(body.reason or None)})
    elif isinstance(body, RefusalBody):
        a.faults.append({"ts_ms": e.ts_ms, "kind": e.kind.value,
                         "reason": str(body.get("reason") or body.event)})


def _fold_occurrence(a: Actual, body: Occurrence, ts_ms: EpochMs) -> None:
    event = body.event
    if event == EventKind.STEP_ENTERED:
        a.step = str(body.get("step"))
        a.steps.append(StepMark(step=a.step, ts_ms=ts_ms))
    # offline.then: hold pauses the steps instead of going safe (the mode table says which)
    a.mode = mode_after(event, body.get("then")) or a.mode
    if isinstance(body, TripBody) and event in _TRIP_EVENTS:
        a.trip = str(body.get("reason") or _TRIP_EVENTS[EventKind(event)] or event)
        a.faults.append({"ts_ms": ts_ms, "kind": str(event), "reason": a.trip})


def _good(wire: WireReading, ts_ms: EpochMs) -> bool:
    """`reading_from_wire(wire, ts_ms).good`, without building a Reading for the common good
    triple: a day of journal at 1 Hz is 86,400 of them. Anything else takes the full decode
    (which raises for a malformed one)."""
    if type(wire) is list and len(wire) == 3 and wire[1] == "good":
        return wire[0] is not None
    return reading_from_wire(wire, ts_ms).good


def _fold_keyframe(a: Actual, body: KeyframeBody) -> None:
    # A keyframe (once a minute) names the step and mode even when no step was entered during
    # the outage; without it a device stuck in one step would look like the projection.
    a.outputs.update(body.outputs)
    if body.step is not None:
        a.step = body.step
    a.mode = body.mode


@dataclass(frozen=True, kw_only=True)
class Report:
    contract: str
    version: int
    from_ms: EpochMs
    to_ms: EpochMs
    confidence: float
    step_projected: str | None
    step_actual: str | None
    outcome_projected: str | None
    outcome_actual: str | None
    timing: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]
    values: tuple[dict[str, Any], ...]
    faults: tuple[dict[str, Any], ...]
    divergent: bool
    reasons: tuple[str, ...]
    category: Category | None
    actual_step_index: int | None
    trajectory: tuple[dict[str, Any], ...] = ()  # projected and actual values (hub/trajectory.py)

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["category"] = self.category.value if self.category else None
        d["timing"], d["outputs"] = list(self.timing), list(self.outputs)
        d["values"], d["faults"], d["reasons"] = list(self.values), list(self.faults), list(self.reasons)
        d["trajectory"] = list(self.trajectory)
        return d


def _projected_at(projection: Projection, to_ms: EpochMs) -> Any:
    last = projection.points[0] if projection.points else None
    for p in projection.points:
        if p.ts_ms > to_ms:
            break
        last = p
    return last


def _projected_steps(projection: Projection, to_ms: EpochMs) -> list[StepMark]:
    return [StepMark(step=str(e.get("step")), ts_ms=e.ts_ms) for e in projection.transitions
            if e.kind is EventKind.STEP_ENTERED and e.ts_ms <= to_ms]


def _timing(contract: Contract, proj: list[StepMark], act: list[StepMark]) -> list[dict[str, Any]]:
    first_act = {m.step: m.ts_ms for m in reversed(act)}
    out = []
    for m in proj:
        if m.step in first_act:
            delta = (first_act[m.step] - m.ts_ms) / 1000.0
            out.append({"step": m.step, "projected_ms": m.ts_ms, "actual_ms": first_act[m.step],
                        "delta_s": delta})
    return out


def _close(contract: Contract, name: str, a: Value | None, b: Value | None) -> bool:
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a == b
    scale = abs(contract.point(name).scale) if contract.has_point(name) else 0.0
    return abs(float(a) - float(b)) <= scale / 2 + 1e-9


def reconcile(contract: Contract, projection: Projection, entries: Sequence[Entry],
              from_ms: EpochMs, to_ms: EpochMs) -> Report:
    """Compare `entries` (the device's journal for [from_ms, to_ms]) with `projection`."""
    return reconcile_actual(contract, projection, actual_from_entries(entries), from_ms, to_ms)


def reconcile_actual(contract: Contract, projection: Projection, actual: Actual,
                     from_ms: EpochMs, to_ms: EpochMs) -> Report:
    """`reconcile` for entries already folded (`fold_entries`) into `actual`."""
    at = _projected_at(projection, to_ms)
    p_step = at.step if at else None
    a_step = actual.step if actual.step is not None else p_step
    p_mode = at.mode if at else None
    a_mode = actual.mode or p_mode
    timing = _timing(contract, _projected_steps(projection, to_ms), actual.steps)
    p_outputs: Mapping[str, Value] = dict(at.outputs) if at else {}
    outputs = [{"point": n, "projected": v, "actual": actual.outputs.get(n)}
               for n, v in p_outputs.items()
               if n in actual.outputs and not _close(contract, n, v, actual.outputs.get(n))]
    tol = dict(contract.tolerance.values)
    p_values: Mapping[str, Value] = dict(at.modelled) if at else {}
    values = [{"point": n, "projected": v, "actual": actual.values[n], "tolerance": tol[n]}
              for n, v in p_values.items()
              if n in tol and n in actual.values and not isinstance(v, bool)
              and abs(float(v) - float(actual.values[n])) > tol[n]]
    reasons = _reasons(contract, p_step, a_step, p_mode, a_mode, timing, values, actual)
    return Report(
        contract=contract.contract, version=contract.version, from_ms=from_ms, to_ms=to_ms,
        confidence=projection.confidence, step_projected=p_step, step_actual=a_step,
        outcome_projected=p_mode, outcome_actual=a_mode, timing=tuple(timing),
        outputs=tuple(outputs), values=tuple(values), faults=tuple(actual.faults),
        divergent=bool(reasons), reasons=tuple(reasons),
        category=_category(actual, a_mode) if reasons else None,
        actual_step_index=_index(contract, a_step),
        trajectory=tuple(trajectory(contract, projection, actual.trail, actual.values,
                                    from_ms, to_ms)))


def _reasons(contract: Contract, p_step: str | None, a_step: str | None, p_mode: str | None,
             a_mode: str | None, timing: list[dict[str, Any]], values: list[dict[str, Any]],
             actual: Actual) -> list[str]:
    reasons = []
    if p_mode != a_mode:
        reasons.append(f"outcome: projected {p_mode}, actual {a_mode}")
    if p_step != a_step and a_mode == Mode.RUNNING:
        reasons.append(f"step: projected {p_step}, actual {a_step}")
    late = [t for t in timing if abs(t["delta_s"]) > contract.tolerance.timing_s]
    if late:
        worst = max(late, key=lambda t: abs(t["delta_s"]))
        reasons.append(f"timing: step {worst['step']} off by {worst['delta_s']:.1f} s "
                       f"(tolerance {contract.tolerance.timing_s:g} s)")
    reasons.extend(f"value: {v['point']} projected {v['projected']:.3g}, actual "
                   f"{v['actual']:.3g} (tolerance {v['tolerance']:g})" for v in values)
    if actual.trip:
        reasons.append(f"trip: {actual.trip}")
    return reasons


def _category(actual: Actual, mode: str | None) -> Category:
    if actual.trip and mode == Mode.SAFE:
        return Category.TRIP  # still latched: only an operator (or an explicit policy) resumes
    if actual.trip:
        head = actual.trip.split(":")[0]
        return _TRIP_CATEGORY.get(head, Category.ADAPTERS if "quality" in head else Category.RUNTIME)
    if any(f["kind"] == EntryKind.ADAPTER_FAULT for f in actual.faults):
        return Category.ADAPTERS
    return Category.RUNTIME


def _index(contract: Contract, step: str | None) -> int | None:
    return next((i for i, s in enumerate(contract.steps) if s.name == step), None)
