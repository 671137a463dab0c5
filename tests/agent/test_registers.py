"""The register codec and the read planner: plain asserts for known words, hypothesis for laws."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import RegisterError
from agent.registers import (
    MAX_READ_BITS, MAX_READ_REGISTERS, ReadRequest, decode, decoder, encode, plan_reads,
    slice_values,
)
from contracts.schema import DataType, Direction, Order, Point, Table

NUMERIC = [t for t in DataType if t is not DataType.BOOL]


def point(name: str = "p", *, table: Table = Table.HOLDING, address: int = 0,
          type: DataType = DataType.UINT16, unit_id: int = 1, **kw: object) -> Point:
    return Point(name=name, unit_id=unit_id, table=table, address=address, type=type,
                 direction=kw.pop("direction", Direction.READ), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- known words

@pytest.mark.parametrize(("word_order", "byte_order", "words"), [
    (Order.BIG, Order.BIG, [0x0102, 0x0304]),        # ABCD
    (Order.BIG, Order.LITTLE, [0x0201, 0x0403]),     # BADC
    (Order.LITTLE, Order.BIG, [0x0304, 0x0102]),     # CDAB
    (Order.LITTLE, Order.LITTLE, [0x0403, 0x0201]),  # DCBA
])
def test_uint32_word_and_byte_order_place_bytes_as_documented(word_order: Order, byte_order: Order,
                                                              words: list[int]) -> None:
    p = point(type=DataType.UINT32, word_order=word_order, byte_order=byte_order)
    assert encode(p, 0x01020304) == words
    assert decode(p, words) == 0x01020304


def test_float32_big_endian_matches_ieee754_bytes() -> None:
    p = point(type=DataType.FLOAT32)
    assert encode(p, 1.0) == [0x3F80, 0x0000]
    assert decode(p, [0x40A0, 0x0000]) == 5.0


def test_int16_negative_values_use_twos_complement() -> None:
    p = point(type=DataType.INT16)
    assert encode(p, -1) == [0xFFFF]
    assert decode(p, [0x8000]) == -32768


def test_scale_and_offset_convert_engineering_to_raw_with_rounding() -> None:
    p = point(type=DataType.UINT16, scale=0.1, offset=-10.0)
    assert encode(p, 110.04) == [1200]  # (110.04 + 10) / 0.1 = 1200.4 -> 1200
    assert decode(p, [1200]) == pytest.approx(110.0)


def test_out_of_raw_range_raises_naming_point_and_value_instead_of_wrapping() -> None:
    p = point("pump_speed", type=DataType.UINT16, scale=0.1)
    with pytest.raises(RegisterError) as err:
        encode(p, 6553.6)  # raw 65536: one past uint16
    assert "pump_speed" in str(err.value) and "6553.6" in str(err.value)
    with pytest.raises(RegisterError):
        encode(point(type=DataType.INT16), -32769)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True])
def test_numeric_point_refuses_non_finite_and_bool_values(bad: object) -> None:
    with pytest.raises(RegisterError):
        encode(point(type=DataType.FLOAT32), bad)  # type: ignore[arg-type]


def test_float32_overflow_raises() -> None:
    with pytest.raises(RegisterError):
        encode(point(type=DataType.FLOAT32), 1e39)


def test_decode_refuses_nan_words_and_wrong_word_count() -> None:
    with pytest.raises(RegisterError):
        decode(point(type=DataType.FLOAT32), [0x7FC0, 0x0000])
    with pytest.raises(RegisterError):
        decode(point(type=DataType.UINT32), [1])


def test_bit_tables_carry_bools_and_bool_in_a_register_is_zero_or_one() -> None:
    assert encode(point(table=Table.COIL, type=DataType.BOOL), True) is True
    assert decode(point(table=Table.DISCRETE, type=DataType.BOOL), False) is False
    assert encode(point(type=DataType.BOOL), True) == [1]
    assert decode(point(type=DataType.BOOL), [7]) is True
    with pytest.raises(RegisterError):
        encode(point(table=Table.COIL, type=DataType.BOOL), 2)


# ---------------------------------------------------------------------------- round trips

orders = st.sampled_from(list(Order))


@given(t=st.sampled_from(NUMERIC), wo=orders, bo=orders, data=st.data())
def test_integer_words_round_trip_through_decode_and_encode(t: DataType, wo: Order, bo: Order,
                                                             data: st.DataObject) -> None:
    p = point(type=t, word_order=wo, byte_order=bo)
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=t.registers, max_size=t.registers))
    try:
        value = decode(p, words)
    except RegisterError:
        assert t in (DataType.FLOAT32, DataType.FLOAT64)  # only NaN/inf words are refused
        return
    assert encode(p, value) == words


@given(t=st.sampled_from([DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32]),
       wo=orders, bo=orders, data=st.data())
def test_integer_values_round_trip_through_encode_and_decode(t: DataType, wo: Order, bo: Order,
                                                              data: st.DataObject) -> None:
    lo, hi = t.raw_range
    value = data.draw(st.integers(int(lo), int(hi)))
    p = point(type=t, word_order=wo, byte_order=bo)
    assert decode(p, encode(p, value)) == value


@given(value=st.floats(allow_nan=False, allow_infinity=False, width=32), wo=orders, bo=orders)
def test_float32_values_round_trip_exactly(value: float, wo: Order, bo: Order) -> None:
    p = point(type=DataType.FLOAT32, word_order=wo, byte_order=bo)
    assert decode(p, encode(p, value)) == value


@given(value=st.floats(allow_nan=False, allow_infinity=False), wo=orders, bo=orders)
def test_float64_values_round_trip_exactly(value: float, wo: Order, bo: Order) -> None:
    p = point(type=DataType.FLOAT64, word_order=wo, byte_order=bo)
    assert decode(p, encode(p, value)) == value


# ---------------------------------------------------------------------------- planner

def test_contiguous_points_coalesce_into_one_request_and_gaps_split() -> None:
    a, b = point("a", address=0, type=DataType.FLOAT32), point("b", address=2)
    c = point("c", address=5)
    assert [(r.start, r.count) for r in plan_reads([c, b, a])] == [(0, 3), (5, 1)]
    assert [(r.start, r.count) for r in plan_reads([c, b, a], max_gap=2)] == [(0, 6)]


def test_reads_are_coalesced_per_endpoint_unit_and_table_never_across_endpoints() -> None:
    points = [point("a0", address=0, endpoint="plc"), point("a1", address=1, endpoint="plc"),
              point("b0", address=0, endpoint="line"), point("b1", address=1, endpoint="line"),
              point("c1", address=1, endpoint="line", unit_id=2), point("d0", address=2)]
    plan = plan_reads(points)
    assert [(r.endpoint, r.unit_id, r.start, r.count, [p.name for p in r.points]) for r in plan] == [
        (None, 1, 2, 1, ["d0"]), ("line", 1, 0, 2, ["b0", "b1"]), ("line", 2, 1, 1, ["c1"]),
        ("plc", 1, 0, 2, ["a0", "a1"])]


def test_plan_splits_by_unit_and_table_in_function_code_order() -> None:
    pts = [point("h", table=Table.HOLDING), point("i", table=Table.INPUT),
           point("c", table=Table.COIL, type=DataType.BOOL), point("u2", unit_id=2)]
    assert [(r.unit_id, r.table) for r in plan_reads(pts)] == [
        (1, Table.COIL), (1, Table.HOLDING), (1, Table.INPUT), (2, Table.HOLDING)]


def test_plan_includes_write_points_for_read_back() -> None:
    w = point("w", direction=Direction.WRITE, address=1)
    assert plan_reads([point("r"), w])[0].points == (point("r"), w)


def test_plan_never_exceeds_125_registers_per_request() -> None:
    pts = [point(f"p{i}", address=i) for i in range(300)]
    assert [r.count for r in plan_reads(pts)] == [125, 125, 50]


def _tables() -> st.SearchStrategy[Point]:
    def build(i: int, unit: int, table: Table, address: int, t: DataType) -> Point:
        return point(f"p{i}", unit_id=unit, table=table, address=address,
                     type=DataType.BOOL if table.is_bit else t)
    return st.builds(build, st.integers(0, 10_000), st.integers(1, 2), st.sampled_from(list(Table)),
                     st.integers(0, 3000), st.sampled_from(NUMERIC))


@given(pts=st.lists(_tables(), max_size=80, unique_by=lambda p: p.name), gap=st.integers(0, 20))
def test_plan_covers_every_point_once_within_the_spec_maxima(pts: list[Point], gap: int) -> None:
    plan = plan_reads(pts, max_gap=gap)
    names = [p.name for r in plan for p in r.points]
    assert sorted(names) == sorted(p.name for p in pts)
    for r in plan:
        assert r.count <= (MAX_READ_BITS if r.table.is_bit else MAX_READ_REGISTERS)
        assert all(r.start <= p.address and p.last_address <= r.end for p in r.points)
        assert all((p.unit_id, p.table) == (r.unit_id, r.table) for p in r.points)
    assert plan_reads(list(reversed(pts)), max_gap=gap) == plan  # order of the map does not matter


def test_slice_values_cuts_each_point_from_the_response() -> None:
    a, b = point("a", address=10, type=DataType.INT16), point("b", address=11, type=DataType.UINT32)
    (req,) = plan_reads([a, b])
    assert slice_values(req, [0xFFFF, 0, 7]) == {"a": -1, "b": 7}


def test_slice_values_reads_bits_from_a_padded_bit_response() -> None:
    c = point("c", table=Table.COIL, type=DataType.BOOL, address=3)
    req = ReadRequest(unit_id=1, table=Table.COIL, start=2, count=2, points=(c,))
    assert slice_values(req, [False, True] + [False] * 6) == {"c": True}


def test_slice_values_raises_on_a_short_response() -> None:
    (req,) = plan_reads([point("a", type=DataType.UINT32)])
    with pytest.raises(RegisterError):
        slice_values(req, [1])


def _outcome(fn: object, *args: object) -> object:
    try:
        return ("value", fn(*args))  # type: ignore[operator]
    except RegisterError as exc:
        return ("error", str(exc))


@given(t=st.sampled_from(list(DataType)), wo=orders, bo=orders, table=st.sampled_from(list(Table)),
       scale=st.sampled_from([1.0, 0.1, -2.5]), offset=st.sampled_from([0.0, 40.0]), data=st.data())
def test_a_points_precompiled_decoder_gives_what_decode_gives_values_and_errors(
        t: DataType, wo: Order, bo: Order, table: Table, scale: float, offset: float,
        data: st.DataObject) -> None:
    """slice_values decodes through `decoder` (made once per request, agent/registers.py): the
    same value, or the same RegisterError, as `decode` for any words, even out-of-range ones."""
    p = point(type=t, word_order=wo, byte_order=bo, table=table, scale=scale, offset=offset)
    n = p.registers
    lead = data.draw(st.integers(0, 3))
    word = st.booleans() if table.is_bit else st.integers(-2, 0x10001)
    response = data.draw(st.lists(word, min_size=lead + n, max_size=lead + n))
    words = response[lead:lead + n]
    expected = _outcome(decode, p, bool(words[0]) if table.is_bit else list(map(int, words)))
    assert _outcome(decoder(p), response, lead) == expected
