"""The `fieldpact` command: one argparse tree assembled from the packages' command modules.

Each module in COMMAND_MODULES has `register(subparsers)`, which adds its commands and sets
`func(args) -> int` as their default; `main` parses, dispatches and returns the exit status. The
library does the work; these modules only read arguments and print.
"""
from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Sequence

from fieldpact.files import PRIVATE_UMASK

COMMAND_MODULES: tuple[str, ...] = (
    "contracts.cli", "fieldpact.points", "agent.cli", "agent.journal_cli", "simulators.cli", "hub.cli",
    "fieldpact.demo",
)
"""Modules contributing commands, in help order; agent, hub and simulators are added here."""

EXIT_USAGE = 2
"""argparse's own status for a command line it cannot parse (also used when no command is given)."""


def build_parser() -> argparse.ArgumentParser:
    """The full command tree; raises ImportError if a command module is missing."""
    parser = argparse.ArgumentParser(
        prog="fieldpact", description="Signed execution contracts for Modbus devices at the edge.")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status (0 ok, 1 refused or invalid, 2 usage)."""
    os.umask(PRIVATE_UMASK)  # whatever a command creates is ours alone (fieldpact/files.py)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors; callers want a status
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_USAGE
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
