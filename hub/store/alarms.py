"""Alarms: at most one active per (device, kind), raised again rather than duplicated, then
acknowledged and cleared (hub/alarms.py holds the kinds and when they are raised)."""
from __future__ import annotations

import sqlite3
from typing import Any

from contracts.limits import clip
from contracts.types import EpochMs
from hub.store.errors import NotFound
from hub.store.records import Alarm
from hub.store.transactions import Connection

MAX_ALARM_DETAIL = 300
"""Alarm details are bounded (interface 3): they quote device input and are shown on a banner."""


class AlarmRepository:
    """`store.alarms`: the unique index alarms_active keeps one active alarm per (device, kind)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def raise_(self, device: str, kind: str, detail: str, ts_ms: EpochMs) -> int:
        """Raise an alarm, or raise again the one active for (device, kind): then its count, last
        time and detail are updated instead of a row inserted. `detail` is cut to
        MAX_ALARM_DETAIL characters. Returns the alarm's id."""
        detail = clip(detail, MAX_ALARM_DETAIL)
        try:
            return self._raise(device, kind, detail, ts_ms)
        except sqlite3.IntegrityError:  # another connection raised it first (unique while active)
            return self._raise(device, kind, detail, ts_ms)

    def _raise(self, device: str, kind: str, detail: str, ts_ms: EpochMs) -> int:
        with self._conn.tx() as db:
            row = self._conn.one("SELECT id FROM alarms WHERE device = ? AND kind = ? AND "
                                 "cleared_ms IS NULL", [device, kind])
            if row is not None:
                db.execute("UPDATE alarms SET count = count + 1, last_ms = ?, detail = ? "
                           "WHERE id = ?", [ts_ms, detail, row["id"]])
                return int(row["id"])
            cur = db.execute("INSERT INTO alarms (ts_ms, device, kind, detail, last_ms) "
                             "VALUES (?, ?, ?, ?, ?)", [ts_ms, device, kind, detail, ts_ms])
            return int(cur.lastrowid or 0)

    def clear_kind(self, device: str, kind: str, ts_ms: EpochMs) -> int:
        """Clear the active alarm of (device, kind), if any. Returns how many were cleared."""
        cur = self._conn.db.execute("UPDATE alarms SET cleared_ms = ? WHERE device = ? AND "
                                    "kind = ? AND cleared_ms IS NULL", [ts_ms, device, kind])
        return int(cur.rowcount or 0)

    def clear(self, alarm_id: int, ts_ms: EpochMs) -> None:
        self._conn.db.execute("UPDATE alarms SET cleared_ms = ? WHERE id = ? AND "
                              "cleared_ms IS NULL", [ts_ms, alarm_id])

    def ack(self, alarm_id: int, actor: str, ts_ms: EpochMs) -> Alarm:
        """Acknowledge an alarm (the first acknowledgement stays). Raises NotFound."""
        self._conn.db.execute("UPDATE alarms SET acked_ms = ?, acked_by = ? WHERE id = ? AND "
                              "acked_ms IS NULL", [ts_ms, actor, alarm_id])
        return self.get(alarm_id)

    def get(self, alarm_id: int) -> Alarm:
        """Raises NotFound."""
        row = self._conn.one("SELECT * FROM alarms WHERE id = ?", [alarm_id])
        if row is None:
            raise NotFound("alarm", str(alarm_id))
        return Alarm(**row)

    def find(self, *, active_only: bool = True, device: str | None = None,
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
        rows = self._conn.db.query(f"SELECT * FROM alarms WHERE {where} ORDER BY {order} LIMIT ?",
                                   [*params, limit])
        return [Alarm(**r) for r in rows]

    def count_active(self) -> dict[tuple[str, bool], int]:
        """Active alarms by (kind, acknowledged)."""
        rows = self._conn.db.query("SELECT kind, acked_ms IS NOT NULL AS acked, count(*) AS n "
                                   "FROM alarms WHERE cleared_ms IS NULL GROUP BY kind, acked")
        return {(r["kind"], bool(r["acked"])): int(r["n"]) for r in rows}
