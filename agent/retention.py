"""Journal retention as a pure policy: from the file's size, the budget and the ack and head marks,
which entries may be dropped next. It reads no file and no clock; the journal (agent/journal.py)
measures, asks, deletes the rows, vacuums and asks again.

Rules (invariant 4):
- Under budget: nothing goes.
- Over budget: the oldest *acknowledged* entries go first (the hub holds them). Never the head row:
  it carries the next seq's prev_hash, so the chain and the gapless seq survive retention.
- Over HARD_LIMIT_FACTOR x budget: the oldest entries go even when unacknowledged, and the drop is
  itself journaled as a GAP entry (`gap_body`) in the same transaction.
- Each drop asks for the bytes over budget; how many rows that is, is estimated from their body
  lengths plus ROW_OVERHEAD_BYTES, so the journal re-measures and asks again, at most
  MAX_RETENTION_ROUNDS times.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.journal_events import GapBody, encode

HARD_LIMIT_FACTOR = 2
"""Unacked entries are dropped only above budget x this: twice the budget leaves the uplink a long
outage's worth of room before we lose data the hub has not seen."""

ROW_OVERHEAD_BYTES = 96
"""Estimated bytes per row beyond its body: two 32-byte hashes, seq, ts_ms, kind, record header
and b-tree cell pointer. Used only to estimate how many rows retention must drop."""

MAX_RETENTION_ROUNDS = 16
"""Retention deletes, vacuums and re-measures; estimates converge in a few rounds."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Drop:
    """Free about `excess_bytes` by deleting the oldest entries, none above `max_seq`."""

    excess_bytes: int
    max_seq: int
    forced: bool
    """True: unacknowledged entries go too, and a GAP entry must record the loss."""


def hard_limit(budget_bytes: int) -> int:
    """The size above which unacknowledged entries are dropped too."""
    return budget_bytes * HARD_LIMIT_FACTOR


def acked_drop(*, size_bytes: int, budget_bytes: int, acked_seq: int, head_seq: int) -> Drop | None:
    """The next drop of acknowledged entries, or None when under budget or nothing acked can go."""
    excess = size_bytes - budget_bytes
    max_seq = min(acked_seq, head_seq - 1)  # the head row is always kept
    if excess <= 0 or max_seq < 1:
        return None
    return Drop(excess_bytes=excess, max_seq=max_seq, forced=False)


def forced_drop(*, size_bytes: int, budget_bytes: int, head_seq: int) -> Drop | None:
    """The drop of unacknowledged entries once over the hard limit, or None."""
    if size_bytes <= hard_limit(budget_bytes) or head_seq - 1 < 1:
        return None
    return Drop(excess_bytes=size_bytes - budget_bytes, max_seq=head_seq - 1, forced=True)


def gap_body(dropped_from: int, dropped_to: int, budget_bytes: int) -> dict[str, Any]:
    """The body of the GAP entry journaling a forced drop of seq dropped_from..dropped_to."""
    return encode(GapBody(dropped_from=dropped_from, dropped_to=dropped_to,
                          reason=f"journal over hard limit {hard_limit(budget_bytes)} bytes"))
