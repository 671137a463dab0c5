"""`fieldpact agent run --config agent.toml`."""
from __future__ import annotations

import argparse
import sys

from agent import config as agent_config
from fieldpact.logs import configure_logging


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    agent = sub.add_parser("agent", help="the edge agent")
    asub = agent.add_subparsers(dest="agent_cmd", required=True)
    run = asub.add_parser("run", help="run the agent (under systemd: Type=notify)")
    run.add_argument("--config", required=True, help="agent TOML file")
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        cfg = agent_config.load(args.config)
    except (agent_config.ConfigError, OSError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    from agent.runtime import run_forever
    return run_forever(cfg)
