"""The `rollout` contract key (I1): schema, bounds naming the field, signed with the contract,
and left out of configuration comparisons — pure."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.codec import content_hash, decode_contract, encode_contract
from contracts.errors import ContractInvalid, ContractRefused
from contracts.fleet_compile import comparable, config_digest, field_diff
from contracts.schema import Rollout
from contracts.schema_parse import parse_contract
from contracts.schema_serialize import to_mapping
from contracts.signing import sign_contract, verify_contract
from tests.contracts.test_engine import tank, tank_doc

GOOD = "ab" * 32


def _issues(rollout: Any) -> list[tuple[str, str]]:
    doc = tank_doc()
    doc["rollout"] = rollout
    with pytest.raises(ContractInvalid) as info:
        parse_contract(doc)
    return [(i.path, i.reason) for i in info.value.issues]


def test_a_rollout_is_read_into_milliseconds_and_round_trips() -> None:
    c = tank(rollout={"deployment": "dep-000001", "health_window_s": 300, "known_good": GOOD})
    assert c.rollout == Rollout(deployment="dep-000001", health_window_ms=300_000, known_good=GOOD)
    assert to_mapping(c)["rollout"] == {"deployment": "dep-000001", "health_window_s": 300,
                                        "known_good": GOOD}
    assert parse_contract(to_mapping(c)) == c
    assert decode_contract(encode_contract(c)) == c


def test_a_fractional_window_and_no_known_good_round_trip() -> None:
    c = tank(rollout={"deployment": "Dep_1.a", "health_window_s": 1.5})
    assert c.rollout == Rollout(deployment="Dep_1.a", health_window_ms=1500, known_good=None)
    assert decode_contract(encode_contract(c)) == c


def test_a_contract_without_rollout_keeps_its_document_and_hash() -> None:
    c = tank()
    assert c.rollout is None and "rollout" not in to_mapping(c)
    assert content_hash(c) == content_hash(tank(rollout=None))


@pytest.mark.parametrize(("value", "expected"), [
    ("dep-1", [("rollout", "must be a mapping")]),
    ({"health_window_s": 30}, [("rollout.deployment", "is required")]),
    ({"deployment": "dep-1"}, [("rollout.health_window_s", "is required")]),
    ({"deployment": "dep 1", "health_window_s": 30},
     [("rollout.deployment", "'dep 1' must be 1..64 letters, digits, '.', '_' or '-'")]),
    ({"deployment": "d" * 65, "health_window_s": 30},
     [("rollout.deployment", f"'{'d' * 65}' must be 1..64 letters, digits, '.', '_' or '-'")]),
    ({"deployment": "dep-1", "health_window_s": 0},
     [("rollout.health_window_s", "must be within 1..86400 s, got 0")]),
    ({"deployment": "dep-1", "health_window_s": 86401},
     [("rollout.health_window_s", "must be within 1..86400 s, got 86401")]),
    ({"deployment": "dep-1", "health_window_s": True},
     [("rollout.health_window_s", "must be a number, got True")]),
    ({"deployment": "dep-1", "health_window_s": 30, "known_good": "AB" * 32},
     [("rollout.known_good", f"'{'AB' * 32}' must be a content hash: 64 lowercase hex digits")]),
    ({"deployment": "dep-1", "health_window_s": 30, "known_good": "ab"},
     [("rollout.known_good", "'ab' must be a content hash: 64 lowercase hex digits")]),
    ({"deployment": "dep-1", "health_window_s": 30, "wave": 2},
     [("rollout.wave", "unknown field (allowed: deployment, health_window_s, known_good)")]),
])
def test_a_bad_rollout_is_refused_naming_the_field(value: Any,
                                                  expected: list[tuple[str, str]]) -> None:
    assert _issues(value) == expected


def test_the_rollout_is_signed_with_the_contract() -> None:
    key = Ed25519PrivateKey.generate()
    c = tank(rollout={"deployment": "dep-1", "health_window_s": 30, "known_good": GOOD})
    signed = sign_contract(c, key)
    got = verify_contract(signed, key.public_key(), now_ms=c.valid_from, device=c.device)
    assert got.rollout == c.rollout
    forged = signed.replace(b"dep-1", b"dep-2")
    assert forged != signed
    with pytest.raises(ContractRefused):
        verify_contract(forged, key.public_key(), now_ms=c.valid_from, device=c.device)


def test_drift_and_plans_compare_configuration_not_rollout_metadata() -> None:
    a = tank()
    b = replace(a, rollout=Rollout(deployment="dep-9", health_window_ms=5000, known_good=GOOD))
    assert content_hash(a) != content_hash(b)
    assert config_digest(a) == config_digest(b)
    assert field_diff(comparable(a), comparable(b)) == []
