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
  Which entries may go is decided by the pure policy in agent/retention.py; this module executes it.
- Durability. WAL with `synchronous=FULL` by default: a commit is fsynced before `append` returns,
  so an entry we act on or ack survives power loss (DESIGN pitfall: WAL+NORMAL survives a process
  crash but may lose the last commits on power loss). Cost, measured on this machine (virtio disk,
  ext4, shared with other jobs; 3 runs of 2,000-5,000 4-entry `append_many` cycles each):
  NORMAL 10,000-19,000 cycles/s, FULL 350-4,200 cycles/s (one WAL fsync per commit, so it swings
  with disk contention). A 100 ms scan needs 10 cycles/s: FULL leaves >30x headroom. NORMAL is
  offered for benchmarks and hosts with backed power; the scan loop uses FULL.
- Size. `auto_vacuum=INCREMENTAL` (agent/journal_sqlite.py): retention frees pages with
  `PRAGMA incremental_vacuum`, never a full VACUUM. `size_bytes()` is the logical database size
  (page_count x page_size); the WAL beside it is capped by `journal_size_limit`.

Parts: tables, pragmas and row codec in journal_sqlite.py; reading rows (strict, tolerant, as
stored) in journal_reads.py; verification in journal_verify.py; the retention policy in
retention.py. This class owns the connection, the head and the ack mark.
Not thread-safe: one owner calls it (the scan loop, or `asyncio.to_thread` one call at a time).
"""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import sqlite_utils

from agent import retention
from agent.errors import JournalError
from agent.journal_reads import read_entries, read_rows, read_tolerant
from agent.journal_sqlite import (
    INSERT_ENTRY, SET_META, Item, Synchronous, delete_through, guarded, prepare, rows_to_free,
    vacuum,
)
from agent.journal_verify import verify_stored
from contracts.chain import GENESIS, ChainBreak, Entry, EntryKind, make_entry
from contracts.chain_rows import Row
from contracts.codec import canonical_dumps
from contracts.types import EpochMs
from runtime.files import private_sqlite

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        self._db = db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            self._head, self._acked = self._guard(
                f"open {self.path}", lambda: prepare(db, self.path, self.synchronous))
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

    @property
    def db(self) -> sqlite_utils.Database:
        if self._db is None:
            raise JournalError(f"journal {self.path}: not open")
        return self._db

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        return guarded(self.path, what, fn)

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
                              lambda conn: conn.executemany(INSERT_ENTRY, rows))
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
        return read_entries(self.db, self.path, from_seq, limit, kinds=kinds)

    def read_tolerant(self, from_seq: int, limit: int) -> tuple[list[Entry], list[tuple[int, str]]]:
        """Like `read`, but a row that does not decode is returned as (seq, why) instead of
        failing the whole read: the uplink declares it as a gap rather than stalling on it.
        Raises JournalError on I/O failure."""
        return read_tolerant(self.db, self.path, from_seq, limit)

    def read_rows(self, from_seq: int, limit: int) -> tuple[list[Row], list[tuple[int, str]]]:
        """`read_tolerant` without decoding: up to `limit` rows from `from_seq` with their bodies
        as stored (what the uplink sends), and (seq, why) for a row that does not decode
        (agent/journal_reads.py). Raises JournalError on I/O failure."""
        return read_rows(self.db, self.path, from_seq, limit)

    def size_bytes(self) -> int:
        """Logical database size: page_count x page_size. Raises JournalError on I/O failure."""
        def measure() -> int:
            pages = self.db.execute("PRAGMA page_count").fetchone()[0]
            return int(pages) * int(self.db.execute("PRAGMA page_size").fetchone()[0])
        return self._guard("size_bytes", measure)

    def verify(self, from_seq: int | None = None) -> ChainBreak | None:
        """Check the stored chain from `from_seq` (default: the low-water mark) to head, a page at a
        time (agent/journal_verify.py). Returns the first break, or None. Raises JournalError on
        I/O failure."""
        start = max(from_seq or 1, self.low_water())
        return verify_stored(self.db, self.path, start, self._head[0])

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
        self._transaction("ack", lambda conn: conn.execute(SET_META, ("acked_seq", target)))
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

    # ---------------------------------------------------------------- retention

    def enforce_budget(self) -> int:
        """Bring the file under `budget_bytes` as agent/retention.py decides: the oldest acked
        entries first; above its hard limit unacked ones too, journaling a GAP entry in the same
        transaction. The head entry is always kept. Returns how many entries were dropped.
        Raises JournalError on I/O failure."""
        budget = self.budget_bytes
        if budget is None:
            return 0
        dropped = self._drop_acked(budget)
        forced = retention.forced_drop(size_bytes=self.size_bytes(), budget_bytes=budget,
                                       head_seq=self._head[0])
        if forced is not None:
            dropped += self._force_drop(forced, budget)
        return dropped

    def _drop_acked(self, budget: int) -> int:
        dropped = 0
        for _ in range(retention.MAX_RETENTION_ROUNDS):
            drop = retention.acked_drop(size_bytes=self.size_bytes(), budget_bytes=budget,
                                        acked_seq=self._acked, head_seq=self._head[0])
            last = None if drop is None else rows_to_free(self.db, self.path, drop)
            if last is None:
                break
            dropped += self._transaction("drop acked", lambda conn: delete_through(conn, last))
            vacuum(self.db, self.path)
        if dropped:
            log.info("journal_retention", extra={"dropped": dropped, "low_water": self.low_water()})
        return dropped

    def _force_drop(self, drop: retention.Drop, budget: int) -> int:
        low, head_seq = self.low_water(), self._head[0]
        last = rows_to_free(self.db, self.path, drop)
        if last is None:
            return 0
        dropped = self._drop_with_gap(retention.gap_body(low, last, budget))
        vacuum(self.db, self.path)
        log.warning("journal_forced_drop", extra={"dropped_from": low, "dropped_to": last,
                                                  "acked_seq": self._acked, "head_seq": head_seq})
        return dropped

    def _drop_with_gap(self, gap_body: dict[str, Any]) -> int:
        seq, prev = self._head
        # The journal has no clock (time is an argument everywhere): the gap is dated at the head.
        ts_ms = self._guard("gap", lambda: self.db.execute(
            "SELECT ts_ms FROM entries WHERE seq = ?", [seq]).fetchone()[0])
        gap = make_entry(prev, seq + 1, int(ts_ms), EntryKind.GAP, gap_body)

        def run(conn: sqlite3.Connection) -> int:
            count = delete_through(conn, gap_body["dropped_to"])
            conn.execute(INSERT_ENTRY, (gap.seq, gap.ts_ms, gap.kind.value,
                                        canonical_dumps(gap_body), gap.prev_hash, gap.hash))
            return count
        dropped = self._transaction("forced drop", run)
        self._head = (gap.seq, gap.hash)
        return dropped
