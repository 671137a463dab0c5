"""What one scan cycle journals: typed records whose bodies are, byte for byte, the maps the agent
wrote before the records existed (the hash chain of existing journals depends on it)."""
from __future__ import annotations

from contracts.chain import GENESIS, EntryKind, entry_hash
from contracts.engine_state import EngineState, Event, EventKind, Mode, StepResult, Write
from contracts.inputs import Command, CommandKind, Inputs, Quality, Reading

from agent.faults import FaultWords
from agent.cycle_items import cycle_items, fault_item, keyframe_item, overrun_item

NOW = 1_795_500_000_000
STATE = EngineState(mode=Mode.SAFE, step_index=0, outputs=(("pump", 0),), targets=(("pump", 0),))
LEVEL = Reading(value=3.5, quality=Quality.GOOD, ts_ms=NOW)
FLOW = Reading(value=None, quality=Quality.BAD, ts_ms=NOW, reason="timeout")


def test_a_cycle_journals_connectivity_commands_inputs_events_then_writes_as_before() -> None:
    command = Command(kind=CommandKind.RESUME, id="r1")
    inputs = Inputs(readings={"level": LEVEL}, online=False, last_contact_ms=NOW - 5,
                    commands=(command,))
    events = (Event(kind=EventKind.GUARD_TRIP, ts_ms=NOW, fields=(("point", "level"),
                                                                  ("reason", "stale"))),
              Event(kind=EventKind.SAFE_STATE, ts_ms=NOW, fields=(("reason", "stale"),)),
              Event(kind=EventKind.COMMAND_REFUSED, ts_ms=NOW, fields=(("command", "r1"),)),
              Event(kind=EventKind.STEP_ENTERED, ts_ms=NOW, fields=(("step", "fill"), ("index", 0))),
              Event(kind=EventKind.WRITE_CLAMPED, ts_ms=NOW, fields=(("point", "pump"),)))
    result = StepResult(state=STATE, writes=(Write(point="pump", value=0),), events=events)
    items = cycle_items(NOW, {"level": LEVEL, "flow": FLOW}, inputs, result,
                        connectivity_changed=True)
    assert items == [
        (EntryKind.CONNECTIVITY, {"online": False, "last_contact_ms": NOW - 5}, NOW),
        (EntryKind.COMMAND, {"kind": "resume", "id": "r1", "point": None, "value": None}, NOW),
        (EntryKind.INPUT, {"values": {"level": [3.5, "good", None],
                                      "flow": [None, "bad", "timeout"]}}, NOW),
        (EntryKind.TRIP, {"event": "guard_trip", "point": "level", "reason": "stale"}, NOW),
        (EntryKind.TRIP, {"event": "safe_state", "reason": "stale"}, NOW),
        (EntryKind.REFUSAL, {"event": "command_refused", "command": "r1"}, NOW),
        (EntryKind.STEP, {"event": "step_entered", "step": "fill", "index": 0}, NOW),
        (EntryKind.EVENT, {"event": "write_clamped", "point": "pump"}, NOW),
        (EntryKind.OUTPUT, {"writes": {"pump": 0}}, NOW),
    ]
    assert all(type(kind) is EntryKind and type(body["event"]) is str
               for kind, body, _ in items if "event" in body)  # plain strings on the wire


def test_a_quiet_cycle_journals_nothing() -> None:
    result = StepResult(state=STATE, writes=(), events=())
    assert cycle_items(NOW, {}, Inputs(), result, connectivity_changed=False) == []


def test_keyframe_overrun_and_fault_bodies_are_the_maps_they_always_were() -> None:
    result = StepResult(state=STATE, writes=(), events=())
    kind, body, ts = keyframe_item(NOW, {"level": LEVEL}, result, "fill")
    assert (kind, ts) == (EntryKind.KEYFRAME, NOW)
    assert body == {"values": {"level": [3.5, "good", None]}, "outputs": {"pump": 0},
                    "mode": "safe", "step": "fill"} and type(body["mode"]) is str
    assert overrun_item(NOW, 250, 2, NOW + 300) == (
        EntryKind.OVERRUN, {"late_ms": 250, "skipped": 2, "resume_ms": NOW + 300}, NOW)
    assert fault_item(NOW, "read", None, FaultWords(reason="timeout")) == (
        EntryKind.ADAPTER_FAULT, {"category": "adapters", "what": "read", "reason": "timeout",
                                  "point": None}, NOW)
    words = "exception 2 (illegal data address) at holding 63"
    assert fault_item(NOW, "write", "pump", FaultWords(reason=words, code=2)) == (
        EntryKind.ADAPTER_FAULT, {"category": "adapters", "what": "write", "reason": words,
                                  "point": "pump", "code": 2, "v": 2}, NOW)


def test_the_hash_of_a_cycle_body_is_pinned() -> None:
    """A change of how a body is built that changed its bytes would break every stored chain."""
    kind, body, ts = overrun_item(NOW, 250, 2, NOW + 300)
    assert entry_hash(GENESIS, 1, ts, kind, body).hex()[:16] == PINNED


PINNED = "840b7e4ee9c6567d"
"""Computed with agent/record.py before the typed records replaced it."""
