"""Trips, resumes and refusals in a device's journal, and the live cache's record — pure.

The hub's sync side (hub/sync.py) asks these on every journal entry and telemetry message:
- `latches`: the entry put the engine in safe_state (a guard trip, an engine error, an autonomy
  budget that ran out with `then: safe_state`); the contract becomes `tripped` and the trip policy
  applies (default hold: DESIGN invariant 9);
- `resume_refusal`: the agent refused a resume because the cause persists (`resume_refused`, or
  the engine's `command_refused` of a resume before that event existed);
- `live_entry`: what the hub keeps of a telemetry message (interface 1's optional fields read
  with defaults, so an older agent's telemetry still works).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.chain import Entry
from contracts.types import EpochMs
from contracts.wire import Telemetry
from hub.alarms import quote


def live_entry(t: Telemetry, received_ms: EpochMs) -> dict[str, Any]:
    """The live cache's record of one telemetry message. `commanded`, `read_ms`, `safe` and `trip`
    are interface 1's optional fields (absent from an older agent's telemetry)."""
    return {"ts_ms": t.ts_ms, "received_ms": received_ms, "values": dict(t.values),
            "commanded": dict(getattr(t, "commanded", ())),
            "read_ms": dict(getattr(t, "read_ms", ())), "safe": getattr(t, "safe", None),
            "trip": getattr(t, "trip", None), "mode": t.mode, "step": t.step, "state": t.state,
            "seq": t.seq}


def latches(e: Entry) -> bool:
    """A journal entry that latches the engine in safe_state (a trip of any cause)."""
    event = e.body.get("event")
    if e.kind.value != "trip":
        return False
    if event == "autonomy_exhausted":
        return e.body.get("then") != "hold"
    return event in ("guard_trip", "engine_error")


def trip_cause(body: Mapping[str, Any]) -> str:
    reason = body.get("reason") or body.get("event")
    point = body.get("point")
    return quote(f"{reason}:{point}" if point else reason)


def resume_refusal(e: Entry) -> bool:
    event = e.body.get("event")
    return event == "resume_refused" or (event == "command_refused"
                                         and e.body.get("kind") == "resume")


def echoed_refusals(entries: list[Entry]) -> set[Any]:
    """Command ids the agent refused with a `resume_refused` event in these entries: the engine's
    `command_refused` of the same command says the same thing and is not counted twice."""
    return {e.body.get("command") for e in entries if e.body.get("event") == "resume_refused"}


def is_echo(e: Entry, echoed: set[Any]) -> bool:
    return (e.body.get("event") == "command_refused" and e.body.get("kind") == "resume"
            and e.body.get("command") in echoed)
