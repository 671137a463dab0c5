"""Adapter faults in words — pure: a device's exception answer named with its code, meaning and
the point's address; other reasons as they are; the code kept beside the words."""
from __future__ import annotations

from typing import Any

import pytest

from agent.actuation import Actuator
from agent.errors import DeviceLinkError
from agent.faults import MAX_WORDS, FaultWords, in_words, write_fault
from agent.link import MemoryLink
from contracts.chain import EntryKind
from contracts.loader import check_mapping
from contracts.modbus_exceptions import exception_code, exception_reason
from contracts.schema import DataType, Direction, Point, Table
from contracts.types import Value
from tests.agent.conftest import tank_document


def _point(table: Table, address: int) -> Point:
    return Point(name="p", unit_id=1, table=table, address=address, type=DataType.UINT16
                 if not table.is_bit else DataType.BOOL, direction=Direction.READ)


@pytest.mark.parametrize(("reason", "table", "address", "words", "code"), [
    ("exception:2", Table.HOLDING, 63, "exception 2 (illegal data address) at holding 63", 2),
    ("exception:1", Table.INPUT, 0, "exception 1 (illegal function) at input 0", 1),
    ("exception:4", Table.COIL, 12, "exception 4 (server device failure) at coil 12", 4),
    ("exception:11", Table.DISCRETE, 3,
     "exception 11 (gateway target device failed to respond) at discrete 3", 11),
    ("exception:9", Table.HOLDING, 5, "exception 9 (unknown) at holding 5", 9),
    ("timeout", Table.HOLDING, 5, "timeout", None),
    ("disconnected", Table.HOLDING, 5, "disconnected", None),
    ("exception:x", Table.HOLDING, 5, "exception:x", None),
    (None, Table.HOLDING, 5, "bad", None),
])
def test_a_reason_in_words_with_its_code(reason: str | None, table: Table, address: int,
                                         words: str, code: int | None) -> None:
    assert in_words(reason, _point(table, address)) == FaultWords(reason=words, code=code)


def test_codes_are_read_only_from_the_exception_form_and_bounded() -> None:
    assert [exception_code(r) for r in ("exception:2", "exception:", "exception:1234", "x:2")] == [
        2, None, None, None]
    assert in_words("exception:2", None) == FaultWords(reason="exception:2", code=2)
    assert len(in_words("y" * 10_000, None).reason) == MAX_WORDS


def test_a_failed_write_is_the_devices_exception_in_words_or_the_error_as_it_is() -> None:
    point = _point(Table.HOLDING, 70)
    refused = DeviceLinkError("exception:2", "write p=1 at unit 1 holding:70")
    assert refused.code == 2
    assert write_fault(refused, point) == FaultWords(
        reason="exception 2 (illegal data address) at holding 70", code=2)
    late = DeviceLinkError("timeout", "write p=1 at unit 1 holding:70")
    assert late.code is None
    assert write_fault(late, point) == FaultWords(reason="timeout: write p=1 at unit 1 holding:70")


class _Refusing(MemoryLink):
    """A device that refuses writes with exception 3 while `refuse` is set (reads answer)."""

    refuse = True

    async def write(self, point: Point, value: Value) -> None:
        if self.refuse:
            raise DeviceLinkError(exception_reason(3), f"write {point.name}={value!r}")
        await super().write(point, value)


class _Items:
    def __init__(self) -> None:
        self.items: list[Any] = []

    async def append_many(self, items: Any) -> list[Any]:
        self.items.extend(items)
        return []


async def test_a_refused_write_is_kept_in_words_for_telemetry_until_a_write_lands() -> None:
    contract = check_mapping(tank_document())
    link = _Refusing({(1, Table.HOLDING): {20: 0}})
    await link.connect()
    actuator, journal = Actuator(contract, link), _Items()
    await actuator.write(journal, ["pump_speed"], [], {"pump_speed": 1000}, 5)
    words = "exception 3 (illegal data value) at holding 20"
    assert actuator.write_faults == {"pump_speed": words}
    assert [(kind, body["reason"], body["code"]) for kind, body, _ in journal.items] == [
        (EntryKind.ADAPTER_FAULT, words, 3)]
    link.refuse = False
    assert await actuator.write(journal, ["pump_speed"], [], {"pump_speed": 1000}, 6) == [
        "pump_speed"]
    assert actuator.write_faults == {}
