"""What the hub does when a contract fails: the failure categories, the policy actions, the
default policy of each category, and the pacing of automatic re-issues.

Policies are configuration (hub.toml `[policies.<category>]`, read in hub/config.py); these are
the values they are made of, used by the planner, the lineage budget and offline reconciliation.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class FailureCategory(enum.StrEnum):
    RUNTIME = "runtime"    # the engine or a guard failed the contract
    ADAPTERS = "adapters"  # Modbus I/O failed (timeouts, exceptions, second writer)
    NETWORK = "network"    # the hub lost the device
    CONFIG = "config"      # the contract itself is wrong for the device (refused, bad points)
    TRIP = "trip"          # a safety latch: guard trip (stale, frozen, range, bad quality, adapter
                           # fault, second writer), autonomy or engine error put outputs in safe_state
    MODEL = "model"        # live: the process does not follow the contract's `expect` model while
                           # a write is commanded (a mistyped register, a stuck valve: model_divergence)


class PolicyAction(enum.StrEnum):
    RETRY = "retry"
    REASSIGN = "reassign"
    ESCALATE = "escalate"
    HOLD = "hold"
    ABORT = "abort"
    WAIT = "wait"  # the planner's own: a retry deferred by backoff or settle time; not configurable


DEFAULT_MAX_RETRIES = 3
"""`max_retries` of a `[policies.<category>]` table that does not say."""


@dataclass(frozen=True, kw_only=True)
class Policy:
    action: PolicyAction
    max_retries: int = DEFAULT_MAX_RETRIES


DEFAULT_POLICIES: Mapping[FailureCategory, Policy] = MappingProxyType({
    # A network failure usually heals on its own; a config failure never does.
    # Reality diverged from the projection without a fault: re-issue from the actual step (the
    # default planner), twice at most, then an operator decides.
    FailureCategory.RUNTIME: Policy(action=PolicyAction.RETRY, max_retries=2),
    FailureCategory.ADAPTERS: Policy(action=PolicyAction.RETRY, max_retries=3),
    FailureCategory.NETWORK: Policy(action=PolicyAction.RETRY, max_retries=5),
    FailureCategory.CONFIG: Policy(action=PolicyAction.HOLD, max_retries=0),
    # Automation never undoes a safety latch (DESIGN invariant 9): a re-issued contract would clear
    # it, so after a trip the contract stays latched until an operator resumes it.
    FailureCategory.TRIP: Policy(action=PolicyAction.HOLD, max_retries=0),
    # Connected is not correct: the agent may be writing a register that is not the one the
    # contract means. Stop advancing steps and let an operator look (`abort` puts outputs safe).
    FailureCategory.MODEL: Policy(action=PolicyAction.HOLD, max_retries=0),
})

DEFAULT_BACKOFF_S = 30.0
"""First wait between automatic re-issues of one lineage; it doubles with every re-issue, so a
contract that keeps failing cannot storm the device (the field saw ~70 re-issues in 10 s)."""
DEFAULT_BACKOFF_MAX_S = 3600.0
DEFAULT_SETTLE_S = 30.0
"""After a trip, an explicit retry policy acts only once the agent has reported healthy inputs
for this long: a sensor that flickers back for one scan must not restart a pump."""


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    """`[policies]` scalar keys: pacing of automatic re-issues (per contract lineage)."""

    backoff_ms: int = int(DEFAULT_BACKOFF_S * 1000)
    backoff_max_ms: int = int(DEFAULT_BACKOFF_MAX_S * 1000)
    settle_ms: int = int(DEFAULT_SETTLE_S * 1000)
