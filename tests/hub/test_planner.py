"""The planner: policy by failure category, retries bounded, replans that are valid contracts."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.loader import check_mapping, load_contract
from contracts.schema import Contract, Rollout
from contracts.schema_serialize import to_mapping
from hub.policy import DEFAULT_POLICIES, FailureCategory, Policy, PolicyAction
from hub.lineage import Budget
from hub.planner import Decision, decide, replan_document

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
H = 3600 * 1000
LINEAGE = "tank-fill@3"
B0 = Budget(lineage=LINEAGE)


@cache
def contract(name: str = "tank-fill") -> Contract:
    return load_contract(EXAMPLES / f"{name}.yaml")


NOW = contract().valid_from + 5 * H + 123  # mid-window, not on a second boundary
WINDOW = contract().valid_until - contract().valid_from


def policies(action: PolicyAction, max_retries: int = 3) -> Mapping[FailureCategory, Policy]:
    return {FailureCategory.RUNTIME: Policy(action=action, max_retries=max_retries)}


def plan(action: PolicyAction, *, retries: int = 0, actual_step: int | None = 1,
         capable: tuple[str, ...] = (), max_retries: int = 3) -> Decision:
    return decide(contract=contract(), category=FailureCategory.RUNTIME, reason="step: off",
                  policies=policies(action, max_retries), budget=Budget(lineage=LINEAGE, retries=retries), next_version=4,
                  actual_step=actual_step, now_ms=NOW, capable=capable)


# -- each action ------------------------------------------------------------------------------

def test_retry_reissues_from_the_actual_step_as_the_next_version_to_the_same_device() -> None:
    d = plan(PolicyAction.RETRY)
    assert d.action is PolicyAction.RETRY and d.device == "pump-station-7" and d.document
    new = check_mapping(d.document)
    assert (new.version, new.device) == (4, "pump-station-7")
    assert [s.name for s in new.steps] == ["hold"]
    assert (new.valid_from, new.valid_until) == (NOW, NOW + WINDOW)


def test_retry_without_a_known_step_restarts_from_the_first_step() -> None:
    d = plan(PolicyAction.RETRY, actual_step=None)
    assert d.document is not None and [s["name"] for s in d.document["steps"]] == ["fill", "hold"]


def test_reassign_addresses_the_replan_to_another_capable_device() -> None:
    d = plan(PolicyAction.REASSIGN, capable=("pump-station-7", "pump-station-8"))
    assert d.action is PolicyAction.REASSIGN and d.device == "pump-station-8"
    assert d.document is not None and check_mapping(d.document).device == "pump-station-8"


def test_reassign_without_another_capable_device_escalates() -> None:
    d = plan(PolicyAction.REASSIGN, capable=("pump-station-7",))
    assert d.action is PolicyAction.ESCALATE and d.document is None and d.device is None
    assert "no other capable device" in d.reason


@pytest.mark.parametrize("action", [PolicyAction.ESCALATE, PolicyAction.HOLD, PolicyAction.ABORT])
def test_escalate_hold_and_abort_issue_no_new_contract(action: PolicyAction) -> None:
    d = plan(action)
    assert (d.action, d.document, d.device, d.reason) == (action, None, None, "step: off")
    assert d.category is FailureCategory.RUNTIME


@pytest.mark.parametrize("action", [PolicyAction.RETRY, PolicyAction.REASSIGN])
def test_retries_exhausted_escalate_instead_of_reissuing(action: PolicyAction) -> None:
    assert plan(action, retries=2, max_retries=3, capable=("x",)).action is action
    d = plan(action, retries=3, max_retries=3, capable=("x",))
    assert d.action is PolicyAction.ESCALATE and d.document is None
    assert "3 automatic re-issues already (max 3)" in d.reason


def test_a_category_without_a_policy_escalates() -> None:
    d = decide(contract=contract(), category=FailureCategory.NETWORK, reason="r",
               policies=policies(PolicyAction.RETRY), budget=B0, next_version=4, actual_step=0,
               now_ms=NOW)
    assert d.action is PolicyAction.ESCALATE and d.category is FailureCategory.NETWORK


@pytest.mark.parametrize(("category", "action"), [
    (FailureCategory.RUNTIME, PolicyAction.RETRY), (FailureCategory.ADAPTERS, PolicyAction.RETRY),
    (FailureCategory.NETWORK, PolicyAction.RETRY), (FailureCategory.CONFIG, PolicyAction.HOLD),
    (FailureCategory.TRIP, PolicyAction.HOLD),
])
def test_default_policies_pick_the_action_by_category(category: FailureCategory,
                                                       action: PolicyAction) -> None:
    d = decide(contract=contract(), category=category, reason="r", policies=DEFAULT_POLICIES,
               budget=B0, next_version=4, actual_step=0, now_ms=NOW)
    assert d.action is action


def test_config_failures_are_never_retried_by_default() -> None:
    d = decide(contract=contract(), category=FailureCategory.CONFIG, reason="r",
               policies=DEFAULT_POLICIES, budget=B0, next_version=4, actual_step=0, now_ms=NOW)
    assert d.document is None


# -- replan_document --------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(name=st.sampled_from(["tank-fill", "pump-skid"]), data=st.data(),
       offset_ms=st.integers(min_value=-10 * H, max_value=400 * 24 * H))
def test_a_replan_is_a_valid_contract_whose_steps_are_the_tail_of_the_original(
        name: str, data: st.DataObject, offset_ms: int) -> None:
    c = contract(name)
    step = data.draw(st.integers(min_value=0, max_value=len(c.steps) - 1))
    now = c.valid_from + offset_ms
    doc = replan_document(c, from_step=step, version=c.version + 1, now_ms=now)
    new = check_mapping(doc)
    assert new.steps == c.steps[step:]
    assert (new.valid_from, new.valid_until) == (now, now + c.valid_until - c.valid_from)
    assert new.version == c.version + 1 and new.device == c.device
    assert dict(new.labels)["replanned_from"] == f"{c.contract}@{c.version}"
    same = ("points", "safe_state", "offline", "expect", "tolerance", "scan_period_ms", "site")
    old = to_mapping(c)
    assert {k: doc[k] for k in same} == {k: old[k] for k in same}


@pytest.mark.parametrize("step", [-1, 2])
def test_a_replan_from_a_step_outside_the_contract_is_refused(step: int) -> None:
    with pytest.raises(ValueError, match=r"from_step: .* is not a step of tank-fill \(0\.\.1\)"):
        replan_document(contract(), from_step=step, version=4, now_ms=NOW)


def test_a_replan_does_not_carry_the_deployments_rollout() -> None:
    pushed = replace(contract(), rollout=Rollout(deployment="dep-000001", health_window_ms=30_000,
                                                 known_good="ab" * 32))
    assert "rollout" in to_mapping(pushed)
    doc = replan_document(pushed, from_step=1, version=4, now_ms=NOW)
    assert "rollout" not in doc and check_mapping(doc).rollout is None


def test_a_replan_leaves_the_original_document_untouched() -> None:
    before: dict[str, Any] = to_mapping(contract())
    replan_document(contract(), from_step=1, version=4, now_ms=NOW, device="elsewhere")
    assert to_mapping(contract()) == before
