"""When a contract pushed by a deployment falls back to its known-good contract — the rules, pure.

A contract whose `rollout` names a `known_good` hash (contracts/schema_rollout.py) is on probation
for `health_window_ms` from its first BOOT on this device (the BOOT entry's time; a restart's
resumed BOOT does not reopen it: the window is persisted, agent/fallback.py). If, within it, its
segment journals one of CAUSES, the agent re-installs the known-good contract by itself, hub or
not, and journals EVENT `rollout_fallback` (I2, tagged with the tripped contract):
{deployment, known_good, fallback ("name@version" of the known-good), cause, cause_seq}.

Rules:
- Causes are the device's own evidence: a guard trip (TRIP `guard_trip`; one with reason
  `interlock` is another contract's trip, which is that contract's evidence, not this one's), the
  offline autonomy running out (`autonomy_exhausted`), an engine fault (`engine_error`), a second
  writer on an owned point (`second_writer`), the process not following `expect`
  (`model_divergence`), and a safe state still unconfirmed a scan after it was demanded
  (`safe_unconfirmed` with attempts >= 2: the keeper journals the first attempt of every episode,
  including the one an ordinary trip or completion opens and confirms in the same cycle).
- The first cause within the window decides; an entry after the window (ts > boot + window) never
  does, and the window is then closed for good.
- The known-good contract starts latched in SAFE (trip `rollout_fallback`), outputs at its own
  safe state, which the agent asserts and confirms by read-back like any safe state (invariant 8).
  Only an operator's RESUME runs it (invariant 9): automation never clears the latch.
- A contract installed by a fallback never falls back itself (no cascade down a chain of
  known-goods): its window is recorded as closed.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from contracts.chain import EntryKind
from contracts.engine import Engine, EngineState, EventKind, Mode
from contracts.guards import TripReason
from contracts.journal_events import CONTRACT_TAG, AgentEvent
from contracts.schema import Contract
from contracts.types import EpochMs

CAUSES = frozenset({EventKind.GUARD_TRIP.value, EventKind.AUTONOMY_EXHAUSTED.value,
                    EventKind.ENGINE_ERROR.value, AgentEvent.SECOND_WRITER.value,
                    AgentEvent.MODEL_DIVERGENCE.value, AgentEvent.SAFE_UNCONFIRMED.value})
"""Journal events that make a contract on probation fall back (see the rules above)."""

_CAUSE_KINDS = frozenset({EntryKind.TRIP, EntryKind.EVENT})


class Status(enum.StrEnum):
    OPEN = "open"          # on probation: a cause within the window falls back
    FALLING = "falling"    # a cause was found; the known-good is being installed
    FELL_BACK = "fell_back"  # the known-good runs in its place
    CLOSED = "closed"      # the window passed, or the contract was installed by a fallback


@dataclass(frozen=True, kw_only=True)
class Window:
    """One contract's probation, persisted (by its content hash) across restarts."""

    contract: str
    label: str  # "name@version"
    deployment: str
    known_good: str
    boot_ms: EpochMs
    deadline_ms: EpochMs
    status: Status = Status.OPEN
    cause: str | None = None
    cause_seq: int | None = None

    def to_mapping(self) -> dict[str, Any]:
        return {"contract": self.contract, "label": self.label, "deployment": self.deployment,
                "known_good": self.known_good, "boot_ms": self.boot_ms,
                "deadline_ms": self.deadline_ms, "status": self.status.value,
                "cause": self.cause, "cause_seq": self.cause_seq}

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Window:
        return cls(contract=str(m["contract"]), label=str(m["label"]),
                   deployment=str(m["deployment"]), known_good=str(m["known_good"]),
                   boot_ms=int(m["boot_ms"]), deadline_ms=int(m["deadline_ms"]),
                   status=Status(m["status"]), cause=m.get("cause"), cause_seq=m.get("cause_seq"))


def label(c: Contract) -> str:
    """A contract's id as the journal and I2 name it: `name@version`."""
    return f"{c.contract}@{c.version}"


def open_window(c: Contract, boot_ms: EpochMs, *, closed: bool = False) -> Window | None:
    """The probation a first BOOT of `c` at `boot_ms` opens; None when `c` names no known-good.
    `closed`: `c` is being installed by a fallback (it never falls back itself)."""
    ro = c.rollout
    if ro is None or ro.known_good is None:
        return None
    return Window(contract=c.contract, label=label(c), deployment=ro.deployment,
                  known_good=ro.known_good, boot_ms=boot_ms,
                  deadline_ms=boot_ms + ro.health_window_ms,
                  status=Status.CLOSED if closed else Status.OPEN)


def cause_of(kind: EntryKind, body: Mapping[str, Any]) -> str | None:
    """The fallback cause an entry records, or None (see the rules above)."""
    if kind not in _CAUSE_KINDS:
        return None
    event = body.get("event")
    if event not in CAUSES:
        return None
    if event == EventKind.GUARD_TRIP.value and body.get("reason") == TripReason.INTERLOCK.value:
        return None
    if event == AgentEvent.SAFE_UNCONFIRMED.value and _int(body.get("attempts")) < 2:
        return None
    return str(event)


def judge(w: Window, kind: EntryKind, body: Mapping[str, Any], seq: int,
          ts_ms: EpochMs) -> Window | None:
    """The window after one entry of its contract's segment, or None when nothing changed: a
    cause within the window starts a fallback, any entry past the window closes it."""
    if w.status is not Status.OPEN or body.get(CONTRACT_TAG) != w.contract or ts_ms < w.boot_ms:
        return None  # not this contract's run (another contract, or its id's earlier version)
    if ts_ms > w.deadline_ms:
        return replace(w, status=Status.CLOSED)
    cause = cause_of(kind, body)
    if cause is None:
        return None
    return replace(w, status=Status.FALLING, cause=cause, cause_seq=seq)


def expire(w: Window, now_ms: EpochMs) -> Window | None:
    """The window closed when `now_ms` is past it (None when nothing changed)."""
    return replace(w, status=Status.CLOSED) if w.status is Status.OPEN and now_ms > w.deadline_ms \
        else None


def fallback_state(known_good: Contract) -> EngineState:
    """The state the known-good contract starts in: SAFE, latched with trip `rollout_fallback`,
    outputs and targets at its safe state, at its first step (an operator's RESUME enters it)."""
    initial = Engine(known_good).initial_state()
    return replace(initial, mode=Mode.SAFE, trip=TripReason.ROLLOUT_FALLBACK)


def fallback_fields(w: Window, fallback_label: str) -> dict[str, Any]:
    """The I2 fields of the `rollout_fallback` event for window `w` (it has its cause)."""
    return {"deployment": w.deployment, "known_good": w.known_good, "fallback": fallback_label,
            "cause": w.cause, "cause_seq": w.cause_seq}


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0
