"""The agent's journal: a hash-chained, gapless log of entries in one SQLite file (invariant 4).

Rules:
- Journal first. The scan loop appends what it decided (one `append_many` per cycle, one
  transaction) before it acts or acks; if the append fails, nothing of it is stored, `head()` is
  unchanged, and `JournalError` tells the caller to go to safe state.
- Gapless. `seq` is head+1, and a journal opened after a crash resumes at the last committed row,
  so a crash never leaves a hole. The head row is never deleted, so the next seq survives retention.
- Nothing unacked is deleted, except when the file is over twice its budget: then the oldest unacked
  entries go too, and a GAP entry {dropped_from, dropped_to, reason} is appended in the same
  transaction, so the loss itself is journaled and the chain from the low-water mark still verifies.
- Durability. WAL with `synchronous=FULL` by default: a commit is fsynced before `append` returns,
  so an entry we act on or ack survives power loss (DESIGN pitfall: WAL+NORMAL survives a process
  crash but may lose the last commits on power loss). Cost, measured on this machine (virtio disk,
  ext4, shared with other jobs; 3 runs of 2,000-5,000 4-entry `append_many` cycles each):
  NORMAL 10,000-19,000 cycles/s, FULL 350-4,200 cycles/s (one WAL fsync per commit, so it swings
  with disk contention). A 100 ms scan needs 10 cycles/s: FULL leaves >30x headroom. NORMAL is
  offered for benchmarks and hosts with backed power; the scan loop uses FULL.
- Size. `auto_vacuum=INCREMENTAL`: retention frees pages with `PRAGMA incremental_vacuum`, never a
  full VACUUM (which would rewrite the file and block the scan loop). `size_bytes()` is the logical
  database size (page_count x page_size); the WAL beside it is capped by `journal_size_limit`.

Not thread-safe: one owner calls it (the scan loop, or `asyncio.to_thread` one call at a time).
"""
from __future__ import annotations

import enum
import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import sqlite_utils

from contracts.chain import GENESIS, ChainBreak, Entry, EntryKind, make_entry, verify_chain
from contracts.codec import canonical_dumps, loads
from contracts.errors import EncodingError
from contracts.journal_events import GapBody, encode
from contracts.types import EpochMs
from runtime.files import private_sqlite

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 1
"""Version of the tables below; a file written by a newer build is refused on open."""

HARD_LIMIT_FACTOR = 2
"""Unacked entries are dropped only above budget x this: twice the budget leaves the uplink a long
outage's worth of room before we lose data the hub has not seen."""

VERIFY_PAGE = 1_000
"""Rows per page when verifying: bounded memory whatever the journal's length."""

ROW_OVERHEAD_BYTES = 96
"""Estimated bytes per row beyond its body: two 32-byte hashes, seq, ts_ms, kind, record header
and b-tree cell pointer. Used only to estimate how many rows retention must drop."""

MAX_RETENTION_ROUNDS = 16
"""Retention deletes, vacuums and re-measures; estimates converge in a few rounds."""

WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024
"""Truncate the WAL back to this after a checkpoint (SQLite's default autocheckpoint is ~4 MiB)."""

Item = tuple[EntryKind, Mapping[str, Any], EpochMs]
"""What the caller appends: kind, body, time."""


class JournalError(Exception):
    """The journal cannot do what was asked (I/O error, corrupt or too-new file, not open).
    Lives here until the agent has its own errors module:

        JournalError
        └── JournalFull   the disk (or SQLite's page limit) is full; nothing was stored
    """


class JournalFull(JournalError):
    """SQLITE_FULL: the append was rolled back. Retention (`enforce_budget`) may make room."""


class Synchronous(enum.StrEnum):
    """SQLite `PRAGMA synchronous` levels we allow (https://sqlite.org/pragma.html#pragma_synchronous)."""

    FULL = "FULL"
    NORMAL = "NORMAL"


_INSERT = "INSERT INTO entries (seq, ts_ms, kind, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)"
_SELECT = "SELECT seq, ts_ms, kind, body, prev_hash, hash FROM entries"
_SET_META = ("INSERT INTO meta (key, value) VALUES (?, ?) "
             "ON CONFLICT(key) DO UPDATE SET value = excluded.value")


class SqliteJournal:
    """The journal in the SQLite file at `path`. Use as a context manager, or `open()`/`close()`.

    `budget_bytes` is the retention budget `enforce_budget` keeps the file under (None: keep all)."""

    def __init__(self, path: str | Path, *, budget_bytes: int | None = None,
                 synchronous: Synchronous = Synchronous.FULL) -> None:
        if budget_bytes is not None and budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, got {budget_bytes}")
        self.path = Path(path)
        self.budget_bytes = budget_bytes
        self.synchronous = synchronous
        self._db: sqlite_utils.Database | None = None
        self._head: tuple[int, bytes] = (0, GENESIS)
        self._acked = 0

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> SqliteJournal:
        """Open (creating if needed) and resume at the stored head.

        Raises JournalError if the file is not a journal, is from a newer schema, or cannot be read."""
        if self._db is not None:
            return self
        try:
            private_sqlite(self.path)  # 0600 before SQLite creates it, its -wal and -shm
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"journal {self.path}: cannot open: {exc}") from exc
        self._db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            self._guard(f"open {self.path}", self._prepare)
        except BaseException:
            self.close()
            raise
        log.info("journal_opened", extra={"path": str(self.path), "head_seq": self._head[0],
                                          "acked_seq": self._acked})
        return self

    def close(self) -> None:
        """Close the file. Safe to call twice."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> SqliteJournal:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _prepare(self) -> None:
        db = self.db
        with db.ensure_autocommit_on():
            # auto_vacuum must be chosen before the first table exists; a no-op afterwards.
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.execute(f"PRAGMA synchronous = {self.synchronous.value}")
            db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        db.enable_wal()
        with db.atomic():
            self._create_tables(db)
        self._check_version(db)
        self._head = self._read_head(db)
        self._acked = self._meta(db, "acked_seq")

    @staticmethod
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

    def _check_version(self, db: sqlite_utils.Database) -> None:
        found = self._meta(db, "schema_version")
        if found > SCHEMA_VERSION:
            raise JournalError(f"journal {self.path}: meta.schema_version is {found}, newer than "
                               f"this build reads ({SCHEMA_VERSION}); upgrade fieldpact")

    @staticmethod
    def _meta(db: sqlite_utils.Database, key: str) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0

    @staticmethod
    def _read_head(db: sqlite_utils.Database) -> tuple[int, bytes]:
        row = db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    @property
    def db(self) -> sqlite_utils.Database:
        if self._db is None:
            raise JournalError(f"journal {self.path}: not open")
        return self._db

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn`, turning sqlite3 errors into JournalError (JournalFull for SQLITE_FULL)."""
        try:
            return fn()
        except sqlite3.Error as exc:
            full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            error = JournalFull if full else JournalError
            raise error(f"journal {self.path}: {what} failed: {exc}") from exc

    def _transaction(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self.db.atomic() as db:
                return fn(db.conn)
        return self._guard(what, run)

    # ---------------------------------------------------------------- appending

    def append(self, kind: EntryKind, body: Mapping[str, Any], ts_ms: EpochMs) -> Entry:
        """Append one entry at head+1 in its own transaction; durable when it returns.

        Raises JournalError (JournalFull when out of space) with nothing stored, EncodingError for a
        body CBOR cannot carry."""
        return self.append_many([(kind, body, ts_ms)])[0]

    def append_many(self, items: Sequence[Item]) -> list[Entry]:
        """Append entries at head+1, head+2, ... in one transaction (a scan cycle's worth).

        Raises JournalError (JournalFull when out of space) with nothing stored and head()
        unchanged, EncodingError for a body CBOR cannot carry."""
        seq, prev = self._head
        entries, rows = [], []
        for kind, body, ts_ms in items:
            seq += 1
            entry = make_entry(prev, seq, ts_ms, kind, body)
            entries.append(entry)
            rows.append((seq, ts_ms, kind.value, canonical_dumps(entry.body), prev, entry.hash))
            prev = entry.hash
        if rows:
            self._transaction(f"append seq {rows[0][0]}..{seq}",
                              lambda conn: conn.executemany(_INSERT, rows))
            self._head = (seq, prev)
        return entries

    # ---------------------------------------------------------------- reading

    def head(self) -> tuple[int, bytes]:
        """(last seq, its hash); (0, GENESIS) for an empty journal."""
        return self._head

    def low_water(self) -> int:
        """Lowest seq still stored; head+1 when empty. Raises JournalError on I/O failure."""
        row = self._guard("low_water", lambda: self.db.execute(
            "SELECT MIN(seq) FROM entries").fetchone())
        return self._head[0] + 1 if row[0] is None else int(row[0])

    def read(self, from_seq: int, limit: int, *,
             kinds: Collection[EntryKind] | None = None) -> list[Entry]:
        """Up to `limit` entries with seq >= from_seq, ascending, optionally only of `kinds`.

        Raises JournalError on I/O failure or a row that does not decode."""
        sql = f"{_SELECT} WHERE seq >= ?"
        args: list[Any] = [from_seq]
        if kinds is not None:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args.extend(k.value for k in kinds)
        rows = self._guard("read", lambda: self.db.execute(
            f"{sql} ORDER BY seq LIMIT ?", [*args, limit]).fetchall())
        return [self._entry(row) for row in rows]

    def read_tolerant(self, from_seq: int, limit: int) -> tuple[list[Entry], list[tuple[int, str]]]:
        """Like `read`, but a row that does not decode is returned as (seq, why) instead of
        failing the whole read: the uplink declares it as a gap rather than stalling on it.
        Raises JournalError on I/O failure."""
        rows = self._guard("read", lambda: self.db.execute(
            f"{_SELECT} WHERE seq >= ? ORDER BY seq LIMIT ?", [from_seq, limit]).fetchall())
        entries: list[Entry] = []
        bad: list[tuple[int, str]] = []
        for row in rows:
            try:
                entries.append(_row_to_entry(row))
            except (EncodingError, ValueError, TypeError) as exc:
                bad.append((int(row[0]), f"row does not decode: {exc}"[:200]))
        return entries, bad

    def _entry(self, row: Sequence[Any]) -> Entry:
        try:
            return _row_to_entry(row)
        except (EncodingError, ValueError, TypeError) as exc:
            raise JournalError(f"journal {self.path}: row seq {row[0]} does not decode: {exc}") from exc

    def size_bytes(self) -> int:
        """Logical database size: page_count x page_size. Raises JournalError on I/O failure."""
        def measure() -> int:
            pages = self.db.execute("PRAGMA page_count").fetchone()[0]
            return int(pages) * int(self.db.execute("PRAGMA page_size").fetchone()[0])
        return self._guard("size_bytes", measure)

    # ---------------------------------------------------------------- acks and checkpoints

    def ack(self, seq: int) -> None:
        """Record durably that the hub holds everything up to `seq`. Lower acks are ignored; an ack
        beyond head is clamped to head (the hub cannot hold what we never wrote) and logged.
        Raises JournalError on I/O failure."""
        target = min(seq, self._head[0])
        if seq > target:
            log.warning("journal_ack_beyond_head", extra={"ack": seq, "head_seq": target})
        if target <= self._acked:
            return
        self._transaction("ack", lambda conn: conn.execute(_SET_META, ("acked_seq", target)))
        self._acked = target

    def acked_seq(self) -> int:
        """Highest seq the hub has acknowledged (0: none)."""
        return self._acked

    def save_checkpoint(self, name: str, data: bytes, seq: int, ts_ms: EpochMs) -> None:
        """Store (replace) the checkpoint `name`: opaque `data` valid as of journal `seq`.
        Raises JournalError on I/O failure."""
        self._transaction(f"save checkpoint {name!r}", lambda conn: conn.execute(
            "INSERT OR REPLACE INTO checkpoints (name, seq, ts_ms, data) VALUES (?, ?, ?, ?)",
            (name, seq, ts_ms, data)))

    def load_checkpoint(self, name: str) -> tuple[bytes, int, int] | None:
        """(data, seq, ts_ms) of the checkpoint `name`, or None. Raises JournalError on I/O failure."""
        row = self._guard(f"load checkpoint {name!r}", lambda: self.db.execute(
            "SELECT data, seq, ts_ms FROM checkpoints WHERE name = ?", [name]).fetchone())
        return None if row is None else (bytes(row[0]), int(row[1]), int(row[2]))

    # ---------------------------------------------------------------- verification

    def verify(self, from_seq: int | None = None) -> ChainBreak | None:
        """Check the stored chain from `from_seq` (default: the low-water mark) to head, a page at a
        time. The first stored entry is anchored on its predecessor's hash when that is still
        stored, on GENESIS at seq 1, and otherwise on its own prev_hash (older rows are gone).
        Returns the first break, or None. Raises JournalError on I/O failure."""
        start = max(from_seq or 1, self.low_water())
        prev_seq, prev_hash = start - 1, self._anchor(start)
        while prev_seq < self._head[0]:
            rows = self._guard("verify", lambda: self.db.execute(
                f"{_SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", [prev_seq, VERIFY_PAGE]).fetchall())
            if not rows:
                return ChainBreak(prev_seq + 1, f"missing: journal ends before head {self._head[0]}")
            broken = _verify_rows(rows, prev_hash, prev_seq)
            if broken is not None:
                return broken
            prev_seq, prev_hash = int(rows[-1][0]), bytes(rows[-1][5])
        return None

    def _anchor(self, start: int) -> bytes:
        if start <= 1:
            return GENESIS
        row = self._guard("verify", lambda: self.db.execute(
            "SELECT hash FROM entries WHERE seq = ?", [start - 1]).fetchone())
        if row is None:
            row = self._guard("verify", lambda: self.db.execute(
                "SELECT prev_hash FROM entries WHERE seq = ?", [start]).fetchone())
        return GENESIS if row is None else bytes(row[0])

    # ---------------------------------------------------------------- retention

    def enforce_budget(self) -> int:
        """Bring the file under `budget_bytes`: drop the oldest acked entries first; only above
        HARD_LIMIT_FACTOR x budget drop unacked ones too, journaling a GAP entry in the same
        transaction. The head entry is always kept. Returns how many entries were dropped.
        Raises JournalError on I/O failure."""
        if self.budget_bytes is None:
            return 0
        dropped = self._drop_acked(self.budget_bytes)
        if self.size_bytes() > self.budget_bytes * HARD_LIMIT_FACTOR:
            dropped += self._force_drop(self.budget_bytes)
        return dropped

    def _drop_acked(self, target: int) -> int:
        dropped = 0
        for _ in range(MAX_RETENTION_ROUNDS):
            excess = self.size_bytes() - target
            last = self._rows_to_free(excess, min(self._acked, self._head[0] - 1))
            if excess <= 0 or last is None:
                break
            dropped += self._transaction("drop acked", lambda conn: _delete_through(conn, last))
            self._vacuum()
        if dropped:
            log.info("journal_retention", extra={"dropped": dropped, "low_water": self.low_water()})
        return dropped

    def _force_drop(self, target: int) -> int:
        low, head_seq = self.low_water(), self._head[0]
        last = self._rows_to_free(self.size_bytes() - target, head_seq - 1)
        if last is None:
            return 0
        dropped = self._drop_with_gap(low, last)
        self._vacuum()
        log.warning("journal_forced_drop", extra={"dropped_from": low, "dropped_to": last,
                                                  "acked_seq": self._acked, "head_seq": head_seq})
        return dropped

    def _drop_with_gap(self, low: int, last: int) -> int:
        seq, prev = self._head
        hard_limit = (self.budget_bytes or 0) * HARD_LIMIT_FACTOR
        gap_body = encode(GapBody(dropped_from=low, dropped_to=last,
                                  reason=f"journal over hard limit {hard_limit} bytes"))
        # The journal has no clock (time is an argument everywhere): the gap is dated at the head.
        ts_ms = self._guard("gap", lambda: self.db.execute(
            "SELECT ts_ms FROM entries WHERE seq = ?", [seq]).fetchone()[0])
        gap = make_entry(prev, seq + 1, int(ts_ms), EntryKind.GAP, gap_body)

        def run(conn: sqlite3.Connection) -> int:
            count = _delete_through(conn, last)
            conn.execute(_INSERT, (gap.seq, gap.ts_ms, gap.kind.value, canonical_dumps(gap_body),
                                   gap.prev_hash, gap.hash))
            return count
        dropped = self._transaction("forced drop", run)
        self._head = (gap.seq, gap.hash)
        return dropped

    def _rows_to_free(self, excess: int, max_seq: int) -> int | None:
        """Last seq to delete (from the low-water mark, up to max_seq) to free ~excess bytes."""
        if excess <= 0 or max_seq < 1:
            return None
        row = self._guard("retention", lambda: self.db.execute(
            "SELECT seq FROM (SELECT seq, SUM(length(body) + ?) OVER (ORDER BY seq) AS freed "
            "FROM entries WHERE seq <= ?) WHERE freed >= ? LIMIT 1",
            [ROW_OVERHEAD_BYTES, max_seq, excess]).fetchone())
        if row is not None:
            return int(row[0])
        exists = self._guard("retention", lambda: self.db.execute(
            "SELECT 1 FROM entries WHERE seq <= ? LIMIT 1", [max_seq]).fetchone())
        return max_seq if exists else None

    def _vacuum(self) -> None:
        # executescript steps the pragma to completion; a plain execute() steps it once, and each
        # step frees a single page (so freed space would never reach the file).
        self._guard("incremental_vacuum",
                    lambda: self.db.conn.executescript("PRAGMA incremental_vacuum;"))


def _delete_through(conn: sqlite3.Connection, last: int) -> int:
    return conn.execute("DELETE FROM entries WHERE seq <= ?", (last,)).rowcount


def _row_to_entry(row: Sequence[Any]) -> Entry:
    seq, ts_ms, kind, body, prev_hash, hash_ = row
    decoded = loads(bytes(body))
    if not isinstance(decoded, Mapping):
        raise EncodingError(f"body is a {type(decoded).__name__}, not a map")
    return Entry(seq=int(seq), ts_ms=int(ts_ms), kind=EntryKind(kind), body=decoded,
                 prev_hash=bytes(prev_hash), hash=bytes(hash_))


def _verify_rows(rows: Sequence[Sequence[Any]], prev_hash: bytes, prev_seq: int) -> ChainBreak | None:
    entries = []
    for row in rows:
        try:
            entries.append(_row_to_entry(row))
        except (EncodingError, ValueError, TypeError) as exc:
            broken = verify_chain(entries, prev_hash, prev_seq)
            return broken or ChainBreak(int(row[0]), f"row does not decode: {exc}")
    return verify_chain(entries, prev_hash, prev_seq)
