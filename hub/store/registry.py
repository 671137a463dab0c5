"""Devices registered through the API and their enrolled journal keys (hub/registry.py holds the
rules; hub.toml's devices live in the config, not here)."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

from contracts.types import EpochMs
from hub.store.errors import Duplicate
from hub.store.transactions import Connection


class RegistryRepository:
    """`store.registry`: API registrations and journal keys, by device id."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, device: str, site: str, labels: Mapping[str, str], ts_ms: EpochMs,
            actor: str) -> None:
        """Raises Duplicate if `device` is registered already."""
        try:
            self._conn.db.execute(
                "INSERT INTO registered_devices (id, site, labels, created_ms, actor) "
                "VALUES (?, ?, ?, ?, ?)", [device, site, json.dumps(dict(labels)), ts_ms, actor])
        except sqlite3.IntegrityError as exc:
            raise Duplicate(f"device {device!r} is registered already") from exc

    def devices(self) -> list[tuple[str, str, dict[str, str]]]:
        """(id, site, labels) of every API-registered device, by id."""
        rows = self._conn.db.query("SELECT id, site, labels FROM registered_devices ORDER BY id")
        return [(r["id"], r["site"], json.loads(r["labels"])) for r in rows]

    def remove(self, device: str) -> bool:
        """Drop the registration, the enrolled key and the device row (not its history)."""
        with self._conn.tx() as db:
            cur = db.execute("DELETE FROM registered_devices WHERE id = ?", [device])
            db.execute("DELETE FROM device_keys WHERE device = ?", [device])
            db.execute("DELETE FROM device_endpoints WHERE device = ?", [device])
            db.execute("DELETE FROM devices WHERE id = ?", [device])
        return bool(cur.rowcount)

    def set_key(self, device: str, key_text: str, ts_ms: EpochMs, actor: str) -> None:
        self._conn.db.execute("INSERT OR REPLACE INTO device_keys (device, journal_key, "
                              "enrolled_ms, actor) VALUES (?, ?, ?, ?)",
                              [device, key_text, ts_ms, actor])

    def keys(self) -> dict[str, str]:
        """device -> enrolled journal key text."""
        return {r["device"]: r["journal_key"]
                for r in self._conn.db.query("SELECT device, journal_key FROM device_keys")}

    def set_endpoints(self, device: str, endpoints_json: str, ts_ms: EpochMs, actor: str) -> None:
        self._conn.db.execute("INSERT OR REPLACE INTO device_endpoints (device, endpoints, "
                              "set_ms, actor) VALUES (?, ?, ?, ?)",
                              [device, endpoints_json, ts_ms, actor])

    def endpoints(self) -> dict[str, str]:
        """device -> its endpoints as JSON text (hub/device_endpoints.py)."""
        return {r["device"]: r["endpoints"]
                for r in self._conn.db.query("SELECT device, endpoints FROM device_endpoints")}
