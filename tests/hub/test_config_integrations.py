"""`[integrations.<name>]` in hub.toml: a read-only broker login per site integration; errors name
the key, like the rest of the config."""
from __future__ import annotations

from typing import Any

import pytest

from hub.acl.logins import broker_users
from hub.acl.policy import Action, BrokerRole, allowed
from hub.config import ConfigError, IntegrationCredential, parse_config

BASE: dict[str, Any] = {"db": "/tmp/hub.db", "key": "/tmp/hub.key",
                        "devices": [{"id": "d1", "site": "s1", "password_hash": "h"}]}


def test_integrations_are_read_and_become_read_only_logins_for_their_sites() -> None:
    cfg = parse_config({**BASE, "integrations": {
        "scada": {"password_hash": "h1", "sites": ["s1", "s2"]}}})
    assert cfg.integrations == (IntegrationCredential(name="scada", sites=("s1", "s2"),
                                                      password_hash="h1"),)
    user = broker_users(cfg, "hub-hash")["scada"]
    assert user.role is BrokerRole.INTEGRATION and user.sites == ("s1", "s2")
    assert allowed(user, Action.RECEIVE, "fp/v1/s2/dx/points/flow")
    assert not allowed(user, Action.RECEIVE, "fp/v1/s3/dx/points/flow")
    assert not allowed(user, Action.PUBLISH, "fp/v1/s1/d1/points/flow")


@pytest.mark.parametrize(("integrations", "key"), [
    ({"scada": {"sites": ["s1"]}}, "integrations.scada.password_hash"),
    ({"scada": {"password_hash": "h"}}, "integrations.scada.sites"),
    ({"scada": {"password_hash": "h", "sites": []}}, "integrations.scada.sites"),
    ({"scada": {"password_hash": "h", "sites": ["a/b"]}}, "integrations.scada.sites"),
    ({"scada": {"password_hash": "h", "sites": "s1"}}, "integrations.scada.sites"),
    ({"sc ada": {"password_hash": "h", "sites": ["s1"]}}, "integrations.sc ada"),
    ({"scada": "h"}, "integrations.scada"),
    ({"d1": {"password_hash": "h", "sites": ["s1"]}}, "integrations.d1"),
    ({"fieldpact-hub": {"password_hash": "h", "sites": ["s1"]}}, "integrations.fieldpact-hub"),
    (["scada"], "integrations"),
])
def test_integration_errors_name_the_key(integrations: object, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "integrations": integrations})
    assert info.value.key == key
