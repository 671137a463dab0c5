"""The device link: how the agent talks to a device, as one Protocol and an in-memory implementation.

Rules every DeviceLink keeps (tests/agent/test_link_contract.py runs the same suite over MemoryLink
and the real ModbusLink):
- `read(plan, now_ms)` never raises for I/O: each request that fails marks exactly its own points
  BAD with a reason ("timeout", "exception:<code>", "disconnected", "decode"); the rest stay GOOD.
  Every Reading carries `ts_ms = now_ms`, the scan cycle's time (the link never reads the clock for it).
- `write(point, value)` raises DeviceLinkError on any failure and is never retried: a write that
  timed out may have happened, so the caller journals it and trusts the next cycle's read-back.
- An address the device does not have answers Modbus exception 2, ILLEGAL DATA ADDRESS (spec 7).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from agent.errors import DeviceLinkError, RegisterError
from agent.registers import RawValue, ReadRequest, encode, slice_values
from contracts import modbus_exceptions
from contracts.modbus_exceptions import exception_reason as exception_reason  # its home: re-exported
from contracts.inputs import Quality, Reading
from contracts.schema import Point, Table
from contracts.types import EpochMs, PointName, Value

ILLEGAL_DATA_ADDRESS = 2
"""Modbus exception code 02 (spec section 7): the address is not an allowable one for the device."""

RawWord = int | bool
"""One cell of a register bank: a 16-bit register, or one bit of a coil/discrete table."""


@runtime_checkable
class DeviceLink(Protocol):
    """One device (one TCP endpoint, any number of unit ids) as the scan loop sees it."""

    async def connect(self) -> None:
        """Open the link. Raises DeviceLinkError if the device cannot be reached now."""

    async def close(self) -> None:
        """Close the link; idempotent."""

    async def read(self, plan: Sequence[ReadRequest], now_ms: EpochMs) -> dict[PointName, Reading]:
        """A Reading for every point of `plan`. Never raises for I/O: failures are BAD readings."""
        ...

    async def write(self, point: Point, value: Value) -> None:
        """Write one point. Raises DeviceLinkError on any failure (never retried)."""

    def hurry(self, interval_s: float | None) -> None:
        """While set (safe state not yet confirmed on the device), look for the device again at
        most every `interval_s` without blocking read(); None: the normal reconnect backoff."""

    def pace(self, deadline: float | None) -> None:
        """The scan cycle's I/O should end by the monotonic time `deadline` (None: no bound but
        the endpoints' own timeouts). A request not answered by then is BAD "timeout" for this
        cycle (agent/endpoints.py); a single link bounds itself by its timeout."""

    @property
    def connected(self) -> bool:
        """Whether the link is up now."""
        ...


def good_readings(request: ReadRequest, response: Sequence[int] | Sequence[bool],
                  now_ms: EpochMs) -> dict[PointName, Reading]:
    """GOOD readings cut from a response; BAD "decode" for all of them if it does not decode."""
    try:
        values = slice_values(request, response)
    except RegisterError:
        return bad_readings(request, now_ms, "decode")
    return {name: Reading(value=v, quality=Quality.GOOD, ts_ms=now_ms) for name, v in values.items()}


def bad_readings(request: ReadRequest, now_ms: EpochMs, reason: str) -> dict[PointName, Reading]:
    """The same BAD reading, with `reason`, for every point of `request`."""
    return {p.name: Reading(value=None, quality=Quality.BAD, ts_ms=now_ms, reason=reason)
            for p in request.points}


def exception_words(code: int, table: Table, address: int) -> str:
    """`exception 2 (illegal data address) at holding 63`: what an operator reads."""
    return modbus_exceptions.exception_words(code, f"{table.value} {address}")


class MemoryLink:
    """A device as a dict of register banks per (unit_id, table): a real DeviceLink for pure tests.

    Only addresses present in a bank exist; others answer exception 2 like a real device. Tests
    play the device (or a second master) with `set`, and unplug it with `online = False`."""

    def __init__(self, banks: Mapping[tuple[int, Table], Mapping[int, RawWord]] | None = None) -> None:
        self.banks: dict[tuple[int, Table], dict[int, RawWord]] = {
            key: dict(bank) for key, bank in (banks or {}).items()}
        self.online = True
        self._connected = False
        self.writes: list[tuple[PointName, Value]] = []

    @property
    def connected(self) -> bool:
        return self._connected and self.online

    async def connect(self) -> None:
        """Raises DeviceLinkError("disconnected") while `online` is False."""
        if not self.online:
            raise DeviceLinkError("disconnected", "memory device is offline")
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    def hurry(self, interval_s: float | None) -> None:
        """Nothing to hurry: a memory device reconnects as soon as `online` is True."""

    def pace(self, deadline: float | None) -> None:
        """Nothing to pace: a memory device answers at once."""

    def set(self, unit_id: int, table: Table, address: int, words: Sequence[RawWord]) -> None:
        """Put `words` at `address`.. in a bank, creating the addresses (the device's side)."""
        bank = self.banks.setdefault((unit_id, table), {})
        for i, word in enumerate(words):
            bank[address + i] = word

    def get(self, unit_id: int, table: Table, address: int, count: int) -> list[RawWord] | None:
        """`count` words from `address`, or None if any of those addresses does not exist."""
        bank = self.banks.get((unit_id, table), {})
        if any(address + i not in bank for i in range(count)):
            return None
        return [bank[address + i] for i in range(count)]

    async def read(self, plan: Sequence[ReadRequest], now_ms: EpochMs) -> dict[PointName, Reading]:
        readings: dict[PointName, Reading] = {}
        for request in plan:
            readings.update(self._read_one(request, now_ms))
        return readings

    def _read_one(self, request: ReadRequest, now_ms: EpochMs) -> dict[PointName, Reading]:
        if not self.connected:
            return bad_readings(request, now_ms, "disconnected")
        words = self.get(request.unit_id, request.table, request.start, request.count)
        if words is None:
            return bad_readings(request, now_ms, exception_reason(ILLEGAL_DATA_ADDRESS))
        if request.table.is_bit:
            return good_readings(request, [bool(w) for w in words], now_ms)
        return good_readings(request, [int(w) for w in words], now_ms)

    async def write(self, point: Point, value: Value) -> None:
        raw = encode_for_write(point, value)
        if not self.connected:
            raise DeviceLinkError("disconnected", f"write {point.name}={value!r}: link is down")
        words: list[RawWord] = [raw] if isinstance(raw, bool) else list(raw)
        if self.get(point.unit_id, point.table, point.address, len(words)) is None:
            raise DeviceLinkError(exception_reason(ILLEGAL_DATA_ADDRESS),
                            f"write {point.name}={value!r} at {point.table.value}:{point.address}")
        self.set(point.unit_id, point.table, point.address, words)
        self.writes.append((point.name, value))


def encode_for_write(point: Point, value: Value) -> RawValue:
    """The raw words to write, checked before any I/O. Raises DeviceLinkError "not_writable" for input
    registers and discrete inputs, "encode" (category config) for a value that does not fit."""
    if not point.table.writable:
        raise DeviceLinkError("not_writable",
                              f"points.{point.name}: table {point.table.value} is read-only",
                              category="config")
    try:
        return encode(point, value)
    except RegisterError as exc:
        raise DeviceLinkError("encode", str(exc), category="config") from exc
