"""A contract document's ordered name -> value maps as arrays of [name, value] pairs, and back.

Canonical CBOR sorts map keys, but a contract's name -> value maps keep document order in memory
(schema rules: `do` is applied in the order written). So in the payload those maps travel as
arrays of [name, value] pairs, and decoding turns them back into ordered maps before validation:
the decoded contract equals the signed one, pair order included.

Rules: the maps that travel as pairs are `safe_state`, `expect`, `labels`, `tolerance.values` and
each step's `do`; on the way back a shape that is not an array of pairs is left as it is, for
validation to name, and pairs whose names repeat (or are not text) are an EncodingError.
"""
from __future__ import annotations

from typing import Any

from contracts.errors import EncodingError
from contracts.limits import quote

_TOP_PAIR_FIELDS = ("safe_state", "expect", "labels")


def to_pairs(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` (a `schema_serialize.to_mapping` of a contract) with its ordered maps as pair
    arrays, in place; returns it."""
    for name in _TOP_PAIR_FIELDS:
        doc[name] = list(doc[name].items())
    doc["tolerance"]["values"] = list(doc["tolerance"]["values"].items())
    for step in doc["steps"]:
        step["do"] = list(step["do"].items())
    return doc


def from_pairs(doc: Any) -> Any:
    """Undo `to_pairs`; shapes it does not recognise are left to validation. Raises EncodingError
    for pairs with repeated or non-text names."""
    if not isinstance(doc, dict):
        return doc
    for name in (n for n in _TOP_PAIR_FIELDS if n in doc):
        doc[name] = _from_pairs(doc[name], name)
    if isinstance(doc.get("tolerance"), dict) and "values" in doc["tolerance"]:
        doc["tolerance"]["values"] = _from_pairs(doc["tolerance"]["values"], "tolerance.values")
    steps = doc.get("steps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict) and "do" in step:
            step["do"] = _from_pairs(step["do"], f"steps[{i}].do")
    return doc


def _from_pairs(value: Any, path: str) -> Any:
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        return value
    ordered = dict((k, v) for k, v in value if isinstance(k, str))
    if len(ordered) != len(value):
        raise EncodingError(f"{path}: pairs must have distinct text names, got {quote(value)}")
    return ordered
