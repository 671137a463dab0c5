"""The SQLite journal on real files: gapless seq, durable acks, retention, tamper and disk-full."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from agent.errors import JournalError, JournalFull
from agent.journal import SqliteJournal
from agent.journal_sqlite import SCHEMA_VERSION
from agent.journal_cli import main as cli_main
from contracts.chain import GENESIS, ChainBreak, EntryKind, verify_chain
from contracts.errors import EncodingError


def body(i: int, pad: int = 0) -> dict[str, object]:
    return {"writes": {"pump_speed": i, "valve_open": i % 2 == 0}, "pad": "x" * pad}


def fill(j: SqliteJournal, n: int, pad: int = 0) -> None:
    for i in range(n):
        j.append(EntryKind.OUTPUT, body(i, pad), 1_000 + i)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


def test_empty_journal_has_genesis_head_and_low_water_one(path: Path) -> None:
    with SqliteJournal(path) as j:
        assert j.head() == (0, GENESIS)
        assert j.low_water() == 1
        assert j.acked_seq() == 0
        assert j.read(1, 10) == []
        assert j.verify() is None


def test_append_chains_entries_and_read_returns_them_in_order(path: Path) -> None:
    with SqliteJournal(path) as j:
        first = j.append(EntryKind.BOOT, {"boot_id": "b1"}, 500)
        cycle = j.append_many([(EntryKind.INPUT, {"values": {"level": [3.5, "good", None]}}, 600),
                               (EntryKind.OUTPUT, {"writes": {"pump_speed": 1200}}, 600)])
        assert [e.seq for e in [first, *cycle]] == [1, 2, 3]
        assert j.head() == (3, cycle[-1].hash)
        stored = j.read(1, 10)
        assert stored == [first, *cycle]
        assert verify_chain(stored, GENESIS, 0) is None
        assert j.read(2, 1) == [cycle[0]]
        assert j.read(1, 10, kinds={EntryKind.OUTPUT}) == [cycle[1]]


def test_seq_is_gapless_across_reopen(path: Path) -> None:
    with SqliteJournal(path) as j:
        fill(j, 5)
        head = j.head()
    with SqliteJournal(path) as j:
        assert j.head() == head
        nxt = j.append(EntryKind.EVENT, {"event": "resumed"}, 9_999)
        assert nxt.seq == 6 and nxt.prev_hash == head[1]
        assert j.verify() is None


def test_ack_is_monotonic_clamped_to_head_and_durable_across_reopen(path: Path) -> None:
    with SqliteJournal(path) as j:
        fill(j, 10)
        j.ack(7)
        j.ack(3)
        assert j.acked_seq() == 7
        j.ack(50)
        assert j.acked_seq() == 10
    with SqliteJournal(path) as j:
        assert j.acked_seq() == 10


def test_checkpoint_round_trips_and_is_replaced(path: Path) -> None:
    with SqliteJournal(path) as j:
        assert j.load_checkpoint("engine") is None
        j.save_checkpoint("engine", b"\x01state", 4, 1_004)
        j.save_checkpoint("engine", b"\x02state", 9, 1_009)
    with SqliteJournal(path) as j:
        assert j.load_checkpoint("engine") == (b"\x02state", 9, 1_009)


def test_unencodable_body_stores_nothing(path: Path) -> None:
    with SqliteJournal(path) as j:
        fill(j, 2)
        head = j.head()
        with pytest.raises(EncodingError):
            j.append_many([(EntryKind.EVENT, {"ok": 1}, 1), (EntryKind.EVENT, {"bad": object()}, 1)])
        assert j.head() == head and len(j.read(1, 10)) == 2


def test_disk_full_raises_journal_full_and_leaves_head_unchanged(path: Path) -> None:
    with SqliteJournal(path) as j:
        fill(j, 3)
        head = j.head()
        pages = j.db.execute("PRAGMA page_count").fetchone()[0]
        # Real SQLITE_FULL: forbid the file from growing past its current pages.
        j.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(JournalFull, match="append seq 4..5"):
            j.append_many([(EntryKind.OUTPUT, body(1, pad=100_000), 2_000)] * 2)
        assert j.head() == head
        assert [e.seq for e in j.read(1, 10)] == [1, 2, 3]
        j.db.execute(f"PRAGMA max_page_count = {pages * 100}")
        assert j.append(EntryKind.EVENT, {"event": "room again"}, 3_000).seq == 4
        assert j.verify() is None


def test_tampered_row_is_found_by_verify(path: Path) -> None:
    with SqliteJournal(path) as j:
        fill(j, 30)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE entries SET body = ? WHERE seq = 17", [b"\xa1\x61a\x01"])
    raw.commit()
    raw.close()
    with SqliteJournal(path) as j:
        assert j.verify() == ChainBreak(17, "hash mismatch")
        assert j.verify(from_seq=18) is None


def test_verify_reports_deleted_middle_row_as_gap_and_garbage_body(path: Path) -> None:
    with SqliteJournal(path) as j:
        fill(j, 2_500)  # more than one verify page
    raw = sqlite3.connect(path)
    raw.execute("DELETE FROM entries WHERE seq = 2100")
    raw.execute("UPDATE entries SET body = x'ff' WHERE seq = 40")
    raw.commit()
    raw.close()
    with SqliteJournal(path) as j:
        broken = j.verify()
        assert broken is not None and broken.seq == 40 and "does not decode" in broken.reason
        assert j.verify(from_seq=41) == ChainBreak(2101, "seq gap: expected 2100, got 2101")
        with pytest.raises(JournalError, match="seq 40"):
            j.read(40, 1)


def test_budget_drops_only_acked_entries(path: Path) -> None:
    with SqliteJournal(path, budget_bytes=96 * 1024) as j:
        fill(j, 400, pad=300)
        assert j.size_bytes() > 96 * 1024
        j.ack(100)
        dropped = j.enforce_budget()
        assert dropped == 100  # under twice the budget: unacked entries are all kept
        assert j.low_water() == 101
        assert j.head()[0] == 400 and j.verify() is None
        assert not j.read(1, 500, kinds={EntryKind.GAP})


def test_budget_under_limit_drops_nothing(path: Path) -> None:
    with SqliteJournal(path, budget_bytes=10 * 1024 * 1024) as j:
        fill(j, 50)
        j.ack(50)
        assert j.enforce_budget() == 0 and j.low_water() == 1


def test_acked_drop_frees_space_and_keeps_the_head(path: Path) -> None:
    with SqliteJournal(path, budget_bytes=40 * 1024) as j:
        fill(j, 300, pad=300)
        before = j.size_bytes()
        j.ack(300)
        j.enforce_budget()
        assert j.size_bytes() <= 40 * 1024 < before
        assert j.head()[0] == 300 and j.low_water() <= 300
    with SqliteJournal(path) as j:
        assert j.append(EntryKind.EVENT, {}, 1).seq == 301


def test_over_hard_limit_drops_unacked_and_journals_a_gap(path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    budget = 32 * 1024
    with SqliteJournal(path, budget_bytes=budget) as j:
        fill(j, 400, pad=300)
        assert j.size_bytes() > 2 * budget
        j.ack(20)
        with caplog.at_level(logging.WARNING, logger="agent.journal"):
            dropped = j.enforce_budget()
        low = j.low_water()
        gaps = j.read(1, 1_000, kinds={EntryKind.GAP})
        assert len(gaps) == 1 and gaps[0].seq == 401 == j.head()[0]
        assert gaps[0].body["dropped_from"] == 21 and gaps[0].body["dropped_to"] == low - 1
        assert dropped == low - 1
        assert j.size_bytes() <= 2 * budget
        assert j.verify() is None and j.verify(from_seq=low) is None
        assert [r.getMessage() for r in caplog.records] == ["journal_forced_drop"]


def test_newer_schema_is_refused(path: Path) -> None:
    with SqliteJournal(path) as j:
        fill(j, 1)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [SCHEMA_VERSION + 1])
    raw.commit()
    raw.close()
    with pytest.raises(JournalError, match="newer than this build reads"):
        SqliteJournal(path).open()


def test_not_a_journal_file_raises_journal_error(path: Path) -> None:
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="not a database"):
        SqliteJournal(path).open()


def test_closed_journal_raises_journal_error(path: Path) -> None:
    j = SqliteJournal(path)
    with pytest.raises(JournalError, match="not open"):
        j.low_water()


def test_wal_and_full_synchronous_are_in_effect(path: Path) -> None:
    with SqliteJournal(path) as j:
        assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert j.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL



# ------------------------------------------------------------------ CLI

def test_cli_verify_exits_zero_on_intact_chain(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SqliteJournal(path) as j:
        fill(j, 12)
    assert cli_main(["journal", "verify", "--db", str(path)]) == 0
    assert "chain intact: 12 entries, seq 1..12" in capsys.readouterr().out


def test_cli_verify_exits_one_naming_the_broken_seq(path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with SqliteJournal(path) as j:
        fill(j, 12)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE entries SET ts_ms = 1 WHERE seq = 5")
    raw.commit()
    raw.close()
    assert cli_main(["journal", "verify", "--db", str(path)]) == 1
    assert "seq 5: hash mismatch" in capsys.readouterr().out


def test_cli_show_lists_filtered_entries(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SqliteJournal(path) as j:
        fill(j, 6)
        j.append(EntryKind.TRIP, {"event": "guard_trip", "reason": "stale", "point": "level"}, 5_000)
    assert cli_main(["journal", "show", "--db", str(path), "--kind", "trip"]) == 0
    out = capsys.readouterr().out
    assert "guard_trip" in out and "stale" in out and "pump_speed" not in out


def test_cli_show_missing_file_fails_cleanly(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["journal", "show", "--db", str(tmp_path / "none.db")]) == 2
    assert "no journal" in capsys.readouterr().err
