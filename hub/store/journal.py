"""The devices' journals as the hub stores them, and entries waiting for a gap to fill.

Rules:
- Journal rows are keyed by (device, seq) and inserted with INSERT OR IGNORE: ingestion is
  idempotent (invariant 5). Out-of-order entries wait in journal_pending.
- `synchronous=FULL`: the hub acks journal entries to agents, which may then drop them (invariant
  4), so an acked entry must survive power loss, not just a crash (DESIGN, known pitfalls).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from contracts.chain import Entry, kind_of
from contracts.chain_rows import Row, entry_of
from contracts.errors import EncodingError
from hub.store.errors import StoreError
from hub.store.records import JournalRow
from hub.store.transactions import Connection

_INSERT = ("INSERT OR IGNORE INTO journal (device, seq, ts_ms, kind, body, prev_hash, hash) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)")
ROWS_PER_STATEMENT = 100
"""Rows bound to one multi-row INSERT: 700 parameters, under SQLite's oldest default limit (999),
and an agent's full batch (500) is 5 of them. One statement per 100 rows costs ~35 % less CPU than
executemany's step and reset per row (measured: 2.8 against 4.5 us/row); the journal insert is the
largest share of the hub's per-entry ingest work (bench/sync.py). A row's kind is bound as
`kind._value_` (the member's plain str, Enum's documented attribute): `.value` is a property
call, ~0.15 us a row, and binding the StrEnum member itself goes through sqlite3's adapter
lookup (~0.5 us a row more than a plain str)."""
_INSERT_MANY = _INSERT.replace("(?, ?, ?, ?, ?, ?, ?)",
                               ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * ROWS_PER_STATEMENT))


class JournalRepository:
    """`store.journal`: stored entries by (device, seq), and the pending out-of-order ones."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def insert(self, rows: Iterable[JournalRow]) -> int:
        """Insert entries, ignoring (device, seq) already present. Returns how many were new."""
        with self._conn.tx() as db:
            before = db.conn.total_changes
            db.conn.executemany(_INSERT, [(r.device, r.seq, r.ts_ms, r.kind, r.body, r.prev_hash,
                                           r.hash) for r in rows])
            return int(db.conn.total_changes - before)

    def insert_rows(self, device: str, rows: Sequence[Row]) -> int:
        """`insert` for verified rows, their bodies as the agent hashed them, without a
        JournalRow per entry: the ingest path stores a few hundred thousand rows a second."""
        full = len(rows) - len(rows) % ROWS_PER_STATEMENT
        with self._conn.tx() as db:
            conn = db.conn
            before = conn.total_changes
            for k in range(0, full, ROWS_PER_STATEMENT):
                conn.execute(_INSERT_MANY, [
                    v for seq, ts, kind, body, prev, digest in rows[k:k + ROWS_PER_STATEMENT]
                    for v in (device, seq, ts, kind._value_, body, prev, digest)])
            if full < len(rows):
                conn.executemany(_INSERT, [(device, seq, ts, kind._value_, body, prev, digest)
                                           for seq, ts, kind, body, prev, digest in rows[full:]])
            return int(conn.total_changes - before)

    def rows(self, device: str, from_seq: int = 0, limit: int = 100) -> list[JournalRow]:
        """Up to `limit` stored rows of `device` from `from_seq`, in seq order."""
        rows = self._conn.db.query("SELECT * FROM journal WHERE device = ? AND seq >= ? "
                                   "ORDER BY seq LIMIT ?", [device, from_seq, limit])
        return [JournalRow(**r) for r in rows]

    def stored(self, device: str, from_seq: int = 0) -> list[Row]:
        """Every stored row of `device` from `from_seq`, in seq order, bodies undecoded: what the
        reconciliation folds (86,400 rows for a day at 1 Hz). Bodies are the agent's bytes, only
        checked to be CBOR maps when stored: decode them strictly (contracts.chain_rows.entry_of).
        Raises StoreError for a row whose kind is not an entry kind."""
        cur = self._conn.db.conn.execute(
            "SELECT seq, ts_ms, kind, body, prev_hash, hash FROM journal "
            "WHERE device = ? AND seq >= ? ORDER BY seq", [device, from_seq])
        try:
            return [Row(seq, ts, kind_of(kind), body, prev, digest)
                    for seq, ts, kind, body, prev, digest in cur]
        except ValueError as exc:
            raise StoreError(f"journal of {device!r}: stored row unreadable: {exc}") from exc

    def reports(self, device: str, from_seq: int = 0) -> list[Row]:
        """`stored`, of the BOOT and CONTRACT rows only (the partial index `journal_reports`:
        a handful per device however long its journal), e.g. to find where a contract was
        accepted (hub/health.py)."""
        cur = self._conn.db.conn.execute(
            "SELECT seq, ts_ms, kind, body, prev_hash, hash FROM journal INDEXED BY journal_reports "
            "WHERE device = ? AND seq >= ? AND kind IN ('boot', 'contract') ORDER BY seq",
            [device, from_seq])
        return [Row(seq, ts, kind_of(kind), body, prev, digest)
                for seq, ts, kind, body, prev, digest in cur]

    def entries(self, device: str, from_seq: int = 0) -> list[Entry]:
        """Every stored entry of `device` from `from_seq`, decoded (strictly: the bodies are the
        agent's bytes), in seq order; a row whose body does not decode is left out (the
        readers count such entries as unreadable through `stored`)."""
        out = []
        for row in self.stored(device, from_seq):
            try:
                out.append(entry_of(row))
            except EncodingError:
                continue
        return out

    def row(self, device: str, seq: int) -> JournalRow | None:
        found = self._conn.one("SELECT * FROM journal WHERE device = ? AND seq = ?", [device, seq])
        return JournalRow(**found) if found else None

    def count(self) -> int:
        found = self._conn.one("SELECT count(*) AS n FROM journal", [])
        return int(found["n"]) if found else 0

    def buffer_pending(self, device: str, seq: int, entry: bytes) -> None:
        """Keep an out-of-order entry until the gap before it fills (idempotent)."""
        self._conn.db.execute("INSERT OR IGNORE INTO journal_pending (device, seq, entry) "
                              "VALUES (?, ?, ?)", [device, seq, entry])

    def pending(self, device: str) -> list[tuple[int, bytes]]:
        rows = self._conn.db.query("SELECT seq, entry FROM journal_pending WHERE device = ? "
                                   "ORDER BY seq", [device])
        return [(r["seq"], r["entry"]) for r in rows]

    def drop_pending(self, device: str, up_to_seq: int) -> None:
        self._conn.db.execute("DELETE FROM journal_pending WHERE device = ? AND seq <= ?",
                              [device, up_to_seq])
