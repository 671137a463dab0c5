"""`fieldpact agent run --config agent.toml`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent import config as agent_config
from runtime.logs import configure_logging


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    agent = sub.add_parser("agent", help="the edge agent")
    asub = agent.add_subparsers(dest="agent_cmd", required=True)
    run = asub.add_parser("run", help="run the agent (under systemd: Type=notify)")
    run.add_argument("--config", required=True, help="agent TOML file")
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=_run)
    keygen = asub.add_parser("keygen", help="make the agent's journal key if missing (mode 0600) "
                             "and print its public key")
    keygen.add_argument("--config", required=True, help="agent TOML file")
    keygen.set_defaults(func=_keygen)
    pubkey = asub.add_parser("pubkey", help="print the journal public key to pin on the hub")
    pubkey.add_argument("--config", required=True, help="agent TOML file")
    pubkey.set_defaults(func=_pubkey)


def _load(args: argparse.Namespace) -> agent_config.AgentConfig | None:
    """The config, or None after printing its error (the file, key and variable it names)."""
    try:
        return agent_config.load(args.config)
    except agent_config.ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    if (cfg := _load(args)) is None:
        return 2
    from agent.process import run_forever
    return run_forever(cfg)


def _key_path(args: argparse.Namespace) -> Path | None:
    if (cfg := _load(args)) is None:
        return None
    from agent.journal_signing import default_key_path
    return cfg.journal_key or default_key_path(cfg.journal)


def _print_public(path: Path) -> int:
    from agent.journal_signing import load_or_create_key
    from contracts.errors import SigningKeyError
    from contracts.journal_sig import public_key_text
    try:
        print(public_key_text(load_or_create_key(path).public_key()))
    except SigningKeyError as exc:
        print(f"fieldpact agent: {exc}", file=sys.stderr)
        return 1
    return 0


def _keygen(args: argparse.Namespace) -> int:
    """Make the key if there is none (never replacing one), then print its public half."""
    path = _key_path(args)
    if path is None:
        return 2
    if path.exists():
        print(f"{path}: exists, kept", file=sys.stderr)
    return _print_public(path)


def _pubkey(args: argparse.Namespace) -> int:
    """Print `ed25519:<base64>` for hub.toml's `journal_key` or `PUT /api/devices/{id}/journal-key`."""
    path = _key_path(args)
    if path is None:
        return 2
    if not path.exists():
        print(f"fieldpact agent: no journal key at {path} (run `fieldpact agent keygen`, or start "
              "the agent once)", file=sys.stderr)
        return 1
    return _print_public(path)
