"""The hub store: SQLite through sqlite-utils. The only module in hub/ that speaks SQL.

Rules:
- The schema is a list of migrations (sqlite-utils `Migrations`: each one and its record are
  applied in one transaction). On open, a database holding a migration this build does not know is
  refused with StoreError: it was written by a newer hub, and guessing would corrupt it.
- Every state change goes through `hub.states.transition()` and is written together with its
  history row in ONE transaction. Self-loops write nothing. A retried event (the same event that
  produced the current state, now illegal from it) is a no-op, so callers may retry after a crash.
- Journal rows are keyed by (device, seq) and inserted with INSERT OR IGNORE: ingestion is
  idempotent (invariant 5). Out-of-order entries wait in journal_pending.
- `synchronous=FULL`: the hub acks journal entries to agents, which may then drop them (invariant
  4), so an acked entry must survive power loss, not just a crash (DESIGN, known pitfalls).
- Calls are synchronous and short (local SQLite, indexed); the async API calls them directly.
- One HubStore (one connection) per thread: the API's and the MQTT side's (hub/app.py). WAL lets
  the API read while the sync side writes; write transactions take the lock at BEGIN (IMMEDIATE).
- The sync side writes in batches (`begin_batch` .. `commit_batch`): every write in between joins
  one transaction, inner transactions become savepoints, and nothing is acked before the commit.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from contracts import codec
from contracts.chain import Entry, checked_entry, kind_of
from contracts.errors import EncodingError
from contracts.limits import quote
from contracts.types import EpochMs
from runtime.files import private_sqlite
from hub.audit import AuditAction, AuditEntry, Outcome
from hub.lineage import Budget
from hub.states import (
    ContractEvent, ContractStatus, DeviceEvent, DeviceState, IllegalTransition, transition,
)


class StoreError(Exception):
    """The database cannot be used: unreadable, or written by a newer schema."""


class NotFound(StoreError):
    """No record with that id. `kind` is "device", "contract", ... and `key` the id asked for."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind, self.key = kind, key
        super().__init__(f"no {kind} {quote(key)}")


class Duplicate(StoreError):
    """A record with that id exists already."""


MIGRATIONS = Migrations("fieldpact-hub")

_SCHEMA_V1 = """
CREATE TABLE devices (id TEXT PRIMARY KEY, site TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}',
  state TEXT NOT NULL, state_since_ms INTEGER NOT NULL, last_seen_ms INTEGER, boot_id TEXT,
  contract TEXT, version INTEGER, last_seq INTEGER NOT NULL DEFAULT 0,
  acked_seq INTEGER NOT NULL DEFAULT 0, last_hash BLOB, projection BLOB, drift TEXT);
CREATE TABLE contracts (id TEXT PRIMARY KEY, contract TEXT NOT NULL, version INTEGER NOT NULL,
  device TEXT NOT NULL, site TEXT NOT NULL, status TEXT NOT NULL, document TEXT NOT NULL,
  signed BLOB NOT NULL, content_hash TEXT NOT NULL, created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL, reason TEXT, UNIQUE (contract, version));
CREATE INDEX contracts_device_status ON contracts (device, status);
CREATE TABLE device_transitions (id INTEGER PRIMARY KEY, device TEXT NOT NULL, "from" TEXT,
  "to" TEXT NOT NULL, event TEXT NOT NULL, ts_ms INTEGER NOT NULL, reason TEXT);
CREATE INDEX device_transitions_device ON device_transitions (device, id);
CREATE TABLE contract_transitions (id INTEGER PRIMARY KEY, contract TEXT NOT NULL, "from" TEXT,
  "to" TEXT NOT NULL, event TEXT NOT NULL, ts_ms INTEGER NOT NULL, reason TEXT);
CREATE INDEX contract_transitions_contract ON contract_transitions (contract, id);
CREATE TABLE journal (device TEXT NOT NULL, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
  kind TEXT NOT NULL, body BLOB NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL,
  PRIMARY KEY (device, seq));
CREATE TABLE journal_pending (device TEXT NOT NULL, seq INTEGER NOT NULL, entry BLOB NOT NULL,
  PRIMARY KEY (device, seq));
CREATE TABLE reconciliations (id INTEGER PRIMARY KEY, device TEXT NOT NULL, contract TEXT,
  version INTEGER, ts_ms INTEGER NOT NULL, report TEXT NOT NULL, divergent INTEGER NOT NULL,
  action TEXT NOT NULL);
CREATE TABLE reconcile_requests (id INTEGER PRIMARY KEY, contract TEXT NOT NULL,
  device TEXT NOT NULL, actor TEXT NOT NULL, ts_ms INTEGER NOT NULL, done_ms INTEGER);
CREATE TABLE audit (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, actor TEXT NOT NULL,
  action TEXT NOT NULL, device TEXT, contract TEXT, reason TEXT, outcome TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '{}');
CREATE TABLE alarms (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, device TEXT NOT NULL,
  kind TEXT NOT NULL, detail TEXT NOT NULL, cleared_ms INTEGER);
"""


@MIGRATIONS(name="0001_initial")
def _m0001(db: Database) -> None:
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)


_SCHEMA_V2 = """
ALTER TABLE contracts ADD COLUMN lineage TEXT;
UPDATE contracts SET lineage = id WHERE lineage IS NULL;
CREATE TABLE lineages (lineage TEXT PRIMARY KEY, retries INTEGER NOT NULL DEFAULT 0,
  last_retry_ms INTEGER, next_allowed_ms INTEGER, pending TEXT);
ALTER TABLE alarms ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alarms ADD COLUMN last_ms INTEGER;
ALTER TABLE alarms ADD COLUMN acked_ms INTEGER;
ALTER TABLE alarms ADD COLUMN acked_by TEXT;
UPDATE alarms SET last_ms = ts_ms WHERE last_ms IS NULL;
UPDATE alarms SET cleared_ms = ts_ms WHERE cleared_ms IS NULL AND id NOT IN
  (SELECT max(id) FROM alarms WHERE cleared_ms IS NULL GROUP BY device, kind);
CREATE UNIQUE INDEX alarms_active ON alarms (device, kind) WHERE cleared_ms IS NULL;
"""
"""Retry budgets per contract lineage (hub/lineage.py) and deduplicated, acknowledgeable alarms.
Existing contracts each start their own lineage; of duplicate active alarms the newest stays."""


@MIGRATIONS(name="0002_lineage_alarms")
def _m0002(db: Database) -> None:
    for statement in _SCHEMA_V2.split(";"):
        if statement.strip():
            db.execute(statement)


_SCHEMA_REGISTRY = """
CREATE TABLE registered_devices (id TEXT PRIMARY KEY, site TEXT NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}', created_ms INTEGER NOT NULL, actor TEXT NOT NULL);
CREATE TABLE device_keys (device TEXT PRIMARY KEY, journal_key TEXT NOT NULL,
  enrolled_ms INTEGER NOT NULL, actor TEXT NOT NULL);
CREATE INDEX reconcile_requests_contract ON reconcile_requests (contract, id);
"""


@MIGRATIONS(name="0003_device_registry")
def _m0003(db: Database) -> None:
    """Devices registered by an admin through the API (hub.toml ones live in the config) and
    journal keys enrolled the same way (hub/registry.py)."""
    for statement in _SCHEMA_REGISTRY.split(";"):
        if statement.strip():
            db.execute(statement)


MIGRATION_NAMES = ("0001_initial", "0002_lineage_alarms", "0003_device_registry")
SCHEMA_VERSION = len(MIGRATION_NAMES)
"""Number of migrations this build knows; a database with others is refused on open."""



@dataclass(frozen=True, kw_only=True)
class DeviceRecord:
    id: str
    site: str
    state: DeviceState
    state_since_ms: EpochMs
    labels: Mapping[str, str] = field(default_factory=dict)
    last_seen_ms: EpochMs | None = None
    boot_id: str | None = None
    contract: str | None = None
    version: int | None = None
    last_seq: int = 0
    acked_seq: int = 0
    last_hash: bytes | None = None
    projection: Any = None  # decoded CBOR, written by the sync side
    drift: Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class ContractRecord:
    id: str  # "contract@version"
    contract: str
    version: int
    device: str
    site: str
    status: ContractStatus
    document: Mapping[str, Any]
    signed: bytes
    content_hash: str
    created_ms: EpochMs
    updated_ms: EpochMs
    reason: str | None = None
    lineage: str | None = None  # hub/lineage.py; None = its own id


def contract_id(contract: str, version: int) -> str:
    """The store's id for a contract version: "tank-fill@3"."""
    return f"{contract}@{version}"


@dataclass(frozen=True, kw_only=True)
class TransitionRecord:
    subject: str  # device id or contract id
    from_state: str | None
    to_state: str
    event: str
    ts_ms: EpochMs
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Changed:
    """Result of applying an event: the state before and after, and whether a row was written."""

    before: str
    after: str
    written: bool


@dataclass(frozen=True, kw_only=True)
class JournalRow:
    device: str
    seq: int
    ts_ms: EpochMs
    kind: str
    body: bytes
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, kw_only=True)
class ReconciliationRecord:
    device: str
    contract: str | None
    version: int | None
    ts_ms: EpochMs
    report: Mapping[str, Any]
    divergent: bool
    action: str
    id: int | None = None


@dataclass(frozen=True, kw_only=True)
class ReconcileRequest:
    id: int
    contract: str
    device: str
    actor: str
    ts_ms: EpochMs
    done_ms: EpochMs | None = None


@dataclass(frozen=True, kw_only=True)
class Alarm:
    """One alarm: raised at `ts_ms` (first), raised again `count` times while active (last at
    `last_ms`), acknowledged by `acked_by` at `acked_ms`, cleared at `cleared_ms`."""

    id: int
    ts_ms: EpochMs
    device: str
    kind: str
    detail: str
    cleared_ms: EpochMs | None = None
    count: int = 1
    last_ms: EpochMs | None = None
    acked_ms: EpochMs | None = None
    acked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.cleared_ms is None


MAX_ALARM_DETAIL = 300
"""Alarm details are bounded (interface 3): they quote device input and are shown on a banner."""


_UNSET: Any = object()
LIST_COLUMNS = ("id", "site", "labels", "state", "state_since_ms", "last_seen_ms", "contract",
                "version", "last_seq", "acked_seq")
"""The device columns the fleet list shows, in its key order (hub/api.py device_view)."""
_DEVICE_FIELDS = frozenset({"last_seen_ms", "boot_id", "contract", "version", "last_seq",
                            "acked_seq", "last_hash", "projection", "drift", "labels", "site"})


class HubStore:
    """Typed access to the hub database. Open with `HubStore.open(path)`; close when done."""

    def __init__(self, db: Database) -> None:
        self._records: dict[str, tuple[tuple[Any, ...], DeviceRecord]] = {}  # see _decoded()
        self.db = db

    @classmethod
    def open(cls, path: Path | str) -> HubStore:
        """Open (creating if needed) and migrate. Raises StoreError for a newer or broken schema."""
        try:
            private_sqlite(path)  # 0600 before SQLite creates it, its -wal and -shm
            db = Database(path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open hub database {str(path)!r}: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            _check_and_migrate(db)
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"cannot open hub database {str(path)!r}: {exc}") from exc
        except BaseException:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return len(MIGRATIONS.applied(self.db))

    @contextmanager
    def _tx(self) -> Iterator[Database]:
        """One write transaction, or a savepoint inside an open one (a batch). The outermost takes
        the write lock at BEGIN: the API and the sync side each have a connection (one per
        thread), and a deferred transaction that reads first fails at once (SQLITE_BUSY, no
        waiting) if the other connection wrote after its read began."""
        if self.db.conn.in_transaction:
            with self.db.atomic() as db:  # a savepoint
                yield db
            return
        self.db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.conn.rollback()
            raise
        self.commit_batch()

    # ---- batches: many writes, one commit (one fsync) ---------------------------------------

    def begin_batch(self) -> None:
        """Open a write transaction that every following write joins, until `commit_batch` or
        `rollback_batch`. The sync side handles a burst of MQTT messages in one batch, so 1,000
        devices cost one fsync per burst, not one per message. No-op if one is open."""
        if not self.db.conn.in_transaction:
            self.db.conn.execute("BEGIN IMMEDIATE")

    def commit_batch(self) -> None:
        """Commit the open batch, if any: durable when this returns (synchronous=FULL). Raises
        StoreError, after rolling the batch back, if the commit fails."""
        if not self.db.conn.in_transaction:
            return
        try:
            self.db.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.rollback_batch()
            raise StoreError(f"commit failed: {exc}") from exc

    def rollback_batch(self) -> None:
        """Undo every write since `begin_batch` (no-op when none is open)."""
        if self.db.conn.in_transaction:
            self.db.conn.rollback()

    @property
    def in_batch(self) -> bool:
        return self.db.conn.in_transaction

    def _one(self, sql: str, params: Iterable[Any]) -> dict[str, Any] | None:
        return next(iter(self.db.query(sql, list(params))), None)

    # ---- devices ----------------------------------------------------------------------------

    def ensure_device(self, device: str, site: str, ts_ms: EpochMs,
                      labels: Mapping[str, str] | None = None) -> DeviceRecord:
        """The device, registered in state UNKNOWN if new (idempotent)."""
        self.db.execute(
            "INSERT OR IGNORE INTO devices (id, site, labels, state, state_since_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            [device, site, json.dumps(dict(labels or {})), DeviceState.UNKNOWN.value, ts_ms])
        return self.device(device)

    def device(self, device: str) -> DeviceRecord:
        """Raises NotFound."""
        cur = self.db.conn.execute("SELECT * FROM devices WHERE id = ?", [device])
        row = cur.fetchone()
        if row is None:
            raise NotFound("device", device)
        return self._decoded([c[0] for c in cur.description], row)

    def devices(self, state: DeviceState | None = None) -> list[DeviceRecord]:
        where, params = ("WHERE state = ?", [state.value]) if state else ("", [])
        # A plain cursor: the fleet list is the API's largest read (bench/sync.py), and
        # sqlite-utils' per-row key de-duplication was a third of its cost.
        cur = self.db.conn.execute(f"SELECT * FROM devices {where} ORDER BY id", params)
        names = [c[0] for c in cur.description]
        rows = cur.fetchall()
        return [self._decoded(names, row) for row in rows]

    def data_version(self) -> tuple[int, int]:
        """Changes as soon as anything was committed since the last call: by another connection
        (SQLite's `PRAGMA data_version`) or by this one (`total_changes`)."""
        other = self.db.conn.execute("PRAGMA data_version").fetchone()[0]
        return int(other), self.db.conn.total_changes

    def device_list_rows(self, state: DeviceState | None = None) -> list[tuple[Any, ...]]:
        """Raw rows of LIST_COLUMNS (state as its value, labels as JSON text), by id: the fleet
        list reads only these, never the projection blobs (hub/device_list.py)."""
        where, params = ("WHERE state = ?", [state.value]) if state else ("", [])
        cols = ", ".join(LIST_COLUMNS)
        return self.db.conn.execute(f"SELECT {cols} FROM devices {where} ORDER BY id",
                                    params).fetchall()

    def _decoded(self, names: list[str], row: tuple[Any, ...]) -> DeviceRecord:
        """The record for a raw row, decoded once per distinct row content (one cached row per
        device id, the first column). Records are frozen, and readers copy `projection` before
        changing it (hub/sync.py)."""
        cached = self._records.get(row[0])
        if cached is not None and cached[0] == row:
            return cached[1]
        record = _device(dict(zip(names, row)))
        self._records[row[0]] = (row, record)
        return record

    def update_device(self, device: str, **fields: Any) -> DeviceRecord:
        """Set any of the non-state device fields (see _DEVICE_FIELDS). The state changes only
        through apply_device_event. Raises NotFound, or TypeError for an unknown field."""
        unknown = set(fields) - _DEVICE_FIELDS
        if unknown:
            raise TypeError(f"update_device: unknown or protected fields {sorted(unknown)}")
        values = {k: _encode_device_field(k, v) for k, v in fields.items()}
        if values:
            assignments = ", ".join(f"{k} = ?" for k in values)
            with self._tx():
                cur = self.db.conn.execute(f"UPDATE devices SET {assignments} WHERE id = ?",
                                           [*values.values(), device])
            if cur.rowcount == 0:
                raise NotFound("device", device)
        return self.device(device)

    def update_devices(self, fields: Mapping[str, Mapping[str, Any]]) -> None:
        """`update_device` for many devices at once ({device: {field: value}}), one statement per
        distinct set of field names, in one transaction; unknown devices are skipped. The sync
        side flushes 1,000 devices' live values this way every FLUSH_S."""
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        for device, values in fields.items():
            unknown = set(values) - _DEVICE_FIELDS
            if unknown:
                raise TypeError(f"update_devices: unknown or protected fields {sorted(unknown)}")
            names = tuple(values)
            groups.setdefault(names, []).append(
                [*(_encode_device_field(k, v) for k, v in values.items()), device])
        with self._tx():
            for names, params in groups.items():
                if names:
                    sets = ", ".join(f"{k} = ?" for k in names)
                    self.db.conn.executemany(f"UPDATE devices SET {sets} WHERE id = ?", params)

    def apply_device_event(self, device: str, event: DeviceEvent, ts_ms: EpochMs,
                           reason: str | None = None) -> Changed:
        """Move the device by `event`, persisting the new state and its history row atomically.

        Raises NotFound, or IllegalTransition unless this is a retry of the last applied event."""
        with self._tx():
            current = self.device(device).state
            target = self._next("device_transitions", "device", device, current, event)
            if target is None:
                return Changed(before=current, after=current, written=False)
            if target is not current:
                self.db.execute("UPDATE devices SET state = ?, state_since_ms = ? WHERE id = ?",
                                [target.value, ts_ms, device])
                self._history("device_transitions", "device", device, current, target,
                              event.value, ts_ms, reason)
        return Changed(before=current, after=target, written=target is not current)

    def device_transitions(self, device: str) -> list[TransitionRecord]:
        return self._transitions("device_transitions", "device", device)

    def count_devices_by_state(self) -> dict[DeviceState, int]:
        rows = self.db.query("SELECT state, count(*) AS n FROM devices GROUP BY state")
        return {DeviceState(r["state"]): r["n"] for r in rows}

    # ---- shared transition plumbing ---------------------------------------------------------

    def _next(self, table: str, column: str, key: str, current: Any, event: Any) -> Any:
        """The target state, or None for a retried event that already took effect."""
        try:
            return transition(current, event)
        except IllegalTransition:
            last = self._one(f'SELECT "to", event FROM {table} WHERE {column} = ? '
                             "ORDER BY id DESC LIMIT 1", [key])
            if last and last["event"] == event.value and last["to"] == current.value:
                return None
            raise

    def _history(self, table: str, column: str, key: str, before: Any, after: Any, event: str,
                 ts_ms: EpochMs, reason: str | None) -> None:
        self.db.execute(
            f'INSERT INTO {table} ({column}, "from", "to", event, ts_ms, reason) '
            "VALUES (?, ?, ?, ?, ?, ?)",
            [key, before.value if before else None, after.value, event, ts_ms, reason])

    def _transitions(self, table: str, column: str, key: str) -> list[TransitionRecord]:
        rows = self.db.query(f"SELECT * FROM {table} WHERE {column} = ? ORDER BY id", [key])
        return [TransitionRecord(subject=key, from_state=r["from"], to_state=r["to"],
                                 event=r["event"], ts_ms=r["ts_ms"], reason=r["reason"])
                for r in rows]

    # ---- contracts --------------------------------------------------------------------------

    def insert_contract(self, record: ContractRecord) -> ContractRecord:
        """Store a new contract version with its first history row. Raises Duplicate."""
        try:
            with self._tx():
                self.db.execute(
                    "INSERT INTO contracts (id, contract, version, device, site, status, document,"
                    " signed, content_hash, created_ms, updated_ms, reason, lineage)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [record.id, record.contract, record.version, record.device, record.site,
                     record.status.value, json.dumps(record.document), record.signed,
                     record.content_hash, record.created_ms, record.updated_ms, record.reason,
                     record.lineage or record.id])
                self._history("contract_transitions", "contract", record.id, None, record.status,
                              "submit", record.created_ms, record.reason)
        except sqlite3.IntegrityError as exc:
            raise Duplicate(f"contract {record.id!r} exists already") from exc
        return record

    def contract(self, cid: str) -> ContractRecord:
        """Raises NotFound."""
        row = self._one("SELECT * FROM contracts WHERE id = ?", [cid])
        if row is None:
            raise NotFound("contract", cid)
        return _contract(row)

    def contracts(self, *, device: str | None = None, status: ContractStatus | None = None,
                  contract: str | None = None) -> list[ContractRecord]:
        """Contracts matching every given filter, oldest first."""
        filters = {"device": device, "status": status.value if status else None,
                   "contract": contract}
        used = {k: v for k, v in filters.items() if v is not None}
        where = " AND ".join(f"{k} = ?" for k in used) or "1"
        rows = self.db.query(f"SELECT * FROM contracts WHERE {where} ORDER BY created_ms, id",
                             list(used.values()))
        return [_contract(r) for r in rows]

    def highest_version(self, contract: str) -> int | None:
        row = self._one("SELECT max(version) AS v FROM contracts WHERE contract = ?", [contract])
        return row["v"] if row else None

    def apply_contract_event(self, cid: str, event: ContractEvent, ts_ms: EpochMs,
                             reason: str | None = None) -> Changed:
        """Move the contract by `event`, atomically with its history row.

        Raises NotFound, or IllegalTransition unless this is a retry of the last applied event."""
        with self._tx():
            current = self.contract(cid).status
            target = self._next("contract_transitions", "contract", cid, current, event)
            if target is None:
                return Changed(before=current, after=current, written=False)
            if target is not current:
                self.db.execute("UPDATE contracts SET status = ?, updated_ms = ?, reason = ? "
                                "WHERE id = ?", [target.value, ts_ms, reason, cid])
                self._history("contract_transitions", "contract", cid, current, target,
                              event.value, ts_ms, reason)
        return Changed(before=current, after=target, written=target is not current)

    def contract_transitions(self, cid: str) -> list[TransitionRecord]:
        return self._transitions("contract_transitions", "contract", cid)

    def count_contracts_by_status(self) -> dict[ContractStatus, int]:
        rows = self.db.query("SELECT status, count(*) AS n FROM contracts GROUP BY status")
        return {ContractStatus(r["status"]): r["n"] for r in rows}

    # ---- journal ----------------------------------------------------------------------------

    def insert_journal(self, rows: Iterable[JournalRow]) -> int:
        """Insert entries, ignoring (device, seq) already present. Returns how many were new."""
        with self._tx():
            before = self.db.conn.total_changes
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO journal (device, seq, ts_ms, kind, body, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.device, r.seq, r.ts_ms, r.kind, r.body, r.prev_hash, r.hash) for r in rows])
            return int(self.db.conn.total_changes - before)

    def insert_entries(self, device: str, entries: Sequence[Entry], bodies: Sequence[bytes]) -> int:
        """`insert_journal` for verified entries and their encoded bodies (as hashed), without a
        JournalRow per entry: the ingest path stores ~100,000 entries a second."""
        with self._tx():
            before = self.db.conn.total_changes
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO journal (device, seq, ts_ms, kind, body, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(device, e.seq, e.ts_ms, e.kind.value, body, e.prev_hash, e.hash)
                 for e, body in zip(entries, bodies, strict=True)])
            return int(self.db.conn.total_changes - before)

    def journal(self, device: str, from_seq: int = 0, limit: int = 100) -> list[JournalRow]:
        rows = self.db.query("SELECT * FROM journal WHERE device = ? AND seq >= ? ORDER BY seq "
                             "LIMIT ?", [device, from_seq, limit])
        return [JournalRow(**r) for r in rows]

    def journal_entries(self, device: str, from_seq: int = 0) -> list[Entry]:
        """Every stored entry of `device` from `from_seq`, decoded, in seq order: what the
        reconciliation folds (86,400 rows for a day at 1 Hz), read without a dict and a
        JournalRow per row. Raises StoreError for a stored body that does not decode."""
        cur = self.db.conn.execute("SELECT seq, ts_ms, kind, body, prev_hash, hash FROM journal "
                                   "WHERE device = ? AND seq >= ? ORDER BY seq", [device, from_seq])
        try:  # the bodies are the canonical bytes insert_entries stored
            return [checked_entry(seq, ts, kind_of(kind), codec.loads_own(body), prev, digest)
                    for seq, ts, kind, body, prev, digest in cur]
        except (EncodingError, ValueError) as exc:
            raise StoreError(f"journal of {device!r}: stored entry unreadable: {exc}") from exc

    def journal_entry(self, device: str, seq: int) -> JournalRow | None:
        row = self._one("SELECT * FROM journal WHERE device = ? AND seq = ?", [device, seq])
        return JournalRow(**row) if row else None

    def count_journal(self) -> int:
        row = self._one("SELECT count(*) AS n FROM journal", [])
        return int(row["n"]) if row else 0

    def buffer_pending(self, device: str, seq: int, entry: bytes) -> None:
        """Keep an out-of-order entry until the gap before it fills (idempotent)."""
        self.db.execute("INSERT OR IGNORE INTO journal_pending (device, seq, entry) VALUES (?, ?, ?)",
                        [device, seq, entry])

    def pending(self, device: str) -> list[tuple[int, bytes]]:
        rows = self.db.query("SELECT seq, entry FROM journal_pending WHERE device = ? ORDER BY seq",
                             [device])
        return [(r["seq"], r["entry"]) for r in rows]

    def drop_pending(self, device: str, up_to_seq: int) -> None:
        self.db.execute("DELETE FROM journal_pending WHERE device = ? AND seq <= ?",
                        [device, up_to_seq])

    # ---- reconciliations and requests -------------------------------------------------------

    def add_reconciliation(self, rec: ReconciliationRecord) -> int:
        cur = self.db.execute(
            "INSERT INTO reconciliations (device, contract, version, ts_ms, report, divergent, action)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [rec.device, rec.contract, rec.version, rec.ts_ms, json.dumps(rec.report),
             int(rec.divergent), rec.action])
        return int(cur.lastrowid or 0)

    def reconciliations(self, device: str | None = None, limit: int = 100) -> list[ReconciliationRecord]:
        where, params = ("WHERE device = ?", [device]) if device else ("", [])
        rows = self.db.query(f"SELECT * FROM reconciliations {where} ORDER BY id DESC LIMIT ?",
                             [*params, limit])
        return [ReconciliationRecord(**{**r, "report": json.loads(r["report"]),
                                        "divergent": bool(r["divergent"])}) for r in rows]

    def add_reconcile_request(self, cid: str, device: str, actor: str, ts_ms: EpochMs) -> int:
        cur = self.db.execute("INSERT INTO reconcile_requests (contract, device, actor, ts_ms) "
                              "VALUES (?, ?, ?, ?)", [cid, device, actor, ts_ms])
        return int(cur.lastrowid or 0)

    def latest_reconcile_request(self, cid: str) -> ReconcileRequest | None:
        """The newest request for contract `cid`, open or done (the API absorbs repeats into it)."""
        row = self._one("SELECT * FROM reconcile_requests WHERE contract = ? ORDER BY id DESC "
                        "LIMIT 1", [cid])
        return ReconcileRequest(**row) if row else None

    def open_reconcile_requests(self) -> list[ReconcileRequest]:
        """Requests the sync side has not handled yet, oldest first."""
        rows = self.db.query("SELECT * FROM reconcile_requests WHERE done_ms IS NULL ORDER BY id")
        return [ReconcileRequest(**r) for r in rows]

    def finish_reconcile_request(self, request_id: int, ts_ms: EpochMs) -> None:
        self.db.execute("UPDATE reconcile_requests SET done_ms = ? WHERE id = ? AND done_ms IS NULL",
                        [ts_ms, request_id])

    # ---- device registry (hub/registry.py holds the rules) -----------------------------------

    def add_registered_device(self, device: str, site: str, labels: Mapping[str, str],
                              ts_ms: EpochMs, actor: str) -> None:
        """Raises Duplicate if `device` is registered already."""
        try:
            self.db.execute("INSERT INTO registered_devices (id, site, labels, created_ms, actor) "
                            "VALUES (?, ?, ?, ?, ?)",
                            [device, site, json.dumps(dict(labels)), ts_ms, actor])
        except sqlite3.IntegrityError as exc:
            raise Duplicate(f"device {device!r} is registered already") from exc

    def registered_devices(self) -> list[tuple[str, str, dict[str, str]]]:
        """(id, site, labels) of every API-registered device, by id."""
        rows = self.db.query("SELECT id, site, labels FROM registered_devices ORDER BY id")
        return [(r["id"], r["site"], json.loads(r["labels"])) for r in rows]

    def remove_registered_device(self, device: str) -> bool:
        """Drop the registration, the enrolled key and the device row (not its history)."""
        with self._tx():
            cur = self.db.execute("DELETE FROM registered_devices WHERE id = ?", [device])
            self.db.execute("DELETE FROM device_keys WHERE device = ?", [device])
            self.db.execute("DELETE FROM devices WHERE id = ?", [device])
        return bool(cur.rowcount)

    def set_device_key(self, device: str, key_text: str, ts_ms: EpochMs, actor: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO device_keys (device, journal_key, enrolled_ms, actor)"
                        " VALUES (?, ?, ?, ?)", [device, key_text, ts_ms, actor])

    def device_keys(self) -> dict[str, str]:
        """device -> enrolled journal key text."""
        return {r["device"]: r["journal_key"]
                for r in self.db.query("SELECT device, journal_key FROM device_keys")}

    # ---- audit and alarms -------------------------------------------------------------------

    def add_audit(self, e: AuditEntry) -> int:
        cur = self.db.execute(
            "INSERT INTO audit (ts_ms, actor, action, device, contract, reason, outcome, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [e.ts_ms, e.actor, e.action.value, e.device, e.contract, e.reason, e.outcome.value,
             json.dumps(dict(e.detail))])
        return int(cur.lastrowid or 0)

    def audit(self, *, contract: str | None = None, device: str | None = None,
              limit: int = 100) -> list[AuditEntry]:
        """Newest first."""
        used = {k: v for k, v in {"contract": contract, "device": device}.items() if v}
        where = " AND ".join(f"{k} = ?" for k in used) or "1"
        rows = self.db.query(f"SELECT * FROM audit WHERE {where} ORDER BY id DESC LIMIT ?",
                             [*used.values(), limit])
        return [AuditEntry(**{**r, "action": AuditAction(r["action"]),
                              "outcome": Outcome(r["outcome"]), "detail": json.loads(r["detail"])})
                for r in rows]

    def raise_alarm(self, device: str, kind: str, detail: str, ts_ms: EpochMs) -> int:
        """Raise an alarm, or raise again the one active for (device, kind): then its count, last
        time and detail are updated instead of a row inserted. `detail` is cut to
        MAX_ALARM_DETAIL characters. Returns the alarm's id."""
        detail = _bounded(detail)
        try:
            return self._raise_alarm(device, kind, detail, ts_ms)
        except sqlite3.IntegrityError:  # another connection raised it first (unique while active)
            return self._raise_alarm(device, kind, detail, ts_ms)

    def _raise_alarm(self, device: str, kind: str, detail: str, ts_ms: EpochMs) -> int:
        with self._tx():
            row = self._one("SELECT id FROM alarms WHERE device = ? AND kind = ? AND "
                            "cleared_ms IS NULL", [device, kind])
            if row is not None:
                self.db.execute("UPDATE alarms SET count = count + 1, last_ms = ?, detail = ? "
                                "WHERE id = ?", [ts_ms, detail, row["id"]])
                return int(row["id"])
            cur = self.db.execute("INSERT INTO alarms (ts_ms, device, kind, detail, last_ms) "
                                  "VALUES (?, ?, ?, ?, ?)", [ts_ms, device, kind, detail, ts_ms])
            return int(cur.lastrowid or 0)

    def clear_alarms(self, device: str, kind: str, ts_ms: EpochMs) -> int:
        """Clear the active alarm of (device, kind), if any. Returns how many were cleared."""
        cur = self.db.execute("UPDATE alarms SET cleared_ms = ? WHERE device = ? AND kind = ? "
                              "AND cleared_ms IS NULL", [ts_ms, device, kind])
        return int(cur.rowcount or 0)

    def clear_alarm(self, alarm_id: int, ts_ms: EpochMs) -> None:
        self.db.execute("UPDATE alarms SET cleared_ms = ? WHERE id = ? AND cleared_ms IS NULL",
                        [ts_ms, alarm_id])

    def ack_alarm(self, alarm_id: int, actor: str, ts_ms: EpochMs) -> Alarm:
        """Acknowledge an alarm (the first acknowledgement stays). Raises NotFound."""
        self.db.execute("UPDATE alarms SET acked_ms = ?, acked_by = ? WHERE id = ? AND "
                        "acked_ms IS NULL", [ts_ms, actor, alarm_id])
        return self.alarm(alarm_id)

    def alarm(self, alarm_id: int) -> Alarm:
        """Raises NotFound."""
        row = self._one("SELECT * FROM alarms WHERE id = ?", [alarm_id])
        if row is None:
            raise NotFound("alarm", str(alarm_id))
        return Alarm(**row)

    def alarms(self, *, active_only: bool = True, device: str | None = None,
               kind: str | None = None, acknowledged: bool | None = None,
               limit: int = 1000, cleared_only: bool = False) -> list[Alarm]:
        """Alarms matching every given filter, oldest first (`cleared_only`: the history,
        newest first)."""
        clauses = ["cleared_ms IS NULL"] if active_only and not cleared_only else []
        if cleared_only:
            clauses.append("cleared_ms IS NOT NULL")
        params: list[Any] = []
        for column, value in (("device", device), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if acknowledged is not None:
            clauses.append("acked_ms IS NOT NULL" if acknowledged else "acked_ms IS NULL")
        where = " AND ".join(clauses) or "1"
        order = "id DESC" if cleared_only else "id"
        rows = self.db.query(f"SELECT * FROM alarms WHERE {where} ORDER BY {order} LIMIT ?",
                             [*params, limit])
        return [Alarm(**r) for r in rows]

    def count_active_alarms(self) -> dict[tuple[str, bool], int]:
        """Active alarms by (kind, acknowledged)."""
        rows = self.db.query("SELECT kind, acked_ms IS NOT NULL AS acked, count(*) AS n FROM "
                             "alarms WHERE cleared_ms IS NULL GROUP BY kind, acked")
        return {(r["kind"], bool(r["acked"])): int(r["n"]) for r in rows}

    # ---- lineage retry budgets (hub/lineage.py) ---------------------------------------------

    def budget(self, lineage: str) -> Budget:
        row = self._one("SELECT * FROM lineages WHERE lineage = ?", [lineage])
        if row is None:
            return Budget(lineage=lineage)
        return Budget(lineage=lineage, retries=row["retries"], last_retry_ms=row["last_retry_ms"],
                      next_allowed_ms=row["next_allowed_ms"])

    def save_budget(self, budget: Budget) -> None:
        self.db.execute(
            "INSERT INTO lineages (lineage, retries, last_retry_ms, next_allowed_ms) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (lineage) DO UPDATE SET retries = excluded.retries, "
            "last_retry_ms = excluded.last_retry_ms, next_allowed_ms = excluded.next_allowed_ms",
            [budget.lineage, budget.retries, budget.last_retry_ms, budget.next_allowed_ms])

    def set_pending(self, lineage: str, pending: Mapping[str, Any] | None) -> None:
        """A deferred automatic retry of the lineage (None: nothing waits)."""
        self.db.execute(
            "INSERT INTO lineages (lineage, pending) VALUES (?, ?) ON CONFLICT (lineage) "
            "DO UPDATE SET pending = excluded.pending",
            [lineage, json.dumps(dict(pending)) if pending is not None else None])

    def pending_retries(self) -> list[tuple[str, dict[str, Any]]]:
        rows = self.db.query("SELECT lineage, pending FROM lineages WHERE pending IS NOT NULL "
                             "ORDER BY lineage")
        return [(r["lineage"], json.loads(r["pending"])) for r in rows]

def _check_and_migrate(db: Database) -> None:
    known = set(MIGRATION_NAMES)
    unknown = [m.name for m in MIGRATIONS.applied(db) if m.name not in known]
    if unknown:
        raise StoreError(f"database schema is newer than this hub (unknown migrations {unknown}); "
                         "upgrade the hub")
    MIGRATIONS.apply(db)


def _bounded(detail: str) -> str:
    return detail if len(detail) <= MAX_ALARM_DETAIL else detail[:MAX_ALARM_DETAIL - 1] + "…"


def _encode_device_field(name: str, value: Any) -> Any:
    if name == "projection":
        return None if value is None else codec.canonical_dumps(value)
    if name in ("drift", "labels"):
        return None if value is None else json.dumps(dict(value))
    return value


def _device(r: Mapping[str, Any]) -> DeviceRecord:
    return DeviceRecord(**{
        **r, "state": DeviceState(r["state"]), "labels": json.loads(r["labels"]),
        "projection": codec.loads(r["projection"]) if r["projection"] is not None else None,
        "drift": json.loads(r["drift"]) if r["drift"] is not None else None,
    })


def _contract(r: Mapping[str, Any]) -> ContractRecord:
    return ContractRecord(**{**r, "status": ContractStatus(r["status"]),
                             "document": json.loads(r["document"])})
