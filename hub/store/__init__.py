"""The hub store: SQLite through sqlite-utils. The only package in hub/ that speaks SQL.

    database.py         HubStore: open + migrate, the connection, one repository per aggregate
    transactions.py     Connection: write transactions (BEGIN IMMEDIATE), savepoints, batches
    schema.py           the migrations; a database from a newer hub is refused
    records.py          the row dataclasses the repositories return
    errors.py           StoreError, NotFound, Duplicate
    state_history.py    the one way a state moves (transition + history row, retries as no-ops),
                        and MachineRepository: apply_event/transitions for devices and contracts
    devices.py          store.devices          contracts.py   store.contracts
    journal.py          store.journal          alarms.py      store.alarms
    reconciliations.py  store.reconciliations  registry.py    store.registry
    audit.py            store.audit            lineages.py    store.lineages
    commissioning.py    store.commissioning  deployments.py store.deployments (issue 13)

Calls are synchronous and short (local SQLite, indexed); the async API calls them directly.
The names below are what the rest of the hub imports.
"""
from __future__ import annotations

from hub.store.database import HubStore
from hub.store.errors import Duplicate, NotFound, StoreError
from hub.store.records import (
    Alarm, Changed, ContractRecord, DeviceRecord, JournalRow, ReconcileRequest,
    ReconciliationRecord, TransitionRecord, contract_id,
)
from hub.store.schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION", "Alarm", "Changed", "ContractRecord", "DeviceRecord", "Duplicate",
    "HubStore", "JournalRow", "NotFound", "ReconcileRequest", "ReconciliationRecord",
    "StoreError", "TransitionRecord", "contract_id",
]
