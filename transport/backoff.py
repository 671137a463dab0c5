"""Reconnect backoff shared by the MQTT link and the Modbus link: exponential, capped, jittered.

`Backoff` is the policy (a frozen value, checked when built); `Retrier` counts consecutive
failures against it for a link that reconnects on its own schedule.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Reconnect delays: `initial_s * factor**attempt`, capped at `max_s`, minus up to `jitter`
    of itself. Subtracting (never adding) jitter keeps every delay within `max_s`."""

    initial_s: float = 0.2
    max_s: float = 10.0
    jitter: float = 0.3
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"backoff.initial_s: {self.initial_s} must be in (0, max_s={self.max_s}]")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff.jitter: {self.jitter} must be in [0, 1)")
        if self.factor < 1:
            raise ValueError(f"backoff.factor: {self.factor} must be >= 1")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect attempt number `attempt` (0 = first retry)."""
        # Cap the exponent before computing: factor**attempt overflows floats after ~1000 attempts.
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        return base * (1 - self.jitter * rng.random())


class Retrier:
    """Consecutive-failure counter over a Backoff: `next_delay()` counts one more failure."""

    def __init__(self, backoff: Backoff, rng: random.Random | None = None) -> None:
        self.backoff, self.rng, self.attempt = backoff, rng or random.Random(), 0

    def next_delay(self) -> float:
        delay = self.backoff.delay(self.attempt, self.rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
