"""hub.toml and FIELDPACT_HUB_* (hub/config.py over runtime/settings.py): every variable that
worked keeps working, `__` reaches every table key, unknown keys and variables are refused naming
the nearest valid name, and errors name the key, the file and the variable."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fieldpact.cli import main
from hub.config import BrokerMode, ConfigError, HubConfig, load_config, parse_config
from hub.policy import DEFAULT_POLICIES, FailureCategory, Policy, PolicyAction

MINIMAL: dict[str, Any] = {"db": "hub.db", "key": "hub.key"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


def refused(doc: dict[str, Any], env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, env)
    return info.value


def test_a_minimal_document_gets_the_defaults_and_paths_as_written() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg == HubConfig(db_path=Path("hub.db"), key_path=Path("hub.key"))
    assert cfg.policies == DEFAULT_POLICIES and cfg.broker.mode is BrokerMode.EMBEDDED


def test_the_variables_that_worked_before_keep_working(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'db = "file.db"\nkey = "k"\n'), {
        "FIELDPACT_HUB_DB": "env.db", "FIELDPACT_HUB_KEY": "env.key",
        "FIELDPACT_HUB_LISTEN_HOST": "0.0.0.0", "FIELDPACT_HUB_LISTEN_PORT": "8700",
        "FIELDPACT_HUB_BROKER": "mqtt://broker:1883", "FIELDPACT_HUB_SILENCE_TIMEOUT_S": "2.5",
        "FIELDPACT_HUB_REQUIRE_SIGNED_JOURNALS": "true"})
    assert (cfg.db_path, cfg.key_path, cfg.listen_host, cfg.listen_port) == \
        (Path("env.db"), Path("env.key"), "0.0.0.0", 8700)
    assert (cfg.broker.mode, cfg.broker.url) == (BrokerMode.EXTERNAL, "mqtt://broker:1883")
    assert cfg.silence_timeout_ms == 2500 and cfg.require_signed_journals


def test_double_underscore_reaches_every_table_key(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'db = "h.db"\nkey = "k"\n[policies.network]\n'
                            'action = "retry"\n'), {
        "FIELDPACT_HUB_LISTEN__PORT": "9000", "FIELDPACT_HUB_MQTT__USERNAME": "site-hub",
        "FIELDPACT_HUB_MQTT__PASSWORD": "pw", "FIELDPACT_HUB_MQTT__LISTEN_PORT": "1884",
        "FIELDPACT_HUB_POLICIES__SETTLE_S": "0.5",
        "FIELDPACT_HUB_POLICIES__NETWORK__MAX_RETRIES": "9",
        "FIELDPACT_HUB_POLICIES__TRIP__ACTION": "escalate"})
    assert cfg.listen_port == 9000 and cfg.retry.settle_ms == 500
    assert (cfg.broker.username, cfg.broker.password, cfg.broker.listen_port) == \
        ("site-hub", "pw", 1884)
    assert cfg.policies[FailureCategory.NETWORK] == Policy(action=PolicyAction.RETRY, max_retries=9)
    assert cfg.policies[FailureCategory.TRIP].action is PolicyAction.ESCALATE


def test_parse_config_reads_no_environment_unless_given_one() -> None:
    assert parse_config(MINIMAL).listen_port == 8600
    assert parse_config(MINIMAL, {"FIELDPACT_HUB_LISTEN_PORT": "1"}).listen_port == 1


@pytest.mark.parametrize(("doc", "key", "nearest"), [
    ({**MINIMAL, "silence_timeout": 30}, "silence_timeout", "silence_timeout_s"),
    ({**MINIMAL, "listen": {"prot": 1}}, "listen.prot", "port"),
    ({**MINIMAL, "mqtt": {"pasword": "x"}}, "mqtt.pasword", "password"),
    ({**MINIMAL, "policies": {"netwrk": {"action": "hold"}}}, "policies.netwrk", "network"),
    ({**MINIMAL, "policies": {"trip": {"action": "hold", "retries": 1}}}, "policies.trip.retries",
     "max_retries"),
    ({**MINIMAL, "devices": [{"id": "d", "site": "s", "password_hash": "h", "label": {}}]},
     "devices[0].label", "labels"),
    ({"db": "h.db", "keys": "k"}, "keys", "key"),  # a typo of a required key is named
])
def test_an_unknown_key_is_refused_naming_the_nearest_valid_one(doc: dict[str, Any], key: str,
                                                                 nearest: str) -> None:
    err = refused(doc)
    assert err.key == key and f"nearest valid name: {nearest}" in str(err)
    assert "'x'" not in str(err)  # an unknown key's value (a mistyped password) is not shown


def test_an_unknown_variable_is_refused_naming_the_nearest_valid_one() -> None:
    err = refused(MINIMAL, {"FIELDPACT_HUB_LISTEN_PROT": "1"})
    assert err.env == "FIELDPACT_HUB_LISTEN_PROT"
    assert "nearest valid name: FIELDPACT_HUB_LISTEN__PORT" in str(err)


def test_errors_name_the_key_the_file_and_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, 'db = "h.db"\nkey = "k"\n[listen]\nport = 70000\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.key == "listen.port" and info.value.file == path
    assert str(path) in str(info.value) and "FIELDPACT_HUB_LISTEN__PORT" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(path, {"FIELDPACT_HUB_LISTEN_PORT": "x"})
    assert "[variable FIELDPACT_HUB_LISTEN_PORT, over file" in str(info.value)


def test_the_hub_password_is_never_quoted_in_an_error() -> None:
    err = refused({**MINIMAL, "mqtt": {"password": 1234}})
    assert err.key == "mqtt.password" and "1234" not in str(err)


def test_the_cli_prints_the_config_error_and_exits_2(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, 'db = "h.db"\nkey = "k"\nsilence_timeout = 3\n')
    assert main(["hub", "export-mosquitto", "--config", str(path), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "config error:" in err and "nearest valid name: silence_timeout_s" in err


def test_the_readme_example_is_a_valid_hub_toml(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from contracts.journal_sig import public_key_text
    from hub.auth import hash_token
    from tests.agent.test_config import readme_example
    text = readme_example("hub.toml").replace("<fieldpact hub hash-token>", hash_token("t")) \
        .replace("ed25519:<fieldpact agent pubkey>",
                 public_key_text(Ed25519PrivateKey.generate().public_key()))
    cfg = load_config(write(tmp_path, text), {})
    assert cfg.devices[0].id == "pump-station-7" and cfg.integrations[0].name == "scada"
    assert cfg.policies[FailureCategory.RUNTIME] == Policy(action=PolicyAction.RETRY, max_retries=2)


def test_the_embedded_broker_runs_in_its_own_process_unless_mqtt_broker_process_is_false() -> None:
    assert parse_config(MINIMAL).broker.own_process
    assert not parse_config({**MINIMAL, "mqtt": {"broker_process": False}}).broker.own_process
    assert not parse_config(MINIMAL, {"FIELDPACT_HUB_MQTT__BROKER_PROCESS": "false"}
                            ).broker.own_process


def test_a_devices_endpoints_are_read_and_a_bad_one_is_named() -> None:
    device = {"id": "d", "site": "s", "password_hash": "h",
              "endpoints": [{"name": "plc", "kind": "modbus-tcp"}]}
    cfg = parse_config({**MINIMAL, "devices": [device]})
    assert [(e.name, e.kind) for e in cfg.devices[0].endpoints] == [("plc", "modbus-tcp")]
    err = refused({**MINIMAL, "devices": [{**device, "endpoints": [{"name": "plc", "kind": "can"}]}]})
    assert err.key == "devices[0].endpoints" and "endpoints[0].kind" in str(err)
