"""Points of the tank simulator (simulators/models.py) on a given endpoint and unit id, for the
endpoint tests and bench/endpoints.py."""
from __future__ import annotations

from contracts.schema import DataType, Direction, Point, Table


def level(name: str, endpoint: str | None, unit_id: int = 1) -> Point:
    return Point(name=name, endpoint=endpoint, unit_id=unit_id, table=Table.INPUT, address=0,
                 type=DataType.FLOAT32, direction=Direction.READ, stale_after_ms=60_000)


def pump_speed(name: str, endpoint: str | None, unit_id: int = 1) -> Point:
    return Point(name=name, endpoint=endpoint, unit_id=unit_id, table=Table.HOLDING, address=20,
                 type=DataType.UINT16, direction=Direction.WRITE, scale=0.1, owner="t",
                 limits=(0.0, 1500.0))


def high_level(name: str, endpoint: str | None, unit_id: int = 1) -> Point:
    return Point(name=name, endpoint=endpoint, unit_id=unit_id, table=Table.DISCRETE, address=0,
                 type=DataType.BOOL, direction=Direction.READ, stale_after_ms=60_000)
