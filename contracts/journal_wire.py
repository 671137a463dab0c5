"""The journal batch on `…/journal`, version 2: rows of stored body bytes — and the reader of both
versions.

Version 1 (contracts.wire.JournalBatch) carries each entry as a map `{seq, ts_ms, kind, body,
prev_hash, hash}` with its body decoded: the hub decoded every body and encoded it again to check
its hash (~30 us an entry, 154 B). Version 2 carries each entry as a row

    [seq, ts_ms, kind, body_cbor, hash]            or, where the chain restarts,
    [seq, ts_ms, kind, body_cbor, hash, prev_hash]

where `body_cbor` is the canonical CBOR the agent hashed and stored, sent as a byte string and
never decoded to be verified (contracts.chain_rows), ~87 B an entry. A row's prev_hash is the
previous row's hash, the batch's `prev_hash` for the first row, and given explicitly only where it
is not (after a gap: a row missing from the agent's journal, so the chain restarts).

Rules:
- The envelope's version says which form it is; `decode_journal` reads both and gives rows either
  way, so the hub has one ingest path and keeps taking version 1 from agents not yet upgraded.
- The signature is unchanged (contracts.journal_sig, fixed interface 6): the signed head of a
  batch is the same in both forms — device, seq range, the last entry's hash, the declared gaps.
- A row is checked field by field when it is decoded (types, ranges, a known kind); its body only
  for being bytes here, for being a map by `verify_rows`, and for its fields by whoever reads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from contracts.chain import HASH_SIZE, Entry, EntryKind
from contracts.chain_rows import Row, entry_of, row_of
from contracts.codec import decode_versioned
from contracts.errors import EncodingError
from contracts.journal_sig import SignedHead, normal_gaps
from contracts.limits import MAX_EPOCH_MS, MAX_SEQ
from contracts.wire import JournalBatch, check_batch_count, check_batch_head
from contracts.wire_fields import Message, as_pairs, bad, sized

ROWS_VERSION = 2
"""The envelope version of the row form (version 1 is JournalBatch)."""

_KINDS = {k.value: k for k in EntryKind}


@dataclass(frozen=True, kw_only=True)
class JournalRows(Message):
    """A run of journal rows `from_seq..to_seq` chained from `prev_hash`; `gaps` and `sig` as in
    JournalBatch (every seq of the range is a row or in exactly one gap). `dropped_through` is
    only set for a version 1 batch that carried it (decode_journal)."""

    KIND: ClassVar[str] = "journal"
    VERSION: ClassVar[int] = ROWS_VERSION
    MAX_BYTES: ClassVar[int] = JournalBatch.MAX_BYTES
    device: str
    from_seq: int
    to_seq: int
    prev_hash: bytes
    rows: tuple[Row, ...]
    gaps: tuple[tuple[int, int], ...] = ()
    sig: bytes | None = None
    dropped_through: int = 0

    def __post_init__(self) -> None:
        k = self.KIND
        check_batch_head(k, self.device, self.from_seq, self.to_seq, self.dropped_through,
                         self.sig, self.prev_hash)
        if not isinstance(self.rows, tuple) or not all(type(r) is Row for r in self.rows):
            raise bad(k, "rows", "must be a sequence of Rows", type(self.rows).__name__)
        check_batch_count(k, self.from_seq, self.to_seq, self.gaps, len(self.rows), "rows")

    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"device": self.device, "from_seq": self.from_seq,
                                "to_seq": self.to_seq, "prev_hash": self.prev_hash,
                                "rows": _rows_to_wire(self.rows, self.prev_hash)}
        if self.gaps:
            body["gaps"] = [list(g) for g in self.gaps]
        if self.sig is not None:
            body["sig"] = self.sig
        if self.dropped_through:
            body["dropped_through"] = self.dropped_through
        return body

    @classmethod
    def _from_body(cls, body: dict[str, Any]) -> dict[str, Any]:
        out = {**body, "rows": _rows_from_wire(body["rows"], body["prev_hash"])}
        if "gaps" in body:
            out["gaps"] = as_pairs(body["gaps"])
        return out

    def signed_head(self) -> SignedHead:
        """What `sig` covers: exactly JournalBatch.signed_head of the same batch."""
        head = self.rows[-1].hash if self.rows else self.prev_hash
        return SignedHead(device=self.device, from_seq=self.from_seq, to_seq=self.to_seq,
                          head_hash=head,
                          gaps=normal_gaps(self.dropped_through, self.from_seq, self.gaps))

    def entries(self) -> list[Entry]:
        """The rows decoded (contracts.chain_rows.entry_of). Raises EncodingError for a body
        that is not a CBOR map with text keys."""
        return [entry_of(r) for r in self.rows]


def _rows_to_wire(rows: tuple[Row, ...], prev: bytes) -> list[list[Any]]:
    out = []
    for seq, ts, kind, body, prev_hash, digest in rows:
        item: list[Any] = [seq, ts, kind.value, body, digest]
        if prev_hash != prev:
            item.append(prev_hash)  # the chain restarts here (after a gap): say from what
        out.append(item)
        prev = digest
    return out


def _rows_from_wire(items: Any, prev: Any) -> tuple[Row, ...]:
    """Rows from their wire arrays, each field checked; the implied prev_hash filled in. One
    pass of type tests per row: the hub decodes a few hundred thousand rows a second."""
    if type(items) is not list:
        raise bad(JournalRows.KIND, "rows", "must be an array of rows", type(items).__name__)
    if type(prev) is not bytes or len(prev) != HASH_SIZE:
        raise bad(JournalRows.KIND, "prev_hash", f"must be {HASH_SIZE} bytes", prev)
    out: list[Row] = []
    append, kinds, new, size, top = out.append, _KINDS, tuple.__new__, HASH_SIZE, MAX_SEQ
    for item in items:
        if type(item) is list and len(item) == 5:
            seq, ts, kind, body, digest = item
        elif type(item) is list and len(item) == 6:
            seq, ts, kind, body, digest, prev = item
            if type(prev) is not bytes or len(prev) != size:
                raise _row_error(len(out), f"prev_hash must be {size} bytes", item)
        else:
            raise _row_error(len(out), "must be [seq, ts_ms, kind, body, hash] or with prev_hash",
                             item)
        k = kinds.get(kind) if type(kind) is str else None
        if (k is None or type(seq) is not int or type(ts) is not int or type(body) is not bytes
                or type(digest) is not bytes or len(digest) != size or not 0 <= seq <= top
                or not 0 <= ts <= MAX_EPOCH_MS):
            raise _row_error(len(out), _why_row(seq, ts, kind, body, digest), item)
        append(new(Row, (seq, ts, k, body, prev, digest)))
        prev = digest
    return tuple(out)


def _why_row(seq: Any, ts: Any, kind: Any, body: Any, digest: Any) -> str:
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        return f"seq must be an integer within 0..{MAX_SEQ}"
    if type(ts) is not int or not 0 <= ts <= MAX_EPOCH_MS:
        return f"ts_ms must be an integer within 0..{MAX_EPOCH_MS}"
    if type(kind) is not str or kind not in _KINDS:
        return "kind must be an entry kind"
    if type(body) is not bytes:
        return "body must be a byte string (the entry body's CBOR)"
    return f"hash must be {HASH_SIZE} bytes"


def _row_error(index: int, why: str, item: Any) -> EncodingError:
    return bad(JournalRows.KIND, f"rows[{index}]", why, item)


def rows_batch(batch: JournalBatch) -> JournalRows:
    """The version 2 form of a version 1 batch: bodies encoded canonically (what the agent hashed).

    Raises EncodingError for an entry that is not a well-formed entry map."""
    rows = tuple(row_of(Entry.from_mapping(m)) for m in batch.entries)
    return JournalRows(device=batch.device, from_seq=batch.from_seq, to_seq=batch.to_seq,
                       prev_hash=batch.prev_hash, rows=rows, gaps=batch.gaps, sig=batch.sig,
                       dropped_through=batch.dropped_through)


def decode_journal(data: bytes) -> JournalRows:
    """A journal batch in either version, as rows. Raises EncodingError naming the field at fault."""
    version, body = decode_versioned(sized(JournalRows, data), JournalRows.KIND,
                                     (JournalBatch.VERSION, ROWS_VERSION))
    if version == ROWS_VERSION:
        return JournalRows.from_body(body)
    return rows_batch(JournalBatch.from_body(body))

