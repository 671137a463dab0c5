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

_SAVEPOINT, _ROLLBACK_TO, _RELEASE = ("SAVEPOINT fp_tx", "ROLLBACK TO SAVEPOINT fp_tx",
                                      "RELEASE SAVEPOINT fp_tx")
"""One name for every nested savepoint: RELEASE and ROLLBACK TO act on the innermost of that name,
so they nest. sqlite-utils' `atomic()` names each savepoint at random, and each new name is a new
statement in sqlite3's cache (128 statements): a batch's savepoints evicted every statement the
hub prepares, among them the journal's 128-row INSERT, and each was prepared again."""


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
        conn = self.db.conn
        if conn.in_transaction:  # a savepoint, under one fixed name (see _SAVEPOINT)
            conn.execute(_SAVEPOINT)
            try:
                yield self.db
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT inside may have ended it already
                    conn.execute(_ROLLBACK_TO)
                    conn.execute(_RELEASE)
                raise
            conn.execute(_RELEASE)
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
