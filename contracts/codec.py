"""Deterministic CBOR: the one place that talks to cbor2 (wire messages, journal, signing).

Canonical encoding (RFC 8949 section 4.2.1, "core deterministic encoding"): shortest integer and
float forms, map keys sorted by their encoded bytes, definite lengths. Equal values encode to equal
bytes on every machine, which is what hashing and signing need.

Decoding is strict because its input comes from the network: exactly one item (trailing bytes are
an error, so two different byte strings never decode to the same signed value) and no duplicate map
keys (a duplicate would let two readers disagree on what a message says).

Decoding is bounded because its input is hostile (DESIGN pitfalls): nesting at most
MAX_CBOR_DEPTH (cbor2's `max_depth`), no indefinite lengths (canonical encoding never writes them),
and no semantic tag but COSE_Sign1 (18), the only one the wire format uses. cbor2 (6.x) decodes
built-in tags itself — among them 28/29, shared values, which let 351 bytes describe a graph whose
expansion froze the hub — so every built-in tag is overridden by a decoder that refuses it, and
`tag_hook` refuses every other unknown tag: nothing shared is ever expanded.

Wire envelopes: every message is `{"kind": str, "v": int, "body": map}`; the reader names the kind
and version it understands and anything else is refused (STYLE 3: versions are checked on decode).
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import cbor2

from contracts.errors import EncodingError
from contracts.contract_pairs import from_pairs, to_pairs
from contracts.limits import MAX_CBOR_DEPTH, quote
from contracts.schema import Contract
from contracts.schema_serialize import to_mapping

ALLOWED_TAGS = frozenset({18})
"""Semantic tags the wire format uses: COSE_Sign1 (RFC 9052 section 2) around signed contracts."""

_BUILTIN_TAGS = frozenset({
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 38, 52, 54, 100, 256, 257, 258, 259, 260, 261,
    262, 263, 1004, 1040, 43000, 55799,
})
"""Tags cbor2 6.x decodes itself (datetimes, bignums, decimals, string references, shared values,
rationals, regexes, MIME, UUIDs, sets, IP addresses, dates, self-describe...), probed against the
installed version: each is overridden so that it is refused instead of decoded. A tag missing here
would still be refused only if cbor2 does not know it, so test_codec checks 28/29/2/258 by name."""


class _TagRefused(ValueError):
    pass


def _refuse_builtin(tag: int) -> Any:
    def refuse(*_: Any) -> Any:
        raise _TagRefused(f"CBOR tag {tag} is not used by the wire format")
    return refuse


_REFUSE_BUILTIN = {tag: _refuse_builtin(tag) for tag in _BUILTIN_TAGS - ALLOWED_TAGS}


def _tag_hook(tag: cbor2.CBORTag, _immutable: bool) -> Any:  # cbor2 6.x: (tag, immutable)
    if tag.tag not in ALLOWED_TAGS:
        raise _TagRefused(f"CBOR tag {tag.tag} is not used by the wire format")
    return tag


def canonical_dumps(obj: Any) -> bytes:
    """Encode `obj` deterministically. Raises EncodingError for values CBOR cannot carry."""
    try:
        return cbor2.dumps(obj, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise EncodingError(f"cannot encode {type(obj).__name__}: {exc}") from exc


_DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, EOFError, OverflowError,
                  RecursionError, MemoryError)
"""What cbor2 raises on malformed, refused or over-deep input: each becomes an EncodingError."""


def _new_decoder(stream: io.BytesIO) -> cbor2.CBORDecoder:
    """A strict, bounded decoder (the module's rules) reading `stream`."""
    return cbor2.CBORDecoder(stream, allow_duplicate_keys=False, max_depth=MAX_CBOR_DEPTH,
                             allow_indefinite=False, tag_hook=_tag_hook,
                             semantic_decoders=_REFUSE_BUILTIN)


def loads(data: bytes) -> Any:
    """Decode one CBOR item. Raises EncodingError on malformed or trailing bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodingError(f"expected bytes, got {type(data).__name__}")
    stream = io.BytesIO(data)
    decoder = _new_decoder(stream)
    try:
        value = decoder.decode()
    except _DECODE_ERRORS as exc:
        raise EncodingError(f"malformed CBOR: {_why(exc)}") from exc
    _expect_end(stream, len(data))
    return value


def _why(exc: BaseException) -> str:
    """The refusal that cbor2 wrapped, if it was ours; otherwise the decoder's own message."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, _TagRefused):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    return str(exc)[:200]


_SPARE_DECODERS: list[cbor2.CBORDecoder] = []
"""Strict decoders not in use, re-pointed at each body: building a CBORDecoder (with its tag
table) costs twice the decoding of a 30-byte journal body, and the hub decodes ~100,000 of them
when it folds a day of journal. A decoder is taken with list.pop and given back with append (each
atomic: two threads never hold the same one); one that raised is never given back."""

MAX_SPARE_DECODERS = 8
"""More spare decoders than threads decoding at once is memory for nothing."""


def _strict_decoder(stream: io.BytesIO) -> cbor2.CBORDecoder:
    try:
        decoder = _SPARE_DECODERS.pop()
    except IndexError:
        return _new_decoder(stream)
    decoder.fp = stream
    return decoder


def loads_map(data: bytes) -> dict[str, Any]:
    """Decode one CBOR item that must be a map with text keys (a journal entry body, as the
    agent hashed it), with every check and bound of `loads`. Raises EncodingError otherwise."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodingError(f"expected bytes, got {type(data).__name__}")
    stream = io.BytesIO(data)
    decoder = _strict_decoder(stream)
    try:
        value = decoder.decode()
    except _DECODE_ERRORS as exc:
        raise EncodingError(f"malformed CBOR: {_why(exc)}") from exc
    if len(_SPARE_DECODERS) < MAX_SPARE_DECODERS:
        _SPARE_DECODERS.append(decoder)
    _expect_end(stream, len(data))
    if type(value) is not dict or not all(type(k) is str for k in value):
        raise EncodingError(f"expected a map with text keys, got {type(value).__name__}")
    return value


_STR_ONLY = frozenset({str})


def loads_maps(bodies: Sequence[bytes]) -> list[dict[str, Any] | None]:
    """`loads_map` of each of `bodies` (journal bodies: bytes), None for each one it would refuse,
    through one stream and one decoder: a day of journal is ~86,400 bodies of ~30 bytes, and a
    stream, a decoder hand-out and an exception frame per body cost more than decoding it. Each
    body must end exactly at its own end (a body that reads into the next is refused and the
    stream put back at the next one's start), with every check and bound of `loads_map`."""
    if not all(type(b) is bytes for b in bodies):
        return [_map_or_none(b) for b in bodies]
    stream = io.BytesIO(b"".join(bodies))
    decoder, end = _strict_decoder(stream), 0
    out: list[dict[str, Any] | None] = []
    for body in bodies:
        end += len(body)
        try:
            value = decoder.decode()
        except _DECODE_ERRORS:
            stream.seek(end)
            decoder = _strict_decoder(stream)  # one that raised is never given back
            out.append(None)
            continue
        if stream.tell() != end:
            stream.seek(end)
            out.append(None)
        elif type(value) is not dict or not {*map(type, value)} <= _STR_ONLY:
            out.append(None)
        else:
            out.append(value)
    if len(_SPARE_DECODERS) < MAX_SPARE_DECODERS:
        _SPARE_DECODERS.append(decoder)
    return out


def _map_or_none(data: Any) -> dict[str, Any] | None:
    try:
        return loads_map(data)
    except EncodingError:
        return None


def _expect_end(stream: io.BytesIO, size: int) -> None:
    # The decoder reads exactly what the item needs, so the position says whether bytes are
    # left; asking the decoder for one more byte costs an exception on every clean decode.
    if stream.tell() != size:
        raise EncodingError(f"malformed CBOR: trailing bytes after the first item ({size} bytes "
                            "in all)")


def dumps_tagged(tag: int, value: Any) -> bytes:
    """Canonical CBOR of `value` wrapped in semantic tag `tag` (e.g. 18 for COSE_Sign1)."""
    return canonical_dumps(cbor2.CBORTag(tag, value))


def loads_tagged(data: bytes) -> tuple[int | None, Any]:
    """Decode one item and split off its outer tag: (tag, value), or (None, value) if untagged.

    cbor2 decodes a tag's content immutably: arrays come back as tuples, maps as frozendicts.
    Raises EncodingError like `loads`."""
    item = loads(data)
    if isinstance(item, cbor2.CBORTag):
        return item.tag, item.value
    return None, item


# --------------------------------------------------------------------------------------------
# Contracts (their ordered maps travel as arrays of pairs: contracts/contract_pairs.py)


def encode_contract(c: Contract) -> bytes:
    """Canonical CBOR of `schema_serialize.to_mapping(c)`, maps of pairs kept in order: signed and hashed."""
    return canonical_dumps(to_pairs(to_mapping(c)))


def decode_contract(data: bytes) -> Contract:
    """Decode and fully validate a contract payload.

    Raises EncodingError for bytes that are not CBOR, ContractInvalid for content that is."""
    # Imported here: the loader (validation, YAML) is heavier than the codec, which the journal and
    # wire messages use without ever touching a contract.
    from contracts.loader import check_mapping

    return check_mapping(from_pairs(loads(data)))


def content_hash(c: Contract) -> str:
    """Hex SHA-256 of `encode_contract(c)`: equal contracts have equal hashes everywhere."""
    return hashlib.sha256(encode_contract(c)).hexdigest()


# --------------------------------------------------------------------------------------------
# Versioned wire envelopes


def encode_message(kind: str, version: int, body: Mapping[str, Any]) -> bytes:
    """Canonical CBOR envelope `{kind, v, body}`. Raises EncodingError if body cannot be encoded."""
    return canonical_dumps({"kind": kind, "v": version, "body": dict(body)})


def decode_message(data: bytes, kind: str, version: int) -> dict[str, Any]:
    """The body of an envelope of exactly `kind` and `version`.

    Raises EncodingError for bad bytes, a different kind, or a version this build does not read."""
    return decode_versioned(data, kind, (version,))[1]


def decode_versioned(data: bytes, kind: str, versions: tuple[int, ...]) -> tuple[int, dict[str, Any]]:
    """(version, body) of an envelope of `kind` in one of `versions`: a reader that still takes
    an older form of a message decides by the version. Raises EncodingError like decode_message."""
    envelope = loads(data)
    if not isinstance(envelope, Mapping) or set(envelope) != {"kind", "v", "body"}:
        raise EncodingError(f"wire message {kind!r}: not an envelope {{kind, v, body}}")
    if envelope["kind"] != kind:
        raise EncodingError(f"wire message kind {quote(envelope['kind'])} where {kind!r} was expected")
    version = envelope["v"]
    if type(version) is not int or version not in versions:
        raise EncodingError(f"wire message {kind!r} version {quote(version)} is not supported "
                            f"(this build reads {', '.join(map(str, versions))})")
    body = envelope["body"]
    if not isinstance(body, Mapping) or not all(isinstance(k, str) for k in body):
        raise EncodingError(f"wire message {kind!r} field 'body': must be a map with text keys")
    return version, dict(body)
