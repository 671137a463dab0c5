"""The I/O mapping table as CSV, the way engineers keep it in a spreadsheet: in to a contract's
`points:`, and back out.

Rules of this module (the README's "I/O maps" section says the same for users):
- The first row names the columns, in any order, case and surrounding spaces ignored. Required
  columns: point_name, protocol, address, type, unit, scale, direction, owner (a cell may be empty
  where the field has a default: unit, scale, owner, type of a coil or discrete input). Optional:
  endpoint, unit_id, range, limits, stale_after_ms, and the rest of a point's fields (word_order,
  byte_order, offset, frozen_after_ms, max_rate_per_s, deadband) so that any contract exports
  without loss. An empty cell is a field left out; an all-empty row is skipped.
- `protocol` is `modbus` (TCP, RTU or RTU over TCP is the endpoint's business, in agent.toml).
  `address` is Modicon notation (`40021`, `400021`; see modicon.py): it names the table too.
  `range` and `limits` are `low..high`. Numbers are decimal (`0.1`, `-5`, `1e3`).
- The delimiter is a comma, or a semicolon when the header has semicolons and no comma (spreadsheets
  in decimal-comma locales). A UTF-8 byte order mark is dropped.
- Input is bounded before it is walked: MAX_CSV_BYTES, MAX_POINTS rows, MAX_CELL_CHARS per cell.
- Every problem is reported at once as `line L, column C (name): reason`: L is the file's line
  (the header is line 1), C the 1-based column. Rows are read by `schema_points` and then checked by
  the contract validator's point rules (duplicate names, overlapping addresses, table fit, limits),
  so a bad value gets the same words as in a YAML contract.
- `write_points` is the inverse: `read_points(write_points(ps)) == ps` for valid points.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from typing import NoReturn

from contracts import modicon
from contracts.errors import ContractError
from contracts.limits import MAX_ISSUES, MAX_POINTS, clip
from contracts.points_cells import (
    COLUMNS, MAX_CELL_CHARS, REQUIRED, CellIssue, Header, Row, cells_of, read_header, read_row,
)
from contracts.points_fragment import point_issues
from contracts.schema import Point, Table

MAX_CSV_BYTES = 1 << 20
"""An I/O table of MAX_POINTS rows is about 200 kB; a megabyte is a wrong file or an attack."""

_POINT_PATH = re.compile(r"points\[(\d+)\](?:\.(\w+))?")
_RANGE = re.compile(r"\b(coil|discrete|input|holding) (\d+)\.\.(\d+)")

__all__ = ["COLUMNS", "MAX_CELL_CHARS", "MAX_CSV_BYTES", "REQUIRED", "CellIssue",
           "PointsTableInvalid", "read_points", "write_points"]


class PointsTableInvalid(ContractError):
    """An I/O table (CSV) that does not make valid points; `issues` lists every problem, in order."""

    def __init__(self, issues: Sequence[CellIssue], extra: int = 0) -> None:
        self.issues = list(issues)
        self.extra = extra
        more = [f"{extra} more issues not listed"] if extra else []
        super().__init__("; ".join([str(i) for i in self.issues] + more))


def read_points(data: bytes) -> tuple[Point, ...]:
    """The points an I/O table describes. Raises PointsTableInvalid naming every bad cell."""
    if len(data) > MAX_CSV_BYTES:
        _refuse(CellIssue(line=1, reason=f"the table is larger than {MAX_CSV_BYTES} bytes"))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        _refuse(CellIssue(line=line, reason=f"is not UTF-8 text (byte {exc.start})"))
    rows = _split(text)
    if not rows:
        _refuse(CellIssue(line=1, reason="the table is empty; the first row names the columns"))
    header = read_header(rows[0][1], rows[0][0])
    if header.issues:
        _refuse(*header.issues)
    return _read_rows(header, rows[1:])


def _read_rows(header: Header, rows: list[tuple[int, list[str]]]) -> tuple[Point, ...]:
    if len(rows) > MAX_POINTS:
        _refuse(CellIssue(line=rows[MAX_POINTS][0],
                          reason=f"more than {MAX_POINTS} rows; a contract has at most {MAX_POINTS}"
                                 " points"))
    read = [read_row(header, line, cells) for line, cells in rows]
    issues = [i for row in read for i in row.issues] + _validated(header, read)
    if issues:
        _refuse(*sorted(issues, key=lambda i: (i.line, i.column or 0)))
    return tuple(row.point for row in read if row.point is not None)


def _validated(header: Header, rows: list[Row]) -> list[CellIssue]:
    """The contract's point rules over the rows that read, `points[i]` mapped to lines and cells."""
    read = [row for row in rows if row.point is not None]
    lines = [row.line for row in read]
    out = []
    for issue in point_issues([row.point for row in read if row.point is not None]):
        m = _POINT_PATH.match(issue.path)
        if m:
            reason = _POINT_PATH.sub(lambda k: f"line {lines[int(k[1])]}", issue.reason)
            reason = _RANGE.sub(_with_modicon, reason)
            out.append(header.at_field(lines[int(m[1])], m[2] or "point_name", reason))
    return out


def _with_modicon(m: re.Match[str]) -> str:
    """`holding 1..2` with the addresses as the table shows them: `holding 1..2 = 40002..40003`."""
    table, first, last = Table(m[1]), int(m[2]), int(m[3])
    return f"{m[0]} = {modicon.format(table, first)}..{modicon.format(table, last)}"


def _split(text: str) -> list[tuple[int, list[str]]]:
    """(line, cells) of every non-empty row; a malformed quote is refused naming its line."""
    first = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","
    parts = text.split("\n")  # not splitlines: a form feed or U+2028 inside a cell ends no row
    lines = [p + "\n" for p in parts[:-1]] + [parts[-1]] * bool(parts[-1])
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    out: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                out.append((reader.line_num, cells))
    except csv.Error as exc:
        _refuse(CellIssue(line=reader.line_num, reason=f"is not well-formed CSV ({clip(str(exc))})"))
    return out


def _refuse(*issues: CellIssue) -> NoReturn:
    kept = list(issues[:MAX_ISSUES])
    raise PointsTableInvalid(kept, extra=len(issues) - len(kept))


def write_points(points: Sequence[Point]) -> str:
    """The I/O table of `points`: the required columns, then each optional one some point uses."""
    rows = [cells_of(p) for p in points]
    used = [c for c in COLUMNS if c in REQUIRED or any(row.get(c, "") for row in rows)]
    out = _Lines()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(used)
    for row in rows:
        writer.writerow([row.get(c, "") for c in used])
    return "".join(out.parts)


class _Lines:
    """The file-like sink csv.writer needs, without io (this module does no I/O)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)
