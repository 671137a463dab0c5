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
  event existed), `Diverged` (the agent's `model_divergence`: the process does not follow the
  contract's `expect` model while a write is commanded; the `model` policy applies, default hold),
  `FellBack` (the agent's `rollout_fallback`, interface I2: the contract tripped inside its health
  window and the agent runs its known-good contract again, held: hub/fallback.py).
A `command_refused` of a resume that an agent's own `resume_refused` in the same batch reports
already is an echo and means nothing (it is not counted twice). Bodies are read through
contracts/journal_events.py's typed records, decoded here from the stored rows (strictly: the
bodies are the agent's bytes) and only for the kinds in READ; a body that does not decode is
`Unreadable` (the peer's fault: logged and counted, and sync carries on — the entry is stored and
acked already).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.chain import EntryKind
from contracts.chain_rows import Row, entry_of
from contracts.errors import EncodingError
from contracts.engine_modes import mode_after
from contracts.engine_state import Mode
from contracts.inputs import CommandKind
from contracts.journal_events import (AgentEvent, BodyError, BootBody, EventBody, EventKind,
                                      Occurrence, RefusalBody, StepBody, TripBody, decode_entry)
from contracts.limits import quote
from contracts.rollout_health import ROLLOUT_FALLBACK
from hub.alarms import AlarmKind, detail_of, journal_alarm
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
class Unreadable:
    seq: int
    error: str


@dataclass(frozen=True, kw_only=True)
class ResumeRefused:
    seq: int
    cause: str
    command: Any


@dataclass(frozen=True, kw_only=True)
class Diverged:
    seq: int
    detail: str


@dataclass(frozen=True, kw_only=True)
class FellBack:
    seq: int
    contract: str | None  # the tag: the tripped contract's template id
    fields: Mapping[str, Any]  # deployment, known_good, fallback, cause, cause_seq


Outcome = (BootNamed | EntryAlarms | Finished | Tripped | Resumed | ResumeRefused | Diverged
           | FellBack | Unreadable)

READ = frozenset({EntryKind.BOOT, EntryKind.STEP, EntryKind.TRIP, EntryKind.REFUSAL,
                  EntryKind.EVENT})
"""The entry kinds whose bodies say anything about a contract or an alarm (the rest are not
decoded here: ingest must keep up with 100,000 entries/s)."""

_FINISHES = {EventKind.COMPLETED: ContractEvent.COMPLETE, EventKind.FAILED: ContractEvent.FAIL}
_LATCHING = (EventKind.GUARD_TRIP, EventKind.ENGINE_ERROR)


def outcomes(entries: Sequence[Row]) -> list[Outcome]:
    """What newly stored rows (seq order) mean, in the order the sync side applies them."""
    found: list[Outcome] = []
    read: list[tuple[int, object]] = []
    for e in entries:
        if e.kind not in READ:
            continue  # inputs, outputs, keyframes, ...: nothing for a contract's lifecycle
        try:
            read.append((e.seq, decode_entry(entry_of(e))))
        except EncodingError as exc:  # BodyError, or a body that is not a CBOR map
            found.append(Unreadable(seq=e.seq, error=str(exc)))
    echoed = echoed_refusals([body for _, body in read if isinstance(body, _OCCURRENCES)])
    for seq, body in read:
        if isinstance(body, BootBody):
            found.append(BootNamed(seq=seq, contract=body.contract, version=body.version))
        elif isinstance(body, _OCCURRENCES) and not is_echo(body, echoed):
            found.extend(occurrence_outcomes(seq, body))
    return sorted(found, key=lambda o: o.seq)  # stable: an entry's outcomes keep their order


_OCCURRENCES = (StepBody, TripBody, RefusalBody, EventBody)


def occurrence_outcomes(seq: int, o: Occurrence) -> list[Outcome]:
    """One event's outcomes: its alarms, then its lifecycle outcome if it has one."""
    lifecycle = _lifecycle(seq, o)
    return [_alarms(seq, o), lifecycle] if lifecycle is not None else [_alarms(seq, o)]


def _alarms(seq: int, o: Occurrence) -> EntryAlarms:
    body = o.to_body()
    raise_kind, clear = journal_alarm(body)
    return EntryAlarms(seq=seq, event=str(o.event), raise_=raise_kind, clear=clear,
                       detail=f"seq {seq}: {detail_of(str(o.event), body)}")


def _lifecycle(seq: int, o: Occurrence) -> Outcome | None:
    if isinstance(o, StepBody) and o.event in _FINISHES:
        return Finished(seq=seq, event=_FINISHES[EventKind(o.event)], why=str(o.event),
                        reason=str(o.get("reason") or o.get("step")))
    if latches(o):
        return Tripped(seq=seq, cause=trip_cause(o))
    if o.event == EventKind.RESUMED:
        return Resumed(seq=seq, reason=o.get("reason"), command=o.get("command"))
    if resume_refusal(o):
        return ResumeRefused(seq=seq, cause=quote(o.get("cause") or o.get("reason"), bare=True),
                             command=o.get("command"))
    if o.event == AgentEvent.MODEL_DIVERGENCE:
        return Diverged(seq=seq, detail=detail_of(str(o.event), o.to_body()))
    if isinstance(o, EventBody) and o.event == ROLLOUT_FALLBACK:
        return FellBack(seq=seq, contract=o.contract, fields=o.fields)
    return None


def latches(o: Occurrence) -> bool:
    """An event that latches the engine in safe_state (a trip of any cause)."""
    if not isinstance(o, TripBody):
        return False
    if o.event == EventKind.AUTONOMY_EXHAUSTED:
        return mode_after(o.event, o.get("then")) is Mode.SAFE  # the engine's mode table says
    return o.event in _LATCHING


def trip_cause(o: Occurrence) -> str:
    reason = o.get("reason") or str(o.event)
    point = o.get("point")
    return quote(f"{reason}:{point}" if point else reason, bare=True)


def _refuses_resume(o: Occurrence) -> bool:
    return o.event == EventKind.COMMAND_REFUSED and o.get("kind") == CommandKind.RESUME


def resume_refusal(o: Occurrence) -> bool:
    """The agent refused a resume (its own event, or the engine's refusal of the command)."""
    return o.event == EventKind.RESUME_REFUSED or _refuses_resume(o)


def echoed_refusals(occurrences: Sequence[Occurrence]) -> set[Any]:
    """Command ids the agent refused with a `resume_refused` event in these entries: the engine's
    `command_refused` of the same command says the same thing and is not counted twice."""
    return {o.get("command") for o in occurrences if o.event == EventKind.RESUME_REFUSED}


def is_echo(o: Occurrence, echoed: set[Any]) -> bool:
    return _refuses_resume(o) and o.get("command") in echoed
