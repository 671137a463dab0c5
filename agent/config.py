"""Agent configuration: read once at start from a TOML file plus FIELDPACT_AGENT_* environment,
by the one reader (runtime/settings.py), into frozen dataclasses.

    device = "pump-station-7"              # required; must match the contracts' `device`
    site = "north-field"                   # required
    journal = "/var/lib/fieldpact/journal.db"
    trusted_key = "/etc/fieldpact/hub.pub" # Ed25519 public key of the hub (PEM)
    contract = "/etc/fieldpact/initial.cose"   # optional signed contract to load at start
    contracts = ["/etc/fieldpact/dosing.cose"] # optional: more, run side by side (disjoint writes)
    journal_budget_mb = 512
    ack_timeout_s = 5                      # resend from the hub's ack when it stalls this long
    model_divergence_after_s = 5           # beyond `tolerance` this long while `expect` applies: alarm
    journal_key = "/var/lib/fieldpact/journal.ed25519"  # optional; default: beside the journal
    [modbus]  host = "192.0.2.10"  port = 502  timeout_s = 0.5   # legacy: the one endpoint `modbus`
    [endpoints.NAME]  kind = "modbus-tcp" | "modbus-rtu" | "modbus-rtu-over-tcp", ...
              # named endpoints, each with its own timeout and retry (agent/endpoint_config.py)
    [broker]  url = "mqtt://hub.local:1883"  username = "pump-station-7"  password_file = "/etc/…"
              # no [broker] table: standalone — runs its contract and journals, no autonomy budget
Variables: FIELDPACT_AGENT_<KEY>, `__` between table and key: FIELDPACT_AGENT_TELEMETRY_S=0.5,
FIELDPACT_AGENT_MODBUS__HOST=192.0.2.10, FIELDPACT_AGENT_BROKER__PASSWORD_FILE=... (one `_` works
too). Errors (ConfigError) name the key, the file, the variable and the bad value; an unknown key
(`modbuss`) or variable (FIELDPACT_AGENT_TYPO) is refused naming the nearest valid one. Relative
paths, from the file or the environment, resolve against the file's folder.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.model_divergence import DEFAULT_AFTER_S
from agent.endpoint_config import LEGACY_NAME, Endpoint, legacy_endpoint, read_endpoints
from runtime import settings
from runtime.settings import MISSING
from runtime.settings import ConfigError as ConfigError
from runtime.settings import Table
from transport.mqtt import parse_url

ENV_PREFIX = "FIELDPACT_AGENT_"

DEFAULT_MODBUS_TIMEOUT_S = 0.5
"""Loopback and LAN Modbus TCP answers within tens of ms; half a second is slow enough for a busy
gateway and still lets a 1 s stale guard see the failure in time."""

DEFAULT_JOURNAL_BUDGET_MB = 512
"""A week at 10 Hz with realistic change rates (bench/scan.py) fits comfortably in 512 MB."""

DEFAULT_TELEMETRY_S = 1.0
"""Live values once a second: what an operator's screen calls live; the journal keeps every scan."""
DEFAULT_BATCH_MAX = 500
"""Entries per journal batch: ~40 kB of CBOR, well under every broker's default message limit."""
DEFAULT_ACK_TIMEOUT_S = 5.0
"""Resend from the hub's ack when it has not advanced for this long (agent/resend.py)."""


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
    modbus: ModbusConfig | None = None
    """The legacy `[modbus]` table: one Modbus TCP endpoint named `modbus`."""
    endpoints: tuple[Endpoint, ...] = ()
    """The `[endpoints.NAME]` tables (the legacy `modbus` one is not among them)."""
    broker: BrokerConfig | None = None
    contract: Path | None = None
    contracts: tuple[Path, ...] = ()
    """More signed contracts to load at start; they run side by side with `contract`."""
    journal_budget_mb: int = DEFAULT_JOURNAL_BUDGET_MB
    telemetry_s: float = DEFAULT_TELEMETRY_S
    batch_max: int = DEFAULT_BATCH_MAX
    ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S
    model_divergence_after_s: float = DEFAULT_AFTER_S
    """contracts/model_divergence.py: how long a modelled input may stay beyond its tolerance."""
    journal_key: Path | None = None
    """The agent's Ed25519 journal key (made at first start); None: beside the journal."""

    def contract_files(self) -> tuple[Path, ...]:
        """The local contract files, `contract` first."""
        return ((self.contract,) if self.contract else ()) + self.contracts

    def all_endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints the agent talks to: the legacy `modbus` one first, if configured, then
        the named ones. Raises ConfigError when there is none."""
        mb = self.modbus
        legacy = () if mb is None else (legacy_endpoint(mb.host, mb.port, mb.timeout_s),)
        if not legacy and not self.endpoints:
            raise ConfigError("modbus", MISSING, "is required (or [endpoints.NAME] tables)")
        return legacy + self.endpoints


def load(path: str | Path, env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read a TOML config file and the FIELDPACT_AGENT_* variables of `env` (default os.environ).

    Raises ConfigError naming the key, the file and the variable, also for an unreadable file."""
    return settings.read(Path(path), _agent, prefix=ENV_PREFIX, env=env, relative_to_file=True)


def _agent(t: Table) -> AgentConfig:
    return AgentConfig(
        device=t.string("device"), site=t.string("site"), journal=t.path("journal"),
        trusted_key=t.path("trusted_key"), **_links(t),
        broker=_broker(t.optional_table("broker")), contract=t.path("contract", None),
        contracts=_paths(t, "contracts"),
        journal_budget_mb=t.integer("journal_budget_mb", DEFAULT_JOURNAL_BUDGET_MB, min=1),
        telemetry_s=t.seconds("telemetry_s", DEFAULT_TELEMETRY_S, above=0),
        batch_max=t.integer("batch_max", DEFAULT_BATCH_MAX, min=1),
        ack_timeout_s=t.seconds("ack_timeout_s", DEFAULT_ACK_TIMEOUT_S, above=0),
        model_divergence_after_s=t.seconds("model_divergence_after_s", DEFAULT_AFTER_S, above=0),
        journal_key=t.path("journal_key", None))


def _paths(t: Table, name: str) -> tuple[Path, ...]:
    """A list of paths (`contracts = ["a.cose", "b.cose"]`), relative ones beside the file (as
    Table.path resolves one; runtime/settings_table.py has no getter for a list of paths yet)."""
    return tuple(t._as_path(v, False) for v in t.strings(name, ()))


def _links(t: Table) -> dict[str, Any]:
    """`modbus` (the legacy table) and `endpoints`: at least one of them."""
    endpoints = read_endpoints(t)
    table = t.optional_table("modbus")
    modbus = None if table is None else _modbus(table)
    if modbus is None and not endpoints:
        t.table("modbus", required=True)  # raises: the legacy table, or endpoints, is required
    if modbus is not None and any(e.name == LEGACY_NAME for e in endpoints):
        raise t.error("endpoints", LEGACY_NAME,
                      f"names the endpoint the [modbus] table is ({LEGACY_NAME})")
    return {"modbus": modbus, "endpoints": endpoints}


def _modbus(t: Table) -> ModbusConfig:
    return ModbusConfig(host=t.string("host"), port=t.integer("port", min=1, max=65535),
                        timeout_s=t.seconds("timeout_s", DEFAULT_MODBUS_TIMEOUT_S, above=0))


def _broker(t: Table | None) -> BrokerConfig | None:
    """None without a [broker] table: standalone. `password_file` wins over `password`."""
    if t is None:
        return None
    url = t.parsed("url", _broker_url)
    password = t.string("password", None, secret=True)
    return BrokerConfig(url=url, username=t.string("username", None),
                        password=t.file_text("password_file", password))


def _broker_url(text: str) -> str:
    parse_url(text)  # the link's own parser: its ValueError names the bad part
    return text
