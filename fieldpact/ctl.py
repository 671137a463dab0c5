"""`fieldpact ctl …`: operate a fleet through the hub's HTTP API (tables, or `--json` for scripts).

The hub is `--hub URL` or FIELDPACT_HUB; the token is `--token-file FILE` or FIELDPACT_TOKEN. The
common options go before or after the command (`ctl --json devices`, `ctl devices --json`). Each
command is one or two API calls (fieldpact/ctl_client.py, which also gives the exit statuses) and
one table (fieldpact/ctl_render.py). The fleet-configuration commands (designs, snapshot, plan,
drift) speak to the routes of issue 12, `deploy …` (fieldpact/ctl_deploy.py) to issue 13's
deployments; a hub without them answers Exit.UNSUPPORTED (7), named.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from fieldpact import ctl_commands, ctl_deploy
from fieldpact.ctl_client import DEFAULT_TIMEOUT_S, MEANING, CtlError, Exit, HubClient
from fieldpact.ctl_commands import Command

HUB_ENV, TOKEN_ENV = "FIELDPACT_HUB", "FIELDPACT_TOKEN"
MAX_TOKEN_FILE_BYTES = 4096
"""A token file holds one token (a line); anything bigger is the wrong file."""
CONSOLE_WIDTH = 160

DESCRIPTION = ("Operate the fleet through the hub's HTTP API: tables, or --json for scripts. "
               f"Hub: --hub URL or ${HUB_ENV}; token: --token-file FILE or ${TOKEN_ENV}.")
EXIT_HELP = "exit status:\n" + "\n".join(f"  {e.value}  {MEANING[e]}" for e in Exit)


def _common() -> argparse.ArgumentParser:
    """--hub, --token-file, --json, --timeout: accepted on `ctl` and on every command. Defaults are
    SUPPRESS so a command's parser does not overwrite what was given before the command."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--hub", default=argparse.SUPPRESS, metavar="URL",
                   help=f"the hub's API base URL (default: ${HUB_ENV})")
    p.add_argument("--token-file", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                   help=f"file holding the API token (default: ${TOKEN_ENV})")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print the hub's JSON instead of tables")
    p.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="S",
                   help=f"seconds to wait for each answer (default: {DEFAULT_TIMEOUT_S:g})")
    return p


def register(subparsers: Any) -> None:
    """Add the `ctl` command group to the top-level subparsers."""
    common = _common()
    ctl = subparsers.add_parser(
        "ctl", parents=[common], help="operate the fleet through the hub's API",
        description=DESCRIPTION, epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ctl.add_subparsers(title="ctl commands", metavar="COMMAND", required=True)

    groups: dict[str, Any] = {}
    group_help = {**ctl_commands.GROUPS, "deploy": ctl_deploy.GROUP_HELP}

    def add(name: str, help: str, command: Command) -> argparse.ArgumentParser:
        """`name` is one word, or `group word` (`snapshot create`): the group is made once."""
        where = sub
        if " " in name:
            group, name = name.split(" ", 1)
            if group not in groups:
                gp = sub.add_parser(group, help=group_help[group])
                groups[group] = gp.add_subparsers(title=f"{group} commands", metavar="COMMAND",
                                                  required=True)
            where = groups[group]
        p: argparse.ArgumentParser = where.add_parser(
            name, parents=[common], help=help, description=help, epilog=EXIT_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=lambda args: run(command, args))
        return p

    ctl_commands.add_commands(add)
    ctl_deploy.add_commands(add)


# ---- running one command ------------------------------------------------------------------------

def run(command: Command, args: argparse.Namespace) -> int:
    """Connect, run `command`, print its output; a CtlError is printed on stderr as
    `error: …` (and `  path: reason` per issue) and becomes its exit status."""
    try:
        with _client(args) as client:
            data, shown, *found = command(client, args)
    except CtlError as exc:
        _print_error(exc)
        return int(exc.exit)
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        Console(width=CONSOLE_WIDTH, soft_wrap=False).print(shown)
    for finding in found:  # the answer is printed, and is itself a failure (drift --check)
        _print_error(finding)
        return int(finding.exit)
    return int(Exit.OK)


def _print_error(exc: CtlError) -> None:
    print(f"error: {exc.message}", file=sys.stderr)
    for where, reason in exc.issues:
        print(f"  {where}: {reason}", file=sys.stderr)


def _client(args: argparse.Namespace) -> HubClient:
    url = getattr(args, "hub", None) or os.environ.get(HUB_ENV)
    if not url:
        raise CtlError(Exit.USAGE, f"no hub: give --hub URL or set {HUB_ENV}")
    if not url.startswith(("http://", "https://")):
        raise CtlError(Exit.USAGE, f"--hub {url!r}: give an http:// or https:// URL")
    timeout = getattr(args, "timeout", None)
    kwargs = {"timeout_s": timeout} if timeout else {}
    return HubClient(url, _token(args), **kwargs)


def _token(args: argparse.Namespace) -> str:
    file: Path | None = getattr(args, "token_file", None)
    if file is None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise CtlError(Exit.AUTH, f"no token: set {TOKEN_ENV} or give --token-file FILE")
        return token
    try:
        with file.open("rb") as f:
            raw = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise CtlError(Exit.AUTH, f"--token-file {file}: {exc.strerror}") from exc
    token = raw.decode("utf-8", "replace").strip()
    if len(raw) > MAX_TOKEN_FILE_BYTES or not token or "\n" in token:
        raise CtlError(Exit.AUTH, f"--token-file {file}: expected one token on one line")
    return token
