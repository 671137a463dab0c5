"""The agent's answer to the hub's commissioning request: what it checks, when it refuses
(agent/commission_answer.py), over a real in-memory device link."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from agent.commission_answer import CommissionResponder, refusal
from agent.link import MemoryLink
from contracts.commission_wire import CommissionReply, CommissionRequest
from contracts.engine import Engine
from contracts.engine_state import Mode
from contracts.loader import check_mapping
from contracts.schema import Table
from tests.agent.conftest import tank_document
from tests.waiting import eventually

CONTRACT = check_mapping(tank_document())


def _scan(mode: Mode | None = None, pending: bool = False) -> Any:
    link = MemoryLink({(1, Table.INPUT): {0: 0x4000, 1: 0}, (1, Table.DISCRETE): {0: False},
                       (1, Table.HOLDING): {20: 0}, (1, Table.COIL): {13: False}})
    segment = None
    if mode is not None:
        segment = SimpleNamespace(active=SimpleNamespace(contract=CONTRACT),
                                  state=replace(Engine(CONTRACT).initial_state(), mode=mode), step_name=lambda: "fill")
    return SimpleNamespace(link=link, segment=segment,
                           segments={"tank-fill": segment} if segment is not None else {},
                           pending={"tank-fill": SimpleNamespace(contract=CONTRACT)} if pending else {})


async def _ask(scan: Any, seconds: float = 0.05) -> tuple[CommissionResponder, list[CommissionReply]]:
    sent: list[CommissionReply] = []

    async def send(payload: bytes) -> None:
        sent.append(CommissionReply.from_bytes(payload))
    await scan.link.connect()
    responder = CommissionResponder(scan, send, interval_s=0.01)
    responder.on_request(CommissionRequest(id="r1", seconds=seconds).to_bytes())
    return responder, sent


def test_the_rule_refuses_during_a_live_step_and_without_a_contract() -> None:
    assert refusal(_scan()) == "no contract to commission"
    for mode in (Mode.RUNNING, Mode.HELD, Mode.OFFLINE_HOLD):
        assert refusal(_scan(mode)) == (f"tank-fill@3 is {mode.value} in step fill: commissioning "
                                        "reads only while no step drives the outputs")
    for mode in (Mode.PENDING, Mode.SAFE, Mode.COMPLETED, Mode.FAILED, Mode.ABORTED):
        assert refusal(_scan(mode)) is None
    assert refusal(_scan(pending=True)) is None


async def test_a_pending_contract_is_polled_and_reported_and_nothing_is_written() -> None:
    scan = _scan(pending=True)
    responder, sent = await _ask(scan)
    await eventually(lambda: sent, 5, "the reply")
    (reply,) = sent
    assert reply.id == "r1" and reply.report is not None and reply.report.ok, reply
    assert scan.link.writes == []
    await responder.close()


async def test_a_request_during_a_live_step_or_a_running_poll_is_refused() -> None:
    _, sent = await _ask(_scan(Mode.RUNNING))
    await eventually(lambda: sent, 5, "the refusal")
    assert sent[0].report is None and "is running in step fill" in (sent[0].refused or "")
    scan = _scan(pending=True)
    responder, sent = await _ask(scan, seconds=1.0)
    responder.on_request(CommissionRequest(id="r2", seconds=1).to_bytes())
    busy = await eventually(lambda: [r for r in sent if r.id == "r2"], 5, "the busy refusal")
    assert busy[0].refused == "busy: a commissioning poll is running"
    await responder.close()


async def test_a_step_that_starts_during_the_poll_stops_it() -> None:
    scan = _scan(pending=True)
    responder, sent = await _ask(scan, seconds=2.0)
    running = _scan(Mode.RUNNING)
    scan.pending, scan.segment, scan.segments = {}, running.segment, running.segments
    stopped = await eventually(lambda: sent, 5, "the stopped reply")
    assert (stopped[0].refused or "").startswith("stopped: tank-fill@3 is running in step fill")
    await responder.close()
