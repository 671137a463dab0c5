"""hub/fallback.py's decisions, pure: which contract a journaled `rollout_fallback` fails, which it
reinstates, and what it refuses to believe."""
from __future__ import annotations

from typing import Any

from hub.fallback import plan_fallback
from hub.states import ContractStatus
from hub.store import ContractRecord

KG, NEW = "a" * 64, "b" * 64


def _record(version: int, status: ContractStatus, digest: str, *, device: str = "d1",
            rollout: dict[str, Any] | None = None, name: str = "tank-fill") -> ContractRecord:
    doc: dict[str, Any] = {"contract": name, "version": version}
    if rollout is not None:
        doc["rollout"] = rollout
    return ContractRecord(id=f"{name}@{version}", contract=name, version=version, device=device,
                          site="s1", status=status, document=doc, signed=b"", content_hash=digest,
                          created_ms=0, updated_ms=0)


FIELDS = {"deployment": "dep-1", "known_good": KG, "fallback": "tank-fill@2", "cause": "guard_trip",
          "cause_seq": 41}
PUSHED = {"deployment": "dep-1", "health_window_s": 60, "known_good": KG}


def test_the_tripped_contract_is_the_one_whose_rollout_names_the_deployment_and_known_good() -> None:
    records = [_record(2, ContractStatus.SUPERSEDED, KG),
               _record(3, ContractStatus.TRIPPED, NEW, rollout=PUSHED),
               _record(4, ContractStatus.SUBMITTED, "c" * 64, rollout={**PUSHED, "deployment": "x"}),
               _record(9, ContractStatus.ACTIVE, "d" * 64, name="other")]
    plan = plan_fallback("d1", "tank-fill", FIELDS, records)
    assert plan.tripped == "tank-fill@3"
    assert plan.known_good is None  # @4 is issued already and replaces the known-good there
    assert plan.reason == "rollout_fallback: guard_trip at seq 41; the device runs tank-fill@2 again, held"


def test_without_rollout_metadata_the_highest_version_in_force_is_the_tripped_one() -> None:
    records = [_record(2, ContractStatus.SUPERSEDED, KG), _record(3, ContractStatus.TRIPPED, NEW),
               _record(1, ContractStatus.SUPERSEDED, "e" * 64)]
    plan = plan_fallback("d1", "tank-fill", FIELDS, records)
    assert (plan.tripped, plan.known_good, plan.problem) == ("tank-fill@3", "tank-fill@2", None)


def test_a_known_good_the_hub_never_issued_to_the_device_or_with_another_hash_is_refused() -> None:
    tripped = _record(3, ContractStatus.TRIPPED, NEW, rollout=PUSHED)
    elsewhere = plan_fallback("d1", "tank-fill", FIELDS,
                              [_record(2, ContractStatus.SUPERSEDED, KG, device="d2"), tripped])
    other_hash = plan_fallback("d1", "tank-fill", FIELDS,
                               [_record(2, ContractStatus.SUPERSEDED, "f" * 64), tripped])
    assert elsewhere.known_good is None and "never issued to this device" in (elsewhere.problem or "")
    assert other_hash.known_good is None and "the hub issued it with ffff" in (other_hash.problem or "")
    assert elsewhere.tripped == other_hash.tripped == "tank-fill@3"


def test_the_audit_detail_quotes_the_agents_fields_bounded() -> None:
    fields = {**FIELDS, "cause": "x" * 10_000}
    plan = plan_fallback("d1", "tank-fill", fields, [])
    detail = plan.detail(fields, 44)
    assert detail["seq"] == 44 and detail["cause_seq"] == 41 and len(detail["cause"]) <= 80
    assert (detail["tripped"], detail["reinstated"]) == (None, None)
