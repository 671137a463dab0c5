"""A reconciliation report keeps the outage's value trajectories: the projection's samples and
the journal's, bounded however long the outage, identical whether the outage was folded as it
arrived or read back; the API lists reports without them and gives one in full by id."""
from __future__ import annotations

from typing import Any

import httpx

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.chain_rows import row_of
from contracts.projection import project
from hub.auth import ApiRole
from hub.reconcile import Actual, fold_entries, fold_rows, reconcile
from hub.store import HubStore, ReconciliationRecord
from hub.trajectory import MAX_SAMPLES, charted
from tests.hub.conftest import bearer
from tests.hub.test_reconcile import T0, projection, tank


def _levels(n: int, every_ms: int, rate_per_s: float = 0.001) -> list[Entry]:
    out, prev = [], GENESIS
    for seq in range(1, n + 1):
        level = 1.0 + seq * every_ms / 1000 * rate_per_s
        body: dict[str, Any] = {"values": {"level": [level, "good", None]}}
        if seq % 7 == 0:
            body["values"]["high_level"] = [False, "good", None]
        out.append(make_entry(prev, seq, T0 + seq * every_ms, EntryKind.INPUT, body))
        prev = out[-1].hash
    return out


def _level(report: dict[str, Any]) -> dict[str, Any]:
    [found] = [t for t in report["trajectory"] if t["point"] == "level"]
    return found


def test_the_projected_samples_are_the_projections_and_end_at_the_outage_end() -> None:
    end = T0 + 300_000
    report = reconcile(tank(), projection(), _levels(300, 1000), T0, end).to_json()
    level = _level(report)
    assert (level["unit"], level["modelled"]) == ("m", True)
    assert [t["point"] for t in report["trajectory"]] == [p.name for p in charted(tank())]
    by_ts = {p.ts_ms: dict(p.modelled)["level"] for p in projection().points}
    *inside, last = level["projected"]
    assert inside and all(by_ts[ts] == v for ts, v in inside)
    # at the end, between two samples: what the engine gives when it records at that instant
    fine = project(tank(), None, T0, end + 1, every_ms=1000)
    assert last[0] == end and abs(last[1] - dict(fine.points[-1].modelled)["level"]) < 1e-9
    assert fine.points[-1].ts_ms == end and last[1] > inside[-1][1]


def test_the_actual_samples_are_the_journaled_values_bounded_for_a_long_outage() -> None:
    entries = _levels(30_000, 1000)  # over 8 h at 1 Hz
    end = entries[-1].ts_ms
    level = _level(reconcile(tank(), projection(), entries, T0, end).to_json())
    assert MAX_SAMPLES <= len(level["actual"]) <= 2 * MAX_SAMPLES
    journaled = {e.ts_ms: e.body["values"]["level"][0] for e in entries}
    assert all(journaled[ts] == v for ts, v in level["actual"])
    assert level["actual"][-1] == [end, journaled[end]]
    gaps = [b[0] - a[0] for a, b in zip(level["actual"], level["actual"][1:])]
    assert max(gaps) <= 3 * min(gaps)  # spread over the outage, not bunched at its start


def test_folding_by_rows_in_batches_samples_what_folding_the_entries_at_once_does() -> None:
    entries = _levels(5_000, 100)
    rows = [row_of(e) for e in entries]
    by_rows = Actual()
    for part in (rows[:1234], rows[1234:4000], rows[4000:]):
        fold_rows(by_rows, part)
    at_once = fold_entries(Actual(), entries)
    assert by_rows.trail.samples == at_once.trail.samples and at_once.trail.samples


async def test_the_list_leaves_trajectories_out_and_one_report_by_id_has_them(
        client: httpx.AsyncClient, store: HubStore) -> None:
    report = reconcile(tank(), projection(), _levels(300, 1000), T0, T0 + 300_000).to_json()
    rec_id = store.reconciliations.add(ReconciliationRecord(
        device="pump-station-7", contract="tank-fill", version=3, ts_ms=T0 + 300_000,
        report=report, divergent=report["divergent"], action="none"))
    viewer = bearer(ApiRole.VIEWER)
    listed = (await client.get("/api/reconciliations", headers=viewer)).json()
    assert listed[0]["id"] == rec_id and "trajectory" not in listed[0]["report"]
    assert listed[0]["trajectory_points"] == len(report["trajectory"]) > 0
    one = await client.get(f"/api/reconciliations/{rec_id}", headers=viewer)
    assert one.status_code == 200 and one.json()["report"]["trajectory"] == report["trajectory"]
    for missing in (str(rec_id + 1), "abc"):
        r = await client.get(f"/api/reconciliations/{missing}", headers=viewer)
        assert r.status_code == 404, r.text
