"""HubStore: opens the hub database, owns its one connection and exposes the repositories."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlite_utils import Database

from runtime.files import private_sqlite
from hub.store.alarms import AlarmRepository
from hub.store.audit import AuditRepository
from hub.store.commissioning import CommissioningRepository
from hub.store.contracts import ContractRepository
from hub.store.deployments import DeploymentRepository
from hub.store.devices import DeviceRepository
from hub.store.errors import StoreError
from hub.store.fleet import FleetRepository
from hub.store.journal import JournalRepository
from hub.store.lineages import LineageRepository
from hub.store.reconciliations import ReconciliationRepository
from hub.store.registry import RegistryRepository
from hub.store.schema import MIGRATIONS, check_and_migrate
from hub.store.transactions import Connection


class HubStore(Connection):
    """Typed access to the hub database. Open with `HubStore.open(path)`; close when done.

    One per thread (see hub/store/transactions.py). Each aggregate has its repository, all
    writing through this connection, so a batch spans them: `store.devices`, `store.contracts`,
    `store.journal`, `store.reconciliations`, `store.registry`, `store.audit`, `store.alarms`,
    `store.lineages`, `store.fleet`, `store.commissioning`, `store.deployments`."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.devices = DeviceRepository(self)
        self.contracts = ContractRepository(self)
        self.journal = JournalRepository(self)
        self.reconciliations = ReconciliationRepository(self)
        self.registry = RegistryRepository(self)
        self.audit = AuditRepository(self)
        self.alarms = AlarmRepository(self)
        self.lineages = LineageRepository(self)
        self.fleet = FleetRepository(self)
        self.commissioning = CommissioningRepository(self)
        self.deployments = DeploymentRepository(self)

    @classmethod
    def open(cls, path: Path | str) -> HubStore:
        """Open (creating if needed) and migrate. Raises StoreError for a newer or broken schema."""
        try:
            private_sqlite(path)  # 0600 before SQLite creates it, its -wal and -shm
            db = Database(path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open hub database {str(path)!r}: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            check_and_migrate(db)
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"cannot open hub database {str(path)!r}: {exc}") from exc
        except BaseException:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return len(MIGRATIONS.applied(self.db))
