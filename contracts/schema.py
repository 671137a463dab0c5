"""The contract model: frozen, keyword-only dataclasses and the enums they use.

Rules of this module (the contract language's nouns; reading and writing documents live beside it):
- `schema_parse.parse_contract(mapping)` builds a `Contract` from a decoded document, collecting every
  structural issue with its path (`schema_fields` holds the per-field converters, `schema_points` the
  point rows); cross-field rules live in `validate.py`. `schema_serialize.to_mapping` is the inverse.
- Times are `EpochMs` integers in memory (RFC 3339 UTC strings in documents).
- Sequences are tuples and mappings are tuples of pairs in document order, so that iteration order
  never depends on dict/set internals (engine invariant 1).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

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
    endpoint: str | None = None  # the agent endpoint it lives on; None: the agent's only one
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
class Rollout:
    """What a deployment says about the contract it pushed (`contracts.schema_rollout` reads it):
    the deployment's id, the health window measured from the contract's first boot on the device,
    and the content hash of the contract it replaces there, which the agent falls back to by itself
    when this one trips within the window (agent/fallback.py)."""

    deployment: str
    health_window_ms: int
    known_good: str | None = None


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
    interlock: tuple[str, ...] = ()
    """Other contract ids on the same agent that trip with this one (agent/interlocks.py)."""
    rollout: Rollout | None = None
    """Set on a contract a deployment pushed; signed with the rest (schema_serialize)."""
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
