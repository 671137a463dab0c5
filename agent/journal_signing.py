"""The agent's journal key and batch signatures (fixed interface 6; contracts/journal_sig.py).

Rules:
- Each agent has its own Ed25519 key, made at first start (PKCS8 PEM, mode 0600, created with
  O_EXCL so an existing file is never overwritten), at `journal_key` from agent.toml or by default
  beside the journal (`journal.db` -> `journal.ed25519`). An admin pins its public key on the hub
  (`fieldpact agent pubkey`); the hub never learns it from the device.
- Every journal batch the uplink sends is signed over its chain head (device, seq range, the hash
  of its last entry, the gap ranges it declares).
- Signatures are also kept as *seals* in the journal file (table `journal_seals`), at most one per
  SEAL_EVERY_MS of journal time, so `fieldpact journal verify --pubkey` can prove offline that the
  entries on disk are the ones signed: a rewritten entry at or before a seal — even with its hash
  recomputed, even with the chain re-hashed from there to the head — no longer matches the seal.
- Before signing, the agent checks the batch against the seals it holds; a batch contradicting an
  earlier seal (the file was rewritten under it) is sent unsigned, never re-signed, so the hub
  refuses it with a `forged_batch` alarm instead of accepting rewritten history.
- What no signature can cover: entries after the last seal that were never sent, if the seals
  themselves are deleted too. `journal verify --pubkey` reports how many entries are unsealed.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.journal import SqliteJournal
from agent.journal_thread import AsyncJournal
from contracts.chain import ChainBreak
from contracts.codec import canonical_dumps, loads
from contracts.errors import SigningKeyError
from contracts.journal_sig import SignedHead, sign_head, verify_head
from contracts.signing import load_private_key
from contracts.journal_wire import JournalRows
from contracts.wire import JournalBatch
from runtime.files import private_dir

log = logging.getLogger("fieldpact.agent.journal_signing")

AnyBatch = TypeVar("AnyBatch", JournalBatch, JournalRows)
"""Either wire form of a journal batch: both sign the same head (contracts.journal_wire)."""

KEY_SUFFIX = ".ed25519"
KEY_MODE = 0o600
"""The journal key proves the journal is this agent's: no other local user may read it."""

SEAL_EVERY_MS = 1_000
"""A seal (64-byte signature + head) is kept at most once per second of journal time: a rewrite
of anything older than a second is then caught offline, for ~10 MB of seals a day at worst."""

_DDL = ("CREATE TABLE IF NOT EXISTS journal_seals (to_seq INTEGER PRIMARY KEY, "
        "from_seq INTEGER NOT NULL, device TEXT NOT NULL, head_hash BLOB NOT NULL, "
        "head_ts_ms INTEGER NOT NULL, gaps BLOB NOT NULL, sig BLOB NOT NULL)")


def default_key_path(journal: Path) -> Path:
    return journal.with_suffix(KEY_SUFFIX)


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The agent's journal key at `path`, made (mode 0600) if absent. Raises SigningKeyError."""
    if not path.exists():
        try:
            _create(path)
            log.warning("journal_key_generated path=%s", path)
        except FileExistsError:
            pass  # made by a concurrent start: use it
    return load_private_key(path)


def _create(path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        private_dir(path.parent)  # a new directory is 0700 (runtime/files.py)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.chmod(path, KEY_MODE)  # exact, whatever the umask
    except FileExistsError:
        raise
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot write the journal key: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class Seal:
    head: SignedHead
    head_ts_ms: int
    sig: bytes


class JournalSigner:
    """Signs the uplink's batches with the agent's key and keeps seals in the journal file."""

    def __init__(self, key: Ed25519PrivateKey, device: str) -> None:
        self.key, self.device = key, device
        self._last: tuple[int, int] | None = None  # (to_seq, head_ts_ms) of the newest seal kept

    async def sign_async(self, journal: AsyncJournal, batch: AnyBatch) -> AnyBatch:
        """`sign` on the journal's own thread (SQLite connections belong to their thread)."""
        return await journal.call(lambda: self.sign(journal.sync, batch))

    def sign(self, journal: SqliteJournal, batch: AnyBatch) -> AnyBatch:
        """The batch with `sig` set, or unchanged (unsigned) if it contradicts a kept seal."""
        if not _heads(batch):
            return batch
        try:
            conflict = _contradicted(journal, batch)
        except sqlite3.Error as exc:
            log.error("journal_seal_unreadable error=%s", exc)
            return batch
        if conflict is not None:
            log.error("journal_seal_mismatch seq=%s: the journal was rewritten after it was "
                      "signed; sending the batch unsigned", conflict)
            return batch
        head = batch.signed_head()
        sig = sign_head(head, self.key)
        self._keep(journal, Seal(head=head, head_ts_ms=_ts(batch), sig=sig))
        return replace(batch, sig=sig)

    def _keep(self, journal: SqliteJournal, seal: Seal) -> None:
        try:
            last = self._last if self._last is not None else _newest(journal)
            if last is not None and (seal.head.to_seq <= last[0]
                                     or seal.head_ts_ms - last[1] < SEAL_EVERY_MS):
                return
            with journal.db.atomic() as db:
                db.execute(_DDL)
                db.execute("INSERT OR REPLACE INTO journal_seals VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [seal.head.to_seq, seal.head.from_seq, seal.head.device,
                            seal.head.head_hash, seal.head_ts_ms,
                            canonical_dumps([list(g) for g in seal.head.gaps]), seal.sig])
                db.execute("DELETE FROM journal_seals WHERE to_seq < ?", [journal.low_water()])
            self._last = (seal.head.to_seq, seal.head_ts_ms)
        except sqlite3.Error as exc:  # a seal not kept only shortens what verify can prove
            log.warning("journal_seal_not_kept seq=%s error=%s", seal.head.to_seq, exc)


def _newest(journal: SqliteJournal) -> tuple[int, int] | None:
    if not _has_seals(journal):
        return None
    row = journal.db.execute("SELECT to_seq, head_ts_ms FROM journal_seals ORDER BY to_seq DESC "
                             "LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def _heads(batch: JournalBatch | JournalRows) -> list[tuple[object, object, object]]:
    """(seq, hash, ts_ms) of each entry of the batch, in either wire form."""
    if isinstance(batch, JournalRows):
        return [(r.seq, r.hash, r.ts_ms) for r in batch.rows]
    return [(e.get("seq"), e.get("hash"), e.get("ts_ms")) for e in batch.entries]


def _ts(batch: JournalBatch | JournalRows) -> int:
    ts = _heads(batch)[-1][2]
    return ts if isinstance(ts, int) else 0


def _contradicted(journal: SqliteJournal, batch: JournalBatch | JournalRows) -> int | None:
    """The first seq in the batch where a kept seal's head hash differs from the entry's."""
    if not _has_seals(journal):
        return None
    rows = journal.db.execute("SELECT to_seq, head_hash FROM journal_seals WHERE to_seq "
                              "BETWEEN ? AND ? ORDER BY to_seq",
                              [batch.from_seq, batch.to_seq]).fetchall()
    if not rows:
        return None
    hashes = {seq: digest for seq, digest, _ in _heads(batch)}  # gaps: seqs are not indexes
    for seq, head_hash in rows:
        if seq in hashes and hashes[seq] != bytes(head_hash):
            return int(seq)
    return None


def _has_seals(journal: SqliteJournal) -> bool:
    return journal.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                              "name = 'journal_seals'").fetchone() is not None


# --------------------------------------------------------------------------------------------
# Offline verification (`fieldpact journal verify --pubkey`)


@dataclass(frozen=True, kw_only=True)
class SealReport:
    checked: int                      # seals whose signature and head hash held
    last_sealed: int                  # highest sealed seq (0: none)
    broken: ChainBreak | None = None  # the first seal that failed, and why


def verify_seals(journal: SqliteJournal, pubkey: Ed25519PublicKey) -> SealReport:
    """Check every kept seal still covering stored entries: its signature verifies under `pubkey`
    and the entry at its seq has the signed hash. Raises sqlite3.Error on I/O failure."""
    if not _has_seals(journal):
        return SealReport(checked=0, last_sealed=0)
    low = journal.low_water()
    rows = journal.db.execute("SELECT s.to_seq, s.from_seq, s.device, s.head_hash, s.gaps, s.sig, "
                              "e.hash FROM journal_seals s LEFT JOIN entries e ON e.seq = s.to_seq "
                              "WHERE s.to_seq >= ? ORDER BY s.to_seq", [low]).fetchall()
    checked = 0
    for row in rows:
        broken = _check_seal(row, pubkey)
        if broken is not None:
            return SealReport(checked=checked, last_sealed=int(rows[-1][0]), broken=broken)
        checked += 1
    return SealReport(checked=checked, last_sealed=int(rows[-1][0]) if rows else 0)


def _check_seal(row: Sequence[object], pubkey: Ed25519PublicKey) -> ChainBreak | None:
    to_seq, from_seq, device, head_hash, gaps, sig, stored = row
    assert isinstance(to_seq, int) and isinstance(from_seq, int) and isinstance(device, str)
    decoded = loads(bytes(gaps)) if isinstance(gaps, bytes) else []
    head = SignedHead(device=device, from_seq=from_seq, to_seq=to_seq,
                      head_hash=bytes(head_hash) if isinstance(head_hash, bytes) else b"",
                      gaps=tuple((int(a), int(b)) for a, b in decoded))
    if not verify_head(head, sig if isinstance(sig, bytes) else None, pubkey):
        return ChainBreak(to_seq, "seal signature does not verify under the given key")
    if not isinstance(stored, bytes):
        return ChainBreak(to_seq, "sealed entry is missing from the journal")
    if stored != head.head_hash:
        return ChainBreak(to_seq, "entry differs from the one signed (rewritten after signing)")
    return None
