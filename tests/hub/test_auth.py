"""Bearer tokens and roles: the pure rules, and the token part of the hub config."""
from __future__ import annotations

from pathlib import Path

import pytest

from hub.auth import ApiRole, Token, authenticate, bearer_token, hash_token, required_role
from hub.config import BrokerMode, ConfigError, load_config, parse_config
from hub.policy import DEFAULT_POLICIES, FailureCategory, PolicyAction

TOKENS = (Token(name="eve", sha256=hash_token("v"), role=ApiRole.VIEWER),
          Token(name="olga", sha256=hash_token("o"), role=ApiRole.OPERATOR),
          Token(name="ada", sha256=hash_token("a"), role=ApiRole.ADMIN))


def test_authenticate_finds_the_holder_of_a_token_and_nobody_for_others() -> None:
    assert authenticate(TOKENS, "o") is not None
    assert authenticate(TOKENS, "o").name == "olga"  # type: ignore[union-attr]
    assert authenticate(TOKENS, "a").role is ApiRole.ADMIN  # type: ignore[union-attr]
    assert authenticate(TOKENS, "x") is None
    assert authenticate(TOKENS, hash_token("o")) is None  # the digest is not the token


def test_digests_in_upper_case_still_match() -> None:
    upper = (Token(name="u", sha256=hash_token("t").upper(), role=ApiRole.VIEWER),)
    assert authenticate(upper, "t") is not None


@pytest.mark.parametrize(("method", "path", "role"), [
    ("GET", "/health", None),
    ("GET", "/api/devices", ApiRole.VIEWER),
    ("GET", "/api/contracts/x@1", ApiRole.VIEWER),
    ("GET", "/metrics", ApiRole.VIEWER),
    ("POST", "/api/contracts", ApiRole.OPERATOR),
    ("POST", "/api/contracts/x@1/hold", ApiRole.OPERATOR),
    ("POST", "/api/contracts/x@1/abort", ApiRole.OPERATOR),
    ("POST", "/api/contracts/x@1/reconcile", ApiRole.OPERATOR),
    ("POST", "/api/contracts/x@1/resign", ApiRole.ADMIN),   # unknown write: fails closed
    ("DELETE", "/api/contracts/x@1", ApiRole.ADMIN),
    ("GET", "/api/admin/keys", ApiRole.ADMIN),
    ("POST", "/api/devices/d1", ApiRole.ADMIN),
])
def test_required_role_by_method_and_path(method: str, path: str, role: ApiRole | None) -> None:
    assert required_role(method, path) is role


def test_roles_are_ordered_viewer_operator_admin() -> None:
    assert ApiRole.VIEWER < ApiRole.OPERATOR < ApiRole.ADMIN
    assert ApiRole.parse("operator") is ApiRole.OPERATOR
    with pytest.raises(ValueError, match="allowed: viewer, operator, admin"):
        ApiRole.parse("root")


@pytest.mark.parametrize(("headers", "token"), [
    ([(b"authorization", b"Bearer abc")], "abc"),
    ([(b"Authorization", b"bearer  abc ")], "abc"),
    ([(b"authorization", b"Basic abc")], None),
    ([(b"authorization", b"Bearer ")], None),
    ([], None),
])
def test_bearer_token_parsing(headers: list[tuple[bytes, bytes]], token: str | None) -> None:
    assert bearer_token(headers) == token


_MINIMAL = {"db": "hub.db", "key": "hub.key"}


def test_config_reads_tokens_devices_policies_and_broker() -> None:
    cfg = parse_config({
        **_MINIMAL, "broker": "mqtt://broker:1883", "silence_timeout_s": 12.5,
        "listen": {"host": "0.0.0.0", "port": 9000},
        "tokens": [{"name": "ops", "sha256": hash_token("t"), "role": "operator"}],
        "devices": [{"id": "d1", "site": "s1", "password_hash": "$x$"}],
        "policies": {"network": {"action": "hold", "max_retries": 0}},
    })
    assert cfg.auth.tokens[0].role is ApiRole.OPERATOR
    assert (cfg.broker.mode, cfg.broker.url) == (BrokerMode.EXTERNAL, "mqtt://broker:1883")
    assert (cfg.listen_host, cfg.listen_port, cfg.silence_timeout_ms) == ("0.0.0.0", 9000, 12500)
    assert cfg.policies[FailureCategory.NETWORK].action is PolicyAction.HOLD
    assert cfg.policies[FailureCategory.CONFIG] == DEFAULT_POLICIES[FailureCategory.CONFIG]


@pytest.mark.parametrize(("doc", "key"), [
    ({"key": "k"}, "db"),
    ({**_MINIMAL, "tokens": [{"name": "a", "sha256": "plaintext", "role": "viewer"}]},
     "tokens[0].sha256"),
    ({**_MINIMAL, "tokens": [{"name": "a", "sha256": "0" * 64, "role": "root"}]}, "tokens[0].role"),
    ({**_MINIMAL, "listen": {"port": 70000}}, "listen.port"),
    ({**_MINIMAL, "broker": "tcp://x"}, "broker"),
    ({**_MINIMAL, "policies": {"weather": {"action": "retry"}}}, "policies.weather"),
    ({**_MINIMAL, "policies": {"network": {"action": "pray"}}}, "policies.network.action"),
])
def test_config_errors_name_the_key(doc: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.key == key


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('db = "file.db"\nkey = "k"\n[listen]\nport = 8600\n')
    env = {"FIELDPACT_HUB_DB": "env.db", "FIELDPACT_HUB_LISTEN_PORT": "8700"}
    cfg = load_config(path, env)
    assert (cfg.db_path, cfg.listen_port) == (Path("env.db"), 8700)
    path.write_text("db = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, {})
