"""State changes persisted with their history: the one way a device's state or a contract's
status moves in the database.

Rules:
- Every change goes through `hub.states.next_state()` and is written together with its history
  row in ONE transaction. Self-loops and retried events write nothing: the rules are
  hub/states.py's; the store gives it the last persisted transition when it asks.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from contracts.types import EpochMs
from hub.states import ContractStatus, DeviceState, next_state
from hub.store.errors import NotFound
from hub.store.records import Changed, TransitionRecord
from hub.store.transactions import Connection


@dataclass(frozen=True, kw_only=True)
class Machine:
    """Where one kind of subject keeps its current state and its history rows."""

    kind: str  # what NotFound names: "device", "contract"
    table: str  # the subjects' table, keyed by `id`
    state_column: str
    since_column: str  # set to the time of each change
    keeps_reason: bool  # whether the subject's row keeps the reason of its last change
    history: str  # the history table
    subject_column: str  # its column naming the subject
    parse: Callable[[str], Any]  # a stored state value -> the state enum


DEVICES = Machine(kind="device", table="devices", state_column="state",
                  since_column="state_since_ms", keeps_reason=False,
                  history="device_transitions", subject_column="device", parse=DeviceState)
CONTRACTS = Machine(kind="contract", table="contracts", state_column="status",
                    since_column="updated_ms", keeps_reason=True,
                    history="contract_transitions", subject_column="contract",
                    parse=ContractStatus)


class StateHistory:
    """The current state and the history of one machine's subjects."""

    def __init__(self, conn: Connection, machine: Machine) -> None:
        self._conn, self._machine = conn, machine

    def apply(self, key: str, event: enum.StrEnum, ts_ms: EpochMs,
              reason: str | None = None) -> Changed:
        """Move subject `key` by `event`, persisting the new state and its history row atomically.

        Raises NotFound, or IllegalTransition unless this is a retry of the last applied event."""
        with self._conn.tx():
            current = self.current(key)
            step = next_state(current, event, lambda: self._last(key))
            if step.written:
                self._set(key, step.after, ts_ms, reason)
                self.record(key, current, step.after, event.value, ts_ms, reason)
        return Changed(before=current, after=step.after, written=step.written)

    def current(self, key: str) -> Any:
        """The subject's state. Raises NotFound."""
        m = self._machine
        row = self._conn.db.conn.execute(
            f"SELECT {m.state_column} FROM {m.table} WHERE id = ?", [key]).fetchone()
        if row is None:
            raise NotFound(m.kind, key)
        return m.parse(row[0])

    def record(self, key: str, before: enum.StrEnum | None, after: enum.StrEnum, event: str,
               ts_ms: EpochMs, reason: str | None) -> None:
        """Write one history row (the first one of a subject has no `before`)."""
        m = self._machine
        self._conn.db.execute(
            f'INSERT INTO {m.history} ({m.subject_column}, "from", "to", event, ts_ms, reason) '
            "VALUES (?, ?, ?, ?, ?, ?)",
            [key, before.value if before else None, after.value, event, ts_ms, reason])

    def history(self, key: str) -> list[TransitionRecord]:
        """Every change of subject `key`, oldest first."""
        m = self._machine
        rows = self._conn.db.query(
            f"SELECT * FROM {m.history} WHERE {m.subject_column} = ? ORDER BY id", [key])
        return [TransitionRecord(subject=key, from_state=r["from"], to_state=r["to"],
                                 event=r["event"], ts_ms=r["ts_ms"], reason=r["reason"])
                for r in rows]

    def _last(self, key: str) -> tuple[str, str] | None:
        """The (event, to) of the subject's last history row."""
        m = self._machine
        row = self._conn.one(f'SELECT "to", event FROM {m.history} WHERE {m.subject_column} = ? '
                             "ORDER BY id DESC LIMIT 1", [key])
        return (row["event"], row["to"]) if row else None

    def _set(self, key: str, target: enum.StrEnum, ts_ms: EpochMs, reason: str | None) -> None:
        m = self._machine
        sets = [f"{m.state_column} = ?", f"{m.since_column} = ?"]
        params: list[Any] = [target.value, ts_ms]
        if m.keeps_reason:
            sets.append("reason = ?")
            params.append(reason)
        self._conn.db.execute(f"UPDATE {m.table} SET {', '.join(sets)} WHERE id = ?",
                              [*params, key])


E = TypeVar("E", bound=enum.StrEnum)


class MachineRepository(Generic[E]):
    """What the repositories of subjects with a state machine share (devices: DeviceEvent,
    contracts: ContractEvent): the state moves only by `apply_event`, and every move is kept."""

    def __init__(self, conn: Connection, machine: Machine) -> None:
        self._conn = conn
        self._states = StateHistory(conn, machine)

    def apply_event(self, key: str, event: E, ts_ms: EpochMs, reason: str | None = None) -> Changed:
        """Move subject `key` by `event`, persisting the new state and its history row atomically
        (a contract's row keeps `reason` too).

        Raises NotFound, or IllegalTransition unless this is a retry of the last applied event."""
        return self._states.apply(key, event, ts_ms, reason)

    def transitions(self, key: str) -> list[TransitionRecord]:
        """Every move of subject `key`, oldest first."""
        return self._states.history(key)

