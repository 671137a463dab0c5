"""The wire messages' shared envelope and field checks (contracts/wire.py, wire_telemetry.py,
journal_wire.py). The rules are contracts/wire.py's: each check raises EncodingError naming the
message and the field, and quotes at most a bounded piece of the value (limits.quote)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any, ClassVar, Self

from contracts.codec import decode_message, encode_message
from contracts.errors import EncodingError
from contracts.limits import MAX_SEQ, quote

WIRE_VERSION = 1
"""Body format version of every message; bump per message when its body changes."""


class Message:
    """Shared envelope handling: subclasses are dataclasses named by KIND and VERSION."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = WIRE_VERSION
    MAX_BYTES: ClassVar[int] = 64 * 1024
    """Largest payload accepted for this kind, checked before decoding (overridden per kind)."""

    def to_bytes(self) -> bytes:
        """Canonical CBOR envelope of this message."""
        return encode_message(self.KIND, self.VERSION, self._body())

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode and check a message. Raises EncodingError naming the field at fault."""
        return cls.from_body(decode_message(sized(cls, data), cls.KIND, cls.VERSION))

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Self:
        """Check a decoded envelope body (of this KIND and VERSION). Raises EncodingError."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        # Fields with defaults were added later within the same wire version: absent = default.
        required = {f.name for f in fields(cls)  # type: ignore[arg-type]
                    if f.default is MISSING and f.default_factory is MISSING}
        check_names(cls.KIND, body, names, required)
        return cls(**cls._from_body(body))

    def _body(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def _from_body(cls, body: dict[str, Any]) -> dict[str, Any]:
        return body


# --------------------------------------------------------------------------------------------
# Field checks: each raises EncodingError naming the message and the field.


def bad(kind: str, name: str, why: str, value: Any) -> EncodingError:
    return EncodingError(f"wire message {kind!r} field {quote(name)}: {why}, got {quote(value)}")


def sized(cls: type[Message], data: bytes) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > cls.MAX_BYTES:
        raise EncodingError(f"wire message {cls.KIND!r}: {len(data)} bytes is larger than "
                            f"{cls.MAX_BYTES} for this kind")
    return data


def check_names(kind: str, body: Mapping[str, Any], names: set[str],
                 required: set[str] | None = None) -> None:
    needed = names if required is None else required
    missing, unknown = sorted(needed - set(body)), sorted(set(body) - names)
    if missing:
        raise bad(kind, missing[0], "is missing", None)
    if unknown:
        raise bad(kind, unknown[0], "is not a field of this message", body[unknown[0]])


def check_int(kind: str, name: str, v: Any, minimum: int = 0, optional: bool = False,
         maximum: int = MAX_SEQ) -> None:
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
        raise bad(kind, name, f"must be an integer within {minimum}..{maximum}", v)


def check_str(kind: str, name: str, v: Any, optional: bool = False) -> None:
    if v is None and optional:
        return
    if not isinstance(v, str) or not v:
        raise bad(kind, name, "must be a non-empty string", v)


def check_text(kind: str, name: str, v: Any) -> None:
    if not isinstance(v, str):
        raise bad(kind, name, "must be a string", v)


def is_value(v: Any) -> bool:
    return isinstance(v, (bool, int, float))


def check_pairs(kind: str, name: str, v: Any, value_ok: Any) -> None:
    ok = isinstance(v, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and value_ok(p[1]) for p in v)
    if not ok:
        raise bad(kind, name, "must be a sequence of (name, value) pairs", v)


def as_pairs(v: Any) -> Any:
    """CBOR arrays back to tuples of pairs; anything else is left for the check to refuse."""
    if isinstance(v, list) and all(isinstance(p, list) for p in v):
        return tuple(tuple(p) for p in v)
    return v
