"""The hub's configuration: read once at start from a TOML file, then FIELDPACT_HUB_* variables,
by the one reader (runtime/settings.py), into frozen dataclasses.

Every error is a ConfigError naming the key (`tokens[1].role`), the file, the environment variable
and the bad value; an unknown key or FIELDPACT_HUB_* variable is refused naming the nearest valid
one. Variables: FIELDPACT_HUB_<KEY>, `__` between table and key (FIELDPACT_HUB_LISTEN__PORT, or
FIELDPACT_HUB_LISTEN_PORT); [[tokens]] and [[devices]] come from the file only. Paths are kept as
written (relative to the working directory). Defaults are named constants with their reason.
Example:

    db = "/var/lib/fieldpact/hub.db"
    key = "/etc/fieldpact/hub.ed25519"
    broker = "embedded"              # or "mqtt://broker.example:1883"
    silence_timeout_s = 30
    drift_alarm_s = 900              # a device out of its desired snapshot this long: `drift` alarm
    [listen]
    host = "0.0.0.0"
    port = 8600
    [mqtt]
    broker_process = true            # the embedded broker in a child process; false: in the hub's
    [[tokens]]
    name = "ops"
    sha256 = "<hex digest of the token; see hub.auth.hash_token>"
    role = "operator"                # viewer | operator | admin
    [[devices]]
    id = "pump-station-7"
    site = "north-field"
    password_hash = "<broker password hash>"
    journal_key = "ed25519:<base64>"  # optional: `fieldpact agent pubkey`; then batches must be signed
    labels = {area = "tanks"}         # optional
    endpoints = [{name = "plc", kind = "modbus-tcp"}]  # optional: the agent's; pins them
    [integrations.scada]             # a read-only login: points/ and status of these sites
    password_hash = "<broker password hash>"
    sites = ["north-field"]
    [policies]
    backoff_s = 30                   # wait before an automatic re-issue; doubles each time
    backoff_max_s = 3600
    settle_s = 30                    # after a trip: inputs healthy this long before a retry
    [policies.network]
    action = "retry"                 # retry | reassign | escalate | hold | abort
    max_retries = 5
    [policies.trip]                  # a latched safety trip; default hold (operator resumes)
    action = "hold"
    [policies.model]                 # model_divergence (live): default hold; abort = safe_state
    action = "hold"
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from contracts.journal_sig import parse_public_key
from contracts.topics import check_id
from hub.acl.policy import HUB_LOGIN, check_login_name
from hub.auth import ApiRole, AuthConfig, Token
from hub.device_endpoints import DeviceEndpoint, parse_endpoints
from hub.policy import (DEFAULT_MAX_RETRIES, DEFAULT_POLICIES, FailureCategory, Policy, PolicyAction,
                        RetryConfig)
from runtime import settings
from runtime.settings import ConfigError as ConfigError
from runtime.settings import Table
from transport.mqtt import parse_url

DEFAULT_HOST = "127.0.0.1"
"""Loopback by default: exposing the API is a deliberate choice (put TLS in front of it)."""
DEFAULT_PORT = 8600
DEFAULT_SILENCE_TIMEOUT_S = 30.0
"""Three missed 10 s status heartbeats before a device counts as silent and gets projected."""
DEFAULT_DRIFT_ALARM_S = 900.0
"""A device may take a few minutes to reconnect and accept a new contract; a quarter of an hour out
of its desired snapshot is worth an operator's look (hub/drift.py raises a `drift` alarm)."""
ENV_PREFIX = "FIELDPACT_HUB_"
PORT_RANGE = (0, 65535)
"""0 asks for an ephemeral port (tests use it)."""


class BrokerMode(enum.StrEnum):
    EMBEDDED = "embedded"
    EXTERNAL = "external"


DEFAULT_MQTT_PORT = 1883
"""The IANA-registered MQTT port; the embedded broker listens there unless told otherwise."""


@dataclass(frozen=True, kw_only=True)
class BrokerConfig:
    mode: BrokerMode = BrokerMode.EMBEDDED
    url: str | None = None  # mqtt://host:port when EXTERNAL
    listen_host: str = DEFAULT_HOST  # the embedded broker's listener
    listen_port: int = DEFAULT_MQTT_PORT
    username: str | None = None      # the hub's own login on an EXTERNAL broker
    password: str | None = None
    own_process: bool = True
    """EMBEDDED: run the broker in a child process (hub/broker_process.py) instead of on the
    hub's MQTT thread: pure-Python amqtt then stops competing with the API and the sync side for
    the hub's interpreter lock (bench/sync.py, fleet run)."""


@dataclass(frozen=True, kw_only=True)
class DeviceCredential:
    """A registered device (hub/registry.py): its broker login, and optionally labels and the
    pinned public key of its journal (`fieldpact agent pubkey`, form `ed25519:<base64>`)."""

    id: str
    site: str
    password_hash: str
    labels: Mapping[str, str] = field(default_factory=dict)
    journal_key: str | None = None
    endpoints: tuple[DeviceEndpoint, ...] = ()  # hub/device_endpoints.py; () = not listed


@dataclass(frozen=True, kw_only=True)
class IntegrationCredential:
    """A read-only broker login for a site integration (SCADA, historian): reads `points/` and
    `status` of `sites`, publishes nothing."""

    name: str
    sites: tuple[str, ...]
    password_hash: str


@dataclass(frozen=True, kw_only=True)
class HubConfig:
    db_path: Path
    key_path: Path
    listen_host: str = DEFAULT_HOST
    listen_port: int = DEFAULT_PORT
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    devices: tuple[DeviceCredential, ...] = ()
    integrations: tuple[IntegrationCredential, ...] = ()
    silence_timeout_ms: int = int(DEFAULT_SILENCE_TIMEOUT_S * 1000)
    drift_alarm_ms: int = int(DEFAULT_DRIFT_ALARM_S * 1000)
    policies: Mapping[FailureCategory, Policy] = field(default_factory=lambda: DEFAULT_POLICIES)
    retry: RetryConfig = field(default_factory=RetryConfig)
    require_signed_journals: bool = False
    """Refuse unsigned journal batches even from devices with no enrolled key. A device whose key
    is known must always sign (fixed interface 6); this also closes the keyless ones."""


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> HubConfig:
    """Read `path` (TOML; None for environment only) and apply FIELDPACT_HUB_* overrides (`env`,
    default os.environ). Raises ConfigError for an unreadable file, bad TOML, a bad value or an
    unknown key or variable."""
    return settings.read(path, _hub, prefix=ENV_PREFIX, env=env)


def parse_config(doc: Mapping[str, Any], env: Mapping[str, str] | None = None) -> HubConfig:
    """HubConfig from a decoded TOML document (and `env`, default: none). Raises ConfigError."""
    return settings.from_document(doc, _hub, prefix=ENV_PREFIX, env=env or {})


def _hub(t: Table) -> HubConfig:
    listen, policies, devices = t.table("listen"), t.table("policies"), _devices(t)
    return HubConfig(
        db_path=t.path("db"), key_path=t.path("key"),
        listen_host=listen.string("host", DEFAULT_HOST),
        listen_port=listen.integer("port", DEFAULT_PORT, min=PORT_RANGE[0], max=PORT_RANGE[1]),
        broker=_broker(t), auth=AuthConfig(tokens=tuple(_token(x) for x in t.tables("tokens"))),
        devices=devices, integrations=_integrations(t.table("integrations"), devices),
        silence_timeout_ms=_ms(t.seconds("silence_timeout_s", DEFAULT_SILENCE_TIMEOUT_S, above=0)),
        drift_alarm_ms=_ms(t.seconds("drift_alarm_s", DEFAULT_DRIFT_ALARM_S, above=0)),
        policies=_policies(policies), retry=_retry(policies),
        require_signed_journals=t.boolean("require_signed_journals", False))


def _ms(seconds: float) -> int:
    return int(1000 * seconds)


def _broker(t: Table) -> BrokerConfig:
    """`broker` ("embedded" or a URL) with `[mqtt]` listen_host / listen_port (embedded broker),
    username / password (the hub's login on an external one)."""
    url = t.parsed("broker", _broker_url, None)
    m = t.table("mqtt")
    return BrokerConfig(
        mode=BrokerMode.EMBEDDED if url is None else BrokerMode.EXTERNAL, url=url,
        listen_host=m.string("listen_host", DEFAULT_HOST),
        listen_port=m.integer("listen_port", DEFAULT_MQTT_PORT, min=PORT_RANGE[0],
                              max=PORT_RANGE[1]),
        username=m.string("username", None), password=m.string("password", None, secret=True),
        own_process=m.boolean("broker_process", True))


def _broker_url(text: str) -> str | None:
    if text == BrokerMode.EMBEDDED:
        return None
    try:
        parse_url(text)  # the link's own parser
    except ValueError as exc:
        raise ValueError(f"must be 'embedded' or an mqtt://host[:port] URL ({exc})") from None
    return text


def _token(t: Table) -> Token:
    return Token(name=t.string("name"), sha256=t.parsed("sha256", _sha256),
                 role=t.parsed("role", ApiRole.parse))


def _sha256(text: str) -> str:
    s = text.lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise ValueError("must be 64 hex digits (a SHA-256 digest, not the token itself)")
    return s


def _devices(t: Table) -> tuple[DeviceCredential, ...]:
    devices = tuple(_device(x) for x in t.tables("devices"))
    if any(d.id == HUB_LOGIN for d in devices):
        raise t.error("devices", HUB_LOGIN, "is the hub's own login")
    return devices


def _device(t: Table) -> DeviceCredential:
    return DeviceCredential(id=t.string("id"), site=t.string("site"),
                            password_hash=t.string("password_hash"), labels=t.labels("labels", {}),
                            journal_key=t.parsed("journal_key", _journal_key, None),
                            endpoints=t.shaped("endpoints", parse_endpoints, ()))


def _journal_key(text: str) -> str:
    parse_public_key(text)  # ValueError says what is wrong
    return text


def _integrations(t: Table, devices: tuple[DeviceCredential, ...]) -> tuple[IntegrationCredential, ...]:
    taken = {d.id for d in devices} | {HUB_LOGIN}
    out = []
    for name, spec in t.subtables():
        try:
            check_login_name("name", name)
        except ValueError as exc:
            raise t.error(name, name, str(exc)) from None
        if name in taken:
            raise t.error(name, name, "is already a device's or the hub's login")
        out.append(IntegrationCredential(name=name, password_hash=spec.string("password_hash"),
                                         sites=_sites(spec)))
    return tuple(out)


def _sites(t: Table) -> tuple[str, ...]:
    sites = t.strings("sites")
    for site in sites:
        try:
            check_id("site", site)
        except ValueError as exc:
            raise t.error("sites", list(sites), str(exc)) from None
    return sites


def _retry(t: Table) -> RetryConfig:
    """`[policies]` backoff_s, backoff_max_s, settle_s (seconds, >= 0)."""
    d = RetryConfig()
    return RetryConfig(backoff_ms=_ms(t.seconds("backoff_s", d.backoff_ms / 1000, min=0)),
                       backoff_max_ms=_ms(t.seconds("backoff_max_s", d.backoff_max_ms / 1000, min=0)),
                       settle_ms=_ms(t.seconds("settle_s", d.settle_ms / 1000, min=0)))


def _policies(t: Table) -> Mapping[FailureCategory, Policy]:
    """`[policies.<category>]` action and max_retries; the other categories keep their default."""
    out = dict(DEFAULT_POLICIES)
    for category in FailureCategory:
        if (spec := t.optional_table(category.value)) is not None:
            out[category] = Policy(
                # `wait` is the planner's own decision, not a policy action
                action=spec.choice("action", PolicyAction, exclude=(PolicyAction.WAIT,)),
                max_retries=spec.integer("max_retries", DEFAULT_MAX_RETRIES, min=0))
    return MappingProxyType(out)

