"""Journal batch signatures (contracts/journal_sig.py): what is covered, and the key text form."""
from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.chain import GENESIS
from contracts.journal_sig import (
    SignedHead, normal_gaps, parse_public_key, public_key_text, sign_head, verify_head,
)
from contracts.wire import JournalBatch

KEY = Ed25519PrivateKey.generate()
HEAD = SignedHead(device="d1", from_seq=11, to_seq=20, head_hash=b"\x01" * 32, gaps=((1, 5),))


def test_a_signature_verifies_only_over_exactly_what_was_signed() -> None:
    sig = sign_head(HEAD, KEY)
    assert verify_head(HEAD, sig, KEY.public_key())
    for changed in (replace(HEAD, device="d2"), replace(HEAD, from_seq=12), replace(HEAD, to_seq=21),
                    replace(HEAD, head_hash=b"\x02" * 32), replace(HEAD, gaps=()),
                    replace(HEAD, gaps=((1, 6),))):
        assert not verify_head(changed, sig, KEY.public_key())


def test_another_key_a_missing_or_malformed_signature_never_verifies() -> None:
    sig = sign_head(HEAD, KEY)
    assert not verify_head(HEAD, sig, Ed25519PrivateKey.generate().public_key())
    assert not verify_head(HEAD, None, KEY.public_key())
    assert not verify_head(HEAD, sig[:-1], KEY.public_key())


def test_gap_order_does_not_matter_and_dropped_through_is_a_gap() -> None:
    assert normal_gaps(7, 8, [(20, 25), (10, 12)]) == ((1, 7), (10, 12), (20, 25))
    one, other = replace(HEAD, gaps=((1, 5), (10, 12))), replace(HEAD, gaps=((10, 12), (1, 5)))
    assert one.payload() == other.payload()


def test_a_batch_signs_its_last_entry_hash_and_its_declared_drop() -> None:
    entry = {"seq": 3, "hash": b"\x07" * 32}
    b = JournalBatch(device="d1", from_seq=3, to_seq=3, prev_hash=GENESIS, entries=(entry,),
                     dropped_through=2)
    head = b.signed_head()
    assert (head.head_hash, head.gaps, head.device) == (b"\x07" * 32, ((1, 2),), "d1")
    signed = replace(b, sig=sign_head(head, KEY))
    assert JournalBatch.from_bytes(signed.to_bytes()).sig == signed.sig


def test_public_keys_round_trip_as_text_and_bad_text_says_why() -> None:
    text = public_key_text(KEY.public_key())
    assert text.startswith("ed25519:") and len(text) == 52
    assert public_key_text(parse_public_key(text)) == text
    for bad, why in (("rsa:abc", "must start"), ("ed25519:!!", "base64"), ("ed25519:AAAA", "32")):
        with pytest.raises(ValueError, match=why):
            parse_public_key(bad)
