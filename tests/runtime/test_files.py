"""Files we create are 0600 and directories 0700 (issue 9), checked on real files created under a
permissive umask (library use) and through the CLI's own umask; the systemd units set UMask."""
from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.journal import SqliteJournal
from contracts.chain import EntryKind
from fieldpact.cli import main
from runtime.files import private_dir
from hub.app import load_or_create_key
from hub.store import HubStore

UNITS = Path(__file__).parents[2] / "systemd"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """0022, a distribution's default: what library callers (tests, embedding apps) run under."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def side_files(db: Path) -> list[Path]:
    return [p for p in (db.with_name(db.name + s) for s in ("-wal", "-shm")) if p.exists()]


@pytest.mark.usefixtures("loose_umask")
def test_the_agent_journal_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with SqliteJournal(path).open() as journal:
        journal.append(EntryKind.EVENT, {"event": "boot"}, 1_795_500_000_000)
        files = [path, *side_files(path)]
        assert len(files) == 3  # WAL mode: the -wal and -shm exist while it is open
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


@pytest.mark.usefixtures("loose_umask")
def test_the_hub_db_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    with HubStore.open(path) as store:
        store.db.execute("CREATE TABLE probe (x)")
        files = [path, *side_files(path)]
        assert len(files) == 3
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


@pytest.mark.usefixtures("loose_umask")
def test_an_existing_world_readable_database_is_tightened_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    sqlite3.connect(path).close()
    os.chmod(path, 0o644)  # as every release before this one left it
    with HubStore.open(path):
        assert mode(path) == 0o600


@pytest.mark.usefixtures("loose_umask")
def test_the_hub_key_is_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    key = tmp_path / "etc" / "keys" / "hub.key"
    load_or_create_key(key)
    assert mode(key) == 0o600
    assert mode(key.parent) == 0o700 and mode(key.parent.parent) == 0o700


@pytest.mark.usefixtures("loose_umask")
def test_private_dir_leaves_an_existing_shared_directory_alone(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    private_dir(tmp_path / "a" / "b")
    assert (mode(tmp_path), mode(tmp_path / "a"), mode(tmp_path / "a" / "b")) == (0o755, 0o700, 0o700)


@pytest.mark.usefixtures("loose_umask")
def test_every_cli_command_runs_under_a_private_umask(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hub", "hash-token", "x"]) == 0
    current = os.umask(0o022)
    assert current == 0o077


@pytest.mark.parametrize("unit", ["fieldpact-agent.service", "fieldpact-hub.service"])
def test_systemd_units_set_a_private_umask_and_state_directory(unit: str) -> None:
    lines = (UNITS / unit).read_text().splitlines()
    assert "UMask=0077" in lines and "StateDirectoryMode=0700" in lines
