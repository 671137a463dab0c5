"""Journal ingestion — pure: a device's cursor and a batch in, entries to store and the ack out.

Rules (invariant 5):
- Idempotent by (device, seq): anything at or below the cursor is a duplicate and is ignored.
- Out-of-order batches wait in a bounded buffer until the gap before them fills.
- Every stored entry is chain-verified against the cursor (the last stored seq and hash). A break
  is an alarm: nothing at or after it is stored, and the ack does not move past it.
- The ack is the cursor: the highest contiguous, verified seq.
- An agent that had to drop unacknowledged entries (disk budget) says so with `dropped_through`;
  the hub records the gap (an alarm) and re-anchors the chain on the first entry after it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from contracts.chain import GENESIS, ChainBreak, Entry, check_entry, verify_chain

MAX_PENDING = 200_000
"""Out-of-order entries held per device: ~1 h of journal at 50 entries/s; more means the agent is
misbehaving, and dropping the buffer is safe because the agent resends from the ack."""


@dataclass(frozen=True, kw_only=True)
class Cursor:
    seq: int = 0
    hash: bytes = GENESIS


@dataclass(frozen=True, kw_only=True)
class Gap:
    from_seq: int
    to_seq: int


@dataclass(kw_only=True)
class IngestResult:
    store: list[Entry] = field(default_factory=list)
    cursor: Cursor = Cursor()
    duplicates: int = 0
    buffered: int = 0
    broken: ChainBreak | None = None
    gap: Gap | None = None
    bodies: list[bytes] = field(default_factory=list)  # encoded bodies of `store`, as hashed


class DeviceIngest:
    """Per-device ingestion state: the cursor and the out-of-order buffer."""

    def __init__(self, cursor: Cursor, pending: Mapping[int, Entry] | None = None) -> None:
        self.cursor = cursor
        self.pending: dict[int, Entry] = dict(pending or {})

    def add(self, entries: Sequence[Entry], dropped_through: int = 0) -> IngestResult:
        """Take a batch; return what to store (in seq order), the new cursor and any alarm."""
        result = IngestResult(cursor=self.cursor)
        before = self.cursor
        fresh = self._buffer(entries, result)
        if dropped_through > self.cursor.seq:
            result.gap = self._skip_gap(dropped_through)
        # Only this batch can newly link to an unmoved cursor: scanning the whole buffer on every
        # batch would be quadratic when batches arrive in reverse.
        result.broken = self._drain(result.store, result.bodies) or self._skipped(
            fresh if self.cursor == before else list(self.pending.values()))
        if len(self.pending) > MAX_PENDING:
            self.pending.clear()
        result.cursor, result.buffered = self.cursor, len(self.pending)
        return result

    def _buffer(self, entries: Sequence[Entry], result: IngestResult) -> list[Entry]:
        fresh = []
        for e in entries:
            if e.seq <= self.cursor.seq or e.seq in self.pending:
                result.duplicates += 1
            else:
                self.pending[e.seq] = e
                fresh.append(e)
        return fresh

    def _skip_gap(self, dropped_through: int) -> Gap | None:
        first = self.pending.get(dropped_through + 1)
        if first is None:
            return None  # the entry after the gap has not arrived yet: wait for it
        gap = Gap(from_seq=self.cursor.seq + 1, to_seq=dropped_through)
        for seq in [s for s in self.pending if s <= dropped_through]:
            del self.pending[seq]
        self.cursor = Cursor(seq=dropped_through, hash=first.prev_hash)
        return gap

    def _drain(self, out: list[Entry], bodies: list[bytes]) -> ChainBreak | None:
        while (e := self.pending.get(self.cursor.seq + 1)) is not None:
            broken, body = check_entry(e, self.cursor.hash, self.cursor.seq)
            if broken is not None:
                self.pending.clear()  # see _check
                return broken
            del self.pending[e.seq]
            out.append(e)
            bodies.append(body)
            self.cursor = Cursor(seq=e.seq, hash=e.hash)
        return None

    def _skipped(self, candidates: Sequence[Entry]) -> ChainBreak | None:
        # An entry that links to the cursor's hash under a later seq says the chain skipped seqs:
        # nothing will ever fill that gap, so it is a break, not an entry to wait for. (A genuine
        # later entry links to its own predecessor, never to the cursor.)
        skipped = next((e for e in candidates if e.prev_hash == self.cursor.hash), None)
        return None if skipped is None else self._check(skipped)

    def _check(self, e: Entry) -> ChainBreak | None:
        broken = verify_chain([e], self.cursor.hash, self.cursor.seq)
        if broken is not None:
            # Drop the bad entry and everything buffered after it: the agent resends from the
            # ack, and a genuine agent's resend will chain; a forger's will not.
            self.pending.clear()
        return broken
