"""The journal's hash chain: pure, shared by the agent (which writes it) and the hub (which checks it).

Rules (invariants 4 and 5):
- Every entry has a gapless `seq` (1, 2, 3, ...) and commits to its predecessor:
  `hash = sha256(prev_hash || canonical_cbor([seq, ts_ms, kind, body]))`, with `GENESIS` (32 zero
  bytes) as the `prev_hash` of seq 1. Canonical CBOR (contracts.codec) makes the hash the same on
  every machine.
- Anyone holding a run of entries and the hash that precedes it can prove the run is complete and
  unaltered: `verify_chain` names the first seq where that fails, and why.
- A forced retention drop does not rewrite history: the chain stays linked, and a GAP entry says
  which seqs the agent dropped before the hub had them.
"""
from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.codec import canonical_dumps
from contracts.errors import EncodingError
from contracts.limits import MAX_SEQ, quote
from contracts.types import EpochMs

HASH_SIZE = 32
"""SHA-256 digest size in bytes."""

GENESIS: bytes = bytes(HASH_SIZE)
"""The `prev_hash` of seq 1: no predecessor."""


class EntryKind(enum.StrEnum):
    """What a journal entry records. Values are stored and sent as-is; never rename one."""

    INPUT = "input"
    OUTPUT = "output"
    KEYFRAME = "keyframe"
    STEP = "step"
    EVENT = "event"
    TRIP = "trip"
    REFUSAL = "refusal"
    CONTRACT = "contract"
    ADAPTER_FAULT = "adapter_fault"
    CONNECTIVITY = "connectivity"
    COMMAND = "command"
    OVERRUN = "overrun"
    CHECKPOINT = "checkpoint"
    GAP = "gap"
    BOOT = "boot"


def entry_hash(prev_hash: bytes, seq: int, ts_ms: EpochMs, kind: EntryKind,
               body: Mapping[str, Any]) -> bytes:
    """sha256(prev_hash || canonical_dumps([seq, ts_ms, kind, body])).

    Raises EncodingError if the body holds values CBOR cannot carry."""
    return hash_encoded(prev_hash, seq, ts_ms, kind, encode_body(body))


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The canonical CBOR of an entry body: what is hashed, and what a store keeps."""
    return canonical_dumps(dict(body))


_ARRAY_OF_4 = b"\x84"  # CBOR major type 4 (array), 4 items: RFC 8949 section 3.1
_KIND_CBOR = {k: canonical_dumps(k.value) for k in EntryKind}


_UINT_HEADS = tuple((bytes((head,)), size, 1 << (8 * size))
                    for head, size in ((0x18, 1), (0x19, 2), (0x1A, 4), (0x1B, 8)))


def _uint(n: int) -> bytes:
    """Canonical CBOR of a non-negative int (RFC 8949 section 4.2.1: the shortest head), what
    `canonical_dumps(n)` gives, without a call into cbor2 per field of every entry."""
    if n < 24:
        return bytes((n,))
    for head, size, limit in _UINT_HEADS:
        if n < limit:
            return head + n.to_bytes(size, "big")
    return canonical_dumps(n)  # a bignum (tag 2): left to cbor2


def hash_encoded(prev_hash: bytes, seq: int, ts_ms: EpochMs, kind: EntryKind,
                 body_cbor: bytes) -> bytes:
    """`entry_hash` for a body already encoded with `encode_body`. Canonical CBOR of a
    definite-length array is its header followed by its items' encodings, so the payload is
    assembled from parts and the body is encoded once for both hashing and storing."""
    if seq < 0 or ts_ms < 0:
        return _hash_parts(prev_hash, canonical_dumps(seq), canonical_dumps(ts_ms), kind, body_cbor)
    return _hash_parts(prev_hash, _uint(seq), _uint(ts_ms), kind, body_cbor)


def _hash_parts(prev_hash: bytes, seq: bytes, ts: bytes, kind: EntryKind, body: bytes) -> bytes:
    return hashlib.sha256(b"".join((prev_hash, _ARRAY_OF_4, seq, ts, _KIND_CBOR[kind],
                                    body))).digest()


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One journal entry. Build new ones with `make_entry`; `hash` is not checked here."""

    seq: int
    ts_ms: EpochMs
    kind: EntryKind
    body: Mapping[str, Any]
    prev_hash: bytes
    hash: bytes

    def to_mapping(self) -> dict[str, Any]:
        """Plain values for the wire (CBOR)."""
        return {"seq": self.seq, "ts_ms": self.ts_ms, "kind": self.kind.value,
                "body": dict(self.body), "prev_hash": self.prev_hash, "hash": self.hash}

    @classmethod
    def from_mapping(cls, m: Any) -> Entry:
        """Inverse of `to_mapping`. Raises EncodingError naming the first bad field and its value."""
        fast = _exact_wire_entry(m)
        if fast is not None:
            return fast
        if not isinstance(m, Mapping):
            raise EncodingError(f"entry: expected a map, got {type(m).__name__}")
        return cls(seq=_int_field(m, "seq"), ts_ms=_int_field(m, "ts_ms"),
                   kind=_kind_field(m), body=_body_field(m),
                   prev_hash=_hash_field(m, "prev_hash"), hash=_hash_field(m, "hash"))


_KINDS = {k.value: k for k in EntryKind}
_WIRE_KEYS = frozenset({"seq", "ts_ms", "kind", "body", "prev_hash", "hash"})
_STR_TYPE = frozenset({str})


def _exact_wire_entry(m: Any) -> Entry | None:
    """The entry, for a decoded map of exactly the wire's shape with valid fields; otherwise None
    and the checks field by field below decide (and name what is wrong). The hub decodes ~100,000
    entries a second this way, so the common case costs one pass of type tests."""
    if type(m) is not dict or m.keys() != _WIRE_KEYS:
        return None
    seq, ts, kind, body = m["seq"], m["ts_ms"], m["kind"], m["body"]
    prev, digest = m["prev_hash"], m["hash"]
    if not (type(seq) is int and seq >= 0 and type(ts) is int and ts >= 0
            and type(kind) is str and kind in _KINDS and type(body) is dict
            and type(prev) is bytes and len(prev) == HASH_SIZE
            and type(digest) is bytes and len(digest) == HASH_SIZE
            and {*map(type, body)} <= _STR_TYPE):
        return None
    return checked_entry(seq, ts, _KINDS[kind], dict(body), prev, digest)


def checked_entry(seq: int, ts_ms: EpochMs, kind: EntryKind, body: Mapping[str, Any],
                  prev_hash: bytes, digest: bytes) -> Entry:
    """An Entry from fields already checked (by `_exact_wire_entry`, or a store reading back the
    rows it wrote): the frozen instance is filled directly instead of through the generated
    __init__ (one object.__setattr__ per field), which was a third of decoding an entry."""
    entry = object.__new__(Entry)
    entry.__dict__.update(seq=seq, ts_ms=ts_ms, kind=kind, body=body, prev_hash=prev_hash,
                          hash=digest)
    return entry


def kind_of(value: str) -> EntryKind:
    """The EntryKind named `value`. Raises ValueError for an unknown one."""
    try:
        return _KINDS[value]
    except KeyError:
        raise ValueError(f"unknown entry kind {value!r}") from None


def _field(m: Mapping[str, Any], name: str) -> Any:
    if name not in m:
        raise EncodingError(f"entry field {name!r}: missing")
    return m[name]


def _int_field(m: Mapping[str, Any], name: str) -> int:
    value = _field(m, name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise EncodingError(f"entry field {name!r}: expected an int within 0..{MAX_SEQ}, "
                            f"got {quote(value)}")  # MAX_SEQ == MAX_EPOCH_MS: one bound
    return value


def _kind_field(m: Mapping[str, Any]) -> EntryKind:
    value = _field(m, "kind")
    try:
        return EntryKind(value)
    except ValueError as exc:
        raise EncodingError(f"entry field 'kind': unknown kind {quote(value)}") from exc


def _body_field(m: Mapping[str, Any]) -> dict[str, Any]:
    value = _field(m, "body")
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise EncodingError(f"entry field 'body': expected a map with text keys, got {quote(value)}")
    return dict(value)


def _hash_field(m: Mapping[str, Any], name: str) -> bytes:
    value = _field(m, name)
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise EncodingError(f"entry field {name!r}: expected {HASH_SIZE} bytes, got {quote(value)}")
    return value


def make_entry(prev: bytes, seq: int, ts_ms: EpochMs, kind: EntryKind,
               body: Mapping[str, Any]) -> Entry:
    """The entry `seq` chained after the entry whose hash is `prev`.

    Raises EncodingError for a body CBOR cannot carry, ValueError for a malformed prev or seq."""
    if len(prev) != HASH_SIZE or seq < 1:
        raise ValueError(f"make_entry: prev must be {HASH_SIZE} bytes and seq >= 1, got seq={seq}")
    frozen_body = dict(body)
    return Entry(seq=seq, ts_ms=ts_ms, kind=kind, body=frozen_body, prev_hash=prev,
                 hash=entry_hash(prev, seq, ts_ms, kind, frozen_body))


@dataclass(frozen=True)
class ChainBreak:
    """Where a chain first fails to verify, and why."""

    seq: int
    reason: str


def verify_chain(entries: Sequence[Entry], prev_hash: bytes, prev_seq: int) -> ChainBreak | None:
    """None if `entries` continue the chain ending at (`prev_seq`, `prev_hash`) without gap or
    alteration; otherwise the first break. Never raises for bad entries: a body that cannot be
    encoded is reported as a break."""
    for entry in entries:
        broken = _check_one(entry, prev_hash, prev_seq)
        if broken is not None:
            return broken
        prev_hash, prev_seq = entry.hash, entry.seq
    return None


def _check_one(entry: Entry, prev_hash: bytes, prev_seq: int) -> ChainBreak | None:
    return check_entry(entry, prev_hash, prev_seq)[0]


def check_entry(entry: Entry, prev_hash: bytes, prev_seq: int) -> tuple[ChainBreak | None, bytes]:
    """(break or None, the entry's encoded body) for one entry following (prev_seq, prev_hash).
    The encoded body is returned so a store can keep exactly the bytes that were hashed."""
    if entry.seq != prev_seq + 1:
        return ChainBreak(entry.seq, f"seq gap: expected {prev_seq + 1}, got {entry.seq}"), b""
    if entry.prev_hash != prev_hash:
        return ChainBreak(entry.seq, "prev_hash does not link"), b""
    try:
        body = encode_body(entry.body)
    except EncodingError as exc:
        return ChainBreak(entry.seq, f"body cannot be encoded: {exc}"), b""
    if entry.hash != hash_encoded(prev_hash, entry.seq, entry.ts_ms, entry.kind, body):
        return ChainBreak(entry.seq, "hash mismatch"), b""
    return None, body


def verify_run(entries: Sequence[Entry], prev_hash: bytes,
               prev_seq: int) -> tuple[int, list[bytes], ChainBreak | None]:
    """`check_entry` over a run: (how many of `entries` continue the chain from (`prev_seq`,
    `prev_hash`) before the first break, their encoded bodies, that break or None). The same
    checks with the per-entry calls inlined: the hub verifies ~100,000 entries a second."""
    bodies: list[bytes] = []
    for e in entries:
        seq, ts = e.seq, e.ts_ms
        if seq != prev_seq + 1 or e.prev_hash != prev_hash or ts < 0:
            broken, body = check_entry(e, prev_hash, prev_seq)
            if broken is not None:
                return len(bodies), bodies, broken
        else:
            try:
                body = encode_body(e.body)
            except EncodingError as exc:
                return len(bodies), bodies, ChainBreak(seq, f"body cannot be encoded: {exc}")
            parts = (prev_hash, _ARRAY_OF_4, _uint(seq), _uint(ts), _KIND_CBOR[e.kind], body)
            if e.hash != hashlib.sha256(b"".join(parts)).digest():
                return len(bodies), bodies, ChainBreak(seq, "hash mismatch")
        bodies.append(body)
        prev_hash, prev_seq = e.hash, seq
    return len(bodies), bodies, None
