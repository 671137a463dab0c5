"""The journal's SQLite file: its tables and pragmas, rows <-> entries, and the error boundary.

Tables (schema version `SCHEMA_VERSION`, stored in `meta.schema_version`; a file written by a newer
build is refused on open):

    entries      (seq PK, ts_ms, kind, body CBOR, prev_hash, hash)   the hash chain
    meta         (key PK, value)          schema_version, acked_seq
    checkpoints  (name PK, seq, ts_ms, data)   opaque state valid as of journal `seq`

Pragmas, chosen once on open: `auto_vacuum=INCREMENTAL` (retention frees pages with
`PRAGMA incremental_vacuum`, never a full VACUUM that would rewrite the file and block the scan
loop), the `synchronous` level asked for, and `journal_size_limit` capping the WAL.

Every sqlite3 error is wrapped here (`guarded`): JournalFull for SQLITE_FULL, JournalError otherwise,
naming the file and what was being done.
"""
from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from agent import retention
from agent.errors import JournalError, JournalFull
from contracts.chain import GENESIS, Entry, EntryKind
from contracts.codec import loads
from contracts.errors import EncodingError
from contracts.types import EpochMs

T = TypeVar("T")

SCHEMA_VERSION = 1
"""Version of the tables above; a file written by a newer build is refused on open."""

WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024
"""Truncate the WAL back to this after a checkpoint (SQLite's default autocheckpoint is ~4 MiB)."""

Item = tuple[EntryKind, Mapping[str, Any], EpochMs]
"""What the caller appends: kind, body, time."""

INSERT_ENTRY = "INSERT INTO entries (seq, ts_ms, kind, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)"
SELECT_ENTRIES = "SELECT seq, ts_ms, kind, body, prev_hash, hash FROM entries"
"""Columns in the order `row_to_entry` takes them."""
SET_META = ("INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value")


class Synchronous(enum.StrEnum):
    """SQLite `PRAGMA synchronous` levels we allow (https://sqlite.org/pragma.html#pragma_synchronous)."""

    FULL = "FULL"
    NORMAL = "NORMAL"


def guarded(path: Path, what: str, fn: Callable[[], T]) -> T:
    """Run `fn`, turning sqlite3 errors into JournalError (JournalFull for SQLITE_FULL)."""
    try:
        return fn()
    except sqlite3.Error as exc:
        full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        error = JournalFull if full else JournalError
        raise error(f"journal {path}: {what} failed: {exc}") from exc


def prepare(db: sqlite_utils.Database, path: Path, synchronous: Synchronous) -> tuple[tuple[int, bytes], int]:
    """Set the pragmas, create missing tables, check the version. Returns (head, acked_seq).
    Raises JournalError for a file from a newer schema; sqlite3 errors are the caller's to guard."""
    with db.ensure_autocommit_on():
        # auto_vacuum must be chosen before the first table exists; a no-op afterwards.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute(f"PRAGMA synchronous = {synchronous.value}")
        db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    db.enable_wal()
    with db.atomic():
        _create_tables(db)
    found = meta(db, "schema_version")
    if found > SCHEMA_VERSION:
        raise JournalError(f"journal {path}: meta.schema_version is {found}, newer than "
                           f"this build reads ({SCHEMA_VERSION}); upgrade fieldpact")
    return read_head(db), meta(db, "acked_seq")


def _create_tables(db: sqlite_utils.Database) -> None:
    hashes = {"ts_ms", "kind", "body", "prev_hash", "hash"}
    db.table("entries").create({"seq": int, "ts_ms": int, "kind": str, "body": bytes,
                                "prev_hash": bytes, "hash": bytes},
                               pk="seq", not_null=hashes, if_not_exists=True)
    db.table("meta").create({"key": str, "value": int}, pk="key", if_not_exists=True)
    db.table("checkpoints").create({"name": str, "seq": int, "ts_ms": int, "data": bytes},
                                   pk="name", not_null={"seq", "ts_ms", "data"}, if_not_exists=True)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
               [SCHEMA_VERSION])


def meta(db: sqlite_utils.Database, key: str) -> int:
    """The integer stored under `key` in `meta` (0 when absent)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def read_head(db: sqlite_utils.Database) -> tuple[int, bytes]:
    """(last seq, its hash); (0, GENESIS) for an empty journal."""
    row = db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))


def row_to_entry(row: Sequence[Any]) -> Entry:
    """An Entry from a SELECT_ENTRIES row. Raises EncodingError (or ValueError/TypeError) for a row
    that does not decode; the stored hashes are not checked here (see journal_verify.py)."""
    seq, ts_ms, kind, body, prev_hash, hash_ = row
    decoded = loads(bytes(body))
    if not isinstance(decoded, Mapping):
        raise EncodingError(f"body is a {type(decoded).__name__}, not a map")
    return Entry(seq=int(seq), ts_ms=int(ts_ms), kind=EntryKind(kind), body=decoded,
                 prev_hash=bytes(prev_hash), hash=bytes(hash_))


def delete_through(conn: sqlite3.Connection, last: int) -> int:
    """Delete every entry with seq <= last; returns how many went."""
    return conn.execute("DELETE FROM entries WHERE seq <= ?", (last,)).rowcount


def rows_to_free(db: sqlite_utils.Database, path: Path, drop: retention.Drop) -> int | None:
    """Last seq to delete (from the low-water mark, up to drop.max_seq) to free ~drop.excess_bytes,
    estimated from body lengths; None when no stored row is at or below max_seq."""
    row = guarded(path, "retention", lambda: db.execute(
        "SELECT seq FROM (SELECT seq, SUM(length(body) + ?) OVER (ORDER BY seq) AS freed "
        "FROM entries WHERE seq <= ?) WHERE freed >= ? LIMIT 1",
        [retention.ROW_OVERHEAD_BYTES, drop.max_seq, drop.excess_bytes]).fetchone())
    if row is not None:
        return int(row[0])
    exists = guarded(path, "retention", lambda: db.execute(
        "SELECT 1 FROM entries WHERE seq <= ? LIMIT 1", [drop.max_seq]).fetchone())
    return drop.max_seq if exists else None


def vacuum(db: sqlite_utils.Database, path: Path) -> None:
    """Return freed pages to the file system (auto_vacuum=INCREMENTAL)."""
    # executescript steps the pragma to completion; a plain execute() steps it once, and each
    # step frees a single page (so freed space would never reach the file).
    guarded(path, "incremental_vacuum", lambda: db.conn.executescript("PRAGMA incremental_vacuum;"))
