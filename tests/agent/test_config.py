"""agent.toml and FIELDPACT_AGENT_* (agent/config.py over runtime/settings.py): every key read,
the environment wins, typos and unknown variables refused naming the nearest valid name."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import (DEFAULT_ACK_TIMEOUT_S, DEFAULT_BATCH_MAX, DEFAULT_JOURNAL_BUDGET_MB,
                          DEFAULT_MODBUS_TIMEOUT_S, DEFAULT_TELEMETRY_S, AgentConfig, BrokerConfig,
                          ConfigError, ModbusConfig, load)
from fieldpact.cli import main

MINIMAL = '''device = "d1"
site = "s1"
journal = "state/journal.db"
trusted_key = "/etc/fieldpact/hub.pub"
'''
MODBUS = '[modbus]\nhost = "127.0.0.1"\nport = 502\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def refused(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(path, env or {})
    return info.value


def test_a_minimal_file_gets_the_documented_defaults_and_paths_beside_it(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, MINIMAL + MODBUS), {})
    assert cfg == AgentConfig(
        device="d1", site="s1", journal=tmp_path / "state" / "journal.db",
        trusted_key=Path("/etc/fieldpact/hub.pub"),
        modbus=ModbusConfig(host="127.0.0.1", port=502, timeout_s=DEFAULT_MODBUS_TIMEOUT_S),
        broker=None, contract=None, journal_budget_mb=DEFAULT_JOURNAL_BUDGET_MB,
        telemetry_s=DEFAULT_TELEMETRY_S, batch_max=DEFAULT_BATCH_MAX,
        ack_timeout_s=DEFAULT_ACK_TIMEOUT_S, journal_key=None)


def test_every_key_of_the_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "broker.pw").write_text("s3cret\n")
    cfg = load(write(tmp_path, MINIMAL + '''contract = "initial.cose"
journal_budget_mb = 64
telemetry_s = 0.5
batch_max = 100
ack_timeout_s = 2
journal_key = "keys/journal.ed25519"
[modbus]
host = "192.0.2.10"
port = 1502
timeout_s = 0.25
[broker]
url = "mqtt://hub.local:8883"
username = "d1"
password_file = "broker.pw"
'''), {})
    assert (cfg.contract, cfg.journal_key) == (tmp_path / "initial.cose",
                                               tmp_path / "keys" / "journal.ed25519")
    assert (cfg.journal_budget_mb, cfg.telemetry_s, cfg.batch_max, cfg.ack_timeout_s) == \
        (64, 0.5, 100, 2.0)
    assert cfg.modbus == ModbusConfig(host="192.0.2.10", port=1502, timeout_s=0.25)
    assert cfg.broker == BrokerConfig(url="mqtt://hub.local:8883", username="d1",
                                      password="s3cret")


def test_a_password_in_the_file_is_used_unless_a_password_file_is_named(tmp_path: Path) -> None:
    broker = '[broker]\nurl = "mqtt://h:1883"\npassword = "inline"\n'
    assert load(write(tmp_path, MINIMAL + MODBUS + broker), {}).broker == \
        BrokerConfig(url="mqtt://h:1883", password="inline")


def test_telemetry_s_from_the_environment_may_be_a_fraction(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, MINIMAL + MODBUS), {"FIELDPACT_AGENT_TELEMETRY_S": "0.5"})
    assert cfg.telemetry_s == 0.5


def test_the_environment_overrides_top_level_and_nested_keys(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, MINIMAL + MODBUS), {
        "FIELDPACT_AGENT_DEVICE": "d2", "FIELDPACT_AGENT_BATCH_MAX": "50",
        "FIELDPACT_AGENT_MODBUS__HOST": "192.0.2.20", "FIELDPACT_AGENT_MODBUS_PORT": "1502",
        "FIELDPACT_AGENT_MODBUS__TIMEOUT_S": "1", "FIELDPACT_AGENT_JOURNAL": "/var/j.db"})
    assert (cfg.device, cfg.batch_max, cfg.journal) == ("d2", 50, Path("/var/j.db"))
    assert cfg.modbus == ModbusConfig(host="192.0.2.20", port=1502, timeout_s=1.0)


def test_the_environment_alone_can_configure_the_broker(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file")
    cfg = load(write(tmp_path, MINIMAL + MODBUS), {
        "FIELDPACT_AGENT_BROKER__URL": "mqtt://hub:1883",
        "FIELDPACT_AGENT_BROKER__USERNAME": "d1", "FIELDPACT_AGENT_BROKER__PASSWORD_FILE": "pw"})
    assert cfg.broker == BrokerConfig(url="mqtt://hub:1883", username="d1", password="from-file")


def test_a_misspelt_table_is_refused_naming_the_nearest_key(tmp_path: Path) -> None:
    err = refused(write(tmp_path, MINIMAL + MODBUS.replace("[modbus]", "[modbuss]")))
    assert err.key == "modbuss" and "nearest valid name: modbus" in str(err)
    both = refused(write(tmp_path, MINIMAL + MODBUS + '[modbuss]\nhost = "x"\n'))
    assert both.key == "modbuss" and "nearest valid name: modbus" in str(both)
    assert str(tmp_path / "agent.toml") in str(both)


def test_a_misspelt_key_is_refused_naming_the_nearest_key(tmp_path: Path) -> None:
    err = refused(write(tmp_path, MINIMAL + "telemetry = 1\n" + MODBUS))
    assert err.key == "telemetry" and "nearest valid name: telemetry_s" in str(err)
    nested = refused(write(tmp_path, MINIMAL + MODBUS + "timeout = 1\n"))
    assert nested.key == "modbus.timeout" and "nearest valid name: timeout_s" in str(nested)


def test_an_unknown_variable_is_refused_naming_the_nearest_one(tmp_path: Path) -> None:
    err = refused(write(tmp_path, MINIMAL + MODBUS), {"FIELDPACT_AGENT_TYPO": "1"})
    assert err.env == "FIELDPACT_AGENT_TYPO" and "unknown environment variable" in str(err)
    assert "nearest valid name: FIELDPACT_AGENT_" in str(err)
    near = refused(write(tmp_path, MINIMAL + MODBUS), {"FIELDPACT_AGENT_TELEMETRY": "1"})
    assert "nearest valid name: FIELDPACT_AGENT_TELEMETRY_S" in str(near)


def test_a_missing_password_file_names_the_key_and_the_path(tmp_path: Path) -> None:
    err = refused(write(tmp_path, MINIMAL + MODBUS + '[broker]\nurl = "mqtt://h:1883"\n'
                        'password_file = "secrets/broker.pw"\n'))
    assert err.key == "broker.password_file"
    assert str(tmp_path / "secrets" / "broker.pw") in str(err)


@pytest.mark.parametrize(("text", "env", "key", "variable"), [
    (MINIMAL, {}, "modbus", None),
    (MINIMAL.replace('device = "d1"\n', ""), {}, "device", "FIELDPACT_AGENT_DEVICE"),
    (MINIMAL + MODBUS.replace("502", '"502"'), {}, "modbus.port", "FIELDPACT_AGENT_MODBUS__PORT"),
    (MINIMAL + MODBUS, {"FIELDPACT_AGENT_MODBUS__PORT": "five"}, "modbus.port",
     "FIELDPACT_AGENT_MODBUS__PORT"),
    (MINIMAL + "ack_timeout_s = 0\n" + MODBUS, {}, "ack_timeout_s", "FIELDPACT_AGENT_ACK_TIMEOUT_S"),
    (MINIMAL + "telemetry_s = true\n" + MODBUS, {}, "telemetry_s", "FIELDPACT_AGENT_TELEMETRY_S"),
    (MINIMAL + "telemetry_s = 0\n" + MODBUS, {}, "telemetry_s", "FIELDPACT_AGENT_TELEMETRY_S"),
    (MINIMAL + "batch_max = 0\n" + MODBUS, {}, "batch_max", "FIELDPACT_AGENT_BATCH_MAX"),
    (MINIMAL + MODBUS.replace("502", "70000"), {}, "modbus.port", "FIELDPACT_AGENT_MODBUS__PORT"),
    (MINIMAL + MODBUS + '[broker]\nurl = "tcp://h"\n', {}, "broker.url",
     "FIELDPACT_AGENT_BROKER__URL"),
    (MINIMAL + MODBUS + '[broker]\nurl = "mqtts://h"\n', {}, "broker.url",  # no TLS in the link
     "FIELDPACT_AGENT_BROKER__URL"),
    (MINIMAL + MODBUS + '[broker]\nusername = "d1"\n', {}, "broker.url",
     "FIELDPACT_AGENT_BROKER__URL"),
])
def test_errors_name_the_key_the_file_and_the_variable(tmp_path: Path, text: str,
                                                        env: dict[str, str], key: str,
                                                        variable: str | None) -> None:
    err = refused(write(tmp_path, text), env)
    assert err.key == key and err.file == tmp_path / "agent.toml"
    assert str(tmp_path / "agent.toml") in str(err)
    if variable is not None:
        assert variable in str(err)


def test_an_unreadable_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    assert "cannot read" in str(refused(tmp_path / "absent.toml"))
    assert "not valid TOML" in str(refused(write(tmp_path, "device = [")))


def test_the_cli_prints_the_config_error_and_exits_2(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, MINIMAL + MODBUS.replace("[modbus]", "[modbuss]"))
    assert main(["agent", "pubkey", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "config error:" in err and "modbuss" in err and "nearest valid name: modbus" in err


def readme_example(name: str) -> str:
    """The ```toml block that follows the README's `name` paragraph."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    after = text[text.index(f"\n`{name}` ("):]
    return after[after.index("```toml\n") + 8:after.index("\n```", after.index("```toml"))]


def test_the_readme_example_is_a_valid_agent_toml(tmp_path: Path) -> None:
    (tmp_path / "broker.pw").write_text("pw")
    text = readme_example("agent.toml").replace("/etc/fieldpact/broker.pw", "broker.pw")
    cfg = load(write(tmp_path, text), {})
    assert cfg.device == "pump-station-7" and cfg.broker is not None and cfg.broker.password == "pw"
