"""Journal entries as rows of their stored bytes, and the hash chain verified over those bytes.

A Row is an entry whose body is kept as the canonical CBOR the agent hashed and stored
(contracts.chain.encode_body), not as a decoded map. Rules of this module:
- Verification hashes `body` as it is: sha256(prev_hash || 0x84 || seq || ts_ms || kind || body),
  the same digest `chain.entry_hash` gives for the decoded body (canonical CBOR of an array is its
  head followed by its items' encodings), so a chain verifies the same in either form.
- A body is only ever a CBOR map. `verify_rows` refuses one whose first byte is not a
  definite-length map head (RFC 8949 section 3.1: major type 5, 0xa0..0xbb); what is inside is
  decoded, strictly and bounded (contracts.codec.loads_map), only by a reader that needs the
  fields (`entry_of`), and a body that does not decode is that reader's BodyError, never a crash.
- Nothing here trusts the agent: a row is checked field by field when it is decoded from the
  wire (contracts.journal_wire), and every link of the chain is checked here.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

from contracts import codec
from contracts.chain import (_ARRAY_OF_4, _KIND_CBOR, ChainBreak, Entry, EntryKind, _uint,
                             checked_entry, encode_body, hash_encoded)
from contracts.types import EpochMs

MAP_HEADS = range(0xA0, 0xBC)
"""First bytes of a definite-length CBOR map (RFC 8949 section 3.1: major type 5, additional
information 0..27). 0xbf, the indefinite-length map, is never canonical (section 4.2.1)."""


class Row(NamedTuple):
    """One journal entry with its body as stored bytes (what the hub keeps in its journal table)."""

    seq: int
    ts_ms: EpochMs
    kind: EntryKind
    body: bytes
    prev_hash: bytes
    hash: bytes


def is_map(body: bytes) -> bool:
    """Whether `body` starts as a definite-length CBOR map (its contents are not looked at)."""
    return type(body) is bytes and len(body) > 0 and body[0] in MAP_HEADS


def row_of(entry: Entry) -> Row:
    """The row of a decoded entry. Raises EncodingError for a body CBOR cannot carry."""
    return Row(entry.seq, entry.ts_ms, entry.kind, encode_body(entry.body), entry.prev_hash,
               entry.hash)


def entry_of(row: Row) -> Entry:
    """The decoded entry of a row (strict, bounded decode of its body).

    Raises EncodingError for a body that is not a CBOR map with text keys."""
    return checked_entry(row.seq, row.ts_ms, row.kind, codec.loads_map(row.body), row.prev_hash,
                         row.hash)


def row_hash(row: Row) -> bytes:
    """The hash `row` must carry: its fields and its body bytes, chained from its prev_hash."""
    return hash_encoded(row.prev_hash, row.seq, row.ts_ms, row.kind, row.body)


def verify_rows(rows: Sequence[Row], prev_hash: bytes, prev_seq: int) -> tuple[int, ChainBreak | None]:
    """(how many of `rows` continue the chain ending at (`prev_seq`, `prev_hash`) before the
    first break, that break or None). Never raises. The per-row work is inlined: the hub
    verifies a few hundred thousand rows a second this way."""
    sha, heads, array4, kinds, uint = hashlib.sha256, MAP_HEADS, _ARRAY_OF_4, _KIND_CBOR, _uint
    for n, (seq, ts, kind, body, prev, digest) in enumerate(rows):
        if seq != prev_seq + 1:
            return n, ChainBreak(seq, f"seq gap: expected {prev_seq + 1}, got {seq}")
        if prev != prev_hash:
            return n, ChainBreak(seq, "prev_hash does not link")
        if type(body) is not bytes or not body or body[0] not in heads:
            return n, ChainBreak(seq, "body is not a CBOR map")
        if ts < 0:
            expected = hash_encoded(prev, seq, ts, kind, body)
        else:
            expected = sha(b"".join((prev, array4, uint(seq), uint(ts), kinds[kind], body))).digest()
        if digest != expected:
            return n, ChainBreak(seq, "hash mismatch")
        prev_hash, prev_seq = digest, seq
    return len(rows), None
