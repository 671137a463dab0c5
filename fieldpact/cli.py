"""The `fieldpact` command: one argparse tree assembled from the packages' command modules.

Each command module has `register(subparsers)`, listed in REGISTRARS, which adds its commands and
sets `func(args) -> int` as their default; `main` parses, dispatches and returns the exit status. The
library does the work; these modules only read arguments and print. The modules are imported by
name (no importlib strings), so mypy and import-linter see what the shell depends on.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

import agent.cli
import agent.journal_cli
import hub.cli
import simulators.cli
from fieldpact import commission, contract_cli, ctl, demo, points
from runtime.files import PRIVATE_UMASK

REGISTRARS: tuple[Callable[[Any], None], ...] = (
    contract_cli.register, points.register, commission.register, agent.cli.register,
    agent.journal_cli.register, simulators.cli.register, hub.cli.register, ctl.register,
    demo.register,
)
"""Each command module's `register(subparsers)`, in help order."""

EXIT_USAGE = 2
"""argparse's own status for a command line it cannot parse (also used when no command is given)."""


def build_parser() -> argparse.ArgumentParser:
    """The full command tree."""
    parser = argparse.ArgumentParser(
        prog="fieldpact", description="Signed execution contracts for Modbus devices at the edge.")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status (0 ok, 1 refused or invalid, 2 usage)."""
    os.umask(PRIVATE_UMASK)  # whatever a command creates is ours alone (runtime/files.py)
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
