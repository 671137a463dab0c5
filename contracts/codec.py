"""Deterministic CBOR: the one place that talks to cbor2 (wire messages, journal, signing).

Canonical encoding (RFC 8949 section 4.2.1, "core deterministic encoding"): shortest integer and
float forms, map keys sorted by their encoded bytes, definite lengths. Equal values encode to equal
bytes on every machine, which is what hashing and signing need.
"""
from __future__ import annotations

from typing import Any

import cbor2

from contracts.errors import EncodingError


def canonical_dumps(obj: Any) -> bytes:
    """Encode `obj` deterministically. Raises EncodingError for values CBOR cannot carry."""
    try:
        return cbor2.dumps(obj, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise EncodingError(f"cannot encode {type(obj).__name__}: {exc}") from exc


def loads(data: bytes) -> Any:
    """Decode one CBOR item. Raises EncodingError on malformed or trailing bytes."""
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as exc:
        raise EncodingError(f"malformed CBOR: {exc}") from exc
