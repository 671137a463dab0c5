"""The hub database's schema: a list of migrations, applied on open.

Rules:
- sqlite-utils `Migrations` applies each migration and its record in one transaction.
- A migration, once released, never changes: databases out there have it applied by name. A new
  schema is a new migration appended here and named in MIGRATION_NAMES.
- On open, a database holding a migration this build does not know is refused with StoreError: it
  was written by a newer hub, and guessing would corrupt it.
"""
from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from hub.store.errors import StoreError

MIGRATIONS = Migrations("fieldpact-hub")


def _run(db: Database, script: str) -> None:
    """Each statement of `script` in turn, inside the migration's transaction (sqlite3's
    executescript would commit first)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)

_SCHEMA_V1 = """
CREATE TABLE devices (id TEXT PRIMARY KEY, site TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}',
  state TEXT NOT NULL, state_since_ms INTEGER NOT NULL, last_seen_ms INTEGER, boot_id TEXT,
  contract TEXT, version INTEGER, last_seq INTEGER NOT NULL DEFAULT 0,
  acked_seq INTEGER NOT NULL DEFAULT 0, last_hash BLOB, projection BLOB, drift TEXT);
CREATE TABLE contracts (id TEXT PRIMARY KEY, contract TEXT NOT NULL, version INTEGER NOT NULL,
  device TEXT NOT NULL, site TEXT NOT NULL, status TEXT NOT NULL, document TEXT NOT NULL,
  signed BLOB NOT NULL, content_hash TEXT NOT NULL, created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL, reason TEXT, UNIQUE (contract, version));
CREATE INDEX contracts_device_status ON contracts (device, status);
CREATE TABLE device_transitions (id INTEGER PRIMARY KEY, device TEXT NOT NULL, "from" TEXT,
  "to" TEXT NOT NULL, event TEXT NOT NULL, ts_ms INTEGER NOT NULL, reason TEXT);
CREATE INDEX device_transitions_device ON device_transitions (device, id);
CREATE TABLE contract_transitions (id INTEGER PRIMARY KEY, contract TEXT NOT NULL, "from" TEXT,
  "to" TEXT NOT NULL, event TEXT NOT NULL, ts_ms INTEGER NOT NULL, reason TEXT);
CREATE INDEX contract_transitions_contract ON contract_transitions (contract, id);
CREATE TABLE journal (device TEXT NOT NULL, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
  kind TEXT NOT NULL, body BLOB NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL,
  PRIMARY KEY (device, seq));
CREATE TABLE journal_pending (device TEXT NOT NULL, seq INTEGER NOT NULL, entry BLOB NOT NULL,
  PRIMARY KEY (device, seq));
CREATE TABLE reconciliations (id INTEGER PRIMARY KEY, device TEXT NOT NULL, contract TEXT,
  version INTEGER, ts_ms INTEGER NOT NULL, report TEXT NOT NULL, divergent INTEGER NOT NULL,
  action TEXT NOT NULL);
CREATE TABLE reconcile_requests (id INTEGER PRIMARY KEY, contract TEXT NOT NULL,
  device TEXT NOT NULL, actor TEXT NOT NULL, ts_ms INTEGER NOT NULL, done_ms INTEGER);
CREATE TABLE audit (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, actor TEXT NOT NULL,
  action TEXT NOT NULL, device TEXT, contract TEXT, reason TEXT, outcome TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '{}');
CREATE TABLE alarms (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, device TEXT NOT NULL,
  kind TEXT NOT NULL, detail TEXT NOT NULL, cleared_ms INTEGER);
"""


@MIGRATIONS(name="0001_initial")
def _m0001(db: Database) -> None:
    _run(db, _SCHEMA_V1)


_SCHEMA_V2 = """
ALTER TABLE contracts ADD COLUMN lineage TEXT;
UPDATE contracts SET lineage = id WHERE lineage IS NULL;
CREATE TABLE lineages (lineage TEXT PRIMARY KEY, retries INTEGER NOT NULL DEFAULT 0,
  last_retry_ms INTEGER, next_allowed_ms INTEGER, pending TEXT);
ALTER TABLE alarms ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alarms ADD COLUMN last_ms INTEGER;
ALTER TABLE alarms ADD COLUMN acked_ms INTEGER;
ALTER TABLE alarms ADD COLUMN acked_by TEXT;
UPDATE alarms SET last_ms = ts_ms WHERE last_ms IS NULL;
UPDATE alarms SET cleared_ms = ts_ms WHERE cleared_ms IS NULL AND id NOT IN
  (SELECT max(id) FROM alarms WHERE cleared_ms IS NULL GROUP BY device, kind);
CREATE UNIQUE INDEX alarms_active ON alarms (device, kind) WHERE cleared_ms IS NULL;
"""
"""Retry budgets per contract lineage (hub/lineage.py) and deduplicated, acknowledgeable alarms.
Existing contracts each start their own lineage; of duplicate active alarms the newest stays."""


@MIGRATIONS(name="0002_lineage_alarms")
def _m0002(db: Database) -> None:
    _run(db, _SCHEMA_V2)


_SCHEMA_REGISTRY = """
CREATE TABLE registered_devices (id TEXT PRIMARY KEY, site TEXT NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}', created_ms INTEGER NOT NULL, actor TEXT NOT NULL);
CREATE TABLE device_keys (device TEXT PRIMARY KEY, journal_key TEXT NOT NULL,
  enrolled_ms INTEGER NOT NULL, actor TEXT NOT NULL);
CREATE INDEX reconcile_requests_contract ON reconcile_requests (contract, id);
"""


@MIGRATIONS(name="0003_device_registry")
def _m0003(db: Database) -> None:
    """Devices registered by an admin through the API (hub.toml ones live in the config) and
    journal keys enrolled the same way (hub/registry.py)."""
    _run(db, _SCHEMA_REGISTRY)


_SCHEMA_FLEET = (
    "CREATE TABLE designs (name TEXT NOT NULL, version INTEGER NOT NULL, document TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL, actor TEXT NOT NULL, PRIMARY KEY (name, version))",
    "CREATE TABLE bindings (name TEXT NOT NULL, revision INTEGER NOT NULL, design TEXT NOT NULL,"
    " document TEXT NOT NULL, created_ms INTEGER NOT NULL, actor TEXT NOT NULL,"
    " PRIMARY KEY (name, revision))",
    "CREATE TABLE snapshots (id TEXT PRIMARY KEY, body BLOB NOT NULL, created_ms INTEGER NOT NULL,"
    " actor TEXT NOT NULL, source TEXT NOT NULL)",
    *(f"CREATE TRIGGER {table}_immutable_{op.lower()} BEFORE {op} ON {table} BEGIN"
      f" SELECT RAISE(ABORT, '{table} are immutable'); END"
      for table in ("designs", "bindings", "snapshots") for op in ("UPDATE", "DELETE")),
    "CREATE TABLE desired (device TEXT PRIMARY KEY, snapshot TEXT NOT NULL REFERENCES snapshots(id),"
    " set_ms INTEGER NOT NULL, actor TEXT NOT NULL)",
    "CREATE TABLE drift (device TEXT NOT NULL, contract TEXT NOT NULL, in_sync INTEGER NOT NULL,"
    " why TEXT, since_ms INTEGER NOT NULL, PRIMARY KEY (device, contract))",
    "CREATE INDEX journal_reports ON journal (device, seq) WHERE kind IN ('boot', 'contract')",
)


@MIGRATIONS(name="0004_fleet_config")
def _m0004(db: Database) -> None:
    """Fleet configuration (issue 12): designs, binding revisions and snapshots, which triggers keep
    immutable; each device's desired snapshot and since when it drifts; and an index of the journal
    entries in which devices report the contract they run (BOOT, CONTRACT: hub/reports.py)."""
    for statement in _SCHEMA_FLEET:  # one by one: a trigger's body holds a ';'
        db.execute(statement)


_SCHEMA_COMMISSIONING = """
CREATE TABLE commissioning (id TEXT PRIMARY KEY, device TEXT NOT NULL, requested_ms INTEGER NOT NULL,
  seconds REAL NOT NULL, actor TEXT NOT NULL, received_ms INTEGER, ok INTEGER, report TEXT,
  refused TEXT);
CREATE INDEX commissioning_device ON commissioning (device, requested_ms);
"""


@MIGRATIONS(name="0005_commissioning")
def _m0005(db: Database) -> None:
    """Commissioning requests the hub sent an agent, and the report (or refusal) it answered
    (hub/commissioning.py)."""
    _run(db, _SCHEMA_COMMISSIONING)


_SCHEMA_ENDPOINTS = """
CREATE TABLE device_endpoints (device TEXT PRIMARY KEY, endpoints TEXT NOT NULL,
  set_ms INTEGER NOT NULL, actor TEXT NOT NULL);
"""


@MIGRATIONS(name="0006_device_endpoints")
def _m0006(db: Database) -> None:
    """The endpoints an admin listed for a device (hub/device_endpoints.py), like its enrolled
    journal key: per device, for hub.toml devices too unless hub.toml lists them."""
    _run(db, _SCHEMA_ENDPOINTS)


_SCHEMA_DEPLOYMENTS = """
CREATE TABLE deployments (id TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE,
  snapshot TEXT NOT NULL REFERENCES snapshots(id), target TEXT NOT NULL, strategy TEXT NOT NULL,
  health TEXT NOT NULL, state TEXT NOT NULL, wave INTEGER NOT NULL DEFAULT 0, resume_to TEXT,
  waves TEXT NOT NULL, rollback TEXT, actor TEXT NOT NULL, created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL);
CREATE INDEX deployments_state ON deployments (state);
CREATE TABLE deployment_transitions (id INTEGER PRIMARY KEY, deployment TEXT NOT NULL,
  "from" TEXT, "to" TEXT NOT NULL, event TEXT NOT NULL, ts_ms INTEGER NOT NULL, reason TEXT);
CREATE INDEX deployment_transitions_deployment ON deployment_transitions (deployment, id);
CREATE TABLE deployment_steps (deployment TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL,
  status TEXT NOT NULL, input TEXT NOT NULL, result TEXT NOT NULL, started_ms INTEGER NOT NULL,
  finished_ms INTEGER, actor TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (deployment, idx));
CREATE TABLE deployment_devices (deployment TEXT NOT NULL, device TEXT NOT NULL,
  wave INTEGER NOT NULL, state TEXT NOT NULL, contract TEXT NOT NULL, issued TEXT,
  content_hash TEXT, pushed_ms INTEGER, known_good TEXT, restore TEXT, reason TEXT,
  evidence TEXT NOT NULL DEFAULT '[]', updated_ms INTEGER NOT NULL,
  PRIMARY KEY (deployment, device));
CREATE INDEX deployment_devices_device ON deployment_devices (device);
"""


@MIGRATIONS(name="0008_deployments")
def _m0008(db: Database) -> None:
    """Deployments (issue 13, hub/rollout.py): the deployment with its state history, its steps
    (input, result, timestamps, actor: written in the transaction of their effect) and each
    device's execution (the contract issued to it, its known-good one, the gate's evidence)."""
    _run(db, _SCHEMA_DEPLOYMENTS)


@MIGRATIONS(name="0009_device_rollbacks")
def _m0009(db: Database) -> None:
    """A device rolled back alone (issue 13): it failed its gate under the abort threshold, so it
    goes back to its known-good contract while the deployment goes on; its typed reason (which
    gate, the device, the evidence, what was restored) is kept on its execution row."""
    db.execute("ALTER TABLE deployment_devices ADD COLUMN rollback TEXT")


_DEVICE_CONTRACTS = """
CREATE TABLE deployment_devices_new (deployment TEXT NOT NULL, device TEXT NOT NULL,
  wave INTEGER NOT NULL, state TEXT NOT NULL, contract TEXT NOT NULL, issued TEXT,
  content_hash TEXT, pushed_ms INTEGER, known_good TEXT, restore TEXT, reason TEXT,
  evidence TEXT NOT NULL DEFAULT '[]', updated_ms INTEGER NOT NULL, rollback TEXT,
  PRIMARY KEY (deployment, device, contract));
INSERT INTO deployment_devices_new (deployment, device, wave, state, contract, issued,
  content_hash, pushed_ms, known_good, restore, reason, evidence, updated_ms, rollback)
  SELECT deployment, device, wave, state, contract, issued, content_hash, pushed_ms, known_good,
  restore, reason, evidence, updated_ms, rollback FROM deployment_devices;
DROP TABLE deployment_devices;
ALTER TABLE deployment_devices_new RENAME TO deployment_devices;
CREATE INDEX deployment_devices_device ON deployment_devices (device)
"""


@MIGRATIONS(name="0010_device_contracts")
def _m0010(db: Database) -> None:
    """A deployment of several contracts per device (issue 13, as issue 12's snapshots allow):
    one execution row per (deployment, device, contract), each pushed, judged and restored on
    its own (hub/rollout.py). The rows kept, the table rebuilt for its new key."""
    _run(db, _DEVICE_CONTRACTS)


MIGRATION_NAMES = ("0001_initial", "0002_lineage_alarms", "0003_device_registry",
                   "0004_fleet_config", "0005_commissioning", "0006_device_endpoints",
                   "0008_deployments", "0009_device_rollbacks", "0010_device_contracts")
SCHEMA_VERSION = len(MIGRATION_NAMES)
"""Number of migrations this build knows; a database with others is refused on open."""


def check_and_migrate(db: Database) -> None:
    """Apply the migrations `db` lacks. Raises StoreError if it holds one this build does not know."""
    known = set(MIGRATION_NAMES)
    unknown = [m.name for m in MIGRATIONS.applied(db) if m.name not in known]
    if unknown:
        raise StoreError(f"database schema is newer than this hub (unknown migrations {unknown}); "
                         "upgrade the hub")
    MIGRATIONS.apply(db)
