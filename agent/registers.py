"""The register codec and the read planner: pure functions between points and Modbus words.

Rules of this module:
- Engineering value = raw * scale + offset. `encode` inverts it, rounds to the nearest integer for
  integer types, and raises `RegisterError` (naming the point and the value) when the raw value does
  not fit the type: a value is never wrapped or clamped silently.
- Multi-word values are packed big-endian ("ABCD"), then `byte_order: little` swaps the two bytes
  inside each word ("BADC") and `word_order: little` reverses the words ("CDAB"; both: "DCBA").
  Modbus itself only defines 16-bit big-endian registers (spec 4.2); the rest is vendor convention.
- `plan_reads` coalesces points into as few requests as the map allows, per (endpoint, unit_id,
  table), in a deterministic order (endpoint, unit, table, address, name), never past the spec's
  per-request maxima. A request never spans two endpoints: each goes to its own connection.
  Write points are planned too: reading them back is how a second master is caught (DESIGN pitfall).
"""
from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from agent.errors import RegisterError
from contracts.schema import DataType, Order, Point, Table
from contracts.types import PointName, Value

MAX_READ_REGISTERS = 125
"""Registers per read request: Modbus Application Protocol v1.1b3, 6.3 (FC3) and 6.4 (FC4)."""

MAX_READ_BITS = 2000
"""Bits per read request: Modbus Application Protocol v1.1b3, 6.1 (FC1) and 6.2 (FC2)."""

TABLE_ORDER = (Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT)
"""Order of tables within one unit in a plan (function codes 1, 2, 3, 4)."""

_FORMAT = {
    DataType.INT16: ">h", DataType.UINT16: ">H", DataType.INT32: ">i", DataType.UINT32: ">I",
    DataType.FLOAT32: ">f", DataType.FLOAT64: ">d",
}
_FLOATS = frozenset({DataType.FLOAT32, DataType.FLOAT64})

RawValue = list[int] | bool
"""What goes on the wire for one point: its registers, or one bit for coils and discrete inputs."""

Decode = Callable[[Sequence[int] | Sequence[bool], int], Value]
"""One point's decoder: its value from a response, at the point's offset in it."""


@dataclass(frozen=True, kw_only=True)
class ReadRequest:
    """One read: `count` addresses from `start` in one table of one unit on one endpoint (None: the
    agent's only endpoint), covering `points`."""

    unit_id: int
    table: Table
    start: int
    count: int
    points: tuple[Point, ...]
    endpoint: str | None = None

    @property
    def end(self) -> int:
        """Last address read (inclusive)."""
        return self.start + self.count - 1

    @functools.cached_property
    def codecs(self) -> tuple[tuple[Point, int, int, Decode], ...]:
        """(point, offset in the response, words it needs from there, decoder) for each point,
        made once per request: a request is planned once and read every cycle (slice_values)."""
        return tuple((p, p.address - self.start, p.address - self.start + p.registers, decoder(p))
                     for p in self.points)


# ---------------------------------------------------------------------------------------- codec

def encode(point: Point, value: Value) -> RawValue:
    """Raw registers (or a bit) for `value` in engineering units. Raises RegisterError."""
    if point.table.is_bit:
        return _as_bool(point, value)
    if point.type is DataType.BOOL:
        return [int(_as_bool(point, value))]
    raw = _to_raw(point, value)
    try:
        data = struct.pack(_FORMAT[point.type], raw)
    except (struct.error, OverflowError) as exc:
        raise RegisterError(point, value, "does not fit the type") from exc
    return _order_words(point, [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)])


def decode(point: Point, regs: Sequence[int] | bool) -> Value:
    """Engineering value of raw registers (or a bit). Raises RegisterError for malformed words."""
    if point.table.is_bit:
        return bool(regs)
    if isinstance(regs, bool) or len(regs) != point.type.registers:
        raise RegisterError(point, regs, f"needs {point.type.registers} register(s)")
    if any(not 0 <= r <= 0xFFFF for r in regs):
        raise RegisterError(point, regs, "registers must be within 0..65535")
    if point.type is DataType.BOOL:
        return regs[0] != 0
    data = b"".join(r.to_bytes(2, "big") for r in _order_words(point, list(regs)))
    (raw,) = struct.unpack(_FORMAT[point.type], data)
    if not math.isfinite(raw):  # NaN/inf would poison every comparison downstream: refuse it here
        raise RegisterError(point, list(regs), "decodes to a non-finite float")
    return _to_engineering(point, raw)


def _as_bool(point: Point, value: Value) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):  # 0/1 are unambiguous; anything else is a mistake worth refusing
        return bool(value)
    raise RegisterError(point, value, "expects true/false")


def _to_raw(point: Point, value: Value) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RegisterError(point, value, "expects a finite number")
    raw = (value - point.offset) / point.scale if (point.scale, point.offset) != (1.0, 0.0) else value
    if point.type in _FLOATS:
        return float(raw)
    rounded = round(raw)
    lo, hi = point.type.raw_range
    if not lo <= rounded <= hi:
        raise RegisterError(point, value, f"raw value {rounded} is outside {int(lo)}..{int(hi)}")
    return rounded


def _to_engineering(point: Point, raw: int | float) -> Value:
    if (point.scale, point.offset) == (1.0, 0.0):
        return raw  # keep integers integral when there is nothing to scale
    return raw * point.scale + point.offset


def _order_words(point: Point, words: list[int]) -> list[int]:
    """Swap bytes and/or reverse words; its own inverse, so encode and decode share it."""
    if point.byte_order is Order.LITTLE:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if point.word_order is Order.LITTLE:
        words = words[::-1]
    return words


# -------------------------------------------------------------------------------------- planner

def plan_reads(points: Iterable[Point], max_gap: int = 0) -> tuple[ReadRequest, ...]:
    """Coalesced read requests covering every point exactly once, in a deterministic order.

    Points are contiguous when the gap of unread addresses between them is at most `max_gap`.
    Raises ValueError for a negative `max_gap`."""
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    ordered = sorted(points, key=_plan_key)
    requests: list[ReadRequest] = []
    group: list[Point] = []
    for point in ordered:
        if group and not _fits(group, point, max_gap):
            requests.append(_request(group))
            group = []
        group.append(point)
    if group:
        requests.append(_request(group))
    return tuple(requests)


def _plan_key(p: Point) -> tuple[str, int, int, int, str]:
    return (p.endpoint or "", p.unit_id, TABLE_ORDER.index(p.table), p.address, p.name)


def _limit(table: Table) -> int:
    return MAX_READ_BITS if table.is_bit else MAX_READ_REGISTERS


def _fits(group: list[Point], point: Point, max_gap: int) -> bool:
    first = group[0]
    if (point.endpoint, point.unit_id, point.table) != (first.endpoint, first.unit_id, first.table):
        return False
    end = max(p.last_address for p in group)
    new_end = max(end, point.last_address)
    return point.address <= end + 1 + max_gap and new_end - first.address + 1 <= _limit(point.table)


def _request(group: list[Point]) -> ReadRequest:
    start = group[0].address
    end = max(p.last_address for p in group)
    return ReadRequest(unit_id=group[0].unit_id, table=group[0].table, start=start,
                       count=end - start + 1, points=tuple(group), endpoint=group[0].endpoint)


def slice_values(request: ReadRequest, response: Sequence[int] | Sequence[bool]) -> dict[PointName, Value]:
    """Each point's value cut from the response to `request`. Raises RegisterError when the
    response is shorter than the request (bit responses may be padded to whole bytes), or as
    `decode` does."""
    values: dict[PointName, Value] = {}
    have = len(response)
    for point, offset, needs, decode_at in request.codecs:
        if have < needs:
            raise RegisterError(point, list(response), f"response has {have} of {request.count} items")
        values[point.name] = decode_at(response, offset)
    return values


def decoder(point: Point) -> Decode:
    """`point`'s decoder: the same values and errors as `decode`, with the per-point work (struct
    formats, the scale) done once. Words in the big-endian order take the short way; the other
    orders go through `decode`."""
    if point.table.is_bit:
        return _bit
    n = point.type.registers
    if point.byte_order is Order.LITTLE or point.word_order is Order.LITTLE:
        return lambda response, i: decode(point, list(map(int, response[i:i + n])))
    words = struct.Struct(f">{n}H")
    raw = struct.Struct(_FORMAT.get(point.type, ">H")).unpack
    boolean, floating = point.type is DataType.BOOL, point.type in _FLOATS
    scale, offset = point.scale, point.offset
    plain = (scale, offset) == (1.0, 0.0)

    def decode_at(response: Sequence[int] | Sequence[bool], i: int) -> Value:
        regs = response[i:i + n]
        try:
            data = words.pack(*regs)
        except struct.error as exc:
            raise RegisterError(point, list(regs), "registers must be within 0..65535") from exc
        if boolean:
            return data != b"\0\0"
        value: int | float = raw(data)[0]
        if floating and not math.isfinite(value):
            raise RegisterError(point, list(regs), "decodes to a non-finite float")
        return value if plain else value * scale + offset
    return decode_at


def _bit(response: Sequence[int] | Sequence[bool], i: int) -> Value:
    return bool(response[i])
