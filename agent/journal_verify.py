"""Verification of the stored hash chain, a page at a time (bounded memory whatever the length).

Anchoring: the first entry checked is chained to its predecessor's hash when that row is still
stored, to GENESIS at seq 1, and otherwise to its own prev_hash (retention dropped the older rows,
so from the low-water mark on the chain must still verify; invariant 4). A row that does not decode
is a break at its seq, after the rows before it on its page have been checked.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from agent.journal_sqlite import SELECT_ENTRIES, guarded, row_to_entry
from contracts.chain import GENESIS, ChainBreak, verify_chain
from contracts.errors import EncodingError

VERIFY_PAGE = 1_000
"""Rows per page when verifying: bounded memory whatever the journal's length."""


def verify_stored(db: sqlite_utils.Database, path: Path, start: int, head_seq: int) -> ChainBreak | None:
    """Check the chain stored in `db` from seq `start` to `head_seq`. Returns the first break, or
    None. Raises JournalError on I/O failure."""
    prev_seq, prev_hash = start - 1, _anchor(db, path, start)
    while prev_seq < head_seq:
        after = prev_seq
        rows = guarded(path, "verify", lambda: db.execute(
            f"{SELECT_ENTRIES} WHERE seq > ? ORDER BY seq LIMIT ?", [after, VERIFY_PAGE]).fetchall())
        if not rows:
            return ChainBreak(prev_seq + 1, f"missing: journal ends before head {head_seq}")
        broken = _verify_rows(rows, prev_hash, prev_seq)
        if broken is not None:
            return broken
        prev_seq, prev_hash = int(rows[-1][0]), bytes(rows[-1][5])
    return None


def _anchor(db: sqlite_utils.Database, path: Path, start: int) -> bytes:
    if start <= 1:
        return GENESIS
    row = guarded(path, "verify", lambda: db.execute(
        "SELECT hash FROM entries WHERE seq = ?", [start - 1]).fetchone())
    if row is None:
        row = guarded(path, "verify", lambda: db.execute(
            "SELECT prev_hash FROM entries WHERE seq = ?", [start]).fetchone())
    return GENESIS if row is None else bytes(row[0])


def _verify_rows(rows: Sequence[Sequence[Any]], prev_hash: bytes, prev_seq: int) -> ChainBreak | None:
    entries = []
    for row in rows:
        try:
            entries.append(row_to_entry(row))
        except (EncodingError, ValueError, TypeError) as exc:
            broken = verify_chain(entries, prev_hash, prev_seq)
            return broken or ChainBreak(int(row[0]), f"row does not decode: {exc}")
    return verify_chain(entries, prev_hash, prev_seq)
