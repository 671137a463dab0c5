"""`fieldpact hub serve|hash-token|hash-password`."""
from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from hub.auth import hash_token
from hub.broker import hash_password
from hub.config import ConfigError, load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    hub = sub.add_parser("hub", help="the sync hub (API, MQTT side, embedded broker)")
    hsub = hub.add_subparsers(dest="hub_cmd", required=True)
    serve = hsub.add_parser("serve", help="run the hub")
    serve.add_argument("--config", required=True, type=Path, help="hub TOML file")
    serve.add_argument("--broker", help="use this broker (mqtt://host:port) instead of the "
                       "embedded one")
    serve.add_argument("--log-level", default="INFO")
    serve.set_defaults(func=_serve)
    tok = hsub.add_parser("hash-token", help="print the sha256 of an API token for hub.toml")
    tok.add_argument("token", nargs="?", help="the token (prompted if omitted)")
    tok.set_defaults(func=lambda a: _print(hash_token(a.token or getpass.getpass("token: "))))
    pw = hsub.add_parser("hash-password", help="print a device's broker password hash for hub.toml")
    pw.add_argument("password", nargs="?", help="the password (prompted if omitted)")
    pw.set_defaults(func=lambda a: _print(hash_password(a.password or getpass.getpass("password: "))))


def _print(text: str) -> int:
    print(text)
    return 0


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from hub.app import HubRuntime
    runtime = HubRuntime(cfg, broker_url=args.broker)
    try:
        uvicorn.run(runtime.app(), host=cfg.listen_host, port=cfg.listen_port,
                    log_level=args.log_level.lower())
    finally:
        runtime.close()
    return 0
