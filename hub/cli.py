"""`fieldpact hub serve|hash-token|hash-password|export-mosquitto`."""
from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from runtime.logs import configure_logging
from hub.acl import mosquitto
from hub.acl.logins import HUB_USER, broker_users
from hub.acl.passwords import hash_password, mosquitto_hash
from hub.acl.policy import UserSpec
from hub.auth import hash_token
from hub.config import ConfigError, HubConfig, load_config


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
    pw = hsub.add_parser("hash-password", help="print a broker login's password hash for hub.toml")
    pw.add_argument("password", nargs="?", help="the password (prompted if omitted)")
    pw.add_argument("--mosquitto", action="store_true", help="a Mosquitto-compatible $7$ hash "
                    "(checked by both brokers) instead of scrypt (embedded broker only)")
    pw.set_defaults(func=_hash_password)
    _register_export(hsub)


def _register_export(hsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    exp = hsub.add_parser("export-mosquitto", help="write the ACL, password file and config "
                          "snippet for running the hub's logins on Mosquitto 2")
    exp.add_argument("--config", required=True, type=Path, help="hub TOML file")
    exp.add_argument("--out", required=True, type=Path, help="directory to write into")
    exp.add_argument("--listener", default=mosquitto.DEFAULT_LISTENER,
                     help="Mosquitto `listener` argument: 'PORT [ADDRESS]' (default 1883)")
    exp.add_argument("--group", help="give the files to this group (e.g. mosquitto); needs root")
    exp.set_defaults(func=_export)


def _print(text: str) -> int:
    print(text)
    return 0


def _hash_password(args: argparse.Namespace) -> int:
    password = args.password or getpass.getpass("password: ")
    return _print(mosquitto_hash(password) if args.mosquitto else hash_password(password))


def _export(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
        files = mosquitto.render(export_users(cfg), args.out, args.listener)
        written = mosquitto.write(files, args.out, group=args.group)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError) as exc:
        print(f"export-mosquitto: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path} (mode {path.stat().st_mode & 0o777:04o})")
    for name in files.unset:
        print(f"no Mosquitto hash for {name}: mosquitto_passwd {args.out / mosquitto.PASSWD_NAME} {name}")
    if args.group is None:
        print(f"then: chgrp -R mosquitto {args.out}  (Mosquitto reads these after dropping root)")
    return 0


def export_users(cfg: HubConfig) -> dict[str, UserSpec]:
    """The hub's logins for an external Mosquitto: the hub's own ([mqtt] username/password, whose
    clear password is hashed here), every device and every integration."""
    hub_hash = mosquitto_hash(cfg.broker.password) if cfg.broker.password else ""
    return broker_users(cfg, hub_hash, hub_user=cfg.broker.username or HUB_USER)


def _serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from hub.app import HubRuntime
    runtime = HubRuntime(cfg, broker_url=args.broker)
    try:
        # log_config=None: uvicorn's records go through our escaping formatter like every other.
        uvicorn.run(runtime.app(), host=cfg.listen_host, port=cfg.listen_port,
                    log_level=args.log_level.lower(), log_config=None)
    finally:
        runtime.close()
    return 0
