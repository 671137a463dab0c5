"""Journal batches as the uplink sends them — pure: entries in, a JournalBatch (with holes) out.

Rules (issue 8: a hole never wedges sync):
- A batch covers `from_seq..to_seq` where `from_seq` is the first seq the hub has not acked and
  not been sent. Every seq in it is either an entry or inside a declared gap: a row missing from
  the journal (deleted, or dropped by retention before the hub had it) or a row that does not
  decode. The gaps live inside the batch, so the batch signature (interface 6) covers them.
- An entry that cannot be encoded is left out as a gap too: the uplink's own data never makes it
  crash and restart forever on the same batch.
"""
from __future__ import annotations

from collections.abc import Sequence

from contracts.chain import Entry
from contracts.wire import JournalBatch


def holes(from_seq: int, seqs: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """The ranges of `from_seq..seqs[-1]` missing from ascending `seqs`."""
    out, expected = [], from_seq
    for seq in seqs:
        if seq > expected:
            out.append((expected, seq - 1))
        expected = seq + 1
    return tuple(out)


def build(device: str, from_seq: int, entries: Sequence[Entry]) -> JournalBatch:
    """The batch `from_seq..entries[-1].seq`. Raises EncodingError (or ValueError) if it cannot
    be built; `entries` must be non-empty, ascending and start at or after `from_seq`."""
    return JournalBatch(device=device, from_seq=from_seq, to_seq=entries[-1].seq,
                        prev_hash=entries[0].prev_hash,
                        entries=tuple(e.to_mapping() for e in entries),
                        gaps=holes(from_seq, [e.seq for e in entries]))


def encodable(device: str, entries: Sequence[Entry]) -> tuple[list[Entry], list[tuple[int, str]]]:
    """Split entries into those that encode alone and (seq, why) for those that do not."""
    good: list[Entry] = []
    bad: list[tuple[int, str]] = []
    for e in entries:
        try:
            build(device, e.seq, [e]).to_bytes()
        except Exception as exc:  # noqa: BLE001 - whatever it is, this entry cannot travel
            bad.append((e.seq, f"entry cannot be sent: {type(exc).__name__}: {exc}"[:200]))
        else:
            good.append(e)
    return good, bad
