"""Journal entries → what they mean for the device's contract and alarms — pure.

The sync side reads each batch of newly stored entries, in seq order, as a list of outcomes, and
only then applies them (hub/sync/journal.py). Per entry, in this order:
- `BootNamed`: a BOOT entry names the contract whose entries follow (kept only if the hub issued
  it to this device: a claim);
- `EntryAlarms`: alarms the entry raises or clears (hub/alarms.py's tables);
- at most one lifecycle outcome:
  `Finished` (a step entry `completed` / `failed` → COMPLETE / FAIL),
  `Tripped` (the entry latched safe_state: a guard trip, an engine error, an autonomy budget that
  ran out with `then: safe_state`; the trip policy applies, default hold: DESIGN invariant 9),
  `Resumed` (the agent resumed the contract), `ResumeRefused` (it refused a resume because the
  cause persists: `resume_refused`, or the engine's `command_refused` of a resume before that
  event existed).
A `command_refused` of a resume that an agent's own `resume_refused` in the same batch reports
already is an echo and means nothing (it is not counted twice).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.chain import Entry, EntryKind
from hub.alarms import AlarmKind, detail_of, journal_alarm, quote
from hub.states import ContractEvent


@dataclass(frozen=True, kw_only=True)
class BootNamed:
    seq: int
    contract: str
    version: int


@dataclass(frozen=True, kw_only=True)
class EntryAlarms:
    seq: int
    event: str
    raise_: AlarmKind | None
    clear: tuple[AlarmKind, ...]
    detail: str


@dataclass(frozen=True, kw_only=True)
class Finished:
    seq: int
    event: ContractEvent  # COMPLETE or FAIL
    why: str              # the journal's event name, for the transition's reason
    reason: str           # what failed, for the planner


@dataclass(frozen=True, kw_only=True)
class Tripped:
    seq: int
    cause: str


@dataclass(frozen=True, kw_only=True)
class Resumed:
    seq: int
    reason: Any
    command: Any


@dataclass(frozen=True, kw_only=True)
class ResumeRefused:
    seq: int
    cause: str
    command: Any


Outcome = BootNamed | EntryAlarms | Finished | Tripped | Resumed | ResumeRefused

_FINISHES = {"completed": ContractEvent.COMPLETE, "failed": ContractEvent.FAIL}


def outcomes(entries: Sequence[Entry]) -> list[Outcome]:
    """What `entries` (seq order) mean, in the order the sync side applies them."""
    echoed = echoed_refusals(entries)
    found: list[Outcome] = []
    for e in entries:
        if not is_echo(e, echoed):
            found.extend(entry_outcomes(e))
    return found


def entry_outcomes(e: Entry) -> list[Outcome]:
    """One entry's outcomes: a BOOT's contract, its alarms, then its lifecycle outcome if any."""
    body, found = e.body, list[Outcome]()
    if e.kind is EntryKind.BOOT and body.get("contract") and body.get("version"):
        found.append(BootNamed(seq=e.seq, contract=str(body["contract"]),
                               version=int(body["version"])))
    found.append(_alarms(e))
    lifecycle = _lifecycle(e)
    return [*found, lifecycle] if lifecycle is not None else found


def _alarms(e: Entry) -> EntryAlarms:
    raise_kind, clear = journal_alarm(e.body)
    event = str(e.body.get("event"))
    return EntryAlarms(seq=e.seq, event=event, raise_=raise_kind, clear=clear,
                       detail=f"seq {e.seq}: {detail_of(event, e.body)}")


def _lifecycle(e: Entry) -> Outcome | None:
    body = e.body
    event = body.get("event")
    if event in _FINISHES and e.kind is EntryKind.STEP:
        return Finished(seq=e.seq, event=_FINISHES[event], why=str(event),
                        reason=str(body.get("reason") or body.get("step")))
    if latches(e):
        return Tripped(seq=e.seq, cause=trip_cause(body))
    if event == "resumed":
        return Resumed(seq=e.seq, reason=body.get("reason"), command=body.get("command"))
    if resume_refusal(e):
        return ResumeRefused(seq=e.seq, cause=quote(body.get("cause") or body.get("reason")),
                             command=body.get("command"))
    return None


def latches(e: Entry) -> bool:
    """A journal entry that latches the engine in safe_state (a trip of any cause)."""
    event = e.body.get("event")
    if e.kind is not EntryKind.TRIP:
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


def echoed_refusals(entries: Sequence[Entry]) -> set[Any]:
    """Command ids the agent refused with a `resume_refused` event in these entries: the engine's
    `command_refused` of the same command says the same thing and is not counted twice."""
    return {e.body.get("command") for e in entries if e.body.get("event") == "resume_refused"}


def is_echo(e: Entry, echoed: set[Any]) -> bool:
    return (e.body.get("event") == "command_refused" and e.body.get("kind") == "resume"
            and e.body.get("command") in echoed)
