"""Commissioning requests sent to agents and what they answered (hub/commissioning.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from contracts.types import EpochMs
from hub.store.transactions import Connection

KEEP_PER_DEVICE = 20
"""Requests kept per device: the newest answers matter; older ones are history, not state."""


@dataclass(frozen=True, kw_only=True)
class CommissioningRecord:
    id: str
    device: str
    requested_ms: EpochMs
    seconds: float
    actor: str
    received_ms: EpochMs | None = None
    ok: bool | None = None
    report: dict[str, Any] | None = None
    refused: str | None = None


class CommissioningRepository:
    """`store.commissioning`: one row per request; the answer fills it in."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, rec: CommissioningRecord) -> None:
        """Record a request sent (and keep only the newest KEEP_PER_DEVICE of its device)."""
        with self._conn.tx():
            self._conn.db.execute(
                "INSERT INTO commissioning (id, device, requested_ms, seconds, actor) "
                "VALUES (?, ?, ?, ?, ?)", [rec.id, rec.device, rec.requested_ms, rec.seconds, rec.actor])
            self._conn.db.execute(
                "DELETE FROM commissioning WHERE device = ? AND id NOT IN (SELECT id FROM "
                "commissioning WHERE device = ? ORDER BY requested_ms DESC, id DESC LIMIT ?)",
                [rec.device, rec.device, KEEP_PER_DEVICE])

    def answer(self, request_id: str, device: str, received_ms: EpochMs, *,
               report: dict[str, Any] | None, ok: bool | None, refused: str | None) -> bool:
        """Fill in the answer to an open request of `device`; False if there is none (an
        unknown id, another device's, or already answered: the first answer counts)."""
        with self._conn.tx():
            cur = self._conn.db.execute(
                "UPDATE commissioning SET received_ms = ?, ok = ?, report = ?, refused = ? "
                "WHERE id = ? AND device = ? AND received_ms IS NULL",
                [received_ms, None if ok is None else int(ok),
                 None if report is None else json.dumps(report), refused, request_id, device])
        return cur.rowcount == 1

    def latest(self, device: str) -> CommissioningRecord | None:
        row = self._conn.one("SELECT * FROM commissioning WHERE device = ? "
                             "ORDER BY requested_ms DESC, id DESC LIMIT 1", [device])
        return _record(row) if row else None

    def latest_answered(self, device: str) -> CommissioningRecord | None:
        row = self._conn.one("SELECT * FROM commissioning WHERE device = ? AND received_ms IS NOT "
                             "NULL ORDER BY received_ms DESC, id DESC LIMIT 1", [device])
        return _record(row) if row else None


def _record(row: dict[str, Any]) -> CommissioningRecord:
    return CommissioningRecord(**{**row, "ok": None if row["ok"] is None else bool(row["ok"]),
                                  "report": json.loads(row["report"]) if row["report"] else None})
