"""Field readers for the contract parser: an issue collector and the converters for each kind of value.

Rules of this module:
- A converter `conv(value, path) -> converted` raises `Bad` with the reason only; `Reader.get` adds
  the path, records the issue and returns None, so one pass over a document finds every problem.
- Messages quote the offending value through `limits.quote` (bounded), never `repr` of input.
- Numbers are finite and within +-2^53 (they round-trip through CBOR and JSON unchanged); booleans are
  never numbers.
- Times are RFC 3339 strings with a zone in documents and `EpochMs` integers in memory.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from contracts.errors import Issue
from contracts.limits import MAX_ISSUES, MAX_NUMBER, clip, quote
from contracts.schema import ID_RE, NAME_RE
from contracts.types import EpochMs, Value

T = TypeVar("T")
MISSING: Any = object()


class Reader:
    """Collects issues with their paths; `get` converts one field and records why it could not."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.extra = 0  # issues past MAX_ISSUES, counted but not kept

    def fail(self, path: str, reason: str) -> None:
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(Issue(path=path, reason=reason))
        else:
            self.extra += 1

    def count(self) -> int:
        """Issues found so far (kept or not): a part whose parse raised it is unreadable."""
        return len(self.issues) + self.extra

    def whole(self, read: Callable[[Reader, Any, str], T | None], m: Any, path: str) -> T | None:
        """`read(self, m, path)`, or None if it found any issue (the issues say which): a part
        with an unreadable field is unreadable as a whole."""
        before = self.count()
        part = read(self, m, path)
        return part if self.count() == before else None

    def get(self, m: Mapping[str, Any], key: str, path: str, conv: Callable[[Any, str], T],
            default: Any = MISSING) -> T:
        where = f"{path}.{key}" if path else key
        if key not in m or m[key] is None:
            if default is MISSING:
                self.fail(where, "is required")
                return None  # type: ignore[return-value]
            return default  # type: ignore[no-any-return]
        try:
            return conv(m[key], where)
        except Bad as bad:
            self.fail(where, str(bad))
            return None  # type: ignore[return-value]

    def table(self, m: Any, path: str, allowed: frozenset[str]) -> Mapping[str, Any] | None:
        """`m` if it is a mapping (each key outside `allowed` reported), else None (reported)."""
        if not isinstance(m, Mapping):
            self.fail(path, "must be a mapping")
            return None
        self.unknown_keys(m, allowed, path)
        return m

    def unknown_keys(self, m: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
        for key in m:
            if key not in allowed:
                where = f"{path}.{path_part(key)}" if path else path_part(key)
                self.fail(where, f"unknown field (allowed: {', '.join(sorted(allowed))})")


def path_part(key: Any) -> str:
    """A mapping key from the input as a path component: text, cut to a bounded length."""
    return clip(key) if isinstance(key, str) else quote(key)


def cap_issues(issues: list[Issue], extra: int = 0) -> list[Issue]:
    """At most MAX_ISSUES issues; the rest counted in one final issue."""
    extra += max(0, len(issues) - MAX_ISSUES)
    kept = issues[:MAX_ISSUES]
    return kept + [Issue(path="<document>", reason=f"{extra} more issues not listed")] if extra \
        else kept


class Bad(ValueError):
    """A converter's refusal; `Reader.get` records it as an issue at the field's path."""


def text(v: Any, _: str) -> str:
    if not isinstance(v, str):
        raise Bad(f"must be a string, got {quote(v)}")
    return v


def ident(v: Any, p: str) -> str:
    s = text(v, p)
    if not ID_RE.match(s):
        raise Bad(f"{quote(s)} must be lowercase letters, digits, '.', '_' or '-' (max 64)")
    return s


def name(v: Any, p: str) -> str:
    s = text(v, p)
    if not NAME_RE.match(s):
        raise Bad(f"{quote(s)} must be an identifier (letters, digits, '_'; max 64)")
    return s


def integer(v: Any, _: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise Bad(f"must be an integer, got {quote(v)}")
    if abs(v) > MAX_NUMBER:
        raise Bad(f"must be within +-2^53, got {quote(v)}")
    return v


def bounded_int(low: int, high: int) -> Callable[[Any, str], int]:
    def conv(v: Any, p: str) -> int:
        i = integer(v, p)
        if not low <= i <= high:
            raise Bad(f"must be within {low}..{high}, got {i}")
        return i
    return conv


def number(v: Any, _: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Bad(f"must be a number, got {quote(v)}")
    if isinstance(v, int) and abs(v) > MAX_NUMBER:
        raise Bad(f"must be within +-2^53, got {quote(v)}")
    if v != v or v in (float("inf"), float("-inf")):
        raise Bad(f"must be finite, got {quote(v)}")
    return float(v)


def positive(v: Any, p: str) -> float:
    f = number(v, p)
    if f <= 0:
        raise Bad(f"must be > 0, got {quote(v)}")
    return f


def non_negative(v: Any, p: str) -> float:
    f = number(v, p)
    if f < 0:
        raise Bad(f"must be >= 0, got {quote(v)}")
    return f


def pair(v: Any, p: str) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise Bad(f"must be a [low, high] pair, got {quote(v)}")
    lo, hi = number(v[0], p), number(v[1], p)
    if lo > hi:
        raise Bad(f"low {quote(v[0])} is above high {quote(v[1])}")
    return (lo, hi)


def value(v: Any, _: str) -> Value:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        f = number(v, _)
        return f if isinstance(v, float) else v
    raise Bad(f"must be a number or true/false, got {quote(v)}")


def choice(cls: type[enum.StrEnum]) -> Callable[[Any, str], Any]:
    def conv(v: Any, _: str) -> Any:
        try:
            return cls(v)
        except ValueError:
            raise Bad(f"{quote(v)} is not one of {', '.join(m.value for m in cls)}") from None
    return conv


def epoch_ms(v: Any, _: str) -> EpochMs:
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise Bad(f"{quote(v)} is not an RFC 3339 time") from None
    else:
        raise Bad(f"must be an RFC 3339 time string, got {quote(v)}")
    if dt.tzinfo is None:
        raise Bad(f"{quote(v)} has no time zone; write it in UTC with a trailing Z")
    return int(dt.timestamp() * 1000)


def mapping(v: Any, _: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise Bad(f"must be a mapping, got {type(v).__name__}")
    return v


def sequence(v: Any, _: str) -> list[Any]:
    if not isinstance(v, (list, tuple)):
        raise Bad(f"must be a list, got {type(v).__name__}")
    return list(v)
