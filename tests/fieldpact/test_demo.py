"""`fieldpact demo` shows only its own story: every log record, ours and the libraries', goes to
the log file in its work directory (runtime.logs.log_to_file), which the closing lines name."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.logs import log_to_file

LIBRARY_LOGGERS = ("pymodbus.logging", "uvicorn.error", "amqtt.broker", "mqtt", "fieldpact.agent")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ",
                      re.MULTILINE)
DEMO_TIMEOUT_S = 240


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    """The root logger as it was, and the library loggers as a fresh process has them: an earlier
    test in this process may have run uvicorn with its own logging config, which stops
    `uvicorn.error` propagating to the root (the demo's uvicorn runs with log_config=None)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    names = {*LIBRARY_LOGGERS, *(n.split(".")[0] for n in LIBRARY_LOGGERS)}
    loggers = [logging.getLogger(n) for n in names]
    states = [(lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.handlers[:], lg.level, lg.propagate, lg.disabled = [], logging.NOTSET, True, False
    try:
        yield
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for lg, (handlers, level, propagate, disabled) in zip(loggers, states):
            lg.handlers[:], lg.level, lg.propagate, lg.disabled = handlers, level, propagate, disabled


def test_log_to_file_takes_every_library_record_off_the_terminal(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], restore_root_logger: None) -> None:
    path = tmp_path / "demo.log"
    handler = log_to_file(path, "INFO")
    try:
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).error("frame_dump send=0x0 from=%s", name)
    finally:
        handler.close()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [line.split()[3] for line in lines] == list(LIBRARY_LOGGERS)
    assert path.stat().st_mode & 0o777 == 0o600


def test_log_to_file_appends_to_an_existing_file(tmp_path: Path, restore_root_logger: None) -> None:
    path = tmp_path / "demo.log"
    path.write_text("earlier line\n", encoding="utf-8")
    handler = log_to_file(path, "WARNING")
    try:
        logging.getLogger("hub.test").info("below_the_level")
        logging.getLogger("hub.test").warning("kept")
    finally:
        handler.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "earlier line" and len(lines) == 2 and lines[1].endswith(" kept")


@pytest.mark.slow
def test_demo_prints_its_story_and_names_the_log_file(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "fieldpact.cli", "demo", "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, check=False,
                          env={**os.environ, "COLUMNS": "400"})  # no wrapped lines
    assert proc.stderr == ""
    assert LOG_LINE.search(proc.stdout) is None, proc.stdout
    assert "pymodbus" not in proc.stdout and ">>>>>" not in proc.stdout
    log_path = workdir / "demo.log"
    tail = proc.stdout.splitlines()[-4:]
    assert any(f"logs     {log_path}" in line for line in tail), tail
    assert re.fullmatch(r"\d+ passed, \d+ failed", tail[-1]), tail
    logged = log_path.read_text(encoding="utf-8")
    assert LOG_LINE.search(logged) and "fieldpact.hub.sync" in logged
