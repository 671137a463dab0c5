"""Reading one journal entry body field by field, for contracts/journal_events.py — pure.

Every error is a `BodyError` naming the entry kind and the field, quoting the value bounded
(contracts.limits.quote: a body is device input, invariant 10). A reader remembers the keys it
read, so `done` can refuse the keys a record does not have.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from contracts.chain import EntryKind
from contracts.errors import EncodingError
from contracts.limits import quote
from contracts.types import Value

_POINT_VALUE = frozenset({bool, int, float})
"""The exact types of a point value as CBOR decodes them (contracts.types.Value)."""

VERSION_KEY = "v"
"""The body key that carries a version other than 1 (see the version rule in journal_events)."""

TAGGED_VERSION = 2
"""The version of a body that carries the contract tag (or an adapter fault's `code`): the first
version whose records have those fields (the version rule in contracts/journal_events.py)."""

READ_VERSIONS = frozenset({1, TAGGED_VERSION})
"""The body versions this build reads."""

CONTRACT_TAG = "of"
"""The body key naming the contract whose scan segment wrote the entry (an agent running several
contracts interleaves their segments in one journal). Absent: the entry belongs to the latest BOOT
(every journal written before several contracts per agent), or to the agent itself."""

E = Any
"""An enum member of the class asked for (mypy cannot type "a member of this StrEnum class")."""


def versioned(body: dict[str, Any], contract: str | None, *, later: bool = False) -> dict[str, Any]:
    """`body` in the lowest version that has its fields: tagged with `contract` and stamped
    version 2 when it names a contract or holds a later field (`later`), else left as version
    1 (no `v` key: its bytes are what they were before the rule). In place; returns `body`."""
    if contract is not None:
        body[CONTRACT_TAG] = contract
    if contract is not None or later:
        body[VERSION_KEY] = TAGGED_VERSION
    return body


class BodyError(EncodingError):
    """A journal entry body that is not a well-formed body of its kind, in a version we read."""

    def __init__(self, kind: EntryKind | str, field: str, value: Any, why: str) -> None:
        self.kind, self.field = str(kind), field
        super().__init__(f"{self.kind} body: {field}={quote(value)} {why}")


class FieldReader:
    """The fields of one body of `kind`; raises BodyError for the first one that is wrong."""

    def __init__(self, kind: EntryKind, body: Any, versions: frozenset[int] = READ_VERSIONS) -> None:
        if type(body) is not dict and not isinstance(body, Mapping):
            raise BodyError(kind, "(body)", body, "must be a map")
        self.kind, self.body, self._read = kind, body, {VERSION_KEY}
        v = body.get(VERSION_KEY, 1)
        if type(v) is not int or v not in versions:
            known = ", ".join(map(str, sorted(versions)))
            raise BodyError(kind, VERSION_KEY, v, f"is not a version this build reads ({known})")
        self.version: int = v
        """The body's version: 1 when it has no `v` key."""

    def _get(self, key: str, required: bool = True) -> Any:
        self._read.add(key)
        if required and key not in self.body:
            raise BodyError(self.kind, key, None, "is missing")
        return self.body.get(key)

    def fail(self, key: str, why: str) -> BodyError:
        return BodyError(self.kind, key, self.body.get(key), why)

    def text(self, key: str) -> str:
        v = self._get(key)
        if not isinstance(v, str):
            raise self.fail(key, "must be a string")
        return v

    def opt_text(self, key: str, *, present: bool = True) -> str | None:
        """A string or None; with `present=False` the key may also be absent."""
        v = self._get(key, required=present)
        if v is not None and not isinstance(v, str):
            raise self.fail(key, "must be a string or null")
        return v

    def integer(self, key: str) -> int:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, "must be an integer")
        return v

    def opt_integer(self, key: str, *, present: bool = True) -> int | None:
        return None if self._get(key, required=present) is None else self.integer(key)

    def flag(self, key: str) -> bool:
        v = self._get(key)
        if not isinstance(v, bool):
            raise self.fail(key, "must be true or false")
        return v

    def member(self, key: str, cls: type[enum.StrEnum]) -> E:
        """The member of `cls` named by the string at `key`."""
        name = self.text(key)
        try:
            return cls(name)
        except ValueError:
            raise self.fail(key, f"is not a {cls.__name__}") from None

    def opt_bytes(self, key: str) -> bytes | None:
        v = self._get(key, required=False)
        if v is not None and not isinstance(v, bytes):
            raise self.fail(key, "must be bytes")
        return v

    def mapping(self, key: str) -> Mapping[str, Any]:
        """A map with string keys, as a read-only view of the body's own (no copy: a day of
        journal is 86,400 bodies, and the record is a view over the map it was read from)."""
        v = self._get(key)
        if type(v) is not dict and not isinstance(v, Mapping):  # the ABC check is slow
            raise self.fail(key, "must be a map keyed by point name")
        for k in v:
            if type(k) is not str:
                raise self.fail(key, "must be a map keyed by point name")
        return v if isinstance(v, MappingProxyType) else MappingProxyType(v)

    def values(self, key: str) -> Mapping[str, Value]:
        """A map of point name to a point value (bool or number)."""
        m = self.mapping(key)
        for name, v in m.items():
            if type(v) not in _POINT_VALUE:
                raise BodyError(self.kind, f"{key}.{name}", v, "must be a point value")
        return m

    def readings(self, key: str) -> Mapping[str, Sequence[Any]]:
        """A map of point name to [value, quality, reason]."""
        m = self.mapping(key)
        for name, w in m.items():
            if type(w) is not list or len(w) != 3 or type(w[1]) is not str:
                raise BodyError(self.kind, f"{key}.{name}", w, "must be [value, quality, reason]")
        return m

    def tag(self) -> str | None:
        """The entry's contract tag (CONTRACT_TAG), or None when the body has none. Read in
        version 1 too: the journals written between several contracts per agent and the version
        rule for the tag carry it without a `v` key."""
        return self.opt_text(CONTRACT_TAG, present=False)

    def since(self, version: int) -> bool:
        """Whether the body is of `version` or later: a field added in `version` is read only
        then, so in an older body it stays unread and `done` refuses it as not a field."""
        return self.version >= version

    def rest(self) -> dict[str, Any]:
        """Every key not read yet (an occurrence's fields); they count as read."""
        out = {k: v for k, v in self.body.items() if k not in self._read}
        self._read.update(out)
        return out

    def done(self) -> None:
        """Raises BodyError naming the first key no field read."""
        read = self._read
        if all(k in read for k in self.body):
            return
        extra = sorted(str(k) for k in self.body if k not in read)
        if extra:
            raise BodyError(self.kind, extra[0], self.body.get(extra[0]), "is not a field of this kind")
