"""The cells of an I/O table: its columns, and each cell's text to a point field and back.

Rules of this module (the table as a whole — bytes, rows, delimiter — is `points_csv`):
- Columns are named by the header, case and surrounding spaces ignored; REQUIRED must all be there,
  OPTIONAL may be, anything else is refused with the nearest column name.
- A row must have exactly one cell per column: a missing or extra comma shifts every later value,
  so the row is refused rather than guessed at.
- Cell text becomes the value a YAML document would hold (a number, a `[low, high]` list, the table
  and 0-based offset of a Modicon address), then `schema_points.parse_point` reads the row, so its
  issues are the contract's own, each mapped back to the column it came from.
- Enum cells (type, direction, word_order, byte_order) and `protocol` are read case-insensitively;
  ids (owner, endpoint) and names are not: changing their case would change what they name.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts import modicon
from contracts.limits import clip, quote
from contracts.schema import Point
from contracts.schema_fields import Reader
from contracts.schema_points import parse_point
from contracts.schema_serialize import point_to_brief

REQUIRED = ("point_name", "protocol", "address", "type", "unit", "scale", "direction", "owner")
"""The columns of every I/O table (issue 11); a cell may still be empty where the field has a default."""

OPTIONAL = ("endpoint", "unit_id", "range", "limits", "stale_after_ms", "word_order", "byte_order",
            "offset", "frozen_after_ms", "max_rate_per_s", "deadband")
"""Issue 11's optional columns, then the rest of a point's fields, so any contract exports losslessly."""

COLUMNS = REQUIRED + OPTIONAL

PROTOCOL = "modbus"
"""The one protocol a contract maps; TCP, RTU or RTU over TCP is the endpoint's (agent.toml)."""

MAX_CELL_CHARS = 256
"""Longest cell: names and ids are at most 64 characters, units and numbers far shorter."""

_FIELD_COLUMN = {"name": "point_name", "table": "address"}
"""Point fields whose column has another name (a Modicon address carries the table)."""

_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_ENUMS = frozenset({"type", "direction", "word_order", "byte_order"})
_NUMBERS = frozenset({"scale", "offset", "unit_id", "stale_after_ms", "frozen_after_ms",
                      "max_rate_per_s", "deadband"})
_PAIRS = frozenset({"range", "limits"})


@dataclass(frozen=True, kw_only=True)
class CellIssue:
    """One problem in the table: its line, and its column where one cell is to blame."""

    line: int
    reason: str
    column: int | None = None
    name: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.column is not None:
            where += f", column {self.column} ({self.name})"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, kw_only=True)
class Header:
    line: int
    columns: tuple[str, ...]
    issues: tuple[CellIssue, ...] = ()

    def at(self, line: int, column: str, reason: str) -> CellIssue:
        """An issue in the cell of `column` on `line`."""
        return CellIssue(line=line, column=self.columns.index(column) + 1, name=column, reason=reason)

    def at_field(self, line: int, field: str, reason: str) -> CellIssue:
        """An issue about a point field, placed in the column the field came from."""
        column = _FIELD_COLUMN.get(field, field)
        if column in self.columns:
            return self.at(line, column, reason)
        return CellIssue(line=line, reason=f"{field}: {reason}")


def read_header(cells: list[str], line: int) -> Header:
    names = tuple(c.strip().lower() for c in cells)
    issues = [CellIssue(line=line, column=i + 1, name=clip(n), reason=_bad_column(n, names[:i]))
              for i, n in enumerate(names) if n not in COLUMNS or n in names[:i]]
    issues += [CellIssue(line=line, reason=f"missing column {quote(c)} (required: {', '.join(REQUIRED)})")
               for c in REQUIRED if c not in names]
    return Header(line=line, columns=names, issues=tuple(issues))


def _bad_column(name: str, before: tuple[str, ...]) -> str:
    if name in before:
        return f"appears twice (first in column {before.index(name) + 1})"
    if not name:
        return "has no name"
    near = difflib.get_close_matches(name, COLUMNS, n=1)
    return f"unknown column (did you mean {quote(near[0])}?)" if near \
        else f"unknown column (columns: {', '.join(COLUMNS)})"


@dataclass(frozen=True, kw_only=True)
class Row:
    line: int
    point: Point | None
    issues: tuple[CellIssue, ...] = ()


def read_row(header: Header, line: int, cells: list[str]) -> Row:
    """The point a row describes, or None with the issue of every bad cell."""
    if len(cells) != len(header.columns):
        return Row(line=line, point=None, issues=(CellIssue(
            line=line, reason=f"has {len(cells)} cells; the header has {len(header.columns)}"),))
    document: dict[str, Any] = {}
    issues = [header.at(line, column, why) for column, cell in zip(header.columns, cells, strict=True)
              if (why := _into(document, column, cell))]
    bad = {i.name for i in issues}
    if "address" in bad:
        bad.add("type")  # with no table known, a bit point's empty type is not missing
    r = Reader()
    point = parse_point(r, document, "")
    issues += [i for i in (header.at_field(line, x.path, x.reason) for x in r.issues)
               if i.name not in bad]
    return Row(line=line, point=point if not issues else None, issues=tuple(_unique(issues)))


def _unique(issues: list[CellIssue]) -> list[CellIssue]:
    """Each (column, reason) once: a missing address is both "table" and "address" required."""
    seen: set[tuple[int | None, str]] = set()
    out = []
    for i in issues:
        if (i.column, i.reason) not in seen:
            seen.add((i.column, i.reason))
            out.append(i)
    return out


def _into(document: dict[str, Any], column: str, cell: str) -> str | None:
    """Put the value of `cell` into `document`; the reason if the text is unreadable."""
    if len(cell) > MAX_CELL_CHARS:
        return f"has {len(cell)} characters; at most {MAX_CELL_CHARS}"
    text = cell.strip()
    if column == "protocol":
        return _protocol(text)
    if not text:
        return None  # left out: the field's default, or "is required" from the point reader
    try:
        document.update(_READ.get(column, _plain(column))(text))
    except ValueError as exc:
        return str(exc)
    return None


def _protocol(text: str) -> str | None:
    if not text:
        return "is required"
    if text.lower() != PROTOCOL:
        return (f"{quote(text)} is not supported: an I/O table maps {PROTOCOL} points (TCP or RTU"
                " is the endpoint's, set in agent.toml)")
    return None


def _plain(column: str) -> Callable[[str], Mapping[str, Any]]:
    field = "name" if column == "point_name" else column
    return lambda text: {field: text.lower() if column in _ENUMS else text}


def _number(text: str) -> int | float:
    if not _NUMBER_RE.match(text):
        hint = " (write the decimal with a point)" if _NUMBER_RE.match(text.replace(",", ".")) else ""
        raise ValueError(f"must be a number, got {quote(text)}{hint}")
    return float(text) if any(c in text for c in ".eE") else int(text)


def _pair(text: str) -> list[int | float]:
    low, sep, high = text.partition("..")
    if not sep:
        raise ValueError(f"must be low..high (for example 0..100), got {quote(text)}")
    return [_number(low.strip()), _number(high.strip())]


def _address(text: str) -> Mapping[str, Any]:
    try:
        ref = modicon.parse(text)
    except modicon.NotModicon as exc:
        raise ValueError(str(exc)) from None
    return {"table": ref.table.value, "address": ref.offset}


def _as_number(column: str) -> Callable[[str], Mapping[str, Any]]:
    return lambda text: {column: _number(text)}


def _as_pair(column: str) -> Callable[[str], Mapping[str, Any]]:
    return lambda text: {column: _pair(text)}


_READ: dict[str, Callable[[str], Mapping[str, Any]]] = {
    "address": _address, **{c: _as_number(c) for c in _NUMBERS}, **{c: _as_pair(c) for c in _PAIRS},
}
"""How each column's text becomes document values; other columns are text (`_plain`)."""


def _num_text(v: float) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def cells_of(p: Point) -> dict[str, str]:
    """The row of `p`: every required cell, and the optional ones that differ from the default."""
    brief = point_to_brief(p)
    row = {"point_name": p.name, "protocol": PROTOCOL, "address": modicon.format(p.table, p.address),
           "type": p.type.value, "unit": p.unit, "scale": _num_text(p.scale),
           "direction": p.direction.value, "owner": p.owner or ""}
    for column in OPTIONAL:
        if column in brief:
            v = brief[column]
            row[column] = f"{_num_text(v[0])}..{_num_text(v[1])}" if column in _PAIRS \
                else _num_text(v) if isinstance(v, (int, float)) else str(v)
    return row
