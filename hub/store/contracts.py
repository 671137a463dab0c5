"""Contract versions issued to devices, with their lifecycle status (hub/states.py)."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from hub.states import ContractEvent, ContractStatus
from hub.store.errors import Duplicate, NotFound
from hub.store.records import ContractRecord
from hub.store.state_history import CONTRACTS, MachineRepository
from hub.store.transactions import Connection


class ContractRepository(MachineRepository[ContractEvent]):
    """`store.contracts`: one row per (contract, version), keyed "contract@version"; the status
    changes only through `apply_event`."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn, CONTRACTS)

    def insert(self, record: ContractRecord) -> ContractRecord:
        """Store a new contract version with its first history row. Raises Duplicate."""
        try:
            with self._conn.tx() as db:
                db.execute(
                    "INSERT INTO contracts (id, contract, version, device, site, status, document,"
                    " signed, content_hash, created_ms, updated_ms, reason, lineage)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [record.id, record.contract, record.version, record.device, record.site,
                     record.status.value, json.dumps(record.document), record.signed,
                     record.content_hash, record.created_ms, record.updated_ms, record.reason,
                     record.lineage or record.id])
                self._states.record(record.id, None, record.status, "submit", record.created_ms,
                                    record.reason)
        except sqlite3.IntegrityError as exc:
            raise Duplicate(f"contract {record.id!r} exists already") from exc
        return record

    def get(self, cid: str) -> ContractRecord:
        """Raises NotFound."""
        row = self._conn.one("SELECT * FROM contracts WHERE id = ?", [cid])
        if row is None:
            raise NotFound("contract", cid)
        return _contract(row)

    def find(self, *, device: str | None = None, status: ContractStatus | None = None,
             contract: str | None = None) -> list[ContractRecord]:
        """Contracts matching every given filter, oldest first."""
        filters = {"device": device, "status": status.value if status else None,
                   "contract": contract}
        used = {k: v for k, v in filters.items() if v is not None}
        where = " AND ".join(f"{k} = ?" for k in used) or "1"
        rows = self._conn.db.query(
            f"SELECT * FROM contracts WHERE {where} ORDER BY created_ms, id", list(used.values()))
        return [_contract(r) for r in rows]

    def highest_version(self, contract: str) -> int | None:
        row = self._conn.one("SELECT max(version) AS v FROM contracts WHERE contract = ?",
                             [contract])
        return row["v"] if row else None

    def count_by_status(self) -> dict[ContractStatus, int]:
        rows = self._conn.db.query("SELECT status, count(*) AS n FROM contracts GROUP BY status")
        return {ContractStatus(r["status"]): r["n"] for r in rows}


def _contract(r: Mapping[str, Any]) -> ContractRecord:
    return ContractRecord(**{**r, "status": ContractStatus(r["status"]),
                             "document": json.loads(r["document"])})
