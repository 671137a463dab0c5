"""The audit trail: who did what to which device or contract (hub/audit.py holds the entries)."""
from __future__ import annotations

import json

from hub.audit import AuditAction, AuditEntry, Outcome
from hub.store.transactions import Connection


class AuditRepository:
    """`store.audit`: append-only; read newest first."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, e: AuditEntry) -> int:
        cur = self._conn.db.execute(
            "INSERT INTO audit (ts_ms, actor, action, device, contract, reason, outcome, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [e.ts_ms, e.actor, e.action.value, e.device, e.contract, e.reason, e.outcome.value,
             json.dumps(dict(e.detail))])
        return int(cur.lastrowid or 0)

    def find(self, *, contract: str | None = None, device: str | None = None,
             limit: int = 100) -> list[AuditEntry]:
        """Entries matching every given filter, newest first."""
        used = {k: v for k, v in {"contract": contract, "device": device}.items() if v}
        where = " AND ".join(f"{k} = ?" for k in used) or "1"
        rows = self._conn.db.query(f"SELECT * FROM audit WHERE {where} ORDER BY id DESC LIMIT ?",
                                   [*used.values(), limit])
        return [AuditEntry(**{**r, "action": AuditAction(r["action"]),
                              "outcome": Outcome(r["outcome"]), "detail": json.loads(r["detail"])})
                for r in rows]
