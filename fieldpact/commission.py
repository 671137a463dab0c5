"""`fieldpact commission`: check a contract's I/O map against the real device before it acts.

    fieldpact commission --config agent.toml --contract FILE [--seconds S] [--interval S] [--json]

Writes nothing to the device: reads every point of the contract (FILE: YAML or JSON) repeatedly for
`--seconds` (default 3) and reports per point the value with its unit, the range check, moving or
frozen, hints (a float with an absurd magnitude shown under every word order, an integer pinned
at 0 or 65535, an illegal address named), whether write points read back, and the read latency per
endpoint (agent/commission.py holds the rules). A table for people; `--json` for machines.

Exit status: 0 every point right (warnings allowed), 1 a point is not right, or the contract or
configuration cannot be read (printed to stderr), 2 a command line argparse cannot parse.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from agent import config as agent_config
from agent.commission_run import DEFAULT_INTERVAL_S, DEFAULT_SECONDS, MIN_INTERVAL_S, commission_config
from contracts.commission_report import MAX_SECONDS, CommissionReport, PointCheck, Verdict
from contracts.errors import ContractError, ContractInvalid
from contracts.loader import load_contract

EXIT_OK, EXIT_NOT_RIGHT = 0, 1
_STYLE = {Verdict.OK: "green", Verdict.WARN: "yellow", Verdict.FAIL: "bold red"}


def register(subparsers: Any) -> None:
    """Add `commission` to the top-level subparsers."""
    p = subparsers.add_parser("commission", help="read-only check of a contract's points against "
                              "the device (values, ranges, word order, addresses, latency)")
    p.add_argument("--config", required=True, type=Path, help="agent TOML file (the device)")
    p.add_argument("--contract", required=True, type=Path, help="the contract (YAML or JSON)")
    p.add_argument("--seconds", type=_seconds, default=DEFAULT_SECONDS,
                   help=f"how long to poll (default {DEFAULT_SECONDS:g}, at most {MAX_SECONDS:g})")
    p.add_argument("--interval", type=_interval, default=DEFAULT_INTERVAL_S,
                   help=f"seconds between rounds of reads (default {DEFAULT_INTERVAL_S:g})")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_commission)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be within 0..{MAX_SECONDS:g}, got {text}")
    return value


def _interval(text: str) -> float:
    value = float(text)
    if value < MIN_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"must be >= {MIN_INTERVAL_S:g}, got {text}")
    return value


def cmd_commission(args: argparse.Namespace) -> int:
    try:
        cfg = agent_config.load(args.config)
        contract = load_contract(args.contract)
    except ContractInvalid as exc:
        return _fail(*[f"{args.contract}: {issue}" for issue in exc.issues])
    except (agent_config.ConfigError, ContractError, OSError) as exc:
        return _fail(f"cannot start: {exc}")
    report = asyncio.run(commission_config(cfg, contract, seconds=args.seconds,
                                           interval_s=args.interval))
    if args.json:
        print(json.dumps(report.to_mapping(), indent=2))
    else:
        render(report, Console())
    return EXIT_OK if report.ok else EXIT_NOT_RIGHT


def render(report: CommissionReport, console: Console) -> None:
    """The report as two tables and a verdict line."""
    t = RichTable(title=f"commissioning {report.contract}@{report.version} on {report.device} "
                        f"({report.seconds:g} s)")
    for column in ("point", "where", "value", "range", "motion", "read-back", "verdict", "hints"):
        t.add_column(column, overflow="fold")
    for p in report.points:
        t.add_row(p.name, f"{p.where} {p.type}", _value(p), p.range.value, p.motion.value,
                  "" if p.readback is None else ("yes" if p.readback else "no"),
                  f"[{_STYLE[p.verdict]}]{p.verdict.value}[/]", "\n".join(p.hints))
    console.print(t)
    lat = RichTable(title="latency per endpoint")
    for column in ("endpoint", "reads", "failed", "median ms", "p99 ms"):
        lat.add_column(column)
    for e in report.endpoints:
        lat.add_row(e.endpoint, str(e.reads), str(e.failed), _ms(e.median_ms), _ms(e.p99_ms))
    console.print(lat)
    failing = report.failing()
    if failing:
        console.print(f"[bold red]not right:[/] {', '.join(p.name for p in failing)}")
    else:
        console.print("[green]every point is right[/]")


def _value(p: PointCheck) -> str:
    if p.value is None:
        return p.error or "-"
    text = f"{p.value:.6g}" if isinstance(p.value, float) else str(p.value).lower()
    return f"{text} {p.unit}".rstrip()


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _fail(*lines: str) -> int:
    for line in lines:
        print(line, file=sys.stderr)
    return EXIT_NOT_RIGHT
