"""The contract schema: frozen, keyword-only dataclasses, and the structural parser.

Rules of this module:
- `parse_contract(mapping)` turns a decoded YAML/JSON/CBOR mapping into a `Contract`. It checks
  shape and types (structural validation) and collects *every* issue with its path before raising
  `ContractInvalid`. Cross-field rules (ownership, overlaps, limits vs type, expressions, reachable
  steps) live in `validate.py`, which `load_contract` always runs after parsing.
- `to_mapping(contract)` is the inverse and is what gets canonically encoded and signed, so it emits
  every field explicitly (defaults included): two contracts that are equal encode to equal bytes.
- Times are RFC 3339 UTC strings in documents and `EpochMs` integers in memory.
- Sequences are tuples and mappings are tuples of pairs in document order, so that iteration order
  never depends on dict/set internals (engine invariant 1).
"""
from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from contracts.errors import ContractInvalid, Issue
from contracts.limits import (
    MAX_AUTONOMY_S, MAX_ISSUES, MAX_NUMBER, MAX_POINTS, MAX_STEPS, MAX_TIMER_MS, MAX_VERSION, clip,
    quote,
)
from contracts.types import EpochMs, PointName, Value

SCHEMA_VERSION = 1
"""Version of the contract document format; carried in the encoded payload, checked on decode."""

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
"""Point and step names: identifiers, so the expression language can name them unquoted."""

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""Contract, device and site ids: they appear in MQTT topics, so no '/', '+', '#' or spaces."""

MIN_SCAN_PERIOD_MS = 10
"""100 Hz is the fastest loop we promise (bench/scan.py); faster periods exceed Modbus TCP round trips."""

MAX_SCAN_PERIOD_MS = 60_000


class Table(enum.StrEnum):
    """The four Modbus data tables (Modbus Application Protocol v1.1b3, section 4.3)."""

    COIL = "coil"
    DISCRETE = "discrete"
    INPUT = "input"
    HOLDING = "holding"

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)

    @property
    def writable(self) -> bool:
        return self in (Table.COIL, Table.HOLDING)


class DataType(enum.StrEnum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def registers(self) -> int:
        """16-bit registers the type occupies (a bool occupies one bit or one register)."""
        return _REGISTERS[self]

    @property
    def raw_range(self) -> tuple[float, float]:
        """Smallest and largest raw value representable, before scale and offset."""
        return _RAW_RANGE[self]


_REGISTERS = {
    DataType.BOOL: 1, DataType.INT16: 1, DataType.UINT16: 1, DataType.INT32: 2,
    DataType.UINT32: 2, DataType.FLOAT32: 2, DataType.FLOAT64: 4,
}
_RAW_RANGE = {
    DataType.BOOL: (0.0, 1.0),
    DataType.INT16: (-32768.0, 32767.0),
    DataType.UINT16: (0.0, 65535.0),
    DataType.INT32: (-2147483648.0, 2147483647.0),
    DataType.UINT32: (0.0, 4294967295.0),
    DataType.FLOAT32: (-3.4028234663852886e38, 3.4028234663852886e38),
    DataType.FLOAT64: (-1.7976931348623157e308, 1.7976931348623157e308),
}


class Order(enum.StrEnum):
    BIG = "big"
    LITTLE = "little"


class Direction(enum.StrEnum):
    READ = "read"
    WRITE = "write"


class OnTimeout(enum.StrEnum):
    """What a step does when its `timeout_s` elapses before `until` holds."""

    SAFE_STATE = "safe_state"  # outputs to safe_state, contract ends as failed (default: safest)
    NEXT = "next"              # move on to the next step, journaled as a timeout
    FAIL = "fail"              # alias kept distinct in events: contract failed, outputs to safe_state


class OfflineAction(enum.StrEnum):
    """What the agent does when the offline autonomy budget runs out."""

    SAFE_STATE = "safe_state"
    HOLD = "hold"  # keep the outputs as they are, stop advancing steps (journaled)


@dataclass(frozen=True, kw_only=True)
class Point:
    """One row of the I/O mapping table. Values are engineering = raw * scale + offset."""

    name: PointName
    unit_id: int
    table: Table
    address: int
    type: DataType
    direction: Direction
    word_order: Order = Order.BIG
    byte_order: Order = Order.BIG
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    owner: str | None = None
    range: tuple[float, float] | None = None
    limits: tuple[float, float] | None = None
    stale_after_ms: int | None = None
    frozen_after_ms: int | None = None
    max_rate_per_s: float | None = None
    deadband: float = 0.0

    @property
    def registers(self) -> int:
        """Number of addresses the point occupies in its table."""
        return 1 if self.table.is_bit else self.type.registers

    @property
    def last_address(self) -> int:
        return self.address + self.registers - 1

    @property
    def writes(self) -> bool:
        return self.direction is Direction.WRITE


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of the workflow. It sets `do`, then ends when `until` holds or `for_s` elapses."""

    name: str
    do: tuple[tuple[PointName, Value], ...] = ()
    until: str | None = None
    for_s: float | None = None
    timeout_s: float | None = None
    on_timeout: OnTimeout = OnTimeout.SAFE_STATE


@dataclass(frozen=True, kw_only=True)
class Offline:
    autonomy_s: int
    then: OfflineAction = OfflineAction.SAFE_STATE


@dataclass(frozen=True, kw_only=True)
class Expectation:
    """Process model for projection: `point` changes by `rate_per_s` while `when` holds."""

    point: PointName
    rate_per_s: float
    when: str | None = None


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """How far reality may diverge from the projection before the hub replans."""

    timing_s: float = 300.0
    values: tuple[tuple[PointName, float], ...] = ()


DEFAULT_TOLERANCE = Tolerance()


@dataclass(frozen=True, kw_only=True)
class Contract:
    contract: str
    version: int
    device: str
    site: str
    valid_from: EpochMs
    valid_until: EpochMs
    scan_period_ms: int
    points: tuple[Point, ...]
    safe_state: tuple[tuple[PointName, Value], ...]
    steps: tuple[Step, ...]
    offline: Offline
    expect: tuple[Expectation, ...] = ()
    tolerance: Tolerance = DEFAULT_TOLERANCE
    labels: tuple[tuple[str, str], ...] = ()
    _by_name: dict[str, Point] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.points})

    def point(self, name: PointName) -> Point:
        """The point called `name`; raises KeyError if the contract has none."""
        return self._by_name[name]

    def has_point(self, name: PointName) -> bool:
        return name in self._by_name

    @property
    def write_points(self) -> tuple[Point, ...]:
        return tuple(p for p in self.points if p.writes)

    @property
    def read_points(self) -> tuple[Point, ...]:
        return tuple(p for p in self.points if not p.writes)

    @property
    def key(self) -> tuple[str, int]:
        """(contract, version): unique across the fleet."""
        return (self.contract, self.version)


# --------------------------------------------------------------------------------------------
# Parsing: a collector walks the mapping, records issues with paths, and returns placeholders so
# that one pass finds every problem.

T = TypeVar("T")
_MISSING: Any = object()


class _Reader:
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

    def get(self, m: Mapping[str, Any], key: str, path: str, conv: Callable[[Any, str], T],
            default: Any = _MISSING) -> T:
        where = f"{path}.{key}" if path else key
        if key not in m or m[key] is None:
            if default is _MISSING:
                self.fail(where, "is required")
                return None  # type: ignore[return-value]
            return default  # type: ignore[no-any-return]
        try:
            return conv(m[key], where)
        except _Bad as bad:
            self.fail(where, str(bad))
            return None  # type: ignore[return-value]

    def unknown_keys(self, m: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
        for key in m:
            if key not in allowed:
                where = f"{path}.{_key(key)}" if path else _key(key)
                self.fail(where, f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _key(key: Any) -> str:
    """A mapping key from the input as a path component: text, cut to a bounded length."""
    return clip(key) if isinstance(key, str) else quote(key)


def cap_issues(issues: list[Issue], extra: int = 0) -> list[Issue]:
    """At most MAX_ISSUES issues; the rest counted in one final issue."""
    extra += max(0, len(issues) - MAX_ISSUES)
    kept = issues[:MAX_ISSUES]
    return kept + [Issue(path="<document>", reason=f"{extra} more issues not listed")] if extra \
        else kept


class _Bad(ValueError):
    pass


def _str(v: Any, _: str) -> str:
    if not isinstance(v, str):
        raise _Bad(f"must be a string, got {quote(v)}")
    return v


def _ident(v: Any, p: str) -> str:
    s = _str(v, p)
    if not ID_RE.match(s):
        raise _Bad(f"{quote(s)} must be lowercase letters, digits, '.', '_' or '-' (max 64)")
    return s


def _name(v: Any, p: str) -> str:
    s = _str(v, p)
    if not NAME_RE.match(s):
        raise _Bad(f"{quote(s)} must be an identifier (letters, digits, '_'; max 64)")
    return s


def _int(v: Any, _: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"must be an integer, got {quote(v)}")
    if abs(v) > MAX_NUMBER:
        raise _Bad(f"must be within +-2^53, got {quote(v)}")
    return v


def _bounded_int(low: int, high: int) -> Callable[[Any, str], int]:
    def conv(v: Any, p: str) -> int:
        i = _int(v, p)
        if not low <= i <= high:
            raise _Bad(f"must be within {low}..{high}, got {i}")
        return i
    return conv


def _num(v: Any, _: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"must be a number, got {quote(v)}")
    if isinstance(v, int) and abs(v) > MAX_NUMBER:
        raise _Bad(f"must be within +-2^53, got {quote(v)}")
    if v != v or v in (float("inf"), float("-inf")):
        raise _Bad(f"must be finite, got {quote(v)}")
    return float(v)


def _pos_num(v: Any, p: str) -> float:
    f = _num(v, p)
    if f <= 0:
        raise _Bad(f"must be > 0, got {quote(v)}")
    return f


def _nonneg_num(v: Any, p: str) -> float:
    f = _num(v, p)
    if f < 0:
        raise _Bad(f"must be >= 0, got {quote(v)}")
    return f


def _pair(v: Any, p: str) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise _Bad(f"must be a [low, high] pair, got {quote(v)}")
    lo, hi = _num(v[0], p), _num(v[1], p)
    if lo > hi:
        raise _Bad(f"low {quote(v[0])} is above high {quote(v[1])}")
    return (lo, hi)


def _value(v: Any, _: str) -> Value:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        f = _num(v, _)
        return f if isinstance(v, float) else v
    raise _Bad(f"must be a number or true/false, got {quote(v)}")


def _enum(cls: type[enum.StrEnum]) -> Callable[[Any, str], Any]:
    def conv(v: Any, _: str) -> Any:
        try:
            return cls(v)
        except ValueError:
            raise _Bad(f"{quote(v)} is not one of {', '.join(m.value for m in cls)}") from None
    return conv


def _time(v: Any, _: str) -> EpochMs:
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise _Bad(f"{quote(v)} is not an RFC 3339 time") from None
    else:
        raise _Bad(f"must be an RFC 3339 time string, got {quote(v)}")
    if dt.tzinfo is None:
        raise _Bad(f"{quote(v)} has no time zone; write it in UTC with a trailing Z")
    return int(dt.timestamp() * 1000)


def format_time(ms: EpochMs) -> str:
    """RFC 3339 UTC with millisecond precision and a trailing Z; inverse of parsing."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def _mapping(v: Any, _: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise _Bad(f"must be a mapping, got {type(v).__name__}")
    return v


def _list(v: Any, _: str) -> list[Any]:
    if not isinstance(v, (list, tuple)):
        raise _Bad(f"must be a list, got {type(v).__name__}")
    return list(v)


_POINT_KEYS = frozenset({
    "name", "unit_id", "table", "address", "type", "direction", "word_order", "byte_order", "unit",
    "scale", "offset", "owner", "range", "limits", "stale_after_ms", "frozen_after_ms",
    "max_rate_per_s", "deadband",
})


_TIMER = _bounded_int(1, MAX_TIMER_MS)
_VERSION = _bounded_int(1, MAX_VERSION)


def _unit_id(v: Any, p: str) -> int:
    i = _int(v, p)
    if not 0 <= i <= 247:  # Modbus spec 4.1: 1..247 are device addresses; 0 is broadcast/TCP default
        raise _Bad(f"must be within 0..247, got {i}")
    return i


def _address(v: Any, p: str) -> int:
    i = _int(v, p)
    if not 0 <= i <= 0xFFFF:  # PDU addresses are 16-bit (Modbus spec 4.4)
        raise _Bad(f"must be within 0..65535, got {i}")
    return i


def _parse_point(r: _Reader, m: Any, path: str) -> Point | None:
    """The point, or None if any of its fields is unreadable (the issues say which)."""
    before = r.count()
    point = _read_point(r, m, path)
    return point if r.count() == before else None


def _read_point(r: _Reader, m: Any, path: str) -> Point | None:
    if not isinstance(m, Mapping):
        r.fail(path, "must be a mapping")
        return None
    r.unknown_keys(m, _POINT_KEYS, path)
    g = r.get
    table = g(m, "table", path, _enum(Table))
    default_type = DataType.BOOL if table is not None and table.is_bit else _MISSING
    values = dict(
        name=g(m, "name", path, _name), unit_id=g(m, "unit_id", path, _unit_id, 1), table=table,
        address=g(m, "address", path, _address), type=g(m, "type", path, _enum(DataType), default_type),
        direction=g(m, "direction", path, _enum(Direction)),
        word_order=g(m, "word_order", path, _enum(Order), Order.BIG),
        byte_order=g(m, "byte_order", path, _enum(Order), Order.BIG),
        unit=g(m, "unit", path, _str, ""), scale=g(m, "scale", path, _num, 1.0),
        offset=g(m, "offset", path, _num, 0.0), owner=g(m, "owner", path, _ident, None),
        range=g(m, "range", path, _pair, None), limits=g(m, "limits", path, _pair, None),
        stale_after_ms=g(m, "stale_after_ms", path, _TIMER, None),
        frozen_after_ms=g(m, "frozen_after_ms", path, _TIMER, None),
        max_rate_per_s=g(m, "max_rate_per_s", path, _pos_num, None),
        deadband=g(m, "deadband", path, _nonneg_num, 0.0),
    )
    if any(values[k] is None for k in ("name", "table", "address", "type", "direction")):
        return None
    if values["scale"] == 0.0:
        r.fail(f"{path}.scale", "must not be 0")
    return Point(**values)


def _pairs(r: _Reader, v: Any, path: str, conv: Callable[[Any, str], T]) -> tuple[tuple[str, T], ...]:
    if not isinstance(v, Mapping):
        r.fail(path, "must be a mapping of point name to value")
        return ()
    out = []
    for k, item in v.items():
        where = f"{path}.{_key(k)}"
        if not isinstance(k, str):
            r.fail(where, "must be named by text")
            continue
        try:
            out.append((k, conv(item, where)))
        except _Bad as bad:
            r.fail(where, str(bad))
    return tuple(out)


_STEP_KEYS = frozenset({"name", "do", "until", "for_s", "timeout_s", "on_timeout"})


def _parse_step(r: _Reader, m: Any, path: str) -> Step | None:
    """The step, or None if any of its fields is unreadable (the issues say which)."""
    before = r.count()
    step = _read_step(r, m, path)
    return step if r.count() == before else None


def _read_step(r: _Reader, m: Any, path: str) -> Step | None:
    if not isinstance(m, Mapping):
        r.fail(path, "must be a mapping")
        return None
    r.unknown_keys(m, _STEP_KEYS, path)
    name = r.get(m, "name", path, _name)
    do = _pairs(r, m.get("do") or {}, f"{path}.do", _value)
    step = Step(
        name=name or "", do=do, until=r.get(m, "until", path, _str, None),
        for_s=r.get(m, "for_s", path, _pos_num, None),
        timeout_s=r.get(m, "timeout_s", path, _pos_num, None),
        on_timeout=r.get(m, "on_timeout", path, _enum(OnTimeout), OnTimeout.SAFE_STATE),
    )
    return step if name else None


def _parse_offline(r: _Reader, m: Any, path: str) -> Offline:
    if not isinstance(m, Mapping):
        r.fail(path, "must be a mapping")
        return Offline(autonomy_s=0)
    r.unknown_keys(m, frozenset({"autonomy_s", "then"}), path)
    return Offline(
        autonomy_s=r.get(m, "autonomy_s", path, _bounded_int(0, MAX_AUTONOMY_S)) or 0,
        then=r.get(m, "then", path, _enum(OfflineAction), OfflineAction.SAFE_STATE),
    )


def _parse_expect(r: _Reader, m: Any, path: str) -> tuple[Expectation, ...]:
    if not isinstance(m, Mapping):
        r.fail(path, "must be a mapping of point name to {rate_per_s, when}")
        return ()
    out = []
    for name, spec in m.items():
        where = f"{path}.{_key(name)}"
        if not isinstance(spec, Mapping):
            r.fail(where, "must be a mapping")
            continue
        r.unknown_keys(spec, frozenset({"rate_per_s", "when"}), where)
        rate = r.get(spec, "rate_per_s", where, _num)
        when = r.get(spec, "when", where, _str, None)
        if rate is not None:
            out.append(Expectation(point=str(name), rate_per_s=rate, when=when))
    return tuple(out)


def _parse_tolerance(r: _Reader, m: Any, path: str) -> Tolerance:
    if not isinstance(m, Mapping):
        r.fail(path, "must be a mapping")
        return DEFAULT_TOLERANCE
    r.unknown_keys(m, frozenset({"timing_s", "values"}), path)
    timing = r.get(m, "timing_s", path, _nonneg_num, DEFAULT_TOLERANCE.timing_s)
    values = _pairs(r, m.get("values") or {}, f"{path}.values", _nonneg_num)
    return Tolerance(timing_s=timing if timing is not None else 0.0, values=values)


def _parse_labels(r: _Reader, m: Any, path: str) -> tuple[tuple[str, str], ...]:
    return _pairs(r, m, path, _str) if m is not None else ()


_TOP_KEYS = frozenset({
    "schema", "contract", "version", "device", "site", "valid_from", "valid_until", "scan_period_ms",
    "points", "safe_state", "steps", "offline", "expect", "tolerance", "labels",
})


def _scan_period(v: Any, p: str) -> int:
    i = _int(v, p)
    if not MIN_SCAN_PERIOD_MS <= i <= MAX_SCAN_PERIOD_MS:
        raise _Bad(f"must be within {MIN_SCAN_PERIOD_MS}..{MAX_SCAN_PERIOD_MS} ms, got {i}")
    return i


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where a partly readable document's parts are, so semantic checks can run on the rest and
    name document paths: the document index of each point and step kept in the Contract, the
    top-level fields that were missing or unreadable (placeholders stand in for them), and the
    names of points that were dropped (references to them are not 'unknown')."""

    point_index: tuple[int, ...]
    step_index: tuple[int, ...]
    broken: frozenset[str] = frozenset()
    dropped_points: frozenset[str] = frozenset()

    @classmethod
    def whole(cls, c: Contract) -> Layout:
        return cls(point_index=tuple(range(len(c.points))), step_index=tuple(range(len(c.steps))))


@dataclass(frozen=True, kw_only=True)
class Parsed:
    """A structural parse: the contract built from what could be read, every structural issue
    (the first MAX_ISSUES, and a count of the rest), and its Layout."""

    contract: Contract
    issues: tuple[Issue, ...]
    layout: Layout
    extra: int = 0  # issues found past MAX_ISSUES, counted only


def parse_contract(m: Any) -> Contract:
    """Structural parse of a decoded document. Raises ContractInvalid listing every issue."""
    parsed = parse_partial(m)
    if parsed.issues:
        raise ContractInvalid(cap_issues(list(parsed.issues), parsed.extra))
    return parsed.contract


_PLACEHOLDERS: Mapping[str, Any] = {
    "contract": "", "version": 1, "device": "", "site": "", "valid_from": 0, "valid_until": 0,
    "scan_period_ms": MIN_SCAN_PERIOD_MS,
}
_SCALARS: Mapping[str, Callable[[Any, str], Any]] = {
    "contract": _ident, "version": _VERSION, "device": _ident, "site": _ident,
    "valid_from": _time, "valid_until": _time, "scan_period_ms": _scan_period,
}


def parse_partial(m: Any) -> Parsed:
    """Structural parse that never raises for content: a Contract of what could be read, with
    placeholders for missing or unreadable top-level fields, plus every issue. Raises
    ContractInvalid only when `m` is not a mapping at all."""
    if not isinstance(m, Mapping):
        raise ContractInvalid([Issue(path="<document>", reason="must be a mapping")])
    r = _Reader()
    r.unknown_keys(m, _TOP_KEYS, "")
    schema = m.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        r.fail("schema", f"version {quote(schema)} is not supported (this build reads {SCHEMA_VERSION})")
    scalars = {k: r.get(m, k, "", conv) for k, conv in _SCALARS.items()}
    broken = {k for k, v in scalars.items() if v is None}
    points, p_index, dropped = _parse_points(r, m, broken)
    steps, s_index = _parse_steps(r, m, broken)
    contract = Contract(
        **{k: _PLACEHOLDERS[k] if v is None else v for k, v in scalars.items()},
        points=points, safe_state=_parse_safe_state(r, m, broken), steps=steps,
        offline=_parse_offline(r, m["offline"], "offline") if "offline" in m
        else _required(r, "offline", Offline(autonomy_s=0)),
        expect=_parse_expect(r, m.get("expect") or {}, "expect"),
        tolerance=_parse_tolerance(r, m["tolerance"], "tolerance") if "tolerance" in m
        else DEFAULT_TOLERANCE,
        labels=_parse_labels(r, m.get("labels"), "labels"),
    )
    layout = Layout(point_index=p_index, step_index=s_index, broken=frozenset(broken),
                    dropped_points=dropped)
    return Parsed(contract=contract, issues=tuple(r.issues), layout=layout, extra=r.extra)


def _bounded_list(r: _Reader, m: Mapping[str, Any], key: str, most: int,
                  broken: set[str]) -> list[Any]:
    """The list at `key`, or [] (marking it broken) if missing, not a list, or longer than `most`:
    an over-long list is refused before any item is looked at."""
    raw: list[Any] | None = r.get(m, key, "", _list)
    if raw is not None and len(raw) > most:
        r.fail(key, f"has {len(raw)} entries; at most {most} are allowed")
        raw = None
    if raw is None:
        broken.add(key)
    return raw or []


def _parse_points(r: _Reader, m: Mapping[str, Any],
                  broken: set[str]) -> tuple[tuple[Point, ...], tuple[int, ...], frozenset[str]]:
    kept: list[Point] = []
    index: list[int] = []
    dropped: set[str] = set()
    for i, raw in enumerate(_bounded_list(r, m, "points", MAX_POINTS, broken)):
        p = _parse_point(r, raw, f"points[{i}]")
        if p is not None:
            kept.append(p)
            index.append(i)
        elif isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
            dropped.add(raw["name"])
    return tuple(kept), tuple(index), frozenset(dropped)


def _parse_steps(r: _Reader, m: Mapping[str, Any],
                 broken: set[str]) -> tuple[tuple[Step, ...], tuple[int, ...]]:
    parsed = [(i, _parse_step(r, raw, f"steps[{i}]"))
              for i, raw in enumerate(_bounded_list(r, m, "steps", MAX_STEPS, broken))]
    if any(s is None for _, s in parsed):
        broken.add("steps")  # reachability cannot be judged with a step missing
    kept = [(i, s) for i, s in parsed if s is not None]
    return tuple(s for _, s in kept), tuple(i for i, _ in kept)


def _parse_safe_state(r: _Reader, m: Mapping[str, Any],
                      broken: set[str]) -> tuple[tuple[PointName, Value], ...]:
    if "safe_state" not in m:
        broken.add("safe_state")
        return _required(r, "safe_state")  # type: ignore[no-any-return]
    before = r.count()
    pairs = _pairs(r, m["safe_state"], "safe_state", _value)
    if r.count() != before:
        broken.add("safe_state")  # a refused value is not a missing one
    return pairs


def _required(r: _Reader, path: str, placeholder: Any = ()) -> Any:
    r.fail(path, "is required")
    return placeholder


def _opt(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def point_to_mapping(p: Point) -> dict[str, Any]:
    return {
        "name": p.name, "unit_id": p.unit_id, "table": p.table.value, "address": p.address,
        "type": p.type.value, "direction": p.direction.value, "word_order": p.word_order.value,
        "byte_order": p.byte_order.value, "unit": p.unit, "scale": p.scale, "offset": p.offset,
        "owner": p.owner, "range": _opt(p.range), "limits": _opt(p.limits),
        "stale_after_ms": p.stale_after_ms, "frozen_after_ms": p.frozen_after_ms,
        "max_rate_per_s": p.max_rate_per_s, "deadband": p.deadband,
    }


def _step_to_mapping(s: Step) -> dict[str, Any]:
    return {
        "name": s.name, "do": dict(s.do), "until": s.until, "for_s": s.for_s,
        "timeout_s": s.timeout_s, "on_timeout": s.on_timeout.value,
    }


def to_mapping(c: Contract) -> dict[str, Any]:
    """The full, explicit document for `c`; `parse_contract(to_mapping(c)) == c`."""
    return {
        "schema": SCHEMA_VERSION, "contract": c.contract, "version": c.version, "device": c.device,
        "site": c.site, "valid_from": format_time(c.valid_from),
        "valid_until": format_time(c.valid_until), "scan_period_ms": c.scan_period_ms,
        "points": [point_to_mapping(p) for p in c.points], "safe_state": dict(c.safe_state),
        "steps": [_step_to_mapping(s) for s in c.steps],
        "offline": {"autonomy_s": c.offline.autonomy_s, "then": c.offline.then.value},
        "expect": {e.point: {"rate_per_s": e.rate_per_s, "when": e.when} for e in c.expect},
        "tolerance": {"timing_s": c.tolerance.timing_s, "values": dict(c.tolerance.values)},
        "labels": dict(c.labels),
    }
