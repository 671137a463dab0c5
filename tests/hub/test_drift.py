"""`hub.drift.judge`, the rule that says whether a desired contract runs and why not: pure."""
from __future__ import annotations

from dataclasses import replace

from hub.drift import Observed, Why, judge
from hub.fleet import Desired
from hub.states import ContractStatus, DeviceState
from hub.store.fleet import ContractHead

WANT = Desired(device="d1", contract="tank-fill.d1", design="tank-fill@3", binding="b",
               digest="D")
RUNS = ContractHead(id="tank-fill.d1@2", contract="tank-fill.d1", version=2, device="d1",
                    status=ContractStatus.ACTIVE, content_hash="H")
SEEN = Observed(state=DeviceState.LIVE, contract=RUNS.id, head=RUNS, digest="D", reported_hash="H",
                refused=False, issued_since=False)


def test_in_sync_needs_the_contract_its_configuration_and_the_journaled_hash() -> None:
    assert judge(WANT, SEEN) == (True, None)
    assert judge(WANT, replace(SEEN, reported_hash=None)) == (True, None)  # journal not in yet
    assert judge(WANT, replace(SEEN, reported_hash="X")) == (False, Why.HASH_MISMATCH)
    assert judge(WANT, replace(SEEN, digest="E")) == (False, Why.MANUAL_PUSH)
    assert judge(WANT, replace(SEEN, digest="E", issued_since=True)) == (False, Why.OLDER_VERSION)


def test_why_not_names_the_first_cause_that_holds() -> None:
    other = replace(RUNS, id="pump.d1@1", contract="pump.d1")
    assert judge(WANT, replace(SEEN, state=DeviceState.FAULT)) == (False, Why.FAULT)
    assert judge(WANT, replace(SEEN, head=other, state=DeviceState.PROJECTED)) == (False, Why.OFFLINE)
    assert judge(WANT, replace(SEEN, head=other, refused=True)) == (False, Why.REFUSED)
    tripped = replace(other, status=ContractStatus.TRIPPED)
    assert judge(WANT, replace(SEEN, head=tripped)) == (False, Why.TRIPPED)
    assert judge(WANT, replace(SEEN, head=other)) == (False, Why.OTHER_CONTRACT)
    assert judge(WANT, replace(SEEN, head=None, contract=None, digest=None)) == (False, Why.NOT_APPLIED)
    assert judge(replace(WANT, digest=None), SEEN) == (False, Why.INVALID)


def test_the_drift_alarm_threshold_is_read_from_hub_toml() -> None:
    from hub.config import parse_config
    doc = {"db": "hub.db", "key": "hub.key"}
    assert parse_config(doc).drift_alarm_ms == 900_000
    assert parse_config({**doc, "drift_alarm_s": 60}).drift_alarm_ms == 60_000
