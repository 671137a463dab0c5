"""`fieldpact hub export-mosquitto` against a real Mosquitto 2: the files it writes, their modes,
and what the hub, a device and an integration login can and cannot do with them."""
from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import shutil
import subprocess
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from fieldpact.cli import main
from hub.acl.mosquitto import ACL_NAME, CONF_NAME, PASSWD_NAME
from hub.acl.passwords import check_password, hash_password, mosquitto_hash
from hub.acl.policy import BrokerRole
from tests.conftest import BrokerEndpoint, FleetUser, mosquitto_binary, start_mosquitto
from tests.hub.test_broker import assert_only_marker_arrives, client, next_message
from tests.waiting import free_port

pytestmark = pytest.mark.mosquitto
USERS = {u.name: u for u in (
    FleetUser(name="site-hub", password="hub-pw", role=BrokerRole.HUB),
    FleetUser(name="d1", password="d1-pw", role=BrokerRole.DEVICE, site="s1", device="d1"),
    FleetUser(name="d2", password="d2-pw", role=BrokerRole.DEVICE, site="s1", device="d2"),
    FleetUser(name="scada", password="scada-pw", role=BrokerRole.INTEGRATION, sites=("s1",)),
)}


def hub_toml(tmp_path: Path) -> Path:
    """d1 and scada carry $7$ hashes (usable on Mosquitto); d2 only scrypt (embedded broker only)."""
    path = tmp_path / "hub.toml"
    path.write_text(f'''db = "{tmp_path / 'hub.db'}"
key = "{tmp_path / 'hub.key'}"
[mqtt]
username = "site-hub"
password = "hub-pw"
[[devices]]
id = "d1"
site = "s1"
password_hash = "{mosquitto_hash('d1-pw')}"
[[devices]]
id = "d2"
site = "s1"
password_hash = "{hash_password('d2-pw')}"
[integrations.scada]
password_hash = "{mosquitto_hash('scada-pw')}"
sites = ["s1"]
''')
    return path


def export(tmp_path: Path, out: Path, *extra: str) -> int:
    return main(["hub", "export-mosquitto", "--config", str(hub_toml(tmp_path)), "--out", str(out),
                 *extra])


@contextlib.contextmanager
def exported_mosquitto(tmp_path: Path, out: Path, run_as: str = "root",
                       group: tuple[str, ...] = ()) -> Iterator[BrokerEndpoint]:
    binary, port = mosquitto_binary(), free_port()
    assert export(tmp_path, out, "--listener", f"{port} 127.0.0.1", *group) == 0
    config = out.parent / "mosquitto.conf"
    config.write_text(f"include_dir {out}\npersistence false\nuser {run_as}\n"
                      "log_dest stderr\nlog_type error\nlog_type warning\n")
    with start_mosquitto(binary, config, port, out.parent / "mosquitto.log"):
        yield BrokerEndpoint(host="127.0.0.1", port=port, users=USERS, kind="mosquitto")


def test_export_writes_acl_passwords_and_snippet_readable_by_the_broker_group_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mq"
    assert export(tmp_path, out) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    for name in (ACL_NAME, PASSWD_NAME, CONF_NAME):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o640, name
    passwd = dict(line.split(":", 1) for line in (out / PASSWD_NAME).read_text().splitlines()
                  if not line.startswith("#"))
    assert set(passwd) == {"site-hub", "d1", "scada"}
    assert check_password("hub-pw", passwd["site-hub"]) and check_password("d1-pw", passwd["d1"])
    assert "mosquitto_passwd" in capsys.readouterr().out.split("d2")[1]  # told how to set d2's
    conf = (out / CONF_NAME).read_text().splitlines()
    assert conf.index("use_username_as_clientid true") > conf.index("listener 1883")
    acl = (out / ACL_NAME).read_text()
    assert "user scada\ntopic read fp/v1/s1/+/points/#\ntopic read fp/v1/s1/+/status\n" in acl


def test_export_names_a_bad_integration_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = hub_toml(tmp_path)
    cfg.write_text(cfg.read_text().replace('sites = ["s1"]', "sites = []"))
    assert main(["hub", "export-mosquitto", "--config", str(cfg), "--out", str(tmp_path)]) == 2
    assert "integrations.scada.sites" in capsys.readouterr().err


async def test_on_mosquitto_each_login_can_do_only_what_the_exported_acl_says(tmp_path: Path) -> None:
    with exported_mosquitto(tmp_path, tmp_path / "mq") as broker:
        async with client(broker, "site-hub") as hub, client(broker, "d1") as d1, \
                client(broker, "scada") as scada:
            await hub.subscribe("fp/v1/#", qos=1)
            await d1.subscribe([("fp/v1/s1/d1/cmd", 1), ("fp/v1/_hub/status", 1)])
            await scada.subscribe([("fp/v1/+/+/points/#", 1), ("fp/v1/_hub/status", 1)])
            # device: own upstream only; never the hub's birth or another device's journal
            await d1.publish("fp/v1/s1/d2/journal", b"forged", qos=1)
            await d1.publish("fp/v1/_hub/status", b"forged", qos=1)
            await scada.publish("fp/v1/s1/d1/points/level", b"forged", qos=1)
            await d1.publish("fp/v1/s1/d1/telemetry", b"t", qos=1)
            assert (await next_message(hub)).payload == b"t"
            # hub: writes the birth and commands; everyone reads the birth
            await hub.publish("fp/v1/_hub/status", b"hub-birth", qos=1, retain=True)
            assert (await next_message(hub)).payload == b"hub-birth"
            assert (await next_message(d1)).payload == b"hub-birth"
            assert (await next_message(scada)).payload == b"hub-birth"
            # integration: points of its sites only
            await hub.publish("fp/v1/s2/dx/points/level", b"other-site", qos=1)
            await assert_only_marker_arrives(scada, hub, "fp/v1/s1/d1/points/level")
            await assert_only_marker_arrives(d1, hub, "fp/v1/s1/d1/cmd")
        with pytest.raises(aiomqtt.MqttCodeError):  # d2 has no $7$ hash: no login until set
            async with client(broker, "d2"):
                pass


def test_mosquitto_reads_the_exported_files_after_dropping_privileges(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start mosquitto as its own user")
    try:
        pwd.getpwnam("mosquitto"), grp.getgrnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user/group on this machine")
    base = Path(tempfile.mkdtemp(prefix="fp-mq-", dir="/tmp"))  # pytest's tmp is 0700 root
    try:
        os.chmod(base, 0o755)
        with exported_mosquitto(tmp_path, base / "mq", run_as="mosquitto",
                                group=("--group", "mosquitto")) as broker:
            asyncio.run(_logs_in(broker, "d1"))
        assert grp.getgrgid((base / "mq" / PASSWD_NAME).stat().st_gid).gr_name == "mosquitto"
        # Why the group: root-owned (0600, or 0640 root:root) is unreadable after the drop.
        with pytest.raises(RuntimeError, match="Unable to open pwfile"):
            with exported_mosquitto(tmp_path, base / "root-only", run_as="mosquitto"):
                pass
    finally:
        shutil.rmtree(base)


async def _logs_in(broker: BrokerEndpoint, name: str) -> None:
    async with client(broker, name) as c:
        await c.subscribe("fp/v1/s1/d1/cmd", qos=1)


@pytest.mark.parametrize("scheme", [[], ["-H", "sha512"]])  # $7$ (default), legacy $6$
def test_hashes_written_by_mosquitto_passwd_are_checked_by_the_embedded_broker(
        tmp_path: Path, scheme: list[str]) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed")
    path = tmp_path / "passwd"
    subprocess.run([tool, *scheme, "-c", "-b", str(path), "d1", "s3cret"], check=True)
    _, hashed = path.read_text().strip().split(":", 1)
    assert check_password("s3cret", hashed) and not check_password("s3creT", hashed)
