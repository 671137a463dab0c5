"""Commissioning's analysis, pure: recorded reads in, a report out (agent/commission.py)."""
from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.commission import Sample, analyse, check_point, orders
from agent.commission_run import poll, word_request
from agent.link import MemoryLink
from contracts.commission_report import CommissionReport, Motion, RangeCheck, ReportError, Verdict
from contracts.commission_wire import CommissionReply, CommissionRequest
from contracts.loader import check_mapping
from contracts.schema import DataType, Direction, Order, Point, Table
from tests.agent.conftest import tank_document


def pt(name: str = "level", table: Table = Table.INPUT, address: int = 0,
       type_: DataType = DataType.FLOAT32, **kw: Any) -> Point:
    return Point(name=name, unit_id=1, table=table, address=address, type=type_,
                 direction=kw.pop("direction", Direction.READ), **kw)


def f32(value: float) -> tuple[int, int]:
    data = struct.pack(">f", value)
    return int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big")


def reads(p: Point, *words: Any, error: str | None = None) -> list[Sample]:
    return [Sample(point=p.name, ts_ms=i * 100, words=w, error=error, latency_ms=1.0)
            for i, w in enumerate(words)]


LEVEL = pt(unit="m", range=(0.0, 6.0))


def test_a_good_moving_float_in_range_is_right() -> None:
    c = check_point(LEVEL, reads(LEVEL, f32(2.5), f32(2.51)))
    assert (c.verdict, c.range, c.motion, c.value, c.hints) == (
        Verdict.OK, RangeCheck.OK, Motion.MOVING, pytest.approx(2.51), ())


def test_a_float_with_swapped_words_is_flagged_and_shown_under_every_order() -> None:
    hi, lo = f32(2.5)
    c = check_point(LEVEL, reads(LEVEL, (lo, hi), (lo, hi)))
    assert c.verdict is Verdict.FAIL
    assert any(h.startswith("probably swapped word order (word_order: little): as CDAB it reads "
                            "2.5 m") for h in c.hints), c.hints
    listed = next(h for h in c.hints if h.startswith("under each order"))
    assert "ABCD 2.30037e-41" in listed and "CDAB 2.5" in listed and "BADC" in listed and "DCBA" in listed


def test_a_swapped_float_that_decodes_to_nan_still_shows_the_other_orders() -> None:
    p = pt(unit="bar", range=(0.0, 16.0))
    c = check_point(p, reads(p, (0x7FC0, 0x0000)))  # a quiet NaN as ABCD
    assert c.verdict is Verdict.FAIL
    assert any("does not decode as float32" in h for h in c.hints)
    assert any("ABCD not finite" in h for h in c.hints)


def test_orders_gives_the_value_under_each_layout() -> None:
    got = dict(orders(LEVEL, (0x0000, 0x4020)))
    assert got["CDAB"] == pytest.approx(2.5) and got["ABCD"] == pytest.approx(2.30037e-41, rel=1e-5)


def test_an_out_of_range_value_fails_naming_the_range() -> None:
    c = check_point(LEVEL, reads(LEVEL, f32(7.25)))
    assert c.verdict is Verdict.FAIL and c.range is RangeCheck.OUT
    assert "read 7.25 m, outside its range [0, 6]" in c.hints


@pytest.mark.parametrize(("word", "shown"), [(0, "0"), (0xFFFF, "65535")])
def test_an_integer_pinned_at_0_or_65535_is_a_warning(word: int, shown: str) -> None:
    p = pt("flow", type_=DataType.UINT16, scale=0.1)
    c = check_point(p, reads(p, (word,), (word,), (word,)))
    assert c.verdict is Verdict.WARN and c.motion is Motion.FROZEN
    assert c.hints[0].startswith(f"pinned at raw {shown} for all 3 reads")


def test_a_frozen_analog_is_a_warning_but_a_still_bit_or_write_point_is_not() -> None:
    frozen = check_point(LEVEL, reads(LEVEL, f32(2.5), f32(2.5)))
    assert frozen.verdict is Verdict.WARN and frozen.hints == ("frozen: the same words in all 2 reads",)
    bit = pt("high", Table.DISCRETE, type_=DataType.BOOL)
    assert check_point(bit, reads(bit, False, False)).verdict is Verdict.OK
    speed = pt("speed", Table.HOLDING, 20, DataType.UINT16, direction=Direction.WRITE)
    c = check_point(speed, reads(speed, (0,), (0,)))
    assert (c.verdict, c.readback) == (Verdict.OK, True)


def test_an_illegal_address_fails_naming_the_address() -> None:
    p = pt("pump", Table.HOLDING, 63, DataType.UINT16, direction=Direction.WRITE)
    words = "exception 2 (illegal data address) at unit 1 holding 63"
    c = check_point(p, reads(p, None, None, error=words))
    assert (c.verdict, c.readback, c.error) == (Verdict.FAIL, False, words)
    assert c.hints[0] == (f"every read failed: {words} — the device has no holding 63: "
                          "check the address")


def test_intermittent_failures_fail_and_say_how_many() -> None:
    samples = [*reads(LEVEL, f32(1.0)), Sample(point="level", ts_ms=5, words=None, error="timeout")]
    c = check_point(LEVEL, samples)
    assert c.verdict is Verdict.FAIL and c.hints[0] == "1 of 2 reads failed: timeout"


def test_a_write_point_reading_back_outside_its_limits_is_a_warning() -> None:
    p = pt("speed", Table.HOLDING, 20, DataType.UINT16, direction=Direction.WRITE, unit="rpm",
           limits=(0.0, 1500.0))
    c = check_point(p, reads(p, (2000,)))
    assert c.verdict is Verdict.WARN and c.hints == ("reads back 2000 rpm, outside its limits [0, 1500]",)


def test_latency_per_endpoint_is_the_median_and_p99_of_answered_reads() -> None:
    contract = check_mapping(tank_document())
    samples = [Sample(point="level", ts_ms=i, words=f32(1.0), latency_ms=float(i)) for i in range(1, 101)]
    samples.append(Sample(point="level", ts_ms=0, words=None, error="timeout"))
    report = analyse(contract, samples, started_ms=0, seconds=3)
    (e,) = report.endpoints
    assert (e.endpoint, e.reads, e.failed, e.median_ms, e.p99_ms) == ("default", 101, 1, 50.0, 99.0)


def test_a_report_is_ok_only_without_a_fail_and_survives_its_mapping() -> None:
    contract = check_mapping(tank_document())
    report = analyse(contract, reads(contract.point("level"), f32(1.0)), started_ms=1, seconds=3)
    assert not report.ok  # the other points were never read
    assert CommissionReport.from_mapping(report.to_mapping()) == report
    reply = CommissionReply(id="r1", report=report)
    assert CommissionReply.from_bytes(reply.to_bytes()) == reply


@pytest.mark.parametrize(("change", "message"), [
    ({"ok": True}, "report.ok: disagrees"),
    ({"v": 2}, "report.v: must be 1"),
    ({"points": [{}] * 3000}, "report.points: must be a list of at most 2048"),
    ({"extra": 1}, "report.extra: is not a field"),
])
def test_a_hostile_report_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    contract = check_mapping(tank_document())
    m = analyse(contract, [], started_ms=1, seconds=3).to_mapping()
    m.update(change)
    with pytest.raises(ReportError, match=message):
        CommissionReport.from_mapping(m)


def test_a_request_is_bounded() -> None:
    assert CommissionRequest.from_bytes(CommissionRequest(id="a", seconds=2).to_bytes()).seconds == 2
    with pytest.raises(ReportError, match="seconds"):
        CommissionRequest(id="a", seconds=3600)


@given(st.floats(min_value=0.001, max_value=6.0))
def test_any_in_range_float_with_swapped_words_is_recognised(value: float) -> None:
    hi, lo = f32(value)
    p = pt(unit="m", range=(0.0, 6.0), word_order=Order.BIG)
    c = check_point(p, reads(p, (lo, hi)))
    as_swapped = struct.unpack(">f", struct.pack(">HH", lo, hi))[0]
    if lo != 0 and 1e-20 <= abs(as_swapped) <= 6.0:
        return  # the swapped words happen to read as a plausible level: nothing to see
    assert c.verdict is Verdict.FAIL and any(h.startswith("probably swapped word order") for h in c.hints)


async def test_the_poll_reads_raw_words_only_and_writes_nothing() -> None:
    contract = check_mapping(tank_document())
    link = MemoryLink({(1, Table.INPUT): {0: f32(2.0)[0], 1: f32(2.0)[1]},
                       (1, Table.DISCRETE): {0: False}, (1, Table.HOLDING): {20: 0},
                       (1, Table.COIL): {13: False}})
    await link.connect()
    samples = await poll(contract, link, seconds=0.05, interval_s=0.01)
    assert link.writes == [] and {s.point for s in samples} == {p.name for p in contract.points}
    report = analyse(contract, samples, started_ms=0, seconds=0.05)
    assert report.ok, report.failing()
    assert [r.start for r in (word_request(p) for p in contract.points)] == [0, 0, 20, 13]


def test_a_point_without_a_unit_reads_without_a_stray_space() -> None:
    p = pt("speed", Table.HOLDING, 20, DataType.UINT16, direction=Direction.WRITE,
           limits=(0.0, 1500.0))
    assert check_point(p, reads(p, (2000,))).hints == ("reads back 2000, outside its limits [0, 1500]",)
