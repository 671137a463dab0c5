"""The hub store on a real SQLite file: persisted transitions, idempotent retries and ingestion."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hub.audit import AuditAction, AuditEntry, Outcome
from hub.states import ContractEvent, ContractStatus, DeviceEvent, DeviceState, IllegalTransition
from hub.store import (
    SCHEMA_VERSION, ContractRecord, Duplicate, HubStore, JournalRow, NotFound,
    ReconciliationRecord, StoreError,
)

T0 = 1_795_500_000_000


def _contract(version: int = 1, status: ContractStatus = ContractStatus.SUBMITTED) -> ContractRecord:
    return ContractRecord(id=f"fill@{version}", contract="fill", version=version, device="d1",
                          site="s1", status=status, document={"contract": "fill"},
                          signed=b"\xd2sig", content_hash="ab" * 32, created_ms=T0, updated_ms=T0,
                          lineage=f"fill@{version}")


def _row(seq: int, device: str = "d1") -> JournalRow:
    return JournalRow(device=device, seq=seq, ts_ms=T0 + seq, kind="output", body=b"\xa0",
                      prev_hash=bytes([seq - 1]), hash=bytes([seq]))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "hub.db"


def test_device_transitions_are_persisted_with_history_and_survive_reopen(path: Path) -> None:
    with HubStore.open(path) as store:
        store.devices.ensure("d1", "s1", T0)
        store.devices.apply_event("d1", DeviceEvent.TELEMETRY, T0 + 1)
        store.devices.apply_event("d1", DeviceEvent.WILL, T0 + 2, "lwt")
    with HubStore.open(path) as store:
        device = store.devices.get("d1")
        assert (device.state, device.state_since_ms) == (DeviceState.PROJECTED, T0 + 2)
        history = [(t.from_state, t.to_state, t.event, t.ts_ms, t.reason)
                   for t in store.devices.transitions("d1")]
        assert history == [("unknown", "live", "telemetry", T0 + 1, None),
                           ("live", "projected", "will", T0 + 2, "lwt")]
        assert store.schema_version == SCHEMA_VERSION


def test_self_loops_change_nothing_and_write_no_history(path: Path) -> None:
    with HubStore.open(path) as store:
        store.devices.ensure("d1", "s1", T0)
        store.devices.apply_event("d1", DeviceEvent.TELEMETRY, T0 + 1)
        changed = store.devices.apply_event("d1", DeviceEvent.TELEMETRY, T0 + 2)
        assert (changed.before, changed.after, changed.written) == ("live", "live", False)
        assert len(store.devices.transitions("d1")) == 1
        assert store.devices.get("d1").state_since_ms == T0 + 1


def test_retrying_the_last_event_is_a_no_op_not_an_error(path: Path) -> None:
    with HubStore.open(path) as store:
        store.contracts.insert(_contract())
        store.contracts.apply_event("fill@1", ContractEvent.PUSH, T0 + 1)
        store.contracts.apply_event("fill@1", ContractEvent.ACCEPT, T0 + 2)
    with HubStore.open(path) as store:  # the caller crashed after the commit and retries
        changed = store.contracts.apply_event("fill@1", ContractEvent.ACCEPT, T0 + 3)
        assert (changed.after, changed.written) == (ContractStatus.ACCEPTED, False)
        assert [t.event for t in store.contracts.transitions("fill@1")] == ["submit", "push", "accept"]


def test_an_illegal_event_raises_and_writes_nothing(path: Path) -> None:
    with HubStore.open(path) as store:
        store.contracts.insert(_contract())
        with pytest.raises(IllegalTransition):
            store.contracts.apply_event("fill@1", ContractEvent.COMPLETE, T0 + 1)
        assert store.contracts.get("fill@1").status is ContractStatus.SUBMITTED
        assert len(store.contracts.transitions("fill@1")) == 1


def test_journal_insert_is_idempotent_by_device_and_seq(path: Path) -> None:
    with HubStore.open(path) as store:
        assert store.journal.insert([_row(1), _row(2), _row(2)]) == 2
        assert store.journal.insert([_row(2), _row(3), _row(1, device="d2")]) == 2
        assert [r.seq for r in store.journal.rows("d1")] == [1, 2, 3]
        assert store.journal.rows("d1", from_seq=2, limit=1) == [_row(2)]
        assert store.journal.count() == 4


def test_out_of_order_entries_wait_in_pending_until_dropped(path: Path) -> None:
    with HubStore.open(path) as store:
        store.journal.buffer_pending("d1", 5, b"e5")
        store.journal.buffer_pending("d1", 4, b"e4")
        store.journal.buffer_pending("d1", 4, b"e4")
        assert store.journal.pending("d1") == [(4, b"e4"), (5, b"e5")]
        store.journal.drop_pending("d1", 4)
        assert store.journal.pending("d1") == [(5, b"e5")]


def test_contract_records_round_trip_and_duplicates_are_refused(path: Path) -> None:
    with HubStore.open(path) as store:
        store.contracts.insert(_contract(1))
        store.contracts.insert(_contract(4))
        assert store.contracts.get("fill@4") == _contract(4)
        assert store.contracts.highest_version("fill") == 4 and store.contracts.highest_version("other") is None
        with pytest.raises(Duplicate):
            store.contracts.insert(_contract(4))
        with pytest.raises(NotFound, match="no contract 'fill@9'"):
            store.contracts.get("fill@9")
        assert [c.id for c in store.contracts.find(device="d1", status=ContractStatus.SUBMITTED)] == \
            ["fill@1", "fill@4"]


def test_device_fields_update_but_state_only_moves_by_events(path: Path) -> None:
    with HubStore.open(path) as store:
        store.devices.ensure("d1", "s1", T0, {"area": "tanks"})
        d = store.devices.update("d1", last_seq=7, projection={"values": {"level": 1.5}},
                                drift={"level": 0.2}, last_hash=b"\x01")
        assert (d.last_seq, d.projection, d.drift, d.labels) == \
            (7, {"values": {"level": 1.5}}, {"level": 0.2}, {"area": "tanks"})
        with pytest.raises(TypeError):
            store.devices.update("d1", state="live")


def test_audit_reconciliations_requests_and_alarms_round_trip(path: Path) -> None:
    with HubStore.open(path) as store:
        store.audit.add(AuditEntry(ts_ms=T0, actor="ops", action=AuditAction.HOLD,
                                   outcome=Outcome.OK, contract="fill@1", detail={"x": 1}))
        [entry] = store.audit.find(contract="fill@1")
        assert (entry.actor, entry.action, entry.detail) == ("ops", AuditAction.HOLD, {"x": 1})
        store.reconciliations.add(ReconciliationRecord(device="d1", contract="fill", version=1,
                                 ts_ms=T0, report={"d": 1}, divergent=True, action="replan"))
        assert store.reconciliations.find("d1")[0].divergent is True
        rid = store.reconciliations.add_request("fill@1", "d1", "ops", T0)
        store.reconciliations.finish_request(rid, T0 + 1)
        assert store.reconciliations.open_requests() == []
        alarm = store.alarms.raise_("d1", "second_writer", "pump_speed", T0)
        store.alarms.clear(alarm, T0 + 1)
        assert store.alarms.find() == [] and store.alarms.find(active_only=False)[0].cleared_ms == T0 + 1


def test_a_database_from_a_newer_hub_is_refused_on_open(path: Path) -> None:
    HubStore.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                     "VALUES ('fieldpact-hub', '0099_future', 'now')")
    with pytest.raises(StoreError, match="newer than this hub"):
        HubStore.open(path)


def test_a_file_that_is_not_sqlite_is_a_store_error(path: Path) -> None:
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="cannot open hub database"):
        HubStore.open(path)


def test_update_devices_sets_each_devices_fields_in_one_go_and_skips_unknown(tmp_path: Path) -> None:
    with HubStore.open(tmp_path / "hub.db") as store:
        store.devices.ensure("a", "s1", 1)
        store.devices.ensure("b", "s1", 1)
        store.devices.update_many({"a": {"last_seen_ms": 5, "projection": {"source": "live"}},
                              "b": {"acked_seq": 9}, "ghost": {"acked_seq": 1}})
        a, b = store.devices.get("a"), store.devices.get("b")
        with pytest.raises(TypeError, match="state"):
            store.devices.update_many({"a": {"state": "live"}})
    assert (a.last_seen_ms, a.projection, b.acked_seq, b.last_seen_ms) == (5, {"source": "live"}, 9, None)


def test_journal_rows_read_back_exactly_what_insert_rows_stored(tmp_path: Path) -> None:
    from contracts.chain_rows import row_of
    from tests.hub.sync_helpers import chain
    entries = chain(50)
    rows = [row_of(e) for e in entries]
    with HubStore.open(tmp_path / "hub.db") as store:
        store.journal.insert_rows("d1", rows)
        back, stored = store.journal.entries("d1", 11), store.journal.stored("d1", 11)
    assert back == entries[10:] and stored == rows[10:]


def test_a_stored_body_that_does_not_decode_is_left_to_its_reader(tmp_path: Path) -> None:
    from contracts.chain_rows import row_of
    from tests.hub.sync_helpers import chain
    rows = [row_of(e) for e in chain(5)]
    rows[2] = rows[2]._replace(body=b"\xa1\x61a\xd8\x1c\x01")  # a map holding tag 28
    with HubStore.open(tmp_path / "hub.db") as store:
        store.journal.insert_rows("d1", rows)
        assert [e.seq for e in store.journal.entries("d1")] == [1, 2, 4, 5]
        assert len(store.journal.stored("d1")) == 5


def test_insert_rows_across_statement_boundaries_counts_only_new_rows(tmp_path: Path) -> None:
    """The ingest path binds ROWS_PER_STATEMENT rows per INSERT and the rest one by one: every row
    lands once, in either part, and rows already stored are not counted again."""
    from contracts.chain_rows import row_of
    from hub.store.journal import ROWS_PER_STATEMENT
    from tests.hub.sync_helpers import chain
    n = 2 * ROWS_PER_STATEMENT + 37
    rows = [row_of(e) for e in chain(n)]
    with HubStore.open(tmp_path / "hub.db") as store:
        assert store.journal.insert_rows("d1", rows[:ROWS_PER_STATEMENT + 5]) == ROWS_PER_STATEMENT + 5
        assert store.journal.insert_rows("d1", rows) == n - ROWS_PER_STATEMENT - 5
        assert store.journal.insert_rows("d1", rows) == 0
        assert store.journal.stored("d1") == rows and store.journal.count() == n


def test_a_failed_write_inside_a_batch_undoes_only_itself(tmp_path: Path) -> None:
    """Writes inside a batch are savepoints (one name, nested): a failing one is rolled back to its
    own start, the batch's other writes, outer and inner, commit."""
    with HubStore.open(tmp_path / "hub.db") as store:
        store.begin_batch()
        store.journal.insert([_row(1)])
        with pytest.raises(RuntimeError), store.tx():
            store.journal.insert([_row(2)])
            with store.tx():
                store.journal.insert([_row(3)])
            with pytest.raises(RuntimeError), store.tx():
                store.journal.insert([_row(4)])
                raise RuntimeError("inner")
            store.journal.insert([_row(5)])
            assert [r.seq for r in store.journal.rows("d1")] == [1, 2, 3, 5]
            raise RuntimeError("outer")
        store.journal.insert([_row(6)])
        store.commit_batch()
        assert not store.in_batch
    with HubStore.open(tmp_path / "hub.db") as store:
        assert [r.seq for r in store.journal.rows("d1")] == [1, 6]
