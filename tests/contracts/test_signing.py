"""COSE_Sign1 signing and the receiver's refusals, in the order the agent applies them."""
from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.codec import canonical_dumps, content_hash, dumps_tagged, encode_contract, loads_tagged
from contracts.errors import ContractRefused, Refusal, SigningKeyError
from contracts.schema import Contract
from contracts.signing import (
    generate_keypair, key_id, load_private_key, load_public_key, sign_contract, verify_contract,
)

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # fixed: examples stay reproducible
PUB = KEY.public_key()


@pytest.fixture(scope="module")
def contract() -> Contract:
    from contracts.loader import load_contract

    return load_contract(EXAMPLES / "tank-fill.yaml")


@pytest.fixture(scope="module")
def signed(contract: Contract) -> bytes:
    return sign_contract(contract, KEY)


def during(c: Contract) -> int:
    return c.valid_from + 1000


def refusal(data: bytes, c: Contract, **kw: object) -> Refusal:
    with pytest.raises(ContractRefused) as info:
        verify_contract(data, PUB, **{"now_ms": during(c), **kw})  # type: ignore[arg-type]
    return info.value.refusal


def resign(parts: list[object]) -> bytes:
    return dumps_tagged(18, parts)


def test_signed_contract_verifies_to_the_same_contract(contract: Contract, signed: bytes) -> None:
    assert verify_contract(signed, PUB, now_ms=during(contract), device=contract.device) == contract


def test_message_is_cose_sign1_with_eddsa_and_kid(contract: Contract, signed: bytes) -> None:
    tag, (protected, unprotected, payload, signature) = loads_tagged(signed)
    assert tag == 18 and protected == canonical_dumps({1: -8})
    assert dict(unprotected) == {4: key_id(PUB)} and len(key_id(PUB)) == 8
    assert payload == encode_contract(contract) and len(signature) == 64


def test_plain_payload_without_envelope_is_unsigned(contract: Contract) -> None:
    assert refusal(encode_contract(contract), contract) is Refusal.UNSIGNED


def test_empty_signature_is_unsigned(contract: Contract, signed: bytes) -> None:
    _, parts = loads_tagged(signed)
    assert refusal(resign([parts[0], dict(parts[1]), parts[2], b""]), contract) is Refusal.UNSIGNED


def test_other_algorithm_is_unsigned(contract: Contract, signed: bytes) -> None:
    _, parts = loads_tagged(signed)
    es256 = canonical_dumps({1: -7})
    assert refusal(resign([es256, dict(parts[1]), parts[2], parts[3]]), contract) is Refusal.UNSIGNED


def test_signature_by_another_key_is_bad_signature(contract: Contract) -> None:
    other = sign_contract(contract, Ed25519PrivateKey.generate())
    assert refusal(other, contract) is Refusal.BAD_SIGNATURE


def test_other_keys_signature_under_our_kid_is_bad_signature(contract: Contract) -> None:
    _, parts = loads_tagged(sign_contract(contract, Ed25519PrivateKey.generate()))
    forged = resign([parts[0], {4: key_id(PUB)}, parts[2], parts[3]])
    assert refusal(forged, contract) is Refusal.BAD_SIGNATURE


def test_swapped_kid_is_bad_signature(contract: Contract, signed: bytes) -> None:
    _, parts = loads_tagged(signed)
    assert refusal(resign([parts[0], {4: b"\0" * 8}, parts[2], parts[3]]), contract) \
        is Refusal.BAD_SIGNATURE


def test_signature_is_checked_before_content(contract: Contract) -> None:
    expired_and_foreign = sign_contract(replace(contract, device="other"), Ed25519PrivateKey.generate())
    assert refusal(expired_and_foreign, contract, device=contract.device) is Refusal.BAD_SIGNATURE


def test_signed_invalid_payload_is_invalid_with_issues(contract: Contract) -> None:
    bad = replace(contract, scan_period_ms=1)
    with pytest.raises(ContractRefused) as info:
        verify_contract(sign_contract(bad, KEY), PUB, now_ms=during(contract))
    assert info.value.refusal is Refusal.INVALID and "scan_period_ms" in info.value.detail


def test_contract_for_another_device_is_wrong_device(contract: Contract, signed: bytes) -> None:
    assert refusal(signed, contract, device="pump-station-8") is Refusal.WRONG_DEVICE


def test_contract_before_valid_from_is_not_yet_valid(contract: Contract, signed: bytes) -> None:
    assert refusal(signed, contract, now_ms=contract.valid_from - 1) is Refusal.NOT_YET_VALID


def test_future_contract_is_accepted_when_allowed(contract: Contract, signed: bytes) -> None:
    assert verify_contract(signed, PUB, now_ms=contract.valid_from - 1, allow_future=True) == contract


def test_contract_at_valid_until_is_expired(contract: Contract, signed: bytes) -> None:
    assert refusal(signed, contract, now_ms=contract.valid_until) is Refusal.EXPIRED
    assert verify_contract(signed, PUB, now_ms=contract.valid_until - 1) == contract


def test_lower_version_than_accepted_is_older_version(contract: Contract, signed: bytes) -> None:
    accepted = {contract.contract: contract.version + 1}
    assert refusal(signed, contract, accepted=accepted) is Refusal.OLDER_VERSION


def test_same_version_with_other_content_is_older_version(contract: Contract, signed: bytes) -> None:
    accepted = {contract.contract: contract.version}
    assert refusal(signed, contract, accepted=accepted) is Refusal.OLDER_VERSION
    other = {contract.contract: "0" * 64}
    assert refusal(signed, contract, accepted=accepted, accepted_hashes=other) is Refusal.OLDER_VERSION


def test_identical_redelivery_of_accepted_version_is_accepted(contract: Contract, signed: bytes) -> None:
    accepted, hashes = {contract.contract: contract.version}, {contract.contract: content_hash(contract)}
    assert verify_contract(signed, PUB, now_ms=during(contract), accepted=accepted,
                           accepted_hashes=hashes) == contract


def test_newer_version_and_other_contract_ids_pass_rollback_check(contract: Contract,
                                                                 signed: bytes) -> None:
    accepted = {contract.contract: contract.version - 1, "pump-skid": 99}
    assert verify_contract(signed, PUB, now_ms=during(contract), accepted=accepted) == contract


@settings(max_examples=300, deadline=None)
@given(index=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_flipping_any_single_byte_is_refused(contract: Contract, signed: bytes, index: int,
                                             mask: int) -> None:
    data = bytearray(signed)
    data[index % len(data)] ^= mask
    with pytest.raises(ContractRefused):
        verify_contract(bytes(data), PUB, now_ms=during(contract))


def test_generated_keys_sign_and_verify_and_private_key_is_0600(tmp_path: Path,
                                                                contract: Contract) -> None:
    key_path, pub_path = generate_keypair(tmp_path / "keys")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    signed = sign_contract(contract, load_private_key(key_path))
    assert verify_contract(signed, load_public_key(pub_path), now_ms=during(contract)) == contract


def test_generate_keypair_refuses_to_overwrite(tmp_path: Path) -> None:
    key_path, _ = generate_keypair(tmp_path)
    before = key_path.read_bytes()
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_keypair(tmp_path)
    assert key_path.read_bytes() == before


def test_loading_a_public_key_as_private_raises_signing_key_error(tmp_path: Path) -> None:
    _, pub_path = generate_keypair(tmp_path)
    with pytest.raises(SigningKeyError, match="hub.pub"):
        load_private_key(pub_path)
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_public_key(tmp_path / "missing.pub")
