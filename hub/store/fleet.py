"""Fleet configuration rows: designs, binding revisions, snapshots, desired snapshots, drift.

Designs, bindings and snapshots are written once and never changed: the migration's triggers abort
an UPDATE or DELETE on them, so not even a bug in the hub can rewrite history (hub/fleet.py holds
the rules; contracts/fleet_*.py the language).
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts.types import EpochMs
from hub.states import ContractStatus, DeviceState
from hub.store.errors import Duplicate, NotFound
from hub.store.transactions import Connection


@dataclass(frozen=True, kw_only=True)
class StoredDocument:
    """A design version or a binding revision as stored."""

    name: str
    version: int  # a design's version, a binding's revision
    document: Mapping[str, Any]
    created_ms: EpochMs
    actor: str


@dataclass(frozen=True, kw_only=True)
class SnapshotRecord:
    id: str
    body: bytes
    created_ms: EpochMs
    actor: str
    source: Mapping[str, Any]  # what it was made from: design refs, binding revisions, target


@dataclass(frozen=True, kw_only=True)
class DriftRow:
    device: str
    contract: str
    in_sync: bool
    why: str | None
    since_ms: EpochMs


@dataclass(frozen=True, kw_only=True)
class DeviceHead:
    """What drift reads of a device row: no projection, no journal position."""

    id: str
    site: str
    state: DeviceState
    last_seen_ms: EpochMs | None
    running: str | None  # "contract@version" from its birth / telemetry


@dataclass(frozen=True, kw_only=True)
class ContractHead:
    """A contract record without its document and signed bytes."""

    id: str
    contract: str
    version: int
    device: str
    status: ContractStatus
    content_hash: str


_DEVICE_STATES = {s.value: s for s in DeviceState}
_STATUSES = {s.value: s for s in ContractStatus}
"""Enum members by value: a dict lookup is ten times cheaper than `DeviceState(value)`, and drift
reads every device row on each request."""


class FleetRepository:
    """`store.fleet`."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._device_memo: dict[tuple[Any, ...], DeviceHead] = {}
        self._contract_rows: list[tuple[Any, ...]] = []
        self._contract_epoch = 0
        self._contract_heads: dict[str, ContractHead] = {}
        self._drift: tuple[list[tuple[Any, ...]], dict[tuple[str, str], DriftRow]] = ([], {})

    # -- designs and bindings ---------------------------------------------------------------
    def add_design(self, name: str, version: int, document: Mapping[str, Any], ts_ms: EpochMs,
                   actor: str) -> None:
        """Raises Duplicate if (name, version) is stored already."""
        self._insert("INSERT INTO designs (name, version, document, created_ms, actor) VALUES "
                     "(?, ?, ?, ?, ?)", [name, version, json.dumps(document), ts_ms, actor],
                     f"design {name}@{version} exists already; designs never change")

    def designs(self, name: str | None = None) -> list[StoredDocument]:
        """Every version of `name` (every design when None), by name then version."""
        where, args = ("WHERE name = ?", [name]) if name is not None else ("", [])
        rows = self._conn.db.query(f"SELECT name, version, document, created_ms, actor FROM designs "
                                   f"{where} ORDER BY name, version", args)
        return [_doc(r, "version") for r in rows]

    def design(self, name: str, version: int | None = None) -> StoredDocument:
        """A version of `name` (the highest when None). Raises NotFound."""
        found = [d for d in self.designs(name) if version is None or d.version == version]
        if not found:
            raise NotFound("design", name if version is None else f"{name}@{version}")
        return found[-1]

    def add_binding(self, name: str, design: str, document: Mapping[str, Any], ts_ms: EpochMs,
                    actor: str) -> int:
        """Store a new revision of binding `name`; returns its revision number (1, 2, ...)."""
        with self._conn.tx() as db:
            row = self._conn.one("SELECT max(revision) AS r FROM bindings WHERE name = ?", [name])
            revision = int(row["r"] or 0) + 1 if row else 1
            db.execute("INSERT INTO bindings (name, revision, design, document, created_ms, actor) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       [name, revision, design, json.dumps(document), ts_ms, actor])
        return revision

    def bindings(self, *, latest: bool = True) -> list[StoredDocument]:
        """The latest revision of every binding (every revision when not `latest`), by name."""
        rows = self._conn.db.query(
            "SELECT name, revision, document, created_ms, actor FROM bindings b"
            + (" WHERE revision = (SELECT max(revision) FROM bindings WHERE name = b.name)"
               if latest else "") + " ORDER BY name, revision")
        return [_doc(r, "revision") for r in rows]

    # -- snapshots --------------------------------------------------------------------------
    def add_snapshot(self, rec: SnapshotRecord) -> bool:
        """Store `rec`; False (nothing written) when a snapshot with its id exists: same content."""
        with self._conn.tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO snapshots (id, body, created_ms, actor, source) "
                             "VALUES (?, ?, ?, ?, ?)", [rec.id, rec.body, rec.created_ms,
                                                         rec.actor, json.dumps(rec.source)])
        return bool(cur.rowcount)

    def snapshot(self, snapshot_id: str) -> SnapshotRecord:
        """Raises NotFound."""
        row = self._conn.one("SELECT * FROM snapshots WHERE id = ?", [snapshot_id])
        if row is None:
            raise NotFound("snapshot", snapshot_id)
        return _snapshot(row)

    def snapshots(self, limit: int = 100) -> list[SnapshotRecord]:
        """Newest first."""
        rows = self._conn.db.query("SELECT * FROM snapshots ORDER BY created_ms DESC, id LIMIT ?",
                                   [limit])
        return [_snapshot(r) for r in rows]

    # -- desired state and drift ------------------------------------------------------------
    def set_desired(self, device: str, snapshot_id: str, ts_ms: EpochMs, actor: str) -> None:
        self._conn.db.execute("INSERT OR REPLACE INTO desired (device, snapshot, set_ms, actor) "
                              "VALUES (?, ?, ?, ?)", [device, snapshot_id, ts_ms, actor])

    def clear_desired(self, device: str) -> str | None:
        """Forget `device`'s desired snapshot and its drift rows (one transaction); the snapshot
        id that was desired, or None when none was."""
        with self._conn.tx() as db:
            row = self._conn.one("SELECT snapshot FROM desired WHERE device = ?", [device])
            db.execute("DELETE FROM desired WHERE device = ?", [device])
            db.execute("DELETE FROM drift WHERE device = ?", [device])
        return str(row["snapshot"]) if row else None

    def desired(self) -> dict[str, str]:
        """device -> desired snapshot id."""
        return dict(self._conn.db.conn.execute("SELECT device, snapshot FROM desired").fetchall())

    def drift_rows(self) -> dict[tuple[str, str], DriftRow]:
        """(device, contract) -> its since-when row; the same dict while no row changed."""
        rows = self._conn.db.conn.execute(
            "SELECT device, contract, in_sync, why, since_ms FROM drift ORDER BY device, contract"
        ).fetchall()
        if rows != self._drift[0]:
            self._drift = (rows, {(d, c): DriftRow(device=d, contract=c, in_sync=bool(i), why=w,
                                                   since_ms=t) for d, c, i, w, t in rows})
        return self._drift[1]

    def save_drift(self, changed: list[DriftRow], gone: list[tuple[str, str]]) -> None:
        """Record status changes (one transaction), and forget rows no longer desired."""
        if not changed and not gone:
            return
        with self._conn.tx() as db:
            # Only for a device still desired: an evaluation that read `desired` before a
            # DELETE /api/devices/{id}/desired committed does not bring its rows back.
            db.conn.executemany("INSERT OR REPLACE INTO drift (device, contract, in_sync, why, "
                                "since_ms) SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM "
                                "desired WHERE device = ?)",
                                [(r.device, r.contract, int(r.in_sync), r.why, r.since_ms,
                                  r.device) for r in changed])
            db.conn.executemany("DELETE FROM drift WHERE device = ? AND contract = ?", gone)

    def device_heads(self) -> list[DeviceHead]:
        """Every device row's head, by id. A row unchanged since the last call gives the same
        object (drift reads all of them once a second and caches by them)."""
        cur = self._conn.db.conn.execute(
            "SELECT id, site, state, last_seen_ms, contract, version FROM devices ORDER BY id")
        rows, memo = cur.fetchall(), self._device_memo
        out = [memo.get(r) or _device_head(r, memo) for r in rows]
        if len(memo) > 2 * len(rows) + 1024:  # rows that changed since: forget the old ones
            self._device_memo = dict(zip(rows, out))
        return out

    def contract_heads(self) -> tuple[int, dict[str, ContractHead]]:
        """(epoch, every contract record's head by id): the epoch changes exactly when a record
        was added or changed since the last call, and the dict is then a new one."""
        cur = self._conn.db.conn.execute(
            "SELECT id, contract, version, device, status, content_hash FROM contracts ORDER BY id")
        rows = cur.fetchall()
        if rows != self._contract_rows:
            self._contract_rows, self._contract_epoch = rows, self._contract_epoch + 1
            self._contract_heads = {i: ContractHead(
                id=i, contract=c, version=v, device=d, status=_STATUSES[st], content_hash=h)
                for i, c, v, d, st, h in rows}
        return self._contract_epoch, self._contract_heads

    def documents(self, ids: list[str]) -> list[Mapping[str, Any]]:
        """The documents of the contract records `ids`, in that order. Raises NotFound."""
        marks = ", ".join("?" * len(ids))
        found = dict(self._conn.db.conn.execute(
            f"SELECT id, document FROM contracts WHERE id IN ({marks})", ids).fetchall())
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound("contract", missing[0])
        return [json.loads(found[i]) for i in ids]

    def _insert(self, sql: str, args: list[Any], duplicate: str) -> None:
        try:
            with self._conn.tx() as db:
                db.execute(sql, args)
        except sqlite3.IntegrityError as exc:
            raise Duplicate(duplicate) from exc


def _device_head(row: tuple[Any, ...], memo: dict[tuple[Any, ...], DeviceHead]) -> DeviceHead:
    i, s, st, seen, c, v = row
    head = memo[row] = DeviceHead(id=i, site=s, state=_DEVICE_STATES[st], last_seen_ms=seen,
                                  running=f"{c}@{v}" if c is not None and v is not None else None)
    return head


def _doc(r: Mapping[str, Any], version_key: str) -> StoredDocument:
    return StoredDocument(name=r["name"], version=r[version_key], document=json.loads(r["document"]),
                          created_ms=r["created_ms"], actor=r["actor"])


def _snapshot(r: Mapping[str, Any]) -> SnapshotRecord:
    return SnapshotRecord(id=r["id"], body=bytes(r["body"]), created_ms=r["created_ms"],
                          actor=r["actor"], source=json.loads(r["source"]))
