"""The hub's configuration: read once at start from a TOML file, then FIELDPACT_HUB_* variables.

Every error names the key (`tokens[1].role`) and the bad value. Defaults are named constants with
their reason. Example:

    db = "/var/lib/fieldpact/hub.db"
    key = "/etc/fieldpact/hub.ed25519"
    broker = "embedded"              # or "mqtt://broker.example:1883"
    silence_timeout_s = 30
    [listen]
    host = "0.0.0.0"
    port = 8600
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
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from contracts.topics import check_id
from hub.acl.policy import HUB_LOGIN, check_login_name
from contracts.journal_sig import parse_public_key
from hub.auth import AuthConfig, ApiRole, Token

DEFAULT_HOST = "127.0.0.1"
"""Loopback by default: exposing the API is a deliberate choice (put TLS in front of it)."""
DEFAULT_PORT = 8600
DEFAULT_SILENCE_TIMEOUT_S = 30.0
"""Three missed 10 s status heartbeats before a device counts as silent and gets projected."""
ENV_PREFIX = "FIELDPACT_HUB_"


class ConfigError(Exception):
    """A configuration value that is missing, of the wrong type or out of range; names the key."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        self.key, self.value, self.reason = key, value, reason
        super().__init__(f"config {key}={value!r}: {reason}")


class FailureCategory(enum.StrEnum):
    RUNTIME = "runtime"    # the engine or a guard failed the contract
    ADAPTERS = "adapters"  # Modbus I/O failed (timeouts, exceptions, second writer)
    NETWORK = "network"    # the hub lost the device
    CONFIG = "config"      # the contract itself is wrong for the device (refused, bad points)
    TRIP = "trip"          # a safety latch: guard trip (stale, frozen, range, bad quality, adapter
                           # fault, second writer), autonomy or engine error put outputs in safe_state
    MODEL = "model"        # live: the process does not follow the contract's `expect` model while
                           # a write is commanded (a mistyped register, a stuck valve: model_divergence)


class PolicyAction(enum.StrEnum):
    RETRY = "retry"
    REASSIGN = "reassign"
    ESCALATE = "escalate"
    HOLD = "hold"
    ABORT = "abort"
    WAIT = "wait"  # the planner's own: a retry deferred by backoff or settle time; not configurable


@dataclass(frozen=True, kw_only=True)
class Policy:
    action: PolicyAction
    max_retries: int = 3


DEFAULT_POLICIES: Mapping[FailureCategory, Policy] = MappingProxyType({
    # A network failure usually heals on its own; a config failure never does.
    # Reality diverged from the projection without a fault: re-issue from the actual step (the
    # default planner), twice at most, then an operator decides.
    FailureCategory.RUNTIME: Policy(action=PolicyAction.RETRY, max_retries=2),
    FailureCategory.ADAPTERS: Policy(action=PolicyAction.RETRY, max_retries=3),
    FailureCategory.NETWORK: Policy(action=PolicyAction.RETRY, max_retries=5),
    FailureCategory.CONFIG: Policy(action=PolicyAction.HOLD, max_retries=0),
    # Automation never undoes a safety latch (DESIGN invariant 9): a re-issued contract would clear
    # it, so after a trip the contract stays latched until an operator resumes it.
    FailureCategory.TRIP: Policy(action=PolicyAction.HOLD, max_retries=0),
    # Connected is not correct: the agent may be writing a register that is not the one the
    # contract means. Stop advancing steps and let an operator look (`abort` puts outputs safe).
    FailureCategory.MODEL: Policy(action=PolicyAction.HOLD, max_retries=0),
})

DEFAULT_BACKOFF_S = 30.0
"""First wait between automatic re-issues of one lineage; it doubles with every re-issue, so a
contract that keeps failing cannot storm the device (the field saw ~70 re-issues in 10 s)."""
DEFAULT_BACKOFF_MAX_S = 3600.0
DEFAULT_SETTLE_S = 30.0
"""After a trip, an explicit retry policy acts only once the agent has reported healthy inputs
for this long: a sensor that flickers back for one scan must not restart a pump."""


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    """`[policies]` scalar keys: pacing of automatic re-issues (per contract lineage)."""

    backoff_ms: int = int(DEFAULT_BACKOFF_S * 1000)
    backoff_max_ms: int = int(DEFAULT_BACKOFF_MAX_S * 1000)
    settle_ms: int = int(DEFAULT_SETTLE_S * 1000)


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


@dataclass(frozen=True, kw_only=True)
class DeviceCredential:
    """A registered device (hub/registry.py): its broker login, and optionally labels and the
    pinned public key of its journal (`fieldpact agent pubkey`, form `ed25519:<base64>`)."""

    id: str
    site: str
    password_hash: str
    labels: Mapping[str, str] = field(default_factory=dict)
    journal_key: str | None = None


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
    policies: Mapping[FailureCategory, Policy] = field(default_factory=lambda: DEFAULT_POLICIES)
    retry: RetryConfig = field(default_factory=RetryConfig)
    require_signed_journals: bool = False
    """Refuse unsigned journal batches even from devices with no enrolled key. A device whose key
    is known must always sign (fixed interface 6); this also closes the keyless ones."""


T = TypeVar("T")
_REQUIRED: Any = object()


def _get(m: Mapping[str, Any], key: str, path: str, conv: Callable[[Any], T],
         default: Any = _REQUIRED) -> T:
    where = f"{path}.{key}" if path else key
    if key not in m:
        if default is _REQUIRED:
            raise ConfigError(where, None, "is required")
        return default  # type: ignore[no-any-return]
    try:
        return conv(m[key])
    except (ValueError, TypeError) as exc:
        raise ConfigError(where, m[key], str(exc)) from exc


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise TypeError("must be a non-empty string")
    return v


def _port(v: Any) -> int:
    port = int(v)
    if not 0 <= port <= 65535:  # 0 = ephemeral, used by tests
        raise ValueError("must be within 0..65535")
    return port


def _positive(v: Any) -> float:
    x = float(v)
    if not x > 0:
        raise ValueError("must be > 0")
    return x


def _sha256(v: Any) -> str:
    s = _str(v).lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise ValueError("must be 64 hex digits (a SHA-256 digest, not the token itself)")
    return s


def _broker(v: Any) -> BrokerConfig:
    s = _str(v)
    if s == BrokerMode.EMBEDDED:
        return BrokerConfig()
    if not s.startswith(("mqtt://", "mqtts://")):
        raise ValueError("must be 'embedded' or an mqtt:// or mqtts:// URL")
    return BrokerConfig(mode=BrokerMode.EXTERNAL, url=s)


def _list_of_tables(v: Any) -> list[Mapping[str, Any]]:
    if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
        raise TypeError("must be an array of tables")
    return v


def _token(m: Mapping[str, Any], path: str) -> Token:
    return Token(name=_get(m, "name", path, _str), sha256=_get(m, "sha256", path, _sha256),
                 role=_get(m, "role", path, lambda v: ApiRole.parse(_str(v))))


def _device(m: Mapping[str, Any], path: str) -> DeviceCredential:
    return DeviceCredential(id=_get(m, "id", path, _str), site=_get(m, "site", path, _str),
                            password_hash=_get(m, "password_hash", path, _str),
                            labels=_get(m, "labels", path, _labels, {}),
                            journal_key=_get(m, "journal_key", path, _journal_key, None))


def _labels(v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(x, str)
                                             for k, x in v.items()):
        raise TypeError("must be a table of string labels")
    return dict(v)


def _journal_key(v: Any) -> str:
    parse_public_key(_str(v))  # ValueError says what is wrong
    return str(v)


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):  # from the environment
        return v.lower() == "true"
    raise TypeError("must be true or false")


def _integrations(v: Any) -> tuple[IntegrationCredential, ...]:
    if not isinstance(v, Mapping):
        raise ConfigError("integrations", v, "must be a table of name -> {password_hash, sites}")
    return tuple(_integration(name, spec) for name, spec in v.items())


def _integration(name: str, spec: Any) -> IntegrationCredential:
    where = f"integrations.{name}"
    try:
        check_login_name("name", name)
    except ValueError as exc:
        raise ConfigError(where, name, str(exc)) from None
    if not isinstance(spec, Mapping):
        raise ConfigError(where, spec, "must be a table {password_hash, sites}")
    return IntegrationCredential(name=name, password_hash=_get(spec, "password_hash", where, _str),
                                 sites=_get(spec, "sites", where, _sites))


def _sites(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(s, str) for s in v):
        raise TypeError("must be a non-empty array of site ids")
    for site in v:
        check_id("site", site)
    return tuple(v)


def _unique_logins(cfg: HubConfig) -> HubConfig:
    devices = {d.id for d in cfg.devices}
    if HUB_LOGIN in devices:
        raise ConfigError("devices", HUB_LOGIN, "is the hub's own login")
    for i in cfg.integrations:
        if i.name in devices or i.name == HUB_LOGIN:
            raise ConfigError(f"integrations.{i.name}", i.name, "is already a device's or the hub's login")
    return cfg


_RETRY_KEYS = ("backoff_s", "backoff_max_s", "settle_s")


def _retry(m: Any) -> RetryConfig:
    if not isinstance(m, Mapping):
        return RetryConfig()
    d = RetryConfig()

    def ms(key: str, default_ms: int) -> int:
        return int(1000 * _get(m, key, "policies", _nonneg_float, default_ms / 1000))
    return RetryConfig(backoff_ms=ms("backoff_s", d.backoff_ms),
                       backoff_max_ms=ms("backoff_max_s", d.backoff_max_ms),
                       settle_ms=ms("settle_s", d.settle_ms))


def _nonneg_float(v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError("must be a number of seconds")
    x = float(v)
    if not x >= 0:
        raise ValueError("must be >= 0")
    return x


def _action(v: Any) -> PolicyAction:
    action = PolicyAction(v)
    if action is PolicyAction.WAIT:
        raise ValueError("'wait' is the planner's own decision, not a policy action")
    return action


def _policies(m: Any) -> Mapping[FailureCategory, Policy]:
    if not isinstance(m, Mapping):
        raise ConfigError("policies", m, "must be a table of category -> {action, max_retries}")
    out = dict(DEFAULT_POLICIES)
    for name, spec in m.items():
        if name in _RETRY_KEYS:
            continue
        where = f"policies.{name}"
        try:
            category = FailureCategory(name)
        except ValueError:
            allowed = ", ".join(c.value for c in FailureCategory)
            raise ConfigError(where, name, f"not a failure category (allowed: {allowed})") from None
        if not isinstance(spec, Mapping):
            raise ConfigError(where, spec, "must be a table {action, max_retries}")
        out[category] = Policy(action=_get(spec, "action", where, _action),
                               max_retries=_get(spec, "max_retries", where, _nonneg_int, 3))
    return MappingProxyType(out)


def _nonneg_int(v: Any) -> int:
    if isinstance(v, bool) or int(v) != v or v < 0:
        raise ValueError("must be an integer >= 0")
    return int(v)


_ENV_KEYS = {"LISTEN_HOST": ("listen", "host"), "LISTEN_PORT": ("listen", "port"),
             "DB": ("db",), "KEY": ("key",), "BROKER": ("broker",),
             "SILENCE_TIMEOUT_S": ("silence_timeout_s",),
             "REQUIRE_SIGNED_JOURNALS": ("require_signed_journals",)}


def _apply_env(doc: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Environment wins over the file, for the scalar keys listed in _ENV_KEYS."""
    for suffix, path in _ENV_KEYS.items():
        if (value := env.get(ENV_PREFIX + suffix)) is not None:
            table = doc
            for part in path[:-1]:
                table = table.setdefault(part, {})
            table[path[-1]] = value
    return doc


def parse_config(doc: Mapping[str, Any]) -> HubConfig:
    """HubConfig from a decoded TOML document. Raises ConfigError naming the key."""
    listen = _get(doc, "listen", "", _table, {})
    return _unique_logins(HubConfig(
        db_path=Path(_get(doc, "db", "", _str)), key_path=Path(_get(doc, "key", "", _str)),
        listen_host=_get(listen, "host", "listen", _str, DEFAULT_HOST),
        listen_port=_get(listen, "port", "listen", _port, DEFAULT_PORT),
        broker=_with_mqtt(_get(doc, "broker", "", _broker, BrokerConfig()),
                          _get(doc, "mqtt", "", _table, {})),
        auth=AuthConfig(tokens=tuple(_token(t, f"tokens[{i}]") for i, t in
                                     enumerate(_get(doc, "tokens", "", _list_of_tables, [])))),
        devices=tuple(_device(d, f"devices[{i}]") for i, d in
                      enumerate(_get(doc, "devices", "", _list_of_tables, []))),
        integrations=_integrations(doc.get("integrations", {})),
        silence_timeout_ms=int(1000 * _get(doc, "silence_timeout_s", "", _positive,
                                           DEFAULT_SILENCE_TIMEOUT_S)),
        policies=_policies(doc.get("policies", {})),
        retry=_retry(doc.get("policies", {})),
        require_signed_journals=_get(doc, "require_signed_journals", "", _bool, False),
    ))


def _with_mqtt(b: BrokerConfig, m: Mapping[str, Any]) -> BrokerConfig:
    """[mqtt] listen_host / listen_port (embedded broker), username / password (external)."""
    return replace(b, listen_host=_get(m, "listen_host", "mqtt", _str, b.listen_host),
                   listen_port=_get(m, "listen_port", "mqtt", _port, b.listen_port),
                   username=_get(m, "username", "mqtt", _str, None),
                   password=_get(m, "password", "mqtt", _str, None))


def _table(v: Any) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise TypeError("must be a table")
    return v


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> HubConfig:
    """Read `path` (TOML; None for environment only) and apply FIELDPACT_HUB_* overrides.

    Raises ConfigError for an unreadable file, bad TOML or a bad value."""
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError("<file>", str(path), f"cannot read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("<file>", str(path), f"not valid TOML: {exc}") from exc
    return parse_config(_apply_env(doc, os.environ if env is None else env))
