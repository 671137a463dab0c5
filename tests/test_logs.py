"""Structured, escaped logs (runtime/logs.py): hostile strings in args, extras, messages and
tracebacks stay on one line and cannot fake a key; and the real `hub serve` logs that way."""
from __future__ import annotations

import asyncio
import io
import logging
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from runtime.logs import configure_logging, escape_text, quote
from hub.auth import hash_token
from tests.agent.test_cli_commands import _wait_http
from tests.conftest import free_port

HOSTILE = [
    "d1\n2026-12-01 00:00:00,000 ERROR hub.sync forged_event device=d2",
    "d1\r\nreason=forged",
    'd1" reason="forged',
    "d1 reason=forged",
    "d1\x1b[2J\x1b[31mred",
    "d1\u2028next\u2029para\x85nel",
    "d1\x00nul\x0bvt\x0cff",
    "back\\slash\\n",
    "",
]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("DEBUG", stream)
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def one_event(stream: io.StringIO) -> list[str]:
    """The captured output must be exactly one line (for every line-breaking character Python
    knows, U+2028 included); returns its shell-style tokens (quotes and escapes honoured)."""
    text = stream.getvalue()
    assert text.endswith("\n") and len(text.splitlines()) == 1, text
    return shlex.split(text)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_arg_stays_one_quoted_value(captured: io.StringIO, value: str) -> None:
    logging.getLogger("hub.test").warning("mqtt_auth_refused user=%s reason=%r n=%d", value, value, 7)
    tokens = one_event(captured)
    assert "reason=forged" not in tokens and "device=d2" not in tokens
    assert tokens[-1] == "n=7"
    assert sum(t.startswith("user=") for t in tokens) == 1


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_extras_messages_and_tracebacks_stay_on_one_line(captured: io.StringIO,
                                                                  value: str) -> None:
    log = logging.getLogger("amqtt.broker")
    try:
        raise ValueError(value)
    except ValueError:
        log.exception("Client " + value + " said", extra={"path": value})  # f-string style
    tokens = one_event(captured)  # a library's own f-string can hold spaces, never a line break
    assert sum(t.startswith("path=") for t in tokens) == 1
    assert any(t.startswith("exc=Traceback") for t in tokens)


def test_safe_values_stay_bare_and_unsafe_ones_are_quoted_with_escapes() -> None:
    assert quote("pump-station-7") == "pump-station-7"
    assert quote("a b") == '"a b"'
    assert quote("k=v") == '"k=v"'
    assert quote('say "hi"\n') == '"say \\"hi\\"\\n"'
    assert quote("\x1b\u2028") == '"\\x1b\\u2028"'
    assert quote("") == '""'
    assert escape_text("line\nnext") == "line\\nnext"


@pytest.mark.slow
def test_hub_serve_logs_a_hostile_mqtt_username_on_one_line(tmp_path: Path) -> None:
    port, mqtt = free_port(), free_port()
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'''db = "{tmp_path / 'hub.db'}"
key = "{tmp_path / 'keys' / 'hub.key'}"
[listen]
host = "127.0.0.1"
port = {port}
[mqtt]
listen_port = {mqtt}
[[tokens]]
name = "ops"
sha256 = "{hash_token('ops-token')}"
role = "viewer"
''')
    log_path = tmp_path / "hub.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "fieldpact.cli", "hub", "serve", "--config",
                                 str(cfg), "--log-level", "info"], stdout=subprocess.DEVNULL,
                                stderr=log_file, env={**os.environ})
    try:
        asyncio.run(_wait_http(f"http://127.0.0.1:{port}/health"))
        asyncio.run(_hostile_connect(mqtt, "x\n2026-12-01 00:00:00,000 ERROR fieldpact.hub forged"))
        asyncio.run(_wait_for_text(log_path, "mqtt_auth_refused"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    lines = log_path.read_text().splitlines()
    refused = [line for line in lines if "mqtt_auth_refused" in line]
    assert refused and all('user="x\\n2026' in line for line in refused), refused
    assert not any(line.startswith("2026-12-01 00:00:00,000") for line in lines)


async def _hostile_connect(port: int, username: str) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", port, username=username, password="x", timeout=10):
            pass


async def _wait_for_text(path: Path, text: str) -> None:
    async with asyncio.timeout(20):
        while text not in path.read_text():
            await asyncio.sleep(0.1)  # polling a condition under a deadline
