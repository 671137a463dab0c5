"""The agent's contract store on a real journal: refusals are distinct, named and journaled."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.contract_store import ContractStore
from agent.journal_thread import AsyncJournal
from contracts.chain import EntryKind
from contracts.errors import ContractRefused, Refusal
from contracts.loader import check_mapping
from contracts.schema import Contract, format_time
from contracts.signing import load_public_key
from tests.agent.conftest import now_ms, tank_document
from tests.agent.helpers import journal_entries


async def _refusal(store: ContractStore, data: bytes) -> Refusal:
    with pytest.raises(ContractRefused) as caught:
        await store.receive(data, now_ms())
    return caught.value.refusal


async def test_tampered_expired_older_and_wrong_device_contracts_are_refused_with_reasons(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    db = tmp_path / "j.db"
    async with AsyncJournal(db) as journal:
        store = ContractStore(journal, load_public_key(keys[1]), "d1")
        await store.restore(now_ms())
        good = signer(check_mapping(tank_document(version=5)))
        assert (await store.receive(good, now_ms())).contract.version == 5
        tampered = bytearray(good)
        tampered[len(tampered) // 2] ^= 0x01
        expired = signer(check_mapping(tank_document(
            version=6, valid_from=format_time(now_ms() - 7_200_000),
            valid_until=format_time(now_ms() - 3_600_000))))
        older = signer(check_mapping(tank_document(version=4)))
        other = signer(check_mapping(tank_document(version=7, device="d2")))
        got = [await _refusal(store, bytes(tampered)), await _refusal(store, expired),
               await _refusal(store, older), await _refusal(store, other),
               await _refusal(store, b"not cose at all")]
        redelivered = await store.receive(good, now_ms())
    assert got == [Refusal.BAD_SIGNATURE, Refusal.EXPIRED, Refusal.OLDER_VERSION,
                   Refusal.WRONG_DEVICE, Refusal.UNSIGNED]
    assert redelivered.contract.version == 5  # identical re-delivery is idempotent, not refused
    journaled = [e.body["refusal"] for e in journal_entries(db, {EntryKind.CONTRACT})
                 if e.body["event"] == "refused"]
    assert journaled == [r.value for r in got]


async def test_rollback_protection_survives_a_restart(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    db = tmp_path / "j.db"
    async with AsyncJournal(db) as journal:
        store = ContractStore(journal, load_public_key(keys[1]), "d1")
        await store.restore(now_ms())
        await store.receive(signer(check_mapping(tank_document(version=9))), now_ms())
    async with AsyncJournal(db) as journal:
        store = ContractStore(journal, load_public_key(keys[1]), "d1")
        restored = await store.restore(now_ms())
        assert restored.pending is not None and restored.pending.contract.version == 9
        assert await _refusal(store, signer(check_mapping(tank_document(version=8)))) \
            is Refusal.OLDER_VERSION
