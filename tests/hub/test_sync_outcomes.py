"""Journal entries → outcomes (hub/sync/outcomes.py), alone: typed bodies in, outcomes out."""
from __future__ import annotations

from typing import Any

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.engine_state import EngineState, Mode
from contracts.journal_events import BootBody, encode
from hub.alarms import AlarmKind
from hub.states import ContractEvent
from hub.sync.outcomes import (BootNamed, EntryAlarms, Finished, Resumed, ResumeRefused, Tripped,
                               Unreadable, outcomes)


def _entries(*bodies: tuple[EntryKind, dict[str, Any]]) -> list[Entry]:
    out, prev = [], GENESIS
    for seq, (kind, body) in enumerate(bodies, start=1):
        out.append(make_entry(prev, seq, 1_000 + seq, kind, body))
        prev = out[-1].hash
    return out


BOOT = encode(BootBody(boot_id="b" * 32, t0_ms=1, period_ms=100, contract="tank-fill", version=3,
                       hash="h", state=EngineState(mode=Mode.RUNNING), resumed=False))


def test_a_boot_names_its_contract_and_inputs_mean_nothing() -> None:
    found = outcomes(_entries((EntryKind.INPUT, {"values": {"level": [1.0, "good", None]}}),
                              (EntryKind.BOOT, BOOT)))
    assert found == [BootNamed(seq=2, contract="tank-fill", version=3)]


def test_completed_and_failed_steps_finish_the_contract_with_their_reason() -> None:
    done, failed = outcomes(_entries(
        (EntryKind.STEP, {"event": "completed", "step": "hold"}),
        (EntryKind.STEP, {"event": "failed", "step": "fill", "reason": "timeout"})))[1::2]
    assert done == Finished(seq=1, event=ContractEvent.COMPLETE, why="completed", reason="hold")
    assert failed == Finished(seq=2, event=ContractEvent.FAIL, why="failed", reason="timeout")


def test_trips_latch_unless_the_autonomy_budget_says_hold() -> None:
    found = outcomes(_entries(
        (EntryKind.TRIP, {"event": "guard_trip", "reason": "stale", "point": "level"}),
        (EntryKind.TRIP, {"event": "autonomy_exhausted", "then": "hold"}),
        (EntryKind.TRIP, {"event": "engine_error", "reason": "boom"})))
    trips = [o for o in found if isinstance(o, Tripped)]
    assert trips == [Tripped(seq=1, cause="stale:level"), Tripped(seq=3, cause="boom")]
    alarms = [o for o in found if isinstance(o, EntryAlarms)]
    assert [a.raise_ for a in alarms] == [AlarmKind.GUARD_TRIP] * 3


def test_a_resume_and_a_refused_resume_counted_once_when_the_engine_echoes_it() -> None:
    found = outcomes(_entries(
        (EntryKind.REFUSAL, {"event": "command_refused", "command": "r1", "kind": "resume",
                             "reason": "stale"}),
        (EntryKind.REFUSAL, {"event": "resume_refused", "command": "r1", "cause": "stale:level"}),
        (EntryKind.REFUSAL, {"event": "command_refused", "command": "r2", "kind": "resume",
                             "reason": "held"}),
        (EntryKind.EVENT, {"event": "resumed", "command": "r3", "reason": "operator"})))
    assert [o for o in found if isinstance(o, ResumeRefused)] == [
        ResumeRefused(seq=2, cause="stale:level", command="r1"),
        ResumeRefused(seq=3, cause="held", command="r2")]
    assert [o for o in found if isinstance(o, Resumed)] == [
        Resumed(seq=4, reason="operator", command="r3")]
    assert all(o.seq != 1 for o in found)  # the echo means nothing


def test_an_entrys_outcomes_keep_seq_order_and_an_unreadable_body_is_named() -> None:
    found = outcomes(_entries((EntryKind.STEP, {"event": "failed", "step": "fill"}),
                              (EntryKind.BOOT, {"contract": "tank-fill", "version": 3}),
                              (EntryKind.EVENT, {"event": "second_writer", "point": "pump"})))
    assert [type(o) for o in found] == [EntryAlarms, Finished, Unreadable, EntryAlarms]
    unreadable = found[2]
    assert isinstance(unreadable, Unreadable) and "boot body" in unreadable.error
    assert found[3] == EntryAlarms(seq=3, event="second_writer", raise_=AlarmKind.SECOND_WRITER,
                                   clear=(), detail="seq 3: second_writer point=pump")
