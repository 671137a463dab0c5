"""Issue 9, findings 3, 6 (registry, byte caps, reconcile flood) and 7, against the real hub and broker.

The attacker holds one device's valid broker credentials (d1) and publishes only on d1's own
topics — the ACL holds — but names other devices' contracts in the payloads, forges journal
batches, or floods. Each test reproduces a finding and fails on the code before the fix.
"""
from __future__ import annotations

import contextlib
import gc
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import journal_cli
from agent.journal import SqliteJournal
from agent.journal_signing import JournalSigner
from contracts.chain import Entry, EntryKind, make_entry
from contracts.codec import canonical_dumps
from contracts.engine_state import EngineState, Mode
from contracts.journal_events import BootBody, encode
from contracts.journal_sig import public_key_text
from contracts.topics import Channel
from contracts.wire import ContractResult, JournalBatch, Telemetry
from hub import ingest
from hub.app import HubRuntime
from hub.auth import AuthConfig, ApiRole, Token, hash_token
from hub.config import DeviceCredential, HubConfig
from hub.states import ContractStatus, DeviceState
from hub.store import ContractRecord
from tests.agent.conftest import tank_document
from tests.conftest import BrokerEndpoint
from tests.hub.serving import serving
from tests.hub.sync_helpers import (SITE, batch, birth, chain, device_client, hub_config,
                                    publish, running_hub, tampered, wait_ack)
from tests.waiting import eventually

ADMIN = "admin-secret"


def _doc(device: str, contract: str, version: int = 3) -> dict[str, Any]:
    doc = tank_document(device=device, contract=contract, version=version)
    for p in doc["points"]:
        if p.get("direction") == "write":
            p["owner"] = contract
    return doc


def _alarms(hub: HubRuntime, kind: str) -> list[Any]:
    return [a for a in hub.store.alarms.find(active_only=False) if a.kind == kind]


def _alarmed(hub: HubRuntime, kind: str, text: str) -> bool:
    """Whether an alarm of `kind` mentions `text` (alarms may be deduplicated per device and
    kind, keeping the latest detail, so tests look for the detail, never count rows)."""
    return any(text in a.detail for a in _alarms(hub, kind))


async def _barrier(hub: HubRuntime, dev: aiomqtt.Client, n: int) -> None:
    """Publish a result naming a contract nobody issued, and wait for its claim_mismatch alarm:
    the hub handles one device's messages in order, so everything sent before it is done."""
    bogus = ContractResult(contract="barrier", version=n, accepted=True, refusal=None, detail="")
    await publish(dev, "d1", Channel.CONTRACT_RESULT, bogus.to_bytes())
    await eventually(lambda: _alarmed(hub, "claim_mismatch", f"barrier@{n}"), 10, f"barrier {n}")


async def _submitted(hub: HubRuntime, device: str, contract: str) -> ContractRecord:
    return await hub.service.submit_contract(_doc(device, contract), "test")


# -- finding 3: one device changes another's contracts ---------------------------------------

async def test_a_result_naming_another_devices_contract_changes_nothing_and_alarms(
        tmp_path: Path) -> None:
    cfg = hub_config(tmp_path)
    d3 = DeviceCredential(id="d3", site=SITE, password_hash=cfg.devices[1].password_hash)
    hub = HubRuntime(replace(cfg, devices=(*cfg.devices, d3)))
    try:
        async with hub.running():
            assert hub.broker is not None
            victim = await _submitted(hub, "d2", "fill-d2")
            other = await _submitted(hub, "d3", "other-d3")
            async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
                await publish(dev, "d1", Channel.STATUS, birth("d1", 0), retain=True)
                refuse = ContractResult(contract="fill-d2", version=3, accepted=False,
                                        refusal="invalid", detail="forged by d1")
                accept = ContractResult(contract="other-d3", version=3, accepted=True,
                                        refusal=None, detail="forged by d1")
                await publish(dev, "d1", Channel.CONTRACT_RESULT, refuse.to_bytes())
                await publish(dev, "d1", Channel.CONTRACT_RESULT, accept.to_bytes())
                await eventually(lambda: _alarmed(hub, "claim_mismatch", "other-d3@3"), 10,
                                 "a claim_mismatch alarm for the second forged result")
            statuses = [hub.store.contracts.get(c.id).status for c in (victim, other)]
            versions = hub.store.contracts.highest_version("fill-d2")
            alarmed = {a.device for a in _alarms(hub, "claim_mismatch")}
    finally:
        hub.close()
    assert statuses == [ContractStatus.PUSHED, ContractStatus.PUSHED]
    assert versions == 3  # no replan followed
    assert alarmed == {"d1"}


async def test_telemetry_and_a_failed_step_naming_another_devices_contract_do_not_fail_it(
        tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        assert hub.broker is not None and hub.sync is not None
        victim = await _submitted(hub, "d2", "fill-d2")
        entries = chain(1)
        failed = make_entry(entries[-1].hash, 2, entries[-1].ts_ms + 100, EntryKind.STEP,
                            {"event": "failed", "step": "fill", "reason": "forged"})
        async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
            await publish(dev, "d1", Channel.STATUS, birth("d1", 0), retain=True)
            t = Telemetry(ts_ms=entries[0].ts_ms, values=(("level", 1.0),), mode="running",
                          step="fill", seq=1, contract="fill-d2", version=3)
            await publish(dev, "d1", Channel.TELEMETRY, t.to_bytes())
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", [*entries, failed]))
            await wait_ack(dev, 2)  # acked after the batch (and the telemetry before it) ran
            status = hub.store.contracts.get(victim.id).status
            claimed = hub.store.devices.get("d1").contract
            assert status is ContractStatus.PUSHED  # neither started nor failed by d1
            await eventually(lambda: _alarmed(hub, "claim_mismatch", "fill-d2@3"), 10,
                             "a claim_mismatch alarm for the telemetry")
    assert status is ContractStatus.PUSHED  # neither started nor failed by d1's claims
    assert claimed is None


async def test_a_journal_boot_naming_another_devices_contract_lets_no_later_entry_fail_it(
        tmp_path: Path) -> None:
    """The hub takes the running contract from the journal's BOOT entries (so a trip or failure
    lands on the contract the device really ran): a BOOT naming a contract the hub never issued
    to that device must not make the entries after it act on that contract."""
    async with running_hub(tmp_path) as hub:
        assert hub.broker is not None and hub.sync is not None
        victim = await _submitted(hub, "d2", "fill-d2")
        entries = chain(1)
        boot = make_entry(entries[-1].hash, 2, entries[-1].ts_ms + 100, EntryKind.BOOT, encode(
            BootBody(boot_id="c" * 32, t0_ms=entries[-1].ts_ms, period_ms=100, contract="fill-d2",
                     version=3, hash="h", state=EngineState(mode=Mode.RUNNING), resumed=False)))
        failed = make_entry(boot.hash, 3, boot.ts_ms + 100, EntryKind.STEP,
                            {"event": "failed", "step": "fill", "reason": "forged"})
        async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
            await publish(dev, "d1", Channel.STATUS, birth("d1", 0), retain=True)
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", [*entries, boot, failed]))
            await wait_ack(dev, 3)
            status = hub.store.contracts.get(victim.id).status
            assert status is ContractStatus.PUSHED, "d1's journal failed d2's contract"
            await eventually(lambda: _alarmed(hub, "claim_mismatch", "journal BOOT"), 10,
                             "a claim_mismatch alarm for the BOOT entry")


async def test_a_device_in_fault_changes_no_contract_state(tmp_path: Path) -> None:
    entries = chain(20)
    broken = tampered(entries, 10)
    async with running_hub(tmp_path) as hub:
        assert hub.broker is not None
        own = await _submitted(hub, "d1", "fill-d1")
        async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
            await publish(dev, "d1", Channel.STATUS, birth("d1", 20), retain=True)
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", broken))
            await wait_ack(dev, 10)
            assert hub.store.devices.get("d1").state is DeviceState.FAULT
            refuse = ContractResult(contract="fill-d1", version=3, accepted=False,
                                    refusal="invalid", detail="while in fault")
            await publish(dev, "d1", Channel.CONTRACT_RESULT, refuse.to_bytes())
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[:10]))
            await wait_ack(dev, 10)  # the duplicate is acked after the result was handled
        status = hub.store.contracts.get(own.id).status
    assert status is ContractStatus.PUSHED


# -- finding 6: only registered devices exist -------------------------------------------------

async def test_a_contract_for_an_unregistered_device_is_refused_422_naming_it(tmp_path: Path) -> None:
    hub = HubRuntime(_with_admin(hub_config(tmp_path)))
    try:
        async with _served(hub) as http:
            r = await http.post("/api/contracts", json=_doc("ghost-9", "fill-ghost"))
            listed = (await http.get("/api/devices")).json()
    finally:
        hub.close()
    assert r.status_code == 422, r.text
    assert r.json()["issues"][0]["path"] == "device" and "ghost-9" in r.text
    assert [d["id"] for d in listed] == []


@pytest.mark.mosquitto
async def test_a_birth_from_a_device_the_hub_never_registered_creates_nothing(
        tmp_path: Path, mosquitto_broker: BrokerEndpoint) -> None:
    # d2 holds broker credentials on this Mosquitto, but hub.toml registers only d1.
    hub_user = mosquitto_broker.users["hub"]
    cfg = hub_config(tmp_path, external=mosquitto_broker.url,
                     hub_user=(hub_user.name, hub_user.password))
    hub = HubRuntime(replace(cfg, devices=cfg.devices[:1]))
    try:
        async with hub.running():
            async with device_client("127.0.0.1", mosquitto_broker.port, "d2") as dev:
                await publish(dev, "d2", Channel.STATUS, birth("d2", 0), retain=True)
                alarms = await eventually(lambda: _alarms(hub, "unknown_device"), 10,
                                          "an unknown_device alarm")
                await publish(dev, "d2", Channel.STATUS, b"", retain=True)  # clear the retained birth
            devices = [d.id for d in hub.store.devices.find()]
    finally:
        hub.close()
    assert devices == []
    assert alarms[0].device == "d2"


async def test_admins_register_and_remove_devices_and_enroll_keys_through_the_api(
        tmp_path: Path) -> None:
    hub = HubRuntime(_with_admin(hub_config(tmp_path)))
    key = public_key_text(Ed25519PrivateKey.generate().public_key())
    try:
        async with _served(hub) as http:
            made = await http.post("/api/devices", json={"id": "pump-9", "site": SITE,
                                                         "labels": {"area": "tanks"}})
            again = await http.post("/api/devices", json={"id": "pump-9", "site": SITE})
            bad = await http.put("/api/devices/pump-9/journal-key", json={"journal_key": "rsa:x"})
            enrolled = await http.put("/api/devices/pump-9/journal-key", json={"journal_key": key})
            listed = (await http.get("/api/devices/pump-9")).status_code
            contract = await http.post("/api/contracts", json=_doc("pump-9", "fill-9"))
            in_force = await http.delete("/api/devices/pump-9")
            await http.post(f"/api/contracts/{contract.json()['id']}/abort")
            removed = await http.delete("/api/devices/pump-9")
            gone = (await http.get("/api/devices/pump-9")).status_code
            configured = await http.delete("/api/devices/d1")
            audit = (await http.get("/api/audit")).json()
    finally:
        hub.close()
    assert (made.status_code, again.status_code, bad.status_code, listed) == (201, 409, 422, 200)
    assert bad.json()["issues"][0]["path"] == "journal_key"
    assert enrolled.status_code == 200 and enrolled.json()["journal_key"] == key
    assert contract.status_code == 201, contract.text
    assert (in_force.status_code, removed.status_code, gone) == (409, 200, 404)
    assert configured.status_code == 409
    actions = {a["action"] for a in audit}
    assert {"device_register", "key_enroll", "device_remove"} <= actions


# -- finding 7: signed journals ---------------------------------------------------------------

def _signed(key: Ed25519PrivateKey, device: str, entries: list[Entry]) -> JournalBatch:
    unsigned = JournalBatch.from_bytes(batch(device, entries))
    from contracts.journal_sig import sign_head
    return replace(unsigned, sig=sign_head(unsigned.signed_head(), key))


def _rehashed(entries: list[Entry], from_index: int, body: dict[str, Any]) -> list[Entry]:
    """Rewrite entry `from_index` and recompute every hash from there: a self-consistent chain."""
    out = entries[:from_index]
    prev = out[-1].hash if out else entries[0].prev_hash
    for i, e in enumerate(entries[from_index:]):
        new = make_entry(prev, e.seq, e.ts_ms, e.kind, body if i == 0 else e.body)
        out.append(new)
        prev = new.hash
    return out


async def test_forged_journal_batches_are_refused_alarmed_and_store_nothing(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    cfg = hub_config(tmp_path)
    pinned = replace(cfg.devices[0], journal_key=public_key_text(key.public_key()))
    hub = HubRuntime(replace(cfg, devices=(pinned, *cfg.devices[1:])))
    entries = chain(20)
    genuine = _signed(key, "d1", entries[10:])
    forged_body = {"values": {"level": [5.5, "good", None]}}
    rewritten_last = _rehashed(entries, 19, forged_body)[10:]
    rehashed_middle = _rehashed(entries, 14, forged_body)[10:]
    try:
        async with hub.running():
            assert hub.broker is not None
            async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
                await publish(dev, "d1", Channel.STATUS, birth("d1", 20), retain=True)
                await publish(dev, "d1", Channel.JOURNAL,
                              _signed(key, "d1", entries[:10]).to_bytes())
                await wait_ack(dev, 10)
                for forged in (rewritten_last, rehashed_middle):  # replaying the genuine signature
                    b = JournalBatch.from_bytes(batch("d1", forged))
                    await publish(dev, "d1", Channel.JOURNAL, replace(b, sig=genuine.sig).to_bytes())
                await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[10:]))  # unsigned
                alarms = await eventually(lambda: _alarms(hub, "forged_batch"), 10,
                                          "a forged_batch alarm")
                await _barrier(hub, dev, 1)
                stored_while_forged = len(hub.store.journal.rows("d1", 0, 100))
                await publish(dev, "d1", Channel.JOURNAL, genuine.to_bytes())
                acked = await wait_ack(dev, 20)
            rows = hub.store.journal.rows("d1", 0, 100)
    finally:
        hub.close()
    assert alarms[0].device == "d1"
    assert stored_while_forged == 10  # nothing from the forged batches
    assert acked == 20 and [r.hash for r in rows] == [e.hash for e in entries]


def _journal_with_seals(path: Path, key: Ed25519PrivateKey, n: int = 30) -> list[JournalBatch]:
    """A real agent journal of n entries, 1 s apart, sent as three signed batches (seals kept)."""
    signer = JournalSigner(key, "d1")
    out = []
    with SqliteJournal(path) as j:
        j.append_many([(EntryKind.INPUT, {"values": {"level": [1.0 + s / 100, "good", None]}},
                        1_795_500_000_000 + s * 1000) for s in range(1, n + 1)])
        for lo in range(1, n + 1, 10):
            part = j.read(lo, 10)
            out.append(signer.sign(j, JournalBatch.from_bytes(batch("d1", part))))
    return out


def _tamper(path: Path, from_seq: int) -> None:
    """Rewrite entry `from_seq` and re-hash the chain from there to the head, in the file."""
    with SqliteJournal(path) as j:
        entries = j.read(1, 1000)
    fixed = _rehashed(entries, from_seq - 1, {"values": {"level": [4.2, "good", None]}})
    raw = sqlite3.connect(path)
    with raw:
        for e in fixed[from_seq - 1:]:
            raw.execute("UPDATE entries SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                        [canonical_dumps(dict(e.body)), e.prev_hash, e.hash, e.seq])
    raw.close()


@pytest.mark.parametrize("from_seq", [30, 15], ids=["rewritten-last-entry", "rehashed-from-middle"])
def test_journal_verify_with_pubkey_catches_a_rewritten_journal(tmp_path: Path, from_seq: int,
                                                                capsys: Any) -> None:
    key = Ed25519PrivateKey.generate()
    db = tmp_path / "journal.db"
    _journal_with_seals(db, key)
    pub = public_key_text(key.public_key())
    assert journal_cli.main(["journal", "verify", "--db", str(db), "--pubkey", pub]) == 0
    _tamper(db, from_seq)
    chain_only = journal_cli.main(["journal", "verify", "--db", str(db)])
    with_key = journal_cli.main(["journal", "verify", "--db", str(db), "--pubkey", pub])
    out = capsys.readouterr().out
    assert chain_only == 0  # the recomputed chain is self-consistent: only the signature tells
    assert with_key == 1 and "rewritten after signing" in out


async def test_a_rewritten_agent_journal_is_never_re_signed_and_the_hub_refuses_it(
        tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    db = tmp_path / "journal.db"
    sent = _journal_with_seals(db, key)
    _tamper(db, 25)
    with SqliteJournal(db) as j:  # the uplink resends 21..30 after a restart (never acked)
        resend = JournalSigner(key, "d1").sign(j, JournalBatch.from_bytes(batch("d1", j.read(21, 10))))
    cfg = hub_config(tmp_path)
    pinned = replace(cfg.devices[0], journal_key=public_key_text(key.public_key()))
    hub = HubRuntime(replace(cfg, devices=(pinned, *cfg.devices[1:])))
    try:
        async with hub.running():
            assert hub.broker is not None
            async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
                await publish(dev, "d1", Channel.STATUS, birth("d1", 30), retain=True)
                for b in sent[:2]:
                    await publish(dev, "d1", Channel.JOURNAL, b.to_bytes())
                await wait_ack(dev, 20)
                await publish(dev, "d1", Channel.JOURNAL, resend.to_bytes())
                await eventually(lambda: _alarms(hub, "forged_batch"), 10, "forged_batch alarm")
            stored = len(hub.store.journal.rows("d1", 0, 100))
    finally:
        hub.close()
    assert resend.sig is None  # the agent does not sign over its own earlier seal
    assert stored == 20


# -- finding 6: out-of-order buffer capped in bytes -------------------------------------------

async def test_out_of_order_batches_are_capped_in_bytes_and_nothing_committed_is_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "MAX_PENDING_BYTES", 64 * 1024)
    entries = chain(2000)
    async with running_hub(tmp_path) as hub:
        assert hub.broker is not None and hub.sync is not None
        async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
            await publish(dev, "d1", Channel.STATUS, birth("d1", 2000), retain=True)
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[:100]))
            await wait_ack(dev, 100)
            for lo in range(200, 2000, 100):  # 101..200 lost: everything else out of order
                await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[lo:lo + 100]))
            await _barrier(hub, dev, 1)
            held = hub.sync._ingest["d1"].pending_bytes
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[100:200]))
            partial = await wait_ack(dev, 201)
            for lo in range(partial, 2000, 100):  # the agent resends from the ack
                await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[lo:lo + 100]))
            acked = await wait_ack(dev, 2000, timeout_s=30)
        rows = hub.store.journal.rows("d1", 0, 5000)
    assert 0 < held <= 64 * 1024
    assert 200 < partial < 2000  # the kept (oldest) out-of-order entries drained at once
    assert acked == 2000 and [r.seq for r in rows] == list(range(1, 2001))


def test_the_total_out_of_order_budget_is_shared_between_devices() -> None:
    budget = ingest.PendingBudget(total=30_000)
    entries = chain(400)
    a = ingest.DeviceIngest(ingest.Cursor(), budget=budget, max_bytes=1_000_000)
    b = ingest.DeviceIngest(ingest.Cursor(), budget=budget, max_bytes=1_000_000)
    a.add(entries[100:200], nbytes=10_000)  # 100 entries x (100 + 96) bytes
    result = b.add(entries[100:300], nbytes=20_000)
    kept = sorted(b.pending)
    assert budget.used <= 30_000 and result.evicted > 0
    assert kept == list(range(101, kept[-1] + 1))  # the newest dropped, the nearest kept
    done = b.add(entries[:100], nbytes=10_000)
    assert done.cursor.seq == kept[-1] and [e.seq for e in done.store] == list(range(1, kept[-1] + 1))
    assert budget.used == a.pending_bytes and b.pending_bytes == 0
    del a  # a device's buffer replaced (cursor reloaded): it stops counting against the total
    gc.collect()
    assert budget.used == 0


# -- finding 6: reconcile-request flood -------------------------------------------------------

async def test_a_flood_of_reconcile_requests_is_absorbed_into_one_request_and_one_alarm(
        tmp_path: Path) -> None:
    hub = HubRuntime(_with_admin(hub_config(tmp_path)))
    try:
        async with _served(hub) as http:
            made = await http.post("/api/contracts", json=_doc("d1", "fill-d1"))
            cid = made.json()["id"]
            codes = [(await http.post(f"/api/contracts/{cid}/reconcile")).status_code
                     for _ in range(200)]
            await eventually(lambda: not hub.store.reconciliations.open_requests(), 20,
                             "the request handled")
            requests = hub.store.db.execute("SELECT count(*) FROM reconcile_requests").fetchone()[0]
            alarms = _alarms(hub, "reconcile_empty")
    finally:
        hub.close()
    assert codes.count(202) == 1 and codes.count(200) == 199
    assert requests == 1 and len(alarms) == 1


# -- harness ----------------------------------------------------------------------------------

def _with_admin(cfg: HubConfig) -> HubConfig:
    return replace(cfg, auth=AuthConfig(tokens=(Token(name="admin", sha256=hash_token(ADMIN),
                                                      role=ApiRole.ADMIN),)))


@contextlib.asynccontextmanager
async def _served(hub: HubRuntime) -> AsyncIterator[httpx.AsyncClient]:
    """The hub's app (its lifespan runs the broker and the sync side) on a real uvicorn."""
    async with serving(hub.app(), timeout_s=20) as url, httpx.AsyncClient(
            base_url=url, timeout=10, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        yield http


async def test_unsigned_journals_from_a_device_with_no_key_are_accepted_but_never_silently(
        tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))  # d1 has no journal key; signatures not required
    try:
        async with hub.running():
            assert hub.broker is not None
            entries = chain(4)
            async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
                await publish(dev, "d1", Channel.STATUS, birth("d1", 0), retain=True)
                await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[:2]))
                await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries[2:]))
                await wait_ack(dev, 4)
                unsigned = await eventually(lambda: _alarms(hub, "unsigned_journal"), 10,
                                            "an unsigned_journal alarm")
    finally:
        hub.close()
    assert len(unsigned) == 1 and unsigned[0].count == 1 and "enroll" in unsigned[0].detail
