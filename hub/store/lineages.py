"""Retry budgets per contract lineage and deferred automatic retries (hub/lineage.py holds the
rules: automation never undoes a safety latch unless the budget allows it, invariant 9)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hub.lineage import Budget
from hub.store.transactions import Connection


class LineageRepository:
    """`store.lineages`: one row per lineage, created on first write."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def budget(self, lineage: str) -> Budget:
        """The lineage's budget (a fresh one if it never retried)."""
        row = self._conn.one("SELECT * FROM lineages WHERE lineage = ?", [lineage])
        if row is None:
            return Budget(lineage=lineage)
        return Budget(lineage=lineage, retries=row["retries"], last_retry_ms=row["last_retry_ms"],
                      next_allowed_ms=row["next_allowed_ms"])

    def save_budget(self, budget: Budget) -> None:
        self._conn.db.execute(
            "INSERT INTO lineages (lineage, retries, last_retry_ms, next_allowed_ms) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (lineage) DO UPDATE SET retries = excluded.retries, "
            "last_retry_ms = excluded.last_retry_ms, next_allowed_ms = excluded.next_allowed_ms",
            [budget.lineage, budget.retries, budget.last_retry_ms, budget.next_allowed_ms])

    def set_pending(self, lineage: str, pending: Mapping[str, Any] | None) -> None:
        """A deferred automatic retry of the lineage (None: nothing waits)."""
        self._conn.db.execute(
            "INSERT INTO lineages (lineage, pending) VALUES (?, ?) ON CONFLICT (lineage) "
            "DO UPDATE SET pending = excluded.pending",
            [lineage, json.dumps(dict(pending)) if pending is not None else None])

    def pending_retries(self) -> list[tuple[str, dict[str, Any]]]:
        """(lineage, pending retry) of every lineage with one waiting, by lineage."""
        rows = self._conn.db.query("SELECT lineage, pending FROM lineages WHERE pending IS NOT "
                                   "NULL ORDER BY lineage")
        return [(r["lineage"], json.loads(r["pending"])) for r in rows]
