"""What the hub store raises.

    StoreError       the database cannot be used: unreadable, or written by a newer schema
    ├── NotFound     no record with that id (`kind`, `key`)
    └── Duplicate    a record with that id exists already
"""
from __future__ import annotations

from hub.errors import HubError

from contracts.limits import quote


class StoreError(HubError):
    """The database cannot be used: unreadable, or written by a newer schema."""


class NotFound(StoreError):
    """No record with that id. `kind` is "device", "contract", ... and `key` the id asked for."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind, self.key = kind, key
        super().__init__(f"no {kind} {quote(key)}")


class Duplicate(StoreError):
    """A record with that id exists already."""
