"""Bounded parsing (issue 9, findings 2, 5, 6, 8): every input is bounded before it is walked.

Sizes stay small on purpose: a bomb of a few levels proves aliases and shared values are refused
(and a tracemalloc bound proves nothing expanded), never gigabytes."""
from __future__ import annotations

import copy
import tracemalloc
from pathlib import Path
from typing import Any

import cbor2
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import codec
from contracts.errors import ContractInvalid, ContractRefused, DocumentError, EncodingError, Refusal
from contracts.limits import (
    MAX_CBOR_DEPTH, MAX_CONTRACT_BYTES, MAX_DOCUMENT_DEPTH, MAX_ISSUES, MAX_POINTS, MAX_SEQ,
    QUOTE_CHARS, quote,
)
from contracts.loader import check_mapping, decode_json, decode_yaml, json_depth
from contracts.signing import peek_identity, sign_contract, verify_contract
from contracts.wire import Ack, Birth, JournalBatch, Telemetry

TANK = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "tank-fill.yaml"


def _tank() -> dict[str, Any]:
    return yaml.safe_load(TANK.read_text())  # type: ignore[no-any-return]


def _issues(m: Any) -> list[str]:
    with pytest.raises(ContractInvalid) as info:
        check_mapping(m)
    return [str(i) for i in info.value.issues]


# -- quoting --------------------------------------------------------------------------------------

def test_quote_of_a_shared_graph_walks_only_a_few_items() -> None:
    node: list[Any] = ["x"]
    for _ in range(64):  # 2**64 leaves if walked
        node = [node, node]
    assert len(quote(node)) <= QUOTE_CHARS + 3


@pytest.mark.parametrize("value", ["x" * 10**6, 10**4000, b"\0" * 10**6, {"k" * 1000: [1] * 1000}])
def test_quote_is_bounded_for_any_value(value: Any) -> None:
    assert len(quote(value)) <= QUOTE_CHARS + 3


# -- YAML and JSON ----------------------------------------------------------------------------------

def test_yaml_alias_is_refused_naming_its_line() -> None:
    text = "a: &x [1, 2]\nb: 3\nc: *x\n"
    with pytest.raises(DocumentError, match=r"^doc:3:4: YAML aliases are not allowed"):
        decode_yaml(text, "doc")


def test_yaml_merge_key_is_an_alias_too() -> None:
    with pytest.raises(DocumentError, match="aliases are not allowed"):
        decode_yaml("base: &b {x: 1}\nother:\n  <<: *b\n", "doc")


def test_yaml_anchor_without_alias_is_harmless() -> None:
    assert decode_yaml("a: &x [1, 2]\n", "doc") == {"a": [1, 2]}


def test_yaml_alias_bomb_allocates_nothing() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    tracemalloc.start()
    try:
        with pytest.raises(DocumentError):
            decode_yaml("\n".join(lines), "bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20  # nine levels would be 9**9 strings if expanded


@pytest.mark.parametrize("depth", [MAX_DOCUMENT_DEPTH + 1, 10_000])
def test_deep_yaml_is_refused_before_recursion(depth: int) -> None:
    with pytest.raises(DocumentError, match=f"nested deeper than {MAX_DOCUMENT_DEPTH}"):
        decode_yaml("[" * depth + "]" * depth, "doc")


@pytest.mark.parametrize("depth", [MAX_DOCUMENT_DEPTH + 1, 10_000])
def test_deep_json_is_refused_before_decoding(depth: int) -> None:
    with pytest.raises(DocumentError, match=f"nested deeper than {MAX_DOCUMENT_DEPTH}"):
        decode_json("[" * depth + "]" * depth, "doc")


def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth('{"a": "[[[[\\"[[", "b": [1]}') == 2
    assert decode_json('{"a": "' + "[" * 100 + '"}', "doc") == {"a": "[" * 100}


def test_json_integer_over_python_digit_limit_is_a_document_error() -> None:
    with pytest.raises(DocumentError):
        decode_json('{"version": 1' + "0" * 5000 + "}", "doc")


# -- CBOR -----------------------------------------------------------------------------------------

def _shared_bomb(levels: int) -> bytes:
    out = [cbor2.CBORTag(28, ["x", "x"])]
    out += [cbor2.CBORTag(28, [cbor2.CBORTag(29, i)] * 2) for i in range(levels)]
    return cbor2.dumps(out)


@pytest.mark.parametrize("tag", [28, 29, 2, 3, 1, 258, 55799, 4242])
def test_cbor_tags_the_wire_format_does_not_use_are_refused(tag: int) -> None:
    data = _shared_bomb(3) if tag in (28, 29) else cbor2.dumps(cbor2.CBORTag(tag, b"\x01"))
    with pytest.raises(EncodingError, match=r"CBOR tag \d+ is not used by the wire format"):
        codec.loads(data)


def test_cose_tag_is_the_one_tag_allowed() -> None:
    assert codec.loads_tagged(cbor2.dumps(cbor2.CBORTag(18, [1, 2])))[0] == 18


def test_shared_value_bomb_allocates_nothing() -> None:
    data = _shared_bomb(40)  # 2**40 strings if expanded
    tracemalloc.start()
    try:
        with pytest.raises(EncodingError):
            Birth.from_bytes(codec.encode_message("birth", 1, {"labels": 0}).replace(
                cbor2.dumps(0), data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_cbor_nesting_and_indefinite_lengths_are_refused() -> None:
    deep: Any = 0
    for _ in range(MAX_CBOR_DEPTH + 1):
        deep = [deep]
    with pytest.raises(EncodingError, match="depth"):
        codec.loads(cbor2.dumps(deep))
    with pytest.raises(EncodingError):
        codec.loads(b"\x9f\x01\xff")  # indefinite-length array [1]


# -- wire messages ----------------------------------------------------------------------------------

def _birth_body(**over: Any) -> dict[str, Any]:
    return {"device": "d1", "site": "s1", "boot_id": "b" * 32, "contract": None,
            "version": None, "last_seq": 0, **over}


def test_birth_without_labels_decodes_with_no_labels() -> None:
    birth = Birth.from_bytes(codec.encode_message("birth", 1, _birth_body()))
    assert birth.labels == ()


@pytest.mark.parametrize("seq", [MAX_SEQ + 1, 2**63, 2**64 - 1])
def test_seq_beyond_range_is_refused_naming_the_field(seq: int) -> None:
    with pytest.raises(EncodingError, match=f"field 'last_seq': must be an integer within 0..{MAX_SEQ}"):
        Birth.from_bytes(codec.encode_message("birth", 1, _birth_body(last_seq=seq)))
    with pytest.raises(EncodingError, match="field 'seq'"):
        Ack.from_bytes(codec.encode_message("ack", 1, {"seq": seq}))


def test_each_message_kind_has_a_size_refused_before_decoding() -> None:
    for cls in (Birth, Ack, JournalBatch, Telemetry):
        with pytest.raises(EncodingError, match="is larger than"):
            cls.from_bytes(b"\0" * (cls.MAX_BYTES + 1))


def test_wire_error_quotes_a_bounded_piece_of_the_value() -> None:
    with pytest.raises(EncodingError) as info:
        Birth.from_bytes(codec.encode_message("birth", 1, _birth_body(labels=[["a" * 9000]] * 50)))
    assert len(str(info.value)) < 300


# -- contracts --------------------------------------------------------------------------------------

def test_missing_offline_does_not_hide_five_other_mistakes() -> None:
    m = _tank()
    del m["offline"]
    m["valid_until"] = m["valid_from"]                       # 1 semantic: empty window
    m["points"][2]["limits"] = [0, 99_999]                  # 2 limits beyond uint16 * 0.1
    m["safe_state"]["valve_open"] = 1                       # 3 bool point set to a number
    m["steps"][0]["until"] = "levle >= 4.0"                 # 4 unknown point
    m["expect"]["nope"] = {"rate_per_s": 1.0}               # 5 unknown point
    paths = [i.split(":")[0] for i in _issues(m)]
    assert paths == ["offline", "valid_until", "points[2].limits", "safe_state.valve_open",
                     "steps[0].until", "expect.nope"]


def test_a_broken_point_keeps_document_indices_and_is_not_unknown() -> None:
    m = _tank()
    m["points"][0]["table"] = "inputs"     # level: dropped by the structural parse
    m["points"][3]["limits"] = [0, 1]      # valve_open: bool, semantic
    issues = _issues(m)
    assert issues[0].startswith("points[0].table:")
    assert any(i.startswith("points[3].limits: does not apply to a bool point") for i in issues)
    assert not any("unknown point 'level'" in i for i in issues)


@pytest.mark.parametrize("field,value", [
    ("version", 2**31), ("version", 10**4000), ("scan_period_ms", 2**63)])
def test_integers_out_of_range_name_the_field(field: str, value: int) -> None:
    m = _tank()
    m[field] = value
    issues = _issues(m)
    assert len(issues) == 1 and issues[0].startswith(f"{field}: must be within") and len(issues[0]) < 200


def test_huge_number_in_a_value_is_refused_not_an_overflow() -> None:
    m = _tank()
    m["points"][2]["scale"] = 10**4000
    m["safe_state"]["pump_speed"] = 10**400
    assert [i.split(":")[0] for i in _issues(m)] == ["points[2].scale", "safe_state.pump_speed"]


def test_timers_and_autonomy_have_ranges() -> None:
    m = _tank()
    m["points"][0]["stale_after_ms"] = 10**12
    m["offline"]["autonomy_s"] = 10**12
    assert [i.split(":")[0] for i in _issues(m)] == ["points[0].stale_after_ms",
                                                     "offline.autonomy_s"]


def test_more_points_than_allowed_are_refused_without_reading_them() -> None:
    m = _tank()
    m["points"] = [object()] * (MAX_POINTS + 1)  # never looked at
    assert _issues(m)[0] == f"points: has {MAX_POINTS + 1} entries; at most {MAX_POINTS} are allowed"


def test_issues_are_capped_with_a_count() -> None:
    m = _tank()
    m.update({f"junk_{i}": i for i in range(1000)})
    issues = _issues(m)
    assert len(issues) == MAX_ISSUES + 1 and issues[-1] == "<document>: 800 more issues not listed"


def test_overlaps_are_found_in_one_pass_at_the_largest_size() -> None:
    m = _tank()
    base = m["points"][0]
    m["points"] = [dict(base, name=f"p{i}", address=i) for i in range(MAX_POINTS)]  # float32: 2 regs
    m["expect"] = {}
    issues = _issues(m)
    assert issues[0].startswith("points[1].address: 'p1' (input 1..2, unit 1) overlaps 'p0'")
    assert len(issues) == MAX_ISSUES + 1  # 2,047 overlaps, reported as 200 and a count


# -- signed contracts -------------------------------------------------------------------------------

def test_signed_contract_over_the_cap_is_refused_before_decoding() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(ContractRefused) as info:
        verify_contract(b"\0" * (MAX_CONTRACT_BYTES + 1), key.public_key(), now_ms=0)
    assert info.value.refusal is Refusal.INVALID and "larger than" in info.value.detail


def test_peek_identity_reads_two_fields_without_validating() -> None:
    c = check_mapping(_tank())
    signed = sign_contract(c, Ed25519PrivateKey.generate())
    assert peek_identity(signed) == ("tank-fill", c.version)
    assert copy.copy(peek_identity(b"junk")) == (None, None)


def test_no_tag_but_cose_decodes_across_the_low_range() -> None:
    """cbor2 decodes its built-in tags itself; every one must be overridden to refuse."""
    for tag in [t for t in range(0, 1100) if t != 18] + [43000, 55799, 2**32]:
        with pytest.raises(EncodingError, match="is not used by the wire format"):
            codec.loads(cbor2.dumps(cbor2.CBORTag(tag, 0)))
