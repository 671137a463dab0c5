"""`fieldpact points …`: I/O mapping tables (CSV, as kept in spreadsheets) in and out of contracts.

    fieldpact points import MAP.csv [--out FILE]    the table as a contract's `points:` (YAML)
    fieldpact points export FILE [--out MAP.csv]    a contract's points (or a `points:` document) as CSV

Exit status: 0 done, 1 when the table or contract is invalid (every problem printed to stderr, one
per line: `MAP.csv:7:3: address: reason`, so editors and CI can jump to it), 2 for a command line
argparse cannot parse. The formats and their rules are in contracts/points_csv.py and the README.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from contracts import points_fragment
from contracts.errors import ContractError, ContractInvalid
from contracts.loader import check_mapping, load_document
from contracts.points_csv import MAX_CSV_BYTES, PointsTableInvalid, read_points, write_points
from contracts.schema import Point

EXIT_OK, EXIT_FAILED = 0, 1


def register(subparsers: Any) -> None:
    """Add the `points` command group to the top-level subparsers."""
    points = subparsers.add_parser("points", help="import or export I/O mapping tables (CSV)")
    sub = points.add_subparsers(title="points commands", metavar="COMMAND", required=True)
    p = sub.add_parser("import", help="turn an I/O table (CSV) into a contract's points: (YAML)")
    p.add_argument("file", type=Path, metavar="MAP.csv")
    p.add_argument("--out", type=Path, help="write the YAML here (default: standard output)")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("export", help="write a contract's points as an I/O table (CSV)")
    p.add_argument("file", type=Path, metavar="FILE",
                   help="a contract, or a points: document (.yaml, .yml or .json)")
    p.add_argument("--out", type=Path, help="write the CSV here (default: standard output)")
    p.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    try:
        points = read_points(_read_bounded(args.file))
    except OSError as exc:
        return _fail(f"{args.file}: cannot read: {exc.strerror or exc}")
    except PointsTableInvalid as exc:
        more = [f"{args.file}: {exc.extra} more issues not listed"] if exc.extra else []
        return _fail(*[_located(args.file, i.line, i.column, i.name, i.reason) for i in exc.issues],
                     *more)
    return _write(args.out, points_fragment.render(points))


def cmd_export(args: argparse.Namespace) -> int:
    try:
        points = _points_of(load_document(args.file))
    except ContractInvalid as exc:
        return _fail(*[f"{args.file}: {issue}" for issue in exc.issues])
    except ContractError as exc:
        return _fail(str(exc))
    return _write(args.out, write_points(points))


def _points_of(document: Any) -> tuple[Point, ...]:
    """A full contract is checked as one; a document of only `points:` by the point rules."""
    if isinstance(document, dict) and set(document) == {"points"}:
        return points_fragment.parse(document)
    return check_mapping(document).points


def _read_bounded(path: Path) -> bytes:
    """At most one byte past MAX_CSV_BYTES, so an oversized file is refused without reading it all."""
    with path.open("rb") as f:
        return f.read(MAX_CSV_BYTES + 1)


def _located(file: Path, line: int, column: int | None, name: str | None, reason: str) -> str:
    if column is None:
        return f"{file}:{line}: {reason}"
    return f"{file}:{line}:{column}: {name}: {reason}"


def _write(out: Path | None, text: str) -> int:
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
    return EXIT_OK


def _fail(*lines: str) -> int:
    for line in lines:
        print(line, file=sys.stderr)
    return EXIT_FAILED
