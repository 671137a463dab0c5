"""Reading one row of the I/O mapping table (a contract's `points:` entry) into a `Point`.

Rules of this module:
- A point is read field by field through `schema_fields.Reader`, so every bad field of every row is
  reported at once, at its document path (`points[2].address`). The CSV importer (`points_csv`) reads
  its rows through this same function, so a bad value gets the same words from either source.
- `address` is either a 0-based integer offset into the point's table (the PDU address, as on the
  wire) or a string in Modicon notation (`"40021"`, `"400021"`, see `modicon.py`). A Modicon address
  carries its table, so `table` may be left out; when both are given they must agree, and a
  contradiction is reported at `address`, naming the declared `table`.
- `endpoint` names the agent endpoint the point lives on (an id, like device ids). Left out, the point
  is on the agent's only endpoint; which endpoints exist is the agent's configuration, not checked here.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts import modicon
from contracts import schema_fields as fields
from contracts.limits import MAX_TIMER_MS, quote
from contracts.schema import DataType, Direction, Order, Point, Table

POINT_KEYS = frozenset({
    "name", "endpoint", "unit_id", "table", "address", "type", "direction", "word_order",
    "byte_order", "unit", "scale", "offset", "owner", "range", "limits", "stale_after_ms",
    "frozen_after_ms", "max_rate_per_s", "deadband",
})
"""Every field a point may carry; any other key is refused naming these."""

_TIMER = fields.bounded_int(1, MAX_TIMER_MS)


def unit_id(v: Any, p: str) -> int:
    i = fields.integer(v, p)
    if not 0 <= i <= 247:  # Modbus spec 4.1: 1..247 are device addresses; 0 is broadcast/TCP default
        raise fields.Bad(f"must be within 0..247, got {i}")
    return i


def address(v: Any, p: str) -> int | modicon.Reference:
    """A 0-based offset, or the table and offset a Modicon address string names."""
    if isinstance(v, str):
        try:
            return modicon.parse(v)
        except modicon.NotModicon as exc:
            raise fields.Bad(f"{exc}; or the 0-based offset as an integer, with table") from None
    i = fields.integer(v, p)
    if not 0 <= i <= 0xFFFF:  # PDU addresses are 16-bit (Modbus spec 4.4)
        raise fields.Bad(f"must be within 0..65535, got {i}")
    return i


def parse_point(r: fields.Reader, m: Any, path: str) -> Point | None:
    """The point, or None if any of its fields is unreadable (the issues say which)."""
    return r.whole(_read_point, m, path)


def _read_point(r: fields.Reader, raw: Any, path: str) -> Point | None:
    m = r.table(raw, path, POINT_KEYS)
    if m is None:
        return None
    g = r.get
    modicon_form = isinstance(m.get("address"), str) and m.get("table") is None
    table = None if modicon_form else g(m, "table", path, fields.choice(Table))
    values: dict[str, Any] = dict(
        name=g(m, "name", path, fields.name), endpoint=g(m, "endpoint", path, fields.ident, None),
        unit_id=g(m, "unit_id", path, unit_id, 1))
    values["table"], values["address"] = _resolve(r, m, path, table, g(m, "address", path, address))
    default_type = DataType.BOOL if values["table"] and values["table"].is_bit \
        else None if modicon_form and values["table"] is None else fields.MISSING  # no table: no type
    values.update(
        type=g(m, "type", path, fields.choice(DataType), default_type),
        direction=g(m, "direction", path, fields.choice(Direction)),
        word_order=g(m, "word_order", path, fields.choice(Order), Order.BIG),
        byte_order=g(m, "byte_order", path, fields.choice(Order), Order.BIG),
        unit=g(m, "unit", path, fields.text, ""), scale=g(m, "scale", path, fields.number, 1.0),
        offset=g(m, "offset", path, fields.number, 0.0),
        owner=g(m, "owner", path, fields.ident, None),
        range=g(m, "range", path, fields.pair, None), limits=g(m, "limits", path, fields.pair, None),
        stale_after_ms=g(m, "stale_after_ms", path, _TIMER, None),
        frozen_after_ms=g(m, "frozen_after_ms", path, _TIMER, None),
        max_rate_per_s=g(m, "max_rate_per_s", path, fields.positive, None),
        deadband=g(m, "deadband", path, fields.non_negative, 0.0),
    )
    if any(values[k] is None for k in ("name", "table", "address", "type", "direction")):
        return None
    if values["scale"] == 0.0:
        r.fail(f"{path}.scale" if path else "scale", "must not be 0")
    return Point(**values)


def _resolve(r: fields.Reader, m: Mapping[str, Any], path: str, table: Table | None,
             found: int | modicon.Reference | None) -> tuple[Table | None, int | None]:
    """The table and 0-based offset: the declared `table` with an integer address, or what a
    Modicon address names (which must agree with a declared `table`)."""
    if not isinstance(found, modicon.Reference):
        return table, found
    if table is not None and table is not found.table:
        r.fail(f"{path}.address" if path else "address",
               f"Modicon {quote(m['address'])} is {modicon.describe(found.table, found.offset)},"
               f" but the point's table is {table.value}")
        return table, None
    return found.table, found.offset
