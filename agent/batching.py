"""Journal batches as the uplink sends them — pure: stored rows in, a JournalRows (with holes) out.

Rules (issue 8: a hole never wedges sync):
- A batch covers `from_seq..to_seq` where `from_seq` is the first seq the hub has not acked and
  not been sent. Every seq in it is either an entry or inside a declared gap: a row missing from
  the journal (deleted, or dropped by retention before the hub had it) or a row that does not
  decode. The gaps live inside the batch, so the batch signature (interface 6) covers them.
- An entry that cannot be encoded is left out as a gap too: the uplink's own data never makes it
  crash and restart forever on the same batch.
- Bodies travel as the bytes the journal stored and hashed (wire version 2,
  contracts.journal_wire): the agent never decodes an entry to send it, nor the hub to verify it.
"""
from __future__ import annotations

from collections.abc import Sequence

from contracts.chain_rows import Row
from contracts.journal_wire import JournalRows


def holes(from_seq: int, seqs: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """The ranges of `from_seq..seqs[-1]` missing from ascending `seqs`."""
    out, expected = [], from_seq
    for seq in seqs:
        if seq > expected:
            out.append((expected, seq - 1))
        expected = seq + 1
    return tuple(out)


def build(device: str, from_seq: int, rows: Sequence[Row]) -> JournalRows:
    """The batch `from_seq..rows[-1].seq`. Raises EncodingError (or ValueError) if it cannot
    be built; `rows` must be non-empty, ascending and start at or after `from_seq`."""
    return JournalRows(device=device, from_seq=from_seq, to_seq=rows[-1].seq,
                       prev_hash=rows[0].prev_hash, rows=tuple(rows),
                       gaps=holes(from_seq, [r.seq for r in rows]))


def encodable(device: str, rows: Sequence[Row]) -> tuple[list[Row], list[tuple[int, str]]]:
    """Split rows into those that encode alone and (seq, why) for those that do not."""
    good: list[Row] = []
    bad: list[tuple[int, str]] = []
    for r in rows:
        try:
            build(device, r.seq, [r]).to_bytes()
        except Exception as exc:  # noqa: BLE001 - whatever it is, this entry cannot travel
            bad.append((r.seq, f"entry cannot be sent: {type(exc).__name__}: {exc}"[:200]))
        else:
            good.append(r)
    return good, bad
