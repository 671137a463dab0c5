"""A deployment's strategy, and the waves it makes of a target's devices — pure (issue 13).

Rules:
- The canary is named devices, a count, or a percent of the target (rounded up, at least one);
  counted canaries are the first devices in id order, so the same target always gives the same
  canary. Named canaries must be in the target (an issue names the device).
- The other devices follow in id order, in waves: a fixed `size`, or a `rate_per_min` that grows
  by `growth` each wave (AWS IoT's exponential rollout): wave k holds floor(rate * growth**k)
  devices (at least one) and its pushes are paced at that many per minute. Every device is in
  exactly one wave; the canary is wave 0.
- The abort threshold: once at least `min_executed` devices have been executed (healthy or
  failed: unreachable and skipped ones are counted apart, never as executed), a failure
  percentage at or above `failure_pct` stops the expansion.
- A gate's verify deadline: `verify_margin_s` after the wave's reach deadline plus the health
  window; a device whose health is still unproven then (a GAP in its journal inside the window,
  or no entry at or after the window's end) fails the gate as `unproven`, so a deployment never
  waits on a verdict for good.
- Errors are ContractInvalid, each Issue naming the field (`strategy.waves.size`) and the value.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.errors import ContractInvalid, Issue

DEFAULT_WAVE_SIZE = 10
DEFAULT_REACH_DEADLINE_S = 60.0
"""A minute: an agent reconnects within seconds (backoff capped at tens of seconds)."""
DEFAULT_VERIFY_MARGIN_S = 120.0
"""Past the window and the reach deadline: two of an agent's keyframe periods (once a minute), so
a process at rest has journaled an entry after its window's end and the uplink has brought it."""
MAX_DEVICES = 100_000
MAX_WAVES = 10_000
"""A bound on what a request can make the planner build (invariant 10)."""


@dataclass(frozen=True, kw_only=True)
class Canary:
    devices: tuple[str, ...] | None = None
    count: int | None = None
    percent: float | None = None


@dataclass(frozen=True, kw_only=True)
class Waves:
    size: int | None = None
    rate_per_min: float | None = None
    growth: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Abort:
    failure_pct: float = 10.0
    min_executed: int = 1


@dataclass(frozen=True, kw_only=True)
class Strategy:
    canary: Canary = Canary(count=1)
    waves: Waves = Waves(size=DEFAULT_WAVE_SIZE)
    approval: str = "auto"  # "auto" | "manual": pause after each gate until approved
    pause_s: float = 0.0
    reach_deadline_s: float = DEFAULT_REACH_DEADLINE_S
    verify_margin_s: float = DEFAULT_VERIFY_MARGIN_S
    abort: Abort = Abort()

    def to_mapping(self) -> dict[str, Any]:
        canary = ({"devices": list(self.canary.devices)} if self.canary.devices is not None else
                  {"count": self.canary.count} if self.canary.count is not None else
                  {"percent": self.canary.percent})
        waves: dict[str, Any] = ({"size": self.waves.size} if self.waves.size is not None else
                                 {"rate_per_min": self.waves.rate_per_min,
                                  "growth": self.waves.growth})
        return {"canary": canary, "waves": waves, "approval": self.approval,
                "pause_s": self.pause_s, "reach_deadline_s": self.reach_deadline_s,
                "verify_margin_s": self.verify_margin_s,
                "abort": {"failure_pct": self.abort.failure_pct,
                          "min_executed": self.abort.min_executed}}


@dataclass(frozen=True, kw_only=True)
class Wave:
    index: int
    kind: str  # "canary" | "wave"
    devices: tuple[str, ...]
    rate_per_min: float | None = None  # pushes paced at this rate (None: all at once)


# ---- parsing ---------------------------------------------------------------------------------

def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Issues:
    def __init__(self) -> None:
        self.found: list[Issue] = []

    def add(self, path: str, reason: str) -> None:
        self.found.append(Issue(path=f"strategy.{path}", reason=reason))

    def number(self, m: Mapping[str, Any], key: str, path: str, lo: float, hi: float,
               default: float, *, integer: bool = False, open_low: bool = False) -> Any:
        v = m.get(key, default)
        ok = (_int(v) if integer else _number(v)) and (v > lo if open_low else v >= lo) and v <= hi
        if not ok:
            kind = "an integer" if integer else "a number"
            low = f"> {lo:g}" if open_low else f">= {lo:g}"
            self.add(path, f"must be {kind} {low} and <= {hi:g}, not {str(v)[:40]!r}")
            return default
        return v


def _one_of(m: Any, keys: tuple[str, ...], path: str, issues: _Issues) -> str | None:
    if not isinstance(m, Mapping):
        issues.add(path, f"must be an object with one of {', '.join(keys)}")
        return None
    found = [k for k in keys if k in m]
    extra = sorted(set(m) - set(keys) - {"growth"})
    if len(found) != 1 or extra:
        issues.add(path, f"must have exactly one of {', '.join(keys)}"
                         + (f" (unknown: {', '.join(map(str, extra))})" if extra else ""))
        return None
    return found[0]


def _canary(m: Any, issues: _Issues) -> Canary:
    key = _one_of(m, ("devices", "count", "percent"), "canary", issues)
    if key == "devices":
        devs = m["devices"]
        if not (isinstance(devs, list) and devs and all(isinstance(d, str) for d in devs)
                and len(set(devs)) == len(devs) and len(devs) <= MAX_DEVICES):
            issues.add("canary.devices", "must be a non-empty list of distinct device ids")
            return Canary(count=1)
        return Canary(devices=tuple(devs))
    if key == "count":
        return Canary(count=issues.number(m, "count", "canary.count", 1, MAX_DEVICES, 1,
                                          integer=True))
    if key == "percent":
        return Canary(percent=issues.number(m, "percent", "canary.percent", 0, 100, 10,
                                            open_low=True))
    return Canary(count=1)


def _waves(m: Any, issues: _Issues) -> Waves:
    key = _one_of(m, ("size", "rate_per_min"), "waves", issues)
    if key == "size":
        if "growth" in m:
            issues.add("waves.growth", "goes with rate_per_min, not size")
        return Waves(size=issues.number(m, "size", "waves.size", 1, MAX_DEVICES,
                                        DEFAULT_WAVE_SIZE, integer=True))
    if key == "rate_per_min":
        return Waves(rate_per_min=issues.number(m, "rate_per_min", "waves.rate_per_min", 0,
                                                MAX_DEVICES, 10, open_low=True),
                     growth=issues.number(m, "growth", "waves.growth", 1, 100, 1.0))
    return Waves(size=DEFAULT_WAVE_SIZE)


_KEYS = frozenset({"canary", "waves", "approval", "pause_s", "reach_deadline_s",
                   "verify_margin_s", "abort"})


def parse_strategy(doc: Any) -> Strategy:
    """The strategy of a deployment request (`strategy`, every key optional). Raises
    ContractInvalid naming every bad field."""
    issues = _Issues()
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ContractInvalid([Issue(path="strategy", reason="must be an object")])
    for k in sorted(set(doc) - _KEYS, key=str):
        issues.add(str(k)[:40], "unknown key")
    canary = _canary(doc.get("canary", {"count": 1}), issues)
    waves = _waves(doc.get("waves", {"size": DEFAULT_WAVE_SIZE}), issues)
    approval = doc.get("approval", "auto")
    if approval not in ("auto", "manual"):
        issues.add("approval", f"must be 'auto' or 'manual', not {str(approval)[:40]!r}")
        approval = "auto"
    abort_doc = doc.get("abort", {})
    if not isinstance(abort_doc, Mapping) or set(abort_doc) - {"failure_pct", "min_executed"}:
        issues.add("abort", "must be an object of failure_pct and min_executed")
        abort_doc = {}
    strategy = Strategy(
        canary=canary, waves=waves, approval=str(approval),
        pause_s=issues.number(doc, "pause_s", "pause_s", 0, 86_400, 0.0),
        reach_deadline_s=issues.number(doc, "reach_deadline_s", "reach_deadline_s", 0, 86_400,
                                       DEFAULT_REACH_DEADLINE_S, open_low=True),
        verify_margin_s=issues.number(doc, "verify_margin_s", "verify_margin_s", 0, 86_400,
                                      DEFAULT_VERIFY_MARGIN_S),
        abort=Abort(failure_pct=issues.number(abort_doc, "failure_pct", "abort.failure_pct", 0,
                                              100, 10.0, open_low=True),
                    min_executed=issues.number(abort_doc, "min_executed", "abort.min_executed",
                                               1, MAX_DEVICES, 1, integer=True)))
    if issues.found:
        raise ContractInvalid(issues.found)
    return strategy


# ---- planning --------------------------------------------------------------------------------

def canary_devices(strategy: Strategy, devices: Sequence[str]) -> tuple[str, ...]:
    """The canary of `devices` (in id order). Raises ContractInvalid for a named canary that is
    not in the target."""
    ordered = sorted(set(devices))
    c = strategy.canary
    if c.devices is not None:
        missing = [d for d in c.devices if d not in set(ordered)]
        if missing:
            raise ContractInvalid([Issue(path="strategy.canary.devices",
                                         reason=f"{missing[0]!r} is not in the target")])
        return tuple(sorted(c.devices))
    n = c.count if c.count is not None else math.ceil((c.percent or 0) * len(ordered) / 100)
    return tuple(ordered[:max(1, min(n, len(ordered)))])


def wave_sizes(waves: Waves, remaining: int) -> list[int]:
    """How many devices each wave after the canary holds, for `remaining` devices."""
    sizes: list[int] = []
    k = 0
    while remaining > 0 and len(sizes) < MAX_WAVES:
        if waves.size is not None:
            n = waves.size
        else:
            n = math.floor((waves.rate_per_min or 1) * waves.growth ** min(k, 200))
        n = max(1, min(n, remaining))
        sizes.append(n)
        remaining -= n
        k += 1
    if remaining > 0:  # MAX_WAVES reached: the rest go in the last wave
        sizes[-1] += remaining
    return sizes


def plan_waves(strategy: Strategy, devices: Iterable[str]) -> tuple[Wave, ...]:
    """The canary (wave 0) and the waves after it, every device in exactly one. Raises
    ContractInvalid for an empty target or a named canary outside it."""
    ordered = sorted(set(devices))
    if not ordered:
        raise ContractInvalid([Issue(path="target", reason="selects no device")])
    canary = canary_devices(strategy, ordered)
    rest = [d for d in ordered if d not in set(canary)]
    out = [Wave(index=0, kind="canary", devices=canary)]
    start = 0
    for k, n in enumerate(wave_sizes(strategy.waves, len(rest))):
        rate = None if strategy.waves.rate_per_min is None else \
            strategy.waves.rate_per_min * strategy.waves.growth ** min(k, 200)
        out.append(Wave(index=k + 1, kind="wave", devices=tuple(rest[start:start + n]),
                        rate_per_min=rate))
        start += n
    return tuple(out)


def push_offsets_ms(wave: Wave) -> tuple[int, ...]:
    """When each device of `wave` is due, in ms after the wave starts: all at once, or paced at
    the wave's rate per minute."""
    if wave.rate_per_min is None:
        return tuple(0 for _ in wave.devices)
    gap = 60_000 / wave.rate_per_min
    return tuple(int(i * gap) for i in range(len(wave.devices)))


def aborts(abort: Abort, healthy: int, failed: int) -> bool:
    """Whether the failures so far cross the abort threshold (unreachable devices not counted)."""
    executed = healthy + failed
    return executed >= abort.min_executed and failed * 100 >= abort.failure_pct * executed
