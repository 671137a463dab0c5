"""Commissioning, hub side without a network: answers matched to requests, bounded waits, the ACL
(hub/commissioning.py, hub/store/commissioning.py, hub/acl/policy.py)."""
from __future__ import annotations

import pytest

from contracts.commission_report import CommissionReport, ReportError
from contracts.commission_wire import CommissionReply
from contracts.errors import EncodingError
from contracts.loader import check_mapping
from hub.acl.policy import Action, BrokerRole, UserSpec, allowed
from hub.commissioning import ANSWER_MARGIN_S, state
from hub.commissioning import take_reply as take
from hub.store import HubStore
from hub.store.commissioning import KEEP_PER_DEVICE, CommissioningRecord
from tests.agent.conftest import tank_document

from .conftest import START_MS

T = START_MS


def _report(device: str = "d1") -> CommissionReport:
    from agent.commission import analyse
    return analyse(check_mapping(tank_document(device=device)), [], started_ms=T, seconds=3)


def take_reply(store: HubStore, device: str, payload: bytes, now_ms: int) -> bool:
    return take(store, device, CommissionReply.from_bytes(payload), now_ms)


def _request(store: HubStore, rid: str = "r1", device: str = "d1", at: int = T) -> None:
    store.devices.ensure(device, "s1", at)
    store.commissioning.add(CommissioningRecord(id=rid, device=device, requested_ms=at, seconds=3,
                                                actor="op"))


def test_an_answer_fills_in_its_request_once(store: HubStore) -> None:
    _request(store)
    reply = CommissionReply(id="r1", report=_report()).to_bytes()
    assert take_reply(store, "d1", reply, T + 4000)
    assert not take_reply(store, "d1", CommissionReply(id="r1", refused="late").to_bytes(), T + 5000)
    rec = store.commissioning.latest("d1")
    assert rec is not None and rec.ok is False and rec.refused is None
    assert rec.report == _report().to_mapping() and state(rec, T + 5000) == "answered"


def test_an_answer_from_another_device_or_to_no_request_is_ignored(store: HubStore) -> None:
    _request(store)
    _request(store, "r2", "d2")
    assert not take_reply(store, "d2", CommissionReply(id="r1", refused="x").to_bytes(), T)
    assert not take_reply(store, "d1", CommissionReply(id="nope", refused="x").to_bytes(), T)
    # A report must name the device whose topic it came on (invariant 10).
    assert not take_reply(store, "d2", CommissionReply(id="r2", report=_report("d1")).to_bytes(), T)
    assert state(store.commissioning.latest("d1"), T) == "pending"  # type: ignore[arg-type]


def test_a_request_unanswered_past_its_bound_shows_timed_out(store: HubStore) -> None:
    _request(store)
    rec = store.commissioning.latest("d1")
    assert rec is not None
    deadline = T + int((3 + ANSWER_MARGIN_S) * 1000)
    assert (state(rec, deadline), state(rec, deadline + 1)) == ("pending", "timed_out")


def test_only_the_newest_requests_of_a_device_are_kept(store: HubStore) -> None:
    for i in range(KEEP_PER_DEVICE + 5):
        _request(store, f"r{i}", at=T + i)
    rows = store.db.execute("SELECT count(*) FROM commissioning").fetchone()[0]
    assert rows == KEEP_PER_DEVICE and store.commissioning.latest("d1").id == f"r{KEEP_PER_DEVICE + 4}"  # type: ignore[union-attr]


@pytest.mark.parametrize("payload", [b"", b"\xa0", CommissionReply(id="r", refused="x").to_bytes()[:-3]])
def test_a_payload_that_is_not_a_reply_is_refused(payload: bytes) -> None:
    with pytest.raises(EncodingError):
        CommissionReply.from_bytes(payload)


def test_a_reply_carries_a_report_or_a_refusal_exactly_one() -> None:
    with pytest.raises(ReportError, match="exactly one"):
        CommissionReply.from_bytes(CommissionReply(id="r").to_bytes())


def test_the_acl_lets_a_device_answer_only_on_its_own_topic_and_read_only_its_requests() -> None:
    user = UserSpec(password_hash="x", role=BrokerRole.DEVICE, site="s1", device="d1")
    own, other = "fp/v1/s1/d1", "fp/v1/s1/d2"
    assert allowed(user, Action.PUBLISH, f"{own}/commission/report")
    assert not allowed(user, Action.PUBLISH, f"{other}/commission/report")
    assert not allowed(user, Action.PUBLISH, f"{own}/commission")  # only the hub asks
    assert allowed(user, Action.SUBSCRIBE, f"{own}/commission")
    assert not allowed(user, Action.SUBSCRIBE, f"{other}/commission")
