"""Agent configuration: read once at start from a TOML file plus FIELDPACT_AGENT_* environment.

    device = "pump-station-7"              # required; must match the contracts' `device`
    site = "north-field"                   # required
    journal = "/var/lib/fieldpact/journal.db"
    trusted_key = "/etc/fieldpact/hub.pub" # Ed25519 public key of the hub (PEM)
    contract = "/etc/fieldpact/initial.cose"   # optional signed contract to load at start
    journal_budget_mb = 512
    ack_timeout_s = 5                      # resend from the hub's ack when it stalls this long
    model_divergence_after_s = 5           # beyond `tolerance` this long while `expect` applies: alarm
    journal_key = "/var/lib/fieldpact/journal.ed25519"  # optional; default: beside the journal
    [modbus]  host = "192.0.2.10"  port = 502  timeout_s = 0.5
    [broker]  url = "mqtt://hub.local:1883"  username = "pump-station-7"  password_file = "/etc/…"
              # no [broker] table: standalone — runs its contract and journals, no autonomy budget
Errors name the key and the bad value (ConfigError). Relative paths resolve against the file's folder.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.model_divergence import DEFAULT_AFTER_S

DEFAULT_MODBUS_TIMEOUT_S = 0.5
"""Loopback and LAN Modbus TCP answers within tens of ms; half a second is slow enough for a busy
gateway and still lets a 1 s stale guard see the failure in time."""

DEFAULT_JOURNAL_BUDGET_MB = 512
"""A week at 10 Hz with realistic change rates (bench/scan.py) fits comfortably in 512 MB."""

DEFAULT_TELEMETRY_S = 1.0
DEFAULT_BATCH_MAX = 500
"""Entries per journal batch: ~40 kB of CBOR, well under every broker's default message limit."""
DEFAULT_ACK_TIMEOUT_S = 5.0
"""Resend from the hub's ack when it has not advanced for this long (agent/resend.py)."""


class ConfigError(ValueError):
    """A configuration key missing or malformed; the message names the key and value."""


@dataclass(frozen=True, kw_only=True)
class BrokerConfig:
    url: str
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModbusConfig:
    host: str
    port: int
    timeout_s: float = DEFAULT_MODBUS_TIMEOUT_S


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    device: str
    site: str
    journal: Path
    trusted_key: Path
    modbus: ModbusConfig
    broker: BrokerConfig | None = None
    contract: Path | None = None
    journal_budget_mb: int = DEFAULT_JOURNAL_BUDGET_MB
    telemetry_s: float = DEFAULT_TELEMETRY_S
    batch_max: int = DEFAULT_BATCH_MAX
    ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S
    model_divergence_after_s: float = DEFAULT_AFTER_S
    """contracts/model_divergence.py: how long a modelled input may stay beyond its tolerance."""
    journal_key: Path | None = None
    """The agent's Ed25519 journal key (made at first start); None: beside the journal."""


def _get(m: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
         default: Any = ...) -> Any:
    if key not in m:
        if default is ...:
            raise ConfigError(f"{where}{key}: is required")
        return default
    value = m[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _path(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else (base / p)


def _env_overrides(m: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    prefix = "FIELDPACT_AGENT_"
    for name, value in env.items():
        if name.startswith(prefix):
            parts = name[len(prefix):].lower().split("__")
            target = m
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = int(value) if value.isdigit() else value
    return m


def _broker(m: Mapping[str, Any], base: Path) -> BrokerConfig | None:
    if "broker" not in m:
        return None
    b = _get(m, "broker", dict, "")
    password = _get(b, "password", str, "broker.", None)
    if "password_file" in b:
        password = _path(base, _get(b, "password_file", str, "broker.")).read_text().strip()
    url = _get(b, "url", str, "broker.")
    if not url.startswith(("mqtt://", "mqtts://")):
        raise ConfigError(f"broker.url: must start with mqtt:// or mqtts://, got {url!r}")
    return BrokerConfig(url=url, username=_get(b, "username", str, "broker.", None),
                        password=password)


def _positive(m: Mapping[str, Any], key: str, default: float) -> float:
    value = float(_get(m, key, (int, float), "", default))
    if value <= 0:
        raise ConfigError(f"{key}: must be > 0, got {value!r}")
    return value


def from_mapping(m: dict[str, Any], base: Path, env: Mapping[str, str] | None = None) -> AgentConfig:
    """Build the config; raises ConfigError naming the key."""
    m = _env_overrides(m, os.environ if env is None else env)
    mb = _get(m, "modbus", dict, "")
    contract = _get(m, "contract", str, "", None)
    return AgentConfig(
        device=_get(m, "device", str, ""), site=_get(m, "site", str, ""),
        journal=_path(base, _get(m, "journal", str, "")),
        trusted_key=_path(base, _get(m, "trusted_key", str, "")),
        modbus=ModbusConfig(host=_get(mb, "host", str, "modbus."), port=_get(mb, "port", int, "modbus."),
                            timeout_s=float(_get(mb, "timeout_s", (int, float), "modbus.",
                                                 DEFAULT_MODBUS_TIMEOUT_S))),
        broker=_broker(m, base), contract=_path(base, contract) if contract else None,
        journal_budget_mb=_get(m, "journal_budget_mb", int, "", DEFAULT_JOURNAL_BUDGET_MB),
        telemetry_s=float(_get(m, "telemetry_s", (int, float), "", DEFAULT_TELEMETRY_S)),
        batch_max=_get(m, "batch_max", int, "", DEFAULT_BATCH_MAX),
        ack_timeout_s=_positive(m, "ack_timeout_s", DEFAULT_ACK_TIMEOUT_S),
        model_divergence_after_s=_positive(m, "model_divergence_after_s", DEFAULT_AFTER_S),
        journal_key=_path(base, key) if (key := _get(m, "journal_key", str, "", None)) else None,
    )


def load(path: str | Path, env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read a TOML config file. Raises ConfigError (bad content) or OSError (unreadable)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    return from_mapping(data, p.parent, env)
