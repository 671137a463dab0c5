"""The telemetry gate of a device running several contracts (contracts/rollout_health.py): the
condition is over the device's point values, whichever of its contracts journals them — its own
contract's values first (a name in both is its own), the device's other contracts' values next.

Before, each contract was judged over its own journaled values only: a condition naming a point
of the device's other contract (`level`, journaled by tank-fill) failed tank-aux's gate as
"unknown name", and a device whose every value was in range was rolled back for nothing."""
from __future__ import annotations

from contracts.journal_events import InputBody
from contracts.rollout_health import Evidence, Gate, Health, HealthSpec
from tests.contracts.test_rollout_health import NAME, PERIOD, T0, Journal, verdict

AUX = "tank-aux"


def _own_flow(j: Journal, cycles: range) -> None:
    """The judged contract's (tank-fill's) own cycles, journaling a point that is not `level`."""
    for k in cycles:
        j.add(T0 + k * PERIOD, InputBody(values={"pump_flow": [1.0, "good", None]}, contract=NAME))


def _aux_level(j: Journal, k: int, value: float) -> int:
    return j.add(T0 + k * PERIOD, InputBody(values={"level": [value, "good", None]},
                                            contract=AUX))


def test_a_condition_over_another_contracts_point_is_judged_over_its_values() -> None:
    spec = HealthSpec(window_ms=10_000, telemetry="level >= 1 and level <= 5")
    j = Journal()
    j.start()  # tank-fill accepted and booted; its own points are not `level` here
    for k in range(0, 101):
        _own_flow(j, range(k, k + 1))
        if k % 10 == 0:
            _aux_level(j, k, 2.0 + k / 1000)
    seq = _aux_level(j, 90, 2.5)
    v = verdict(j, spec)
    assert v.health is Health.HEALTHY, v
    assert Evidence(what="level", seq=seq, ts_ms=T0 + 9_000, value=2.5) in v.evidence


def test_the_other_contracts_value_out_of_range_fails_the_condition() -> None:
    spec = HealthSpec(window_ms=10_000, telemetry="level <= 5")
    j = Journal()
    j.start()
    _own_flow(j, range(0, 101))
    seq = _aux_level(j, 95, 7.5)
    v = verdict(j, spec)
    assert v.health is Health.FAILED and v.gate == Gate.TELEMETRY
    assert v.evidence[0] == Evidence(what="level", seq=seq, ts_ms=T0 + 9_500, value=7.5)


def test_its_own_value_wins_over_another_contracts_of_the_same_name() -> None:
    spec = HealthSpec(window_ms=10_000, telemetry="level <= 5")
    j = Journal()
    j.start()
    j.run(range(0, 101), value=2.0)  # tank-fill's own `level`, in range
    _aux_level(j, 50, 9.0)  # tank-aux's `level` (another point of that name)
    assert verdict(j, spec).health is Health.HEALTHY


def test_after_the_window_the_other_contracts_values_do_not_count() -> None:
    spec = HealthSpec(window_ms=10_000, telemetry="level <= 5")
    j = Journal()
    j.start()
    _own_flow(j, range(0, 101))
    _aux_level(j, 50, 2.0)
    _aux_level(j, 150, 9.0)  # after the window's end: not what the window showed
    assert verdict(j, spec).health is Health.HEALTHY
