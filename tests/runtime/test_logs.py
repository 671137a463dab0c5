"""Structured, escaped logs (runtime/logs.py): hostile strings in args, extras, messages and
tracebacks stay on one line and cannot fake a key; and the real `hub serve` logs that way."""
from __future__ import annotations

import asyncio
import io
import logging
import shlex
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from runtime.logs import configure_logging, escape_text, quote
from tests.hub.live_hub import cli_hub
from tests.waiting import eventually_blocking

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
    log_path = tmp_path / "hub.log"
    with cli_hub(tmp_path, log_level="info", log=log_path) as hub:
        asyncio.run(_hostile_connect(hub.mqtt_port,
                                     "x\n2026-12-01 00:00:00,000 ERROR fieldpact.hub forged"))
        eventually_blocking(lambda: "mqtt_auth_refused" in log_path.read_text(), 20,
                            "the refusal in the hub's log")
    lines = log_path.read_text().splitlines()
    refused = [line for line in lines if "mqtt_auth_refused" in line]
    assert refused and all('user="x\\n2026' in line for line in refused), refused
    assert not any(line.startswith("2026-12-01 00:00:00,000") for line in lines)


async def _hostile_connect(port: int, username: str) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", port, username=username, password="x", timeout=10):
            pass
