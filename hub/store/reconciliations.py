"""Reconciliation reports (hub/reconcile.py) and the operators' requests for one."""
from __future__ import annotations

import json

from contracts.types import EpochMs
from hub.store.errors import NotFound
from hub.store.records import ReconcileRequest, ReconciliationRecord
from hub.store.transactions import Connection


class ReconciliationRepository:
    """`store.reconciliations`: reports, newest first, and requests the sync side works off."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, rec: ReconciliationRecord) -> int:
        cur = self._conn.db.execute(
            "INSERT INTO reconciliations (device, contract, version, ts_ms, report, divergent, action)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [rec.device, rec.contract, rec.version, rec.ts_ms, json.dumps(rec.report),
             int(rec.divergent), rec.action])
        return int(cur.lastrowid or 0)

    def find(self, device: str | None = None, limit: int = 100) -> list[ReconciliationRecord]:
        """Reports (of `device`, if given), newest first."""
        where, params = ("WHERE device = ?", [device]) if device else ("", [])
        rows = self._conn.db.query(
            f"SELECT * FROM reconciliations {where} ORDER BY id DESC LIMIT ?", [*params, limit])
        return [ReconciliationRecord(**{**r, "report": json.loads(r["report"]),
                                        "divergent": bool(r["divergent"])}) for r in rows]

    def get(self, rec_id: int) -> ReconciliationRecord:
        """Raises NotFound."""
        row = self._conn.one("SELECT * FROM reconciliations WHERE id = ?", [rec_id])
        if row is None:
            raise NotFound("reconciliation", str(rec_id))
        return ReconciliationRecord(**{**row, "report": json.loads(row["report"]),
                                       "divergent": bool(row["divergent"])})

    def add_request(self, cid: str, device: str, actor: str, ts_ms: EpochMs) -> int:
        cur = self._conn.db.execute("INSERT INTO reconcile_requests (contract, device, actor, "
                                    "ts_ms) VALUES (?, ?, ?, ?)", [cid, device, actor, ts_ms])
        return int(cur.lastrowid or 0)

    def latest_request(self, cid: str) -> ReconcileRequest | None:
        """The newest request for contract `cid`, open or done (the API absorbs repeats into it)."""
        row = self._conn.one("SELECT * FROM reconcile_requests WHERE contract = ? "
                             "ORDER BY id DESC LIMIT 1", [cid])
        return ReconcileRequest(**row) if row else None

    def open_requests(self) -> list[ReconcileRequest]:
        """Requests the sync side has not handled yet, oldest first."""
        rows = self._conn.db.query("SELECT * FROM reconcile_requests WHERE done_ms IS NULL "
                                   "ORDER BY id")
        return [ReconcileRequest(**r) for r in rows]

    def finish_request(self, request_id: int, ts_ms: EpochMs) -> None:
        self._conn.db.execute("UPDATE reconcile_requests SET done_ms = ? WHERE id = ? AND "
                              "done_ms IS NULL", [ts_ms, request_id])
