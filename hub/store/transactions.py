"""One SQLite connection with its write transactions and batches; the repositories share it.

Rules:
- One connection per thread: the API's and the MQTT side's (hub/app.py). WAL lets the API read
  while the sync side writes; write transactions take the lock at BEGIN (IMMEDIATE).
- The sync side writes in batches (`begin_batch` .. `commit_batch`): every write in between joins
  one transaction, inner transactions become savepoints, and nothing is acked before the commit.
- `synchronous=FULL` (set on open, hub/store/database.py): a commit is durable when it returns.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlite_utils import Database

from hub.store.errors import StoreError


class Connection:
    """The database connection every repository of one HubStore writes through."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def tx(self) -> Iterator[Database]:
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

    def one(self, sql: str, params: Iterable[Any]) -> dict[str, Any] | None:
        """The first row of a query as a dict, or None."""
        return next(iter(self.db.query(sql, list(params))), None)

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

    def data_version(self) -> tuple[int, int]:
        """Changes as soon as anything was committed since the last call: by another connection
        (SQLite's `PRAGMA data_version`) or by this one (`total_changes`)."""
        other = self.db.conn.execute("PRAGMA data_version").fetchone()[0]
        return int(other), self.db.conn.total_changes
