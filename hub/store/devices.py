"""The devices the hub knows: their rows, live fields and connectivity state (hub/states.py)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from contracts import codec
from contracts.types import EpochMs
from hub.states import DeviceEvent, DeviceState
from hub.store.errors import NotFound
from hub.store.records import DeviceRecord
from hub.store.state_history import DEVICES, MachineRepository
from hub.store.transactions import Connection

LIST_COLUMNS = ("id", "site", "labels", "state", "state_since_ms", "last_seen_ms", "contract",
                "version", "last_seq", "acked_seq")
"""The device columns the fleet list shows, in its key order (hub/views.py device_view)."""
_FIELDS = frozenset({"last_seen_ms", "boot_id", "contract", "version", "last_seq", "acked_seq",
                     "last_hash", "projection", "drift", "labels", "site"})
"""What `update` may set: everything but the id and the state (which moves by `apply_event`)."""


_STATES = {s.value: s for s in DeviceState}

ActiveAlarm = tuple[int, str, int, bool]
"""(id, kind, count, acknowledged) of an active alarm, as `detail` gives it."""
DETAIL_ALARMS = 1000
"""At most this many active alarms in `detail`: `alarms.find`'s default limit, as before."""
_DETAIL = ("SELECT d.*, a.id, a.kind, a.count, a.acked_ms IS NOT NULL FROM devices d "
           "LEFT JOIN alarms a ON a.device = d.id AND a.cleared_ms IS NULL "
           "WHERE d.id = ? ORDER BY a.id LIMIT ?")
"""A device's row beside each of its active alarms (one row with NULLs when it has none);
alarms_active (device, kind) WHERE cleared_ms IS NULL is the index it uses."""


class DeviceRepository(MachineRepository[DeviceEvent]):
    """`store.devices`: one row per device, its state changed only through `apply_event`."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn, DEVICES)
        self._records: dict[str, tuple[tuple[Any, ...], DeviceRecord]] = {}  # see _decoded()

    def ensure(self, device: str, site: str, ts_ms: EpochMs,
               labels: Mapping[str, str] | None = None) -> DeviceRecord:
        """The device, registered in state UNKNOWN if new (idempotent)."""
        self._conn.db.execute(
            "INSERT OR IGNORE INTO devices (id, site, labels, state, state_since_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            [device, site, json.dumps(dict(labels or {})), DeviceState.UNKNOWN.value, ts_ms])
        return self.get(device)

    def get(self, device: str) -> DeviceRecord:
        """Raises NotFound."""
        cur = self._conn.db.conn.execute("SELECT * FROM devices WHERE id = ?", [device])
        row = cur.fetchone()
        if row is None:
            raise NotFound("device", device)
        return self._decoded([c[0] for c in cur.description], row)

    def detail(self, device: str) -> tuple[DeviceRecord, list[ActiveAlarm]]:
        """The device and its active alarms (id, kind, count, acknowledged), oldest first, up to
        DETAIL_ALARMS, in ONE statement: what GET /api/devices/{id} shows. The API thread gives
        the interpreter lock up at every SQLite step and reset, and under fleet load the busy
        MQTT thread may keep it for a switch interval each time; `get` then `alarms.find` (a
        sqlite-utils query: SAVEPOINT, SELECT, RELEASE) were four statements. Raises NotFound."""
        cur = self._conn.db.conn.execute(_DETAIL, [device, DETAIL_ALARMS])
        rows = cur.fetchall()
        if not rows:
            raise NotFound("device", device)
        width = len(cur.description) - 4
        names = [c[0] for c in cur.description[:width]]
        alarms = [(r[width], r[width + 1], r[width + 2], bool(r[width + 3]))
                  for r in rows if r[width] is not None]
        return self._decoded(names, rows[0][:width]), alarms

    def find(self, state: DeviceState | None = None) -> list[DeviceRecord]:
        """Every device (in `state`, if given), by id."""
        where, params = ("WHERE state = ?", [state.value]) if state else ("", [])
        # A plain cursor: the fleet list is the API's largest read (bench/sync.py), and
        # sqlite-utils' per-row key de-duplication was a third of its cost.
        cur = self._conn.db.conn.execute(f"SELECT * FROM devices {where} ORDER BY id", params)
        names = [c[0] for c in cur.description]
        rows = cur.fetchall()
        return [self._decoded(names, row) for row in rows]

    def list_rows(self, state: DeviceState | None = None) -> list[tuple[Any, ...]]:
        """Raw rows of LIST_COLUMNS (state as its value, labels as JSON text), by id: the fleet
        list reads only these, never the projection blobs (hub/device_list.py)."""
        where, params = ("WHERE state = ?", [state.value]) if state else ("", [])
        cols = ", ".join(LIST_COLUMNS)
        return self._conn.db.conn.execute(f"SELECT {cols} FROM devices {where} ORDER BY id",
                                          params).fetchall()

    def presence_rows(self) -> list[tuple[str, DeviceState, EpochMs | None, int, bytes | None]]:
        """(id, state, last_seen_ms, acked_seq, last_hash) of every device, by id: what the sync
        side's once-a-second silence and stall checks read (hub/sync/background.py), without
        the projection blobs that decoding every record would cost."""
        rows = self._conn.db.conn.execute(
            "SELECT id, state, last_seen_ms, acked_seq, last_hash FROM devices ORDER BY id")
        return [(i, _STATES[st], seen, acked, last) for i, st, seen, acked, last in rows]

    def update(self, device: str, **fields: Any) -> DeviceRecord:
        """Set any of the non-state device fields (see _FIELDS). The state changes only through
        `apply_event`. Raises NotFound, or TypeError for an unknown field."""
        unknown = set(fields) - _FIELDS
        if unknown:
            raise TypeError(f"devices.update: unknown or protected fields {sorted(unknown)}")
        values = {k: _encode_field(k, v) for k, v in fields.items()}
        if values:
            assignments = ", ".join(f"{k} = ?" for k in values)
            with self._conn.tx():
                cur = self._conn.db.conn.execute(f"UPDATE devices SET {assignments} WHERE id = ?",
                                                 [*values.values(), device])
            if cur.rowcount == 0:
                raise NotFound("device", device)
        return self.get(device)

    def update_many(self, fields: Mapping[str, Mapping[str, Any]]) -> None:
        """`update` for many devices at once ({device: {field: value}}), one statement per
        distinct set of field names, in one transaction; unknown devices are skipped. The sync
        side flushes 1,000 devices' live values this way every FLUSH_S."""
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        for device, values in fields.items():
            unknown = set(values) - _FIELDS
            if unknown:
                raise TypeError(f"devices.update_many: unknown or protected fields "
                                f"{sorted(unknown)}")
            names = tuple(values)
            groups.setdefault(names, []).append(
                [*(_encode_field(k, v) for k, v in values.items()), device])
        with self._conn.tx():
            for names, params in groups.items():
                if names:
                    sets = ", ".join(f"{k} = ?" for k in names)
                    self._conn.db.conn.executemany(f"UPDATE devices SET {sets} WHERE id = ?",
                                                   params)

    def count_by_state(self) -> dict[DeviceState, int]:
        rows = self._conn.db.query("SELECT state, count(*) AS n FROM devices GROUP BY state")
        return {DeviceState(r["state"]): r["n"] for r in rows}

    def _decoded(self, names: list[str], row: tuple[Any, ...]) -> DeviceRecord:
        """The record for a raw row, decoded once per distinct row content (one cached row per
        device id, the first column). Records are frozen, and readers copy `projection` before
        changing it (hub/sync/)."""
        cached = self._records.get(row[0])
        if cached is not None and cached[0] == row:
            return cached[1]
        record = _device(dict(zip(names, row)))
        self._records[row[0]] = (row, record)
        return record


def _encode_field(name: str, value: Any) -> Any:
    if name == "projection":
        return None if value is None else codec.canonical_dumps(value)
    if name in ("drift", "labels"):
        return None if value is None else json.dumps(dict(value))
    return value


def _device(r: Mapping[str, Any]) -> DeviceRecord:
    return DeviceRecord(**{
        **r, "state": DeviceState(r["state"]), "labels": json.loads(r["labels"]),
        "projection": codec.loads(r["projection"]) if r["projection"] is not None else None,
        "drift": json.loads(r["drift"]) if r["drift"] is not None else None,
    })
