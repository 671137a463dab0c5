"""The claim checks of hub/claims.py, alone: message + what the hub knows -> verdict."""
from __future__ import annotations

from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.journal_sig import sign_head
from contracts.limits import quote
from contracts.wire import Birth, JournalBatch
from hub.claims import (
    CLAIM_MISMATCH, FORGED_BATCH, batch_claim, birth_claim, contract_claim, expected_seqs,
    may_change_contracts,
)
from hub.states import ContractStatus, DeviceState
from hub.store import ContractRecord
from tests.hub.sync_helpers import batch, chain

KEY = Ed25519PrivateKey.generate()


def _record(device: str) -> ContractRecord:
    return ContractRecord(id="fill@3", contract="fill", version=3, device=device, site="s1",
                          status=ContractStatus.PUSHED, document={}, signed=b"", content_hash="h",
                          created_ms=0, updated_ms=0)


def _batch(device: str = "d1", n: int = 5) -> JournalBatch:
    return JournalBatch.from_bytes(batch(device, chain(n)))


def test_a_contract_claim_holds_only_for_a_contract_issued_to_that_device() -> None:
    assert contract_claim("d1", "fill@3", _record("d1")).ok
    other = contract_claim("d1", "fill@3", _record("d2"))
    never = contract_claim("d1", "fill@3", None)
    assert (other.ok, other.alarm, never.ok, never.alarm) == (False, CLAIM_MISMATCH, False,
                                                              CLAIM_MISMATCH)
    assert "another device" in other.detail and "never issued" in never.detail


def test_a_device_in_fault_changes_no_contract_and_raises_no_second_alarm() -> None:
    verdict = may_change_contracts(DeviceState.FAULT)
    assert (verdict.ok, verdict.alarm) == (False, None)
    assert all(may_change_contracts(s).ok for s in DeviceState if s is not DeviceState.FAULT)


def test_a_birth_must_name_its_topics_site_and_device() -> None:
    b = Birth(device="d1", site="s1", boot_id="b", contract=None, version=None, last_seq=0)
    assert birth_claim("s1", "d1", b).ok
    assert birth_claim("s1", "d2", b).alarm == CLAIM_MISMATCH
    assert birth_claim("s2", "d1", b).alarm == CLAIM_MISMATCH


def test_a_batch_must_name_its_device_and_its_entries_the_seqs_of_its_range() -> None:
    assert batch_claim("d1", _batch(), None, require_signed=False).ok
    assert batch_claim("d2", _batch(), None, require_signed=False).alarm == CLAIM_MISMATCH
    b = _batch()
    shifted = replace(b, entries=(*b.entries[1:], b.entries[0]))
    assert batch_claim("d1", shifted, None, require_signed=False).alarm == CLAIM_MISMATCH


def test_with_a_key_enrolled_only_a_batch_signed_over_its_head_passes() -> None:
    b = _batch()
    good = replace(b, sig=sign_head(b.signed_head(), KEY))
    key = KEY.public_key()
    assert batch_claim("d1", good, key, require_signed=False).ok
    unsigned = batch_claim("d1", b, key, require_signed=False)
    forged = batch_claim("d1", replace(good, dropped_through=2), key, require_signed=False)
    other = batch_claim("d1", replace(b, sig=sign_head(b.signed_head(), Ed25519PrivateKey.generate())),
                        key, require_signed=False)
    assert [v.alarm for v in (unsigned, forged, other)] == [FORGED_BATCH] * 3


def test_without_a_key_unsigned_batches_pass_unless_signed_journals_are_required() -> None:
    assert batch_claim("d1", _batch(), None, require_signed=False).ok
    assert batch_claim("d1", _batch(), None, require_signed=True).alarm == FORGED_BATCH


def test_quoted_claims_are_bounded_and_on_one_line() -> None:
    text = quote("x\nforged=1 " + "y" * 500, bare=True)
    assert len(text) <= 80 and "\n" not in text and text.startswith("x\\nforged")


def test_seqs_inside_declared_gaps_are_not_expected_as_entries() -> None:
    b = _batch(n=10)
    assert list(expected_seqs(b)) == list(range(1, 11))

    class WithGaps:  # sync-protocol's JournalBatch.gaps: ordered (first, last) ranges
        from_seq, to_seq, gaps = 1, 10, ((3, 4), (8, 8))
    assert list(expected_seqs(WithGaps())) == [1, 2, 5, 6, 7, 9, 10]  # type: ignore[arg-type]
