"""Reading the journal's stored rows (agent/journal.py's `read`, `read_tolerant`, `read_rows`).

Rules:
- Ascending by seq from a given seq, at most `limit` rows: a caller pages, memory stays bounded.
- A strict read (`read_entries`) fails on a row that does not decode (JournalError naming its seq).
- A tolerant read returns such a row as (seq, why) instead, so the uplink declares it as a gap
  rather than stalling on it (issue 8); `why` is a bounded piece of the error (invariant 10).
- `read_rows` does not decode at all: bodies go out as the bytes stored and hashed. Only a row whose
  stored hash does not match its bytes (rot, or a rewrite) is decoded, to tell which it is:
  undecodable, a hole as with `read_tolerant`; decodable, sent as it is, for the hub to find the
  break.
Every sqlite3 error is wrapped by `guarded` (agent/journal_sqlite.py): JournalError on I/O failure.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from agent.errors import JournalError
from agent.journal_sqlite import SELECT_ENTRIES, guarded, row_as_stored, row_to_entry
from contracts.chain import Entry, EntryKind
from contracts.chain_rows import Row, entry_of, row_hash
from contracts.errors import EncodingError

MAX_WHY_CHARS = 200
"""How much of a decoding error a tolerant read keeps for the hole it declares."""

Bad = list[tuple[int, str]]
"""(seq, why) of each row that does not decode."""


def read_entries(db: sqlite_utils.Database, path: Path, from_seq: int, limit: int, *,
                 kinds: Collection[EntryKind] | None = None) -> list[Entry]:
    """Up to `limit` entries with seq >= from_seq, ascending, optionally only of `kinds`.
    Raises JournalError on I/O failure or a row that does not decode."""
    sql = f"{SELECT_ENTRIES} WHERE seq >= ?"
    args: list[Any] = [from_seq]
    if kinds is not None:
        sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
        args.extend(k.value for k in kinds)
    rows = guarded(path, "read", lambda: db.execute(
        f"{sql} ORDER BY seq LIMIT ?", [*args, limit]).fetchall())
    return [_entry(path, row) for row in rows]


def read_tolerant(db: sqlite_utils.Database, path: Path, from_seq: int,
                  limit: int) -> tuple[list[Entry], Bad]:
    """Like `read_entries`, with a row that does not decode returned as (seq, why)."""
    entries: list[Entry] = []
    bad: Bad = []
    for row in _rows_from(db, path, from_seq, limit):
        try:
            entries.append(row_to_entry(row))
        except (EncodingError, ValueError, TypeError) as exc:
            bad.append(_undecodable(row, exc))
    return entries, bad


def read_rows(db: sqlite_utils.Database, path: Path, from_seq: int,
              limit: int) -> tuple[list[Row], Bad]:
    """Up to `limit` rows from `from_seq` with their bodies as stored (see the rules)."""
    good: list[Row] = []
    bad: Bad = []
    for row in _rows_from(db, path, from_seq, limit):
        try:
            stored = row_as_stored(row)
            if row_hash(stored) != stored.hash:
                entry_of(stored)
        except (EncodingError, ValueError, TypeError) as exc:
            bad.append(_undecodable(row, exc))
        else:
            good.append(stored)
    return good, bad


def _rows_from(db: sqlite_utils.Database, path: Path, from_seq: int,
               limit: int) -> list[Any]:
    return guarded(path, "read", lambda: db.execute(
        f"{SELECT_ENTRIES} WHERE seq >= ? ORDER BY seq LIMIT ?", [from_seq, limit]).fetchall())


def _undecodable(row: Sequence[Any], exc: Exception) -> tuple[int, str]:
    return int(row[0]), f"row does not decode: {exc}"[:MAX_WHY_CHARS]


def _entry(path: Path, row: Sequence[Any]) -> Entry:
    try:
        return row_to_entry(row)
    except (EncodingError, ValueError, TypeError) as exc:
        raise JournalError(f"journal {path}: row seq {row[0]} does not decode: {exc}") from exc
