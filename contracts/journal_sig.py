"""Journal batch signatures: pure, shared by the agent (which signs) and the hub and
`fieldpact journal verify --pubkey` (which check). Fixed interface 6.

Rules:
- Each agent has its own Ed25519 key. A journal batch carries `sig`: Ed25519 over the canonical
  CBOR of `[DOMAIN, device, from_seq, to_seq, head_hash, gaps]`, where `head_hash` is the hash of
  entry `to_seq` (the chain head the batch ends at: by the hash chain it commits to every entry
  before it) and `gaps` is the sorted list of `[from, to]` seq ranges the batch declares dropped
  (`dropped_through`, and sync-protocol's explicit gap ranges). A declared gap is signed, so
  nobody without the key can make the hub skip entries.
- DOMAIN separates these signatures from every other use of the key (contracts are COSE).
- A public key travels as text `ed25519:<base64 of the raw 32 bytes>`: one line to paste into
  hub.toml or the admin API; `fieldpact agent pubkey` prints it.
- Nothing here raises on a bad signature: `verify_head` answers True or False.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts.codec import canonical_dumps

DOMAIN = "fieldpact-journal-head-v1"
"""Signed first, so a journal signature can never be replayed as anything else."""

KEY_PREFIX = "ed25519:"
RAW_KEY_BYTES = 32
"""Ed25519 public keys are 32 bytes (RFC 8032 section 5.1.5)."""
SIG_BYTES = 64
"""Ed25519 signatures are 64 bytes (RFC 8032 section 5.1.6)."""

GapRange = tuple[int, int]


@dataclass(frozen=True, kw_only=True)
class SignedHead:
    """What a batch signature covers."""

    device: str
    from_seq: int
    to_seq: int
    head_hash: bytes
    gaps: tuple[GapRange, ...] = ()

    def payload(self) -> bytes:
        """The exact bytes signed: canonical CBOR, identical on every machine."""
        gaps = [[a, b] for a, b in sorted(self.gaps)]
        return canonical_dumps([DOMAIN, self.device, self.from_seq, self.to_seq,
                                self.head_hash, gaps])


def normal_gaps(dropped_through: int, from_seq: int,
                extra: Iterable[Sequence[int]] = ()) -> tuple[GapRange, ...]:
    """The gap ranges a batch declares: `dropped_through` as (1..dropped_through) — the agent says
    it no longer holds anything up to there — plus explicit ranges, sorted, duplicates removed."""
    ranges = {(int(r[0]), int(r[1])) for r in extra}
    if dropped_through > 0:
        ranges.add((1, dropped_through))
    return tuple(sorted(ranges))


def sign_head(head: SignedHead, key: Ed25519PrivateKey) -> bytes:
    return key.sign(head.payload())


def verify_head(head: SignedHead, sig: bytes | None, pubkey: Ed25519PublicKey) -> bool:
    """Whether `sig` is the device key's signature over `head`. None or malformed: False."""
    if not isinstance(sig, bytes) or len(sig) != SIG_BYTES:
        return False
    try:
        pubkey.verify(sig, head.payload())
    except InvalidSignature:
        return False
    return True


def public_key_text(pubkey: Ed25519PublicKey) -> str:
    """`ed25519:<base64 raw>`, the form hub.toml and the API take."""
    raw = pubkey.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Inverse of `public_key_text`. Raises ValueError saying what is wrong (never quoting more
    than a short prefix of the input)."""
    if not isinstance(text, str) or not text.startswith(KEY_PREFIX):
        raise ValueError(f"must start with {KEY_PREFIX!r} (see `fieldpact agent pubkey`)")
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64 after 'ed25519:'") from None
    if len(raw) != RAW_KEY_BYTES:
        raise ValueError(f"must hold {RAW_KEY_BYTES} key bytes, has {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)
