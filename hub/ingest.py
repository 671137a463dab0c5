"""Journal ingestion — pure: a device's cursor and a batch in, entries to store and the ack out.

Rules (invariant 5):
- Idempotent by (device, seq): anything at or below the cursor is a duplicate and is ignored.
- Out-of-order batches wait in a bounded buffer until the gap before them fills. It is bounded in
  entries and in bytes, per device (MAX_PENDING_BYTES) and over all devices together
  (PendingBudget); past a cap the newest (highest-seq) buffered entries are dropped and logged.
  That loses nothing: they were never stored or acked, so the agent resends them from the ack.
- Every stored entry is chain-verified against the cursor (the last stored seq and hash), over its
  body bytes as the agent hashed them (contracts.chain_rows: rows, never decoded here; a body that
  is not a CBOR map is a break). A break is an alarm: nothing at or after it is stored, and the
  ack does not move past it.
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

import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from contracts.chain import GENESIS, ChainBreak, encode_body
from contracts.chain_rows import Row, verify_rows
from contracts.journal_events import HubGapBody, encode
from hub.store import JournalRow

MAX_PENDING_GAPS = 10_000
"""Declared gaps held per device ahead of the cursor; a batch declares at most one per entry."""

MAX_PENDING = 200_000
"""Out-of-order entries held per device: ~1 h of journal at 50 entries/s; more means the agent is
misbehaving, and dropping the buffer is safe because the agent resends from the ack."""

MAX_PENDING_BYTES = 8 * 1024 * 1024
"""Wire bytes of out-of-order entries held per device: 200 full 500-entry batches (~40 kB each),
far more reordering than a broker produces. Decoded entries take several times their wire size
in memory (issue 9 measured 105 MB of batches holding 365 MB), so the cap is on what arrived."""

MAX_PENDING_BYTES_TOTAL = 64 * 1024 * 1024
"""Wire bytes of out-of-order entries held over all devices: eight devices at their cap at once.
A hub with 1,000 devices never has more than a few reordering at the same moment."""

ENTRY_OVERHEAD_BYTES = 96
"""Bytes counted per entry beyond its share of the batch (two 32-byte hashes, seq, ts, kind):
used when the caller cannot say how big the batch was on the wire."""

log = logging.getLogger("fieldpact.hub.ingest")


class PendingBudget:
    """Bytes of out-of-order entries held by every device's buffer together (one per hub). It sums
    its live members when asked, so a buffer that is replaced or dropped stops counting at once."""

    def __init__(self, total: int | None = None) -> None:
        self.total = MAX_PENDING_BYTES_TOTAL if total is None else total
        self._members: weakref.WeakSet[DeviceIngest] = weakref.WeakSet()

    def join(self, member: DeviceIngest) -> None:
        self._members.add(member)

    @property
    def used(self) -> int:
        return sum(m.pending_bytes for m in list(self._members))


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
    store: list[Row] = field(default_factory=list)
    cursor: Cursor = Cursor()
    duplicates: int = 0
    buffered: int = 0
    broken: ChainBreak | None = None
    gaps: list[Gap] = field(default_factory=list)
    evicted: int = 0  # buffered entries dropped by the byte caps (resent from the ack)


class DeviceIngest:
    """Per-device ingestion state: the cursor and the out-of-order buffer."""

    def __init__(self, cursor: Cursor, pending: Mapping[int, Row] | None = None, *,
                 budget: PendingBudget | None = None, max_bytes: int | None = None) -> None:
        self.cursor = cursor
        self.pending: dict[int, Row] = dict(pending or {})
        self.gaps: dict[int, tuple[int, str]] = {}  # first seq -> (last seq, reason)
        self.budget = budget or PendingBudget()
        self.max_bytes = MAX_PENDING_BYTES if max_bytes is None else max_bytes
        self._sizes: dict[int, int] = {s: ENTRY_OVERHEAD_BYTES for s in self.pending}
        self.pending_bytes = sum(self._sizes.values())
        self.budget.join(self)
        self.evictions = self.evicted_total = 0  # for the log (see _enforce_bytes)

    def add(self, entries: Sequence[Row], dropped_through: int = 0,
            gaps: Sequence[tuple[int, int]] = (), *, nbytes: int | None = None) -> IngestResult:
        """Take a batch (`nbytes` long on the wire, if known); return what to store (in seq
        order), the new cursor and any alarm."""
        if (entries and entries[0].seq == self.cursor.seq + 1 and not self.pending
                and not self.gaps and not gaps and dropped_through <= self.cursor.seq):
            in_order = self._in_order(entries)
            if in_order is not None:
                return in_order
        result = IngestResult(cursor=self.cursor)
        before = self.cursor
        fresh = self._buffer(entries, result, _share(nbytes, len(entries)))
        if dropped_through > self.cursor.seq:
            self._declare(self.cursor.seq + 1, dropped_through, "dropped by the agent's retention")
        for first, last in gaps:
            self._declare(first, last, "missing from the agent's journal")
        # Only this batch can newly link to an unmoved cursor: scanning the whole buffer on every
        # batch would be quadratic when batches arrive in reverse.
        result.broken = self._drain(result) or self._skipped(
            fresh if self.cursor == before else list(self.pending.values()))
        if len(self.pending) > MAX_PENDING or len(self.gaps) > MAX_PENDING_GAPS:
            self._clear()
            self.gaps.clear()
        result.evicted = self._enforce_bytes()
        result.cursor, result.buffered = self.cursor, len(self.pending)
        return result

    def _in_order(self, entries: Sequence[Row]) -> IngestResult | None:
        """The usual batch (the next seqs, nothing buffered or declared): stored as it is if it
        all verifies, without passing through the buffer (a sixth of `add`'s cost); None, with
        nothing changed, for anything else (the general path decides)."""
        n, broken = verify_rows(entries, self.cursor.hash, self.cursor.seq)
        if broken is not None or n != len(entries):
            return None
        self.cursor = Cursor(seq=entries[-1].seq, hash=entries[-1].hash)
        return IngestResult(store=list(entries), cursor=self.cursor)

    def _declare(self, first: int, last: int, reason: str) -> None:
        first = max(first, self.cursor.seq + 1)
        if first <= last and self.gaps.get(first, (0, ""))[0] < last:
            self.gaps[first] = (last, reason)

    def _buffer(self, entries: Sequence[Row], result: IngestResult, size: int) -> list[Row]:
        fresh = []
        for e in entries:
            if e.seq <= self.cursor.seq or e.seq in self.pending:
                result.duplicates += 1
            else:
                self.pending[e.seq] = e
                self._sizes[e.seq] = size
                self.pending_bytes += size
                fresh.append(e)
        return fresh

    def _pop(self, seq: int) -> None:
        del self.pending[seq]
        self.pending_bytes -= self._sizes.pop(seq, 0)

    def _clear(self) -> None:
        self.pending.clear()
        self._sizes.clear()
        self.pending_bytes = 0

    def _over(self, others: int) -> bool:
        return (self.pending_bytes > self.max_bytes
                or others + self.pending_bytes > self.budget.total)

    def _enforce_bytes(self) -> int:
        """Drop the newest buffered entries until under both caps; how many were dropped."""
        if not self.pending:
            return 0  # in-order traffic (the usual case) never sums the other devices
        others = self.budget.used - self.pending_bytes
        if not self._over(others):
            return 0
        dropped = 0
        for seq in sorted(self.pending, reverse=True):
            if not self._over(others):
                break
            self._pop(seq)
            dropped += 1
        self.evictions += 1
        self.evicted_total += dropped
        if _is_power_of_ten(self.evictions):  # 1st, 10th, 100th...: a flood must not flood the log
            log.warning("journal_pending_dropped times=%d entries=%d kept=%d kept_bytes=%d "
                        "total_bytes=%d", self.evictions, self.evicted_total, len(self.pending),
                        self.pending_bytes, others + self.pending_bytes)
        return dropped

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
            self.pending_bytes -= self._sizes.pop(seq, 0)
        n, broken = verify_rows(run, self.cursor.hash, self.cursor.seq)
        if broken is not None:
            self._clear()  # see _check
        result.store.extend(run[:n])
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
            self._pop(seq)
        result.gaps.append(Gap(from_seq=nxt, to_seq=last, reason=reason, before=self.cursor.hash,
                               after=after.prev_hash, ts_ms=after.ts_ms))
        self.cursor = Cursor(seq=last, hash=after.prev_hash)
        return True

    def _skipped(self, candidates: Sequence[Row]) -> ChainBreak | None:
        # An entry that links to the cursor's hash under a later seq says the chain skipped seqs:
        # nothing will ever fill that gap, so it is a break, not an entry to wait for. (A genuine
        # later entry links to its own predecessor, never to the cursor.)
        skipped = next((e for e in candidates if e.prev_hash == self.cursor.hash), None)
        return None if skipped is None else self._check(skipped)

    def _check(self, e: Row) -> ChainBreak | None:
        broken = verify_rows([e], self.cursor.hash, self.cursor.seq)[1]
        if broken is not None:
            # Drop the bad entry and everything buffered after it: the agent resends from the
            # ack, and a genuine agent's resend will chain; a forger's will not.
            self._clear()
            self.gaps.clear()
        return broken


def _share(nbytes: int | None, count: int) -> int:
    """Bytes counted per entry of a batch: its share of the wire size, plus the fixed overhead."""
    if not nbytes or count <= 0:
        return ENTRY_OVERHEAD_BYTES
    return nbytes // count + ENTRY_OVERHEAD_BYTES


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


def gap_row(device: str, g: Gap) -> JournalRow:
    """A gap kept in the hub's journal at its first seq, so a reader sees the hole rather than a
    silent jump. Its hashes link the rows around it (`before` → `after`); it is the hub's record,
    not an agent entry, and says so."""
    body = HubGapBody(missing_from=g.from_seq, missing_to=g.to_seq, reason=g.reason)
    return JournalRow(device=device, seq=g.from_seq, ts_ms=g.ts_ms, kind=body.KIND.value,
                      body=encode_body(encode(body)), prev_hash=g.before, hash=g.after)
