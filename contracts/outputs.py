"""Outputs: what the engine may write, where each output is heading, and how fast it may get there.

Rules (invariant 2):
- Only write points owned by this contract (`owner == contract.contract`) are outputs; anything
  else never produces a Write, whatever `do`, `safe_state` or a manual command says.
- Every value that becomes a target is coerced to the point's kind (bool for bit points) and clamped
  into `limits`; validation should make clamping impossible, so a clamp is journaled (WRITE_CLAMPED).
- A numeric output with `max_rate_per_s` moves toward its target by at most
  `rate * elapsed_ms / 1000` per cycle; bools and unlimited numbers jump. When the remaining distance
  fits in one move the output lands exactly on the target (no float residue).
- A ramp starts from the device: when a rate-limited output is about to move and a GOOD read-back
  differs from the last command by more than half a raw step, the read-back (coerced and clamped
  into the limits) is the ramp's start (`ramp_start`). An output already at its target stays.
- Step targets are cumulative: step i's targets are the safe state overlaid with the `do` of steps
  0..i in order, so a step without `do` keeps what earlier steps set, and re-entering step i (after
  a resume) always restores the same targets. Manual writes override a target until the next entry.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from contracts.inputs import Reading
from contracts.schema import Contract, DataType
from contracts.types import PointName, Value


class WriteRefusal(enum.StrEnum):
    """Why a manual WRITE command was refused (journaled as WRITE_REFUSED with this reason)."""

    UNKNOWN_POINT = "unknown_point"
    READ_POINT = "read_point"
    NOT_OWNER = "not_owner"
    OUT_OF_LIMITS = "out_of_limits"
    WRONG_TYPE = "wrong_type"
    MODE = "mode"  # the contract is not in a mode that drives outputs


@dataclass(frozen=True, slots=True)
class Output:
    """An owned write point, compiled once. `step` is one raw step in engineering units (|scale|):
    a read-back within half a step of a value shows that value (integer registers round)."""

    name: PointName
    is_bool: bool
    low: float | None
    high: float | None
    rate_per_s: float | None
    step: float = 0.0


def within_resolution(step: float, expected: Value, actual: Value) -> bool:
    """Whether a read-back `actual` shows `expected`: bools exactly, numbers within half a step."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(expected) == bool(actual)
    return abs(float(expected) - float(actual)) <= step / 2 + 1e-9


@dataclass(frozen=True, slots=True)
class Clamp:
    """A target that had to be clamped: the point, what was asked, and the limit applied."""

    point: PointName
    requested: Value
    limit: float


@dataclass(frozen=True, slots=True)
class Plan:
    """Targets of one step (aligned with the outputs) and the clamps needed to get them."""

    targets: tuple[Value, ...]
    clamps: tuple[Clamp, ...]


def compile_outputs(contract: Contract) -> tuple[Output, ...]:
    """The owned write points of `contract`, in contract order."""
    outs = []
    for p in contract.write_points:
        if p.owner == contract.contract:
            is_bool = p.type is DataType.BOOL or p.table.is_bit
            low, high = p.limits if p.limits is not None else (None, None)
            outs.append(Output(p.name, is_bool, low, high, None if is_bool else p.max_rate_per_s,
                               abs(p.scale)))
    return tuple(outs)


def coerce(out: Output, value: Value) -> tuple[Value, Clamp | None]:
    """`value` as `out`'s kind, clamped into its limits; the Clamp says whether that was needed."""
    if out.is_bool:
        return bool(value), None
    v: Value = int(value) if isinstance(value, bool) else value
    if out.low is not None and v < out.low:
        return out.low, Clamp(point=out.name, requested=value, limit=out.low)
    if out.high is not None and v > out.high:
        return out.high, Clamp(point=out.name, requested=value, limit=out.high)
    return v, None


def _overlay(outs: tuple[Output, ...], base: tuple[Value, ...],
             pairs: tuple[tuple[PointName, Value], ...]) -> Plan:
    targets, clamps = list(base), []
    for name, value in pairs:
        for i, out in enumerate(outs):
            if out.name == name:
                targets[i], clamp = coerce(out, value)
                clamps += [clamp] if clamp is not None else []
    return Plan(targets=tuple(targets), clamps=tuple(clamps))


def safe_plan(contract: Contract, outs: tuple[Output, ...]) -> Plan:
    """The safe state as targets. A point the safe state forgets gets False, or 0 clamped."""
    base = tuple(coerce(o, False if o.is_bool else 0)[0] for o in outs)
    return _overlay(outs, base, contract.safe_state)


def step_plans(contract: Contract, outs: tuple[Output, ...]) -> tuple[Plan, ...]:
    """One Plan per step: cumulative targets (see the module rules)."""
    plans, base = [], safe_plan(contract, outs).targets
    for step in contract.steps:
        plan = _overlay(outs, base, step.do)
        plans.append(plan)
        base = plan.targets
    return tuple(plans)


def refuse_write(contract: Contract, name: PointName | None, value: Value | None) -> WriteRefusal | None:
    """Why a manual write of `value` to `name` must be refused, or None if it may be applied."""
    if name is None or not contract.has_point(name):
        return WriteRefusal.UNKNOWN_POINT
    p = contract.point(name)
    if not p.writes:
        return WriteRefusal.READ_POINT
    if p.owner != contract.contract:
        return WriteRefusal.NOT_OWNER
    is_bool = p.type is DataType.BOOL or p.table.is_bit
    if value is None or isinstance(value, bool) != is_bool or not _finite(value):
        return WriteRefusal.WRONG_TYPE
    if p.limits is not None and not p.limits[0] <= value <= p.limits[1]:
        return WriteRefusal.OUT_OF_LIMITS
    return None


def _finite(value: Value) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


def ramp_start(out: Output, current: Value, target: Value, readback: Reading | None) -> Value:
    """Where a move toward `target` starts: `current` (the last command), or the device's read-back
    when the output is rate-limited, about to move, and the device shows something else."""
    if out.rate_per_s is None or current == target or readback is None or not readback.good:
        return current
    actual = readback.value
    assert actual is not None  # good readings carry a value
    if isinstance(actual, bool) or within_resolution(out.step, current, actual):
        return current
    return coerce(out, actual)[0]


def move(out: Output, current: Value, target: Value, elapsed_ms: int) -> tuple[Value, bool]:
    """`current` moved toward `target` within the rate limit; the bool says the limit bit."""
    if current == target or out.rate_per_s is None:
        return target, False
    room = out.rate_per_s * elapsed_ms / 1000
    gap = target - current
    if gap > room:
        return current + room, True
    if gap < -room:
        return current - room, True
    return target, False
