"""Commissioning, the analysis — pure: recorded reads in, a CommissionReport out.

Rules (contracts/commission_report.py defines the verdicts):
- A sample is one read of one point's raw words (its registers, or its bit) or the read's failure
  in words, with the read's latency. Decoding happens here, with the contract's type and orders,
  so a value that decodes badly still shows its words under every other order.
- Per point: the value is the last good read; the range check covers every good read; the point is
  `moving` when its words changed at least once, `frozen` when two or more good reads agree.
- Not right (fail): any failed read (named in words, with the address), a value that does not
  decode, a value outside `range`, a float of implausible magnitude (below IMPLAUSIBLY_SMALL or
  above IMPLAUSIBLY_LARGE times the range's scale: a float read with the wrong word order is almost
  always one of the two), a write point whose register cannot be read back by its table and type.
- Worth a look (warn): an analog read point frozen for the whole poll, an integer pinned at raw 0
  or 65535 (an unwired input, an unmapped register or an open 4-20 mA loop), a write point that reads
  back outside its limits. Bits and write points are expected to sit still.
- Latency per endpoint: median and p99 (nearest rank) of the reads that were answered.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from agent.errors import RegisterError
from agent.registers import decode
from contracts.commission_report import (
    CommissionReport, EndpointLatency, Motion, PointCheck, RangeCheck, Verdict,
)
from contracts.schema import Contract, DataType, Order, Point
from contracts.types import Value

DEFAULT_ENDPOINT = "default"
"""The name a point's endpoint is reported under when the contract names none (the only one)."""

IMPLAUSIBLY_SMALL = 1e-20
"""No engineering value is this small but zero; a float whose words are swapped often is (1.0 with
its words swapped reads 2.3e-41)."""
IMPLAUSIBLY_LARGE = 1e6
"""A float beyond a million times its range's largest bound (or 1e9 without a range) is a decoding
error, not a measurement (1.234 with its words swapped reads -2.9e31)."""

ORDERS: tuple[tuple[str, Order, Order], ...] = (
    ("ABCD", Order.BIG, Order.BIG), ("CDAB", Order.LITTLE, Order.BIG),
    ("BADC", Order.BIG, Order.LITTLE), ("DCBA", Order.LITTLE, Order.LITTLE),
)
"""(name, word_order, byte_order): the four ways vendors lay out a 32/64-bit value (registers.py)."""

_FLOATS = frozenset({DataType.FLOAT32, DataType.FLOAT64})
_PINNED = {0: "0", 0xFFFF: "65535"}

Words = tuple[int, ...] | bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample:
    """One read of one point: its raw words, or why there are none, and how long it took."""

    point: str
    ts_ms: int
    words: Words | None
    error: str | None = None
    latency_ms: float | None = None  # None: no answer (timeout, disconnected)


def endpoint_of(p: Point) -> str:
    return p.endpoint or DEFAULT_ENDPOINT


def analyse(contract: Contract, samples: Sequence[Sample], *, started_ms: int,
            seconds: float) -> CommissionReport:
    """The report for `samples` (any order within a point is the order of reading)."""
    by_point: dict[str, list[Sample]] = {p.name: [] for p in contract.points}
    for s in samples:
        if s.point in by_point:
            by_point[s.point].append(s)
    points = tuple(check_point(p, by_point[p.name]) for p in contract.points)
    return CommissionReport(contract=contract.contract, version=contract.version,
                            device=contract.device, started_ms=started_ms, seconds=seconds,
                            points=points, endpoints=latencies(contract, samples))


def check_point(p: Point, samples: Sequence[Sample]) -> PointCheck:
    """One point's check from its reads, in reading order."""
    good = [s for s in samples if s.words is not None]
    failed = [s for s in samples if s.words is None]
    hints: list[str] = []
    fail = bool(failed) or not samples
    if failed:
        hints.append(_failure_hint(p, failed, len(samples)))
    elif not samples:
        hints.append("never read: the poll ended before reaching it")
    values: list[Value] = []
    for s in good:
        try:
            values.append(decode(p, s.words))  # type: ignore[arg-type]
        except RegisterError as exc:
            fail = True
            hints.append(f"does not decode as {p.type.value}: {exc.reason}")
            break
    range_check = _range(p, values)
    fail |= range_check is RangeCheck.OUT
    if range_check is RangeCheck.OUT:
        assert p.range is not None
        hints.append(f"read {_with_unit(p, _worst(p, values))}, outside its range "
                     f"[{_fmt(p.range[0])}, {_fmt(p.range[1])}]")
    if values and not fail and _implausible(p, values[-1]):
        fail = True
        hints.append(f"{_fmt(values[-1])} is an implausible magnitude for a {p.type.value}")
    if fail and p.type in _FLOATS and good:
        hints.extend(_orders_hint(p, good[-1].words))
    motion = _motion(good)
    warn = _warnings(p, good, values, motion, hints)
    readback = (not fail) if p.writes else None
    if p.writes and fail:
        hints.append(f"does not read back as {p.table.value} {p.type.value}: the write register "
                     "is not what the contract says")
    verdict = Verdict.FAIL if fail else Verdict.WARN if warn else Verdict.OK
    return PointCheck(name=p.name, endpoint=endpoint_of(p), where=_where(p), type=p.type.value,
                      direction=p.direction.value, unit=p.unit, value=values[-1] if values else None,
                      reads=len(samples), good=len(good), range=range_check, motion=motion,
                      readback=readback, verdict=verdict, hints=tuple(hints[:8]),
                      error=failed[-1].error if failed else None)


def latencies(contract: Contract, samples: Sequence[Sample]) -> tuple[EndpointLatency, ...]:
    """Per endpoint (in the order the contract first names them): reads, failures, median, p99."""
    endpoint = {p.name: endpoint_of(p) for p in contract.points}
    names = list(dict.fromkeys(endpoint.values()))
    out = []
    for name in names:
        mine = [s for s in samples if endpoint.get(s.point) == name]
        answered = sorted(s.latency_ms for s in mine if s.latency_ms is not None)
        out.append(EndpointLatency(endpoint=name, reads=len(mine),
                                   failed=sum(1 for s in mine if s.words is None),
                                   median_ms=_rank(answered, 0.5), p99_ms=_rank(answered, 0.99)))
    return tuple(out)


def _rank(sorted_ms: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None when nothing was answered."""
    if not sorted_ms:
        return None
    return round(sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)], 3)


def _where(p: Point) -> str:
    unit = f"unit {p.unit_id} "
    span = "" if p.registers == 1 else f"..{p.last_address}"
    return f"{unit}{p.table.value} {p.address}{span}"


def _failure_hint(p: Point, failed: Sequence[Sample], total: int) -> str:
    last = failed[-1].error or "no answer"
    share = "every read" if len(failed) == total else f"{len(failed)} of {total} reads"
    if "illegal data address" in last:
        return (f"{share} failed: {last} — the device has no {p.table.value} "
                f"{p.address}{'' if p.registers == 1 else f'..{p.last_address}'}: check the address")
    return f"{share} failed: {last}"


def _range(p: Point, values: Sequence[Value]) -> RangeCheck:
    if not values:
        return RangeCheck.UNKNOWN
    if p.range is None:
        return RangeCheck.NONE
    lo, hi = p.range
    return RangeCheck.OK if all(lo <= float(v) <= hi for v in values) else RangeCheck.OUT


def _worst(p: Point, values: Sequence[Value]) -> Value:
    assert p.range is not None
    lo, hi = p.range
    return next(v for v in values if not lo <= float(v) <= hi)


def _scale(p: Point) -> float:
    if p.range is None:
        return 1e3
    return max(abs(p.range[0]), abs(p.range[1]), 1.0)


def _implausible(p: Point, v: Value) -> bool:
    if p.type not in _FLOATS or isinstance(v, bool):
        return False
    a = abs(float(v))
    return a != 0.0 and (a < IMPLAUSIBLY_SMALL or a > IMPLAUSIBLY_LARGE * _scale(p))


def _plausible_in_range(p: Point, v: Value | None) -> bool:
    if v is None or _implausible(p, v):
        return False
    return p.range is None or p.range[0] <= float(v) <= p.range[1]


def orders(p: Point, words: Words) -> list[tuple[str, Value | None]]:
    """The value under each word/byte order (None where it does not decode)."""
    out: list[tuple[str, Value | None]] = []
    for name, word, byte in ORDERS:
        try:
            out.append((name, decode(replace(p, word_order=word, byte_order=byte), words)))
        except RegisterError:
            out.append((name, None))
    return out


def _orders_hint(p: Point, words: Words | None) -> list[str]:
    if words is None or isinstance(words, bool) or len(words) < 2:
        return []
    alternatives = orders(p, words)
    listed = ", ".join(f"{n} {_fmt(v) if v is not None else 'not finite'}" for n, v in alternatives)
    current = next(n for n, w, b in ORDERS if (w, b) == (p.word_order, p.byte_order))
    better = [(n, v) for n, v in alternatives
              if n != current and v is not None and _plausible_in_range(p, v)]
    hints = [f"under each order: {listed}"]
    if better:
        name, value = better[0]
        word, byte = next((w, b) for n, w, b in ORDERS if n == name)
        what = _order_change(p, word, byte)
        hints.insert(0, f"probably {what}: as {name} it reads {_with_unit(p, value)}")
    return hints


def _order_change(p: Point, word: Order, byte: Order) -> str:
    changes = []
    if word is not p.word_order:
        changes.append(f"swapped word order (word_order: {word.value})")
    if byte is not p.byte_order:
        changes.append(f"swapped byte order (byte_order: {byte.value})")
    return " and ".join(changes)


def _motion(good: Sequence[Sample]) -> Motion:
    if len(good) < 2:
        return Motion.UNKNOWN
    return Motion.MOVING if len({s.words for s in good}) > 1 else Motion.FROZEN


def _warnings(p: Point, good: Sequence[Sample], values: Sequence[Value], motion: Motion,
              hints: list[str]) -> bool:
    """Append the warn-level hints; True if there is any."""
    before = len(hints)
    analog = not p.writes and not p.table.is_bit and p.type is not DataType.BOOL
    pinned = _pinned(p, good) if motion is Motion.FROZEN else None
    if analog and pinned is not None:
        hints.append(f"pinned at raw {pinned} for all {len(good)} reads: an unwired input, an "
                     "unmapped register or an open loop reads so")
    elif analog and motion is Motion.FROZEN:
        hints.append(f"frozen: the same words in all {len(good)} reads")
    if p.writes and p.limits is not None and values:
        v = float(values[-1])
        if not p.limits[0] <= v <= p.limits[1]:
            hints.append(f"reads back {_with_unit(p, v)}, outside its limits "
                         f"[{_fmt(p.limits[0])}, {_fmt(p.limits[1])}]")
    return len(hints) > before


def _pinned(p: Point, good: Sequence[Sample]) -> str | None:
    words = good[-1].words
    if p.type in _FLOATS or isinstance(words, bool) or words is None:
        return None
    if len(set(words)) == 1 and words[0] in _PINNED:
        return _PINNED[words[0]]
    return None


def _with_unit(p: Point, v: Value) -> str:
    return f"{_fmt(v)} {p.unit}".rstrip()


def _fmt(v: Value | float) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return f"{v:.6g}"
