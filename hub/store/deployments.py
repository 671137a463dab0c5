"""Deployments: the deployment row and its state history, its steps, each device's execution
of each contract the snapshot gives it (one row per (deployment, device, contract)).

Rules:
- A deployment's state changes only through `write(..., event=...)` (hub/states/rollout.py's
  table; the history row in the same transaction). A repeated event right after it took effect
  is a retry and writes no history (hub/states/rules.py `next_state`).
- `write` is the engine's one unit of work: the deployment's fields and event, the step record
  (input, result, timestamps, actor, attempts) and the device executions it changed commit in ONE
  transaction, so after a crash the store shows either all of a step's effect or none of it.
- Ids are `dep-000001`, numbered in creation order.
- `changes(id)` counts the writes to a deployment through this repository (the only writer of
  its rows: the API's and the engine's, on one connection), so what is read of it can be kept
  until it changes: its devices here (the engine reads them on every pass, the API's view on
  every change), its encoded view in hub/rollout_views.py `ViewCache`. Only what is read outside
  a transaction is kept (inside one it may be rolled back).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from contracts.types import EpochMs
from hub.states import DeploymentEvent, DeploymentState, ExecutionState, next_state
from hub.store.errors import NotFound
from hub.store.transactions import Connection


@dataclass(frozen=True, kw_only=True)
class DeploymentRecord:
    id: str
    snapshot: str
    target: Mapping[str, Any]
    strategy: Mapping[str, Any]
    health: Mapping[str, Any]
    state: DeploymentState
    waves: Sequence[Mapping[str, Any]]  # [{index, kind, devices, rate_per_min}]
    actor: str
    created_ms: EpochMs
    updated_ms: EpochMs
    wave: int = 0
    resume_to: DeploymentState | None = None
    rollback: Mapping[str, Any] | None = None
    number: int = 0


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    deployment: str
    index: int
    name: str           # "canary:push", "wave:2:gate", "verify", "rollback", "converge:d7"
    status: str         # running | done | failed
    input: Mapping[str, Any]
    result: Mapping[str, Any]
    started_ms: EpochMs
    actor: str
    finished_ms: EpochMs | None = None
    attempts: int = 1


@dataclass(frozen=True, kw_only=True)
class ExecutionRecord:
    deployment: str
    device: str
    wave: int
    state: ExecutionState
    contract: str                  # the contract name the snapshot gives it ("tank-fill.d1")
    updated_ms: EpochMs
    issued: str | None = None      # "tank-fill.d1@4": reserved before the push, issued by it
    content_hash: str | None = None
    pushed_ms: EpochMs | None = None
    known_good: Mapping[str, Any] | None = None  # {"contract": id, "hash": content hash}
    restore: str | None = None     # the known-good version issued by the rollback ("...@5")
    reason: str | None = None
    evidence: Sequence[Mapping[str, Any]] = field(default_factory=list)
    rollback: Mapping[str, Any] | None = None  # rolled back alone: why (hub/rollout_alone.py)

    @property
    def key(self) -> tuple[str, str]:
        """The row's identity in its deployment: a device may run several contracts."""
        return self.device, self.contract

    @property
    def label(self) -> str:
        """The row as a step's result names it: `device/contract`."""
        return f"{self.device}/{self.contract}"


_JSON = ("target", "strategy", "health", "waves", "rollback")


class DeploymentRepository:
    """`store.deployments`."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._changes: dict[str, int] = {}
        self._devices: dict[str, tuple[int, list[ExecutionRecord]]] = {}

    def changes(self, dep_id: str) -> int:
        """How many writes to `dep_id` this repository made (a view's cache key)."""
        return self._changes.get(dep_id, 0)

    def _changed(self, dep_id: str) -> None:
        self._changes[dep_id] = self._changes.get(dep_id, 0) + 1

    def create(self, rec: DeploymentRecord, devices: Iterable[ExecutionRecord]) -> DeploymentRecord:
        """Store a new deployment (its id and number allocated here) with its devices, queued."""
        with self._conn.tx() as db:
            row = self._conn.one("SELECT max(number) AS n FROM deployments", [])
            number = int(row["n"] or 0) + 1 if row else 1
            rec = replace(rec, id=f"dep-{number:06d}", number=number)
            db.execute("INSERT INTO deployments (id, number, snapshot, target, strategy, health, "
                       "state, wave, resume_to, waves, rollback, actor, created_ms, updated_ms) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [rec.id, number, rec.snapshot, *_dumps(rec), rec.actor, rec.created_ms,
                        rec.updated_ms])
            self._history(rec.id, None, rec.state, "create", rec.created_ms, f"by {rec.actor}")
            self._put_devices([replace(d, deployment=rec.id) for d in devices])
        self._changed(rec.id)
        return rec

    def get(self, dep_id: str) -> DeploymentRecord:
        """Raises NotFound."""
        row = self._conn.one("SELECT * FROM deployments WHERE id = ?", [dep_id])
        if row is None:
            raise NotFound("deployment", dep_id)
        return _deployment(row)

    def find(self, *, states: Iterable[DeploymentState] | None = None,
             limit: int = 1000) -> list[DeploymentRecord]:
        """Deployments, newest first (only those in `states` when given)."""
        wanted = [s.value for s in states] if states is not None else None
        where = f"WHERE state IN ({', '.join('?' * len(wanted))})" if wanted else \
            ("WHERE 0" if wanted == [] else "")
        rows = self._conn.db.query(f"SELECT * FROM deployments {where} ORDER BY number DESC "
                                   "LIMIT ?", [*(wanted or []), limit])
        return [_deployment(r) for r in rows]

    def converging(self, states: Iterable[DeploymentState]) -> list[DeploymentRecord]:
        """Deployments in `states` with a device that may still need something on its return:
        unreachable, pushed but not judged, (rolled back) touched and not restored nor latched,
        or due to be rolled back alone (a failed contract, or a sibling of one) and not restored nor
        latched. A finished deployment whose devices all settled is never read again."""
        wanted = [s.value for s in states]
        rows = self._conn.db.query(
            f"SELECT * FROM deployments d WHERE d.state IN ({', '.join('?' * len(wanted))}) AND "
            "EXISTS (SELECT 1 FROM deployment_devices x WHERE x.deployment = d.id AND ("
            "x.state IN ('unreachable', 'pushed', 'accepted', 'running') OR (d.state = "
            "'rolled_back' AND x.state IN ('healthy', 'failed') AND (x.reason IS NULL OR "
            "x.reason NOT LIKE 'latched%')) OR (x.state NOT IN ('rolled_back', 'skipped') AND "
            "x.rollback IS NOT NULL "
            "AND (x.reason IS NULL OR x.reason NOT LIKE 'latched%')))) ORDER BY number", wanted)
        return [_deployment(r) for r in rows]

    def transitions(self, dep_id: str) -> list[dict[str, Any]]:
        return list(self._conn.db.query(
            'SELECT "from", "to", event, ts_ms, reason FROM deployment_transitions '
            "WHERE deployment = ? ORDER BY id", [dep_id]))

    # -- steps and devices ----------------------------------------------------------------------
    def steps(self, dep_id: str) -> list[StepRecord]:
        rows = self._conn.db.query("SELECT * FROM deployment_steps WHERE deployment = ? "
                                   "ORDER BY idx", [dep_id])
        return [_step(r) for r in rows]

    def current_step(self, dep_id: str) -> StepRecord | None:
        """The deployment's step in its own order: the last one that is not a device's
        `converge:` step (those run beside it, for devices coming back)."""
        row = self._conn.one("SELECT * FROM deployment_steps WHERE deployment = ? AND name NOT "
                             "LIKE 'converge:%' ORDER BY idx DESC LIMIT 1", [dep_id])
        return _step(row) if row else None

    def step(self, dep_id: str, index: int) -> StepRecord:
        row = self._conn.one("SELECT * FROM deployment_steps WHERE deployment = ? AND idx = ?",
                             [dep_id, index])
        if row is None:
            raise NotFound("deployment step", f"{dep_id}#{index}")
        return _step(row)

    def next_index(self, dep_id: str) -> int:
        row = self._conn.one("SELECT max(idx) AS i FROM deployment_steps WHERE deployment = ?",
                             [dep_id])
        return int(row["i"]) + 1 if row and row["i"] is not None else 0

    def devices(self, dep_id: str) -> list[ExecutionRecord]:
        """Its devices by wave and id (frozen records, kept until the deployment is written)."""
        mark, kept = self.changes(dep_id), self._devices.get(dep_id)
        if kept is not None and kept[0] == mark:
            return list(kept[1])
        rows = [_execution(r) for r in self._conn.db.query(
            "SELECT * FROM deployment_devices WHERE deployment = ? ORDER BY wave, device, "
            "contract",
            [dep_id])]
        if not self._conn.db.conn.in_transaction:
            self._devices[dep_id] = (mark, rows)
        return list(rows)

    def of_device(self, device: str) -> list[ExecutionRecord]:
        """Every execution of `device`, in any deployment, oldest deployment first."""
        rows = self._conn.db.query("SELECT * FROM deployment_devices WHERE device = ? "
                                   "ORDER BY deployment, contract", [device])
        return [_execution(r) for r in rows]

    # -- the unit of work -----------------------------------------------------------------------
    def write(self, dep_id: str, now: EpochMs, *, event: DeploymentEvent | None = None,
              reason: str | None = None, step: StepRecord | None = None,
              devices: Iterable[ExecutionRecord] = (), **fields: Any) -> DeploymentRecord:
        """In one transaction: apply `event` (raises IllegalTransition), set `fields` (wave,
        resume_to, rollback), upsert `step` and `devices`. Returns the deployment after."""
        devices = list(devices)
        before = self.changes(dep_id)
        self._changed(dep_id)  # before: a write that fails halfway only costs a read again
        with self._conn.tx() as db:
            current = self.get(dep_id)
            state = current.state
            if event is not None:
                moved = next_state(current.state, event, lambda: self._last(dep_id))
                if moved.written:
                    self._history(dep_id, current.state, moved.after, event.value, now, reason)
                state = moved.after
            after = replace(current, state=state, updated_ms=now, **fields)
            db.execute("UPDATE deployments SET target = ?, strategy = ?, health = ?, state = ?, "
                       "wave = ?, resume_to = ?, waves = ?, rollback = ?, updated_ms = ? "
                       "WHERE id = ?", [*_dumps(after), now, dep_id])
            if step is not None:
                self._put_step(step)
            self._put_devices(devices)
        self._kept_with(dep_id, before, devices)
        return after

    def _kept_with(self, dep_id: str, before: int, written: list[ExecutionRecord]) -> None:
        """The kept devices with `written` in place, once committed (else dropped): a pass that
        changed 50 devices does not make the next one read 1,000 rows again."""
        kept = self._devices.pop(dep_id, None)
        if kept is None or kept[0] != before or self._conn.db.conn.in_transaction:
            return
        rows = {d.key: d for d in written}
        if not rows.keys() <= {d.key for d in kept[1]}:
            return  # a device new to the deployment: read again
        self._devices[dep_id] = (self.changes(dep_id), [rows.get(d.key, d) for d in kept[1]])

    def _last(self, dep_id: str) -> tuple[str, str] | None:
        row = self._conn.one('SELECT event, "to" FROM deployment_transitions WHERE deployment = ? '
                             "ORDER BY id DESC LIMIT 1", [dep_id])
        return (row["event"], row["to"]) if row else None

    def _history(self, dep_id: str, before: DeploymentState | None, after: DeploymentState,
                 event: str, now: EpochMs, reason: str | None) -> None:
        self._conn.db.execute('INSERT INTO deployment_transitions (deployment, "from", "to", '
                              "event, ts_ms, reason) VALUES (?, ?, ?, ?, ?, ?)",
                              [dep_id, before.value if before else None, after.value, event, now,
                               reason])

    def _put_step(self, s: StepRecord) -> None:
        self._conn.db.execute(
            "INSERT OR REPLACE INTO deployment_steps (deployment, idx, name, status, input, result,"
            " started_ms, finished_ms, actor, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [s.deployment, s.index, s.name, s.status, json.dumps(s.input), json.dumps(s.result),
             s.started_ms, s.finished_ms, s.actor, s.attempts])

    def _put_devices(self, rows: Sequence[ExecutionRecord]) -> None:
        self._conn.db.conn.executemany(
            "INSERT OR REPLACE INTO deployment_devices (deployment, device, wave, state, contract,"
            " issued, content_hash, pushed_ms, known_good, restore, reason, evidence, updated_ms,"
            " rollback) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(d.deployment, d.device, d.wave, d.state.value, d.contract, d.issued,
              d.content_hash, d.pushed_ms, json.dumps(d.known_good) if d.known_good else None,
              d.restore, d.reason, json.dumps(list(d.evidence)), d.updated_ms,
              json.dumps(d.rollback) if d.rollback is not None else None) for d in rows])


def _dumps(r: DeploymentRecord) -> list[Any]:
    return [json.dumps(r.target), json.dumps(r.strategy), json.dumps(r.health), r.state.value,
            r.wave, r.resume_to.value if r.resume_to else None, json.dumps(list(r.waves)),
            json.dumps(r.rollback) if r.rollback is not None else None]


def _deployment(r: Mapping[str, Any]) -> DeploymentRecord:
    loaded = {k: json.loads(r[k]) if r[k] is not None else None for k in _JSON}
    return DeploymentRecord(**{**r, **loaded, "state": DeploymentState(r["state"]),
                               "resume_to": DeploymentState(r["resume_to"]) if r["resume_to"]
                               else None})


def _step(r: Mapping[str, Any]) -> StepRecord:
    return StepRecord(deployment=r["deployment"], index=r["idx"], name=r["name"],
                      status=r["status"], input=json.loads(r["input"]),
                      result=json.loads(r["result"]), started_ms=r["started_ms"],
                      finished_ms=r["finished_ms"], actor=r["actor"], attempts=r["attempts"])


def _execution(r: Mapping[str, Any]) -> ExecutionRecord:
    return ExecutionRecord(**{**r, "state": ExecutionState(r["state"]),
                              "known_good": json.loads(r["known_good"]) if r["known_good"]
                              else None, "evidence": json.loads(r["evidence"]),
                              "rollback": json.loads(r["rollback"]) if r["rollback"] else None})
