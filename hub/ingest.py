"""Journal ingestion — pure: a device's cursor and a batch in, entries to store and the ack out.

Rules (invariant 5):
- Idempotent by (device, seq): anything at or below the cursor is a duplicate and is ignored.
- Out-of-order batches wait in a bounded buffer until the gap before them fills.
- Every stored entry is chain-verified against the cursor (the last stored seq and hash). A break
  is an alarm: nothing at or after it is stored, and the ack does not move past it.
- The ack is the cursor: the highest contiguous, verified seq.
- A hole never wedges sync. An agent declares seqs its journal no longer holds — dropped by
  retention (`dropped_through`, older agents) or missing/unreadable rows (`gaps` inside the batch,
  covered by its signature). A declared gap waits, like an entry, until it is next in line and the
  entry after it has arrived; then the gap is returned (the hub stores it and raises an alarm) and
  the chain is re-anchored on that entry's prev_hash. What the hub can verify, it does: everything
  before the gap links to the cursor, the entry after it hashes correctly, everything later links.
  A real entry next in line wins over a gap declared for its seq (it is verified like any other).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from contracts.chain import GENESIS, ChainBreak, Entry, verify_chain, verify_run

MAX_PENDING_GAPS = 10_000
"""Declared gaps held per device ahead of the cursor; a batch declares at most one per entry."""

MAX_PENDING = 200_000
"""Out-of-order entries held per device: ~1 h of journal at 50 entries/s; more means the agent is
misbehaving, and dropping the buffer is safe because the agent resends from the ack."""


@dataclass(frozen=True, kw_only=True)
class Cursor:
    seq: int = 0
    hash: bytes = GENESIS


@dataclass(frozen=True, kw_only=True)
class Gap:
    """Seqs `from_seq..to_seq` the hub will never hold. `before` is the hash the chain had before
    it, `after` the prev_hash of the entry after it (at `ts_ms`), so a stored gap row links both."""

    from_seq: int
    to_seq: int
    reason: str = "missing"
    before: bytes = GENESIS
    after: bytes = GENESIS
    ts_ms: int = 0


@dataclass(kw_only=True)
class IngestResult:
    store: list[Entry] = field(default_factory=list)
    cursor: Cursor = Cursor()
    duplicates: int = 0
    buffered: int = 0
    broken: ChainBreak | None = None
    gaps: list[Gap] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # encoded bodies of `store`, as hashed


class DeviceIngest:
    """Per-device ingestion state: the cursor and the out-of-order buffer."""

    def __init__(self, cursor: Cursor, pending: Mapping[int, Entry] | None = None) -> None:
        self.cursor = cursor
        self.pending: dict[int, Entry] = dict(pending or {})
        self.gaps: dict[int, tuple[int, str]] = {}  # first seq -> (last seq, reason)

    def add(self, entries: Sequence[Entry], dropped_through: int = 0,
            gaps: Sequence[tuple[int, int]] = ()) -> IngestResult:
        """Take a batch; return what to store (in seq order), the new cursor and any alarm."""
        result = IngestResult(cursor=self.cursor)
        before = self.cursor
        fresh = self._buffer(entries, result)
        if dropped_through > self.cursor.seq:
            self._declare(self.cursor.seq + 1, dropped_through, "dropped by the agent's retention")
        for first, last in gaps:
            self._declare(first, last, "missing from the agent's journal")
        # Only this batch can newly link to an unmoved cursor: scanning the whole buffer on every
        # batch would be quadratic when batches arrive in reverse.
        result.broken = self._drain(result) or self._skipped(
            fresh if self.cursor == before else list(self.pending.values()))
        if len(self.pending) > MAX_PENDING or len(self.gaps) > MAX_PENDING_GAPS:
            self.pending.clear()
            self.gaps.clear()
        result.cursor, result.buffered = self.cursor, len(self.pending)
        return result

    def _declare(self, first: int, last: int, reason: str) -> None:
        first = max(first, self.cursor.seq + 1)
        if first <= last and self.gaps.get(first, (0, ""))[0] < last:
            self.gaps[first] = (last, reason)

    def _buffer(self, entries: Sequence[Entry], result: IngestResult) -> list[Entry]:
        fresh = []
        for e in entries:
            if e.seq <= self.cursor.seq or e.seq in self.pending:
                result.duplicates += 1
            else:
                self.pending[e.seq] = e
                fresh.append(e)
        return fresh

    def _drain(self, result: IngestResult) -> ChainBreak | None:
        while True:
            broken = self._drain_run(result)
            if broken is not None or not self._cross_gap(result):
                return broken

    def _drain_run(self, result: IngestResult) -> ChainBreak | None:
        """Store the contiguous run after the cursor, verified in one pass (one Cursor per run)."""
        run, seq, pending = [], self.cursor.seq, self.pending
        while (e := pending.pop(seq + 1, None)) is not None:
            run.append(e)
            seq = e.seq
        n, verified, broken = verify_run(run, self.cursor.hash, self.cursor.seq)
        if broken is not None:
            pending.clear()  # see _check
        result.store.extend(run[:n])
        result.bodies.extend(verified)
        if n:
            self.cursor = Cursor(seq=run[n - 1].seq, hash=run[n - 1].hash)
        return broken

    def _cross_gap(self, result: IngestResult) -> bool:
        """Step over the declared gap that holds the next seq, once the entry after it is here."""
        nxt = self.cursor.seq + 1
        found = next(((f, v) for f, v in self.gaps.items() if f <= nxt <= v[0]), None)
        if found is None:
            return False
        (last, reason), after = found[1], self.pending.get(found[1][0] + 1)
        if after is None:
            return False  # the entry after the gap has not arrived yet: wait for it
        for first in [f for f, v in self.gaps.items() if v[0] <= last]:
            del self.gaps[first]
        for seq in [s for s in self.pending if s <= last]:
            del self.pending[seq]
        result.gaps.append(Gap(from_seq=nxt, to_seq=last, reason=reason, before=self.cursor.hash,
                               after=after.prev_hash, ts_ms=after.ts_ms))
        self.cursor = Cursor(seq=last, hash=after.prev_hash)
        return True

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
            self.gaps.clear()
        return broken
