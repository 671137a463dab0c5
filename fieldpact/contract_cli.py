"""`fieldpact contract …` and `fieldpact keys …`: validate, sign, verify and project contracts.

Exit status: 0 when the command did what was asked, 1 when a contract is invalid or refused or a
key cannot be used (the reason is printed), 2 for a command line argparse cannot parse.
Every issue is printed, one per line, as `FILE: path: reason`, so editors and CI can jump to it.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from contracts.codec import content_hash
from contracts.errors import ContractError, ContractInvalid, ContractRefused, DocumentError
from contracts.loader import load_contract
from contracts.schema import Contract
from contracts.schema_serialize import format_time
from contracts.signing import (
    generate_keypair, load_private_key, load_public_key, sign_contract, verify_contract,
)

EXIT_OK, EXIT_FAILED = 0, 1
DEFAULT_PROJECTION_ROWS = 24
"""Rows shown when --every-s is not given: one per hour of a day-long contract."""

MS_PER_S, MS_PER_H = 1000, 3_600_000


def register(subparsers: Any) -> None:
    """Add the `contract` and `keys` command groups to the top-level subparsers."""
    contract = subparsers.add_parser("contract", help="validate, sign, verify or project a contract")
    sub = contract.add_subparsers(title="contract commands", metavar="COMMAND", required=True)
    p = sub.add_parser("validate", help="check contract files; print every issue")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("sign", help="validate, then sign a contract as COSE_Sign1")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM)")
    p.add_argument("--out", type=Path, required=True, help="where to write the signed contract")
    p.set_defaults(func=cmd_sign)
    p = sub.add_parser("verify", help="check a signed contract as an agent would")
    p.add_argument("file", type=Path, metavar="SIGNED")
    p.add_argument("--pubkey", type=Path, required=True, help="trusted Ed25519 public key (PEM)")
    p.add_argument("--device", help="refuse unless the contract is for this device")
    p.add_argument("--at", type=parse_time, metavar="TIME", help="RFC 3339 time (default: now)")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("project", help="show what the contract will do, hour by hour")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--hours", type=float, required=True, help="how far ahead to project")
    p.add_argument("--every-s", type=float, help="seconds between rows (default: 24 rows)")
    p.set_defaults(func=cmd_project)
    _register_keys(subparsers)


def _register_keys(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="manage contract signing keys")
    sub = keys.add_subparsers(title="keys commands", metavar="COMMAND", required=True)
    p = sub.add_parser("generate", help="write a new Ed25519 pair: hub.key (0600) and hub.pub")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.set_defaults(func=cmd_keys_generate)


def parse_time(text: str) -> int:
    """RFC 3339 text to epoch ms. Raises argparse.ArgumentTypeError (argparse prints it)."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time") from None
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z or an offset")
    return int(dt.timestamp() * MS_PER_S)


def _print(*lines: str) -> None:
    for line in lines:
        print(line)


def _problems(file: Path, exc: ContractError) -> list[str]:
    """What is wrong with `file`, one `FILE: path: reason` line per issue."""
    if isinstance(exc, ContractInvalid):
        return [f"{file}: {issue}" for issue in exc.issues]
    if isinstance(exc, DocumentError):
        return [str(exc)]
    return [f"{file}: <document>: {exc}"]


def _load(file: Path) -> Contract | None:
    try:
        return load_contract(file)
    except ContractError as exc:
        _print(*_problems(file, exc))
        return None


def _validate_one(file: Path) -> Contract | None:
    contract = _load(file)
    if contract is not None:
        _print(f"{file}: ok ({contract.contract} version {contract.version})")
    return contract


def cmd_validate(args: argparse.Namespace) -> int:
    results = [_validate_one(file) for file in args.files]
    return EXIT_OK if all(r is not None for r in results) else EXIT_FAILED


def cmd_sign(args: argparse.Namespace) -> int:
    contract = _load(args.file)
    if contract is None:
        return EXIT_FAILED
    try:
        signed = sign_contract(contract, load_private_key(args.key))
        args.out.write_bytes(signed)
    except (ContractError, OSError) as exc:
        _print(f"error: {exc}")
        return EXIT_FAILED
    _print(f"signed {contract.contract} version {contract.version} -> {args.out} "
           f"({len(signed)} bytes, hash {content_hash(contract)})")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    now_ms = args.at if args.at is not None else int(time.time() * MS_PER_S)
    try:
        data = args.file.read_bytes()
        contract = verify_contract(data, load_public_key(args.pubkey), now_ms=now_ms,
                                   device=args.device)
    except ContractRefused as exc:
        _print(f"refused: {exc.refusal.value}: {exc.detail}")
        return EXIT_FAILED
    except (ContractError, OSError) as exc:
        _print(f"error: {exc}")
        return EXIT_FAILED
    _print(f"contract: {contract.contract}", f"version: {contract.version}",
           f"device: {contract.device}", f"hash: {content_hash(contract)}",
           f"valid: {format_time(contract.valid_from)} .. {format_time(contract.valid_until)}")
    return EXIT_OK


def cmd_keys_generate(args: argparse.Namespace) -> int:
    try:
        key_path, pub_path = generate_keypair(args.out)
    except ContractError as exc:
        _print(f"error: {exc}")
        return EXIT_FAILED
    _print(f"private key: {key_path} (keep it on the hub; mode 0600)",
           f"public key: {pub_path} (install on every agent)")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Projection table


def cmd_project(args: argparse.Namespace) -> int:
    # Imported here so that validate/sign/verify work in a build without the projection module.
    from contracts.projection import project

    contract = _load(args.file)
    if contract is None:
        return EXIT_FAILED
    start = contract.valid_from
    end = start + int(args.hours * MS_PER_H)
    every_ms = (int(args.every_s * MS_PER_S) if args.every_s
                else max(1, (end - start) // DEFAULT_PROJECTION_ROWS))
    projection = project(contract, from_state=None, start_ms=start, end_ms=end)
    console = Console(width=120)
    console.print(_table(f"{contract.contract} v{contract.version} projected",
                         sample(projection.points, start, every_ms)))
    console.print(_table("transitions", transitions(projection.points)))
    console.print(f"confidence: {projection.confidence:.2f}")
    return EXIT_OK


def sample(points: Sequence[Any], start_ms: int, every_ms: int) -> list[Any]:
    """The first point at or after each `start_ms + k * every_ms`; points are in time order."""
    rows, due = [], start_ms
    for point in points:
        if point.ts_ms >= due:
            rows.append(point)
            due += every_ms * (1 + (point.ts_ms - due) // every_ms)
    return rows


def transitions(points: Sequence[Any]) -> list[Any]:
    """Points whose step or mode differs from the point before (the first point counts)."""
    return [p for i, p in enumerate(points)
            if i == 0 or (p.step, p.mode) != (points[i - 1].step, points[i - 1].mode)]


def _table(title: str, points: Sequence[Any]) -> Table:
    names = _column_names(points)
    table = Table(title=title)
    for column in ("time", "step", "mode", *names):
        table.add_column(column)
    for p in points:
        values = dict(p.outputs) | dict(p.modelled)
        table.add_row(format_time(p.ts_ms), p.step or "-", str(p.mode),
                      *(_cell(values.get(n)) for n in names))
    return table


def _column_names(points: Sequence[Any]) -> list[str]:
    names: dict[str, None] = {}  # insertion-ordered set: columns in the order they first appear
    for p in points:
        names.update((name, None) for name, _ in (*p.outputs, *p.modelled))
    return list(names)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).lower() if isinstance(value, bool) else str(value)
