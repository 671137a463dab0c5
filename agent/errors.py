"""Errors of the agent: one root, so a caller (the CLI, a test, the loopback harness) can tell the
agent's own failures from a library's or the contract language's.

    AgentError                 base of every error the agent raises about its own work
    ├── DeviceLinkError        a device write that failed, or a device link that could not
    │                          connect; `reason` is a BAD reading's vocabulary plus
    │                          "not_writable", "encode" and "busy" (not sent: the endpoint
    │                          was still busy); `category` is the hub policy's failure category;
    │                          `code` the device's exception code ("exception:2" → 2), which
    │                          agent/faults.py reports in words
    ├── RegisterError          a value that cannot be converted to or from a point's registers
    │                          (also a ValueError: it is a bad value; category "config")
    └── JournalError           the journal cannot do what was asked (I/O error, corrupt or
        │                      too-new file, not open); the scan loop answers with safe_state
        └── JournalFull        SQLITE_FULL: nothing was stored; retention may make room

Kept apart (STYLE rule 8): the contract language's errors (`contracts.errors`: ContractRefused,
EngineError, ...) which the agent journals rather than raises, and `runtime.settings.ConfigError`
(shared with the hub: it names the key, the file and the environment variable). Third-party exceptions (sqlite3,
pymodbus, OSError) are wrapped at the boundary that meets them: `raise JournalError(...) from exc`;
a device's own answer (a Modbus exception code) is a BAD reading's reason, never an exception.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.modbus_exceptions import exception_code

if TYPE_CHECKING:
    from contracts.schema import Point


class AgentError(Exception):
    """Base of every error the agent raises about its own work."""


class DeviceLinkError(AgentError):
    """A device write that failed, or a device link that could not connect. `reason` is the same
    vocabulary as a BAD reading's reason, plus "not_writable", "encode" (a value that does not
    fit the point's type, wrapping the RegisterError) and "busy" (not sent: the endpoint was still
    busy at the cycle's deadline, agent/endpoints.py); `category` is the failure category the
    hub's policy uses."""

    def __init__(self, reason: str, detail: str, *, category: str = "adapters") -> None:
        self.reason, self.detail, self.category = reason, detail, category
        super().__init__(f"{reason}: {detail}")

    @property
    def code(self) -> int | None:
        """The device's Modbus exception code when it answered with one ("exception:2" → 2;
        contracts/modbus_exceptions.py)."""
        return exception_code(self.reason)


class RegisterError(AgentError, ValueError):
    """A value that cannot be converted for `point` (out of raw range, wrong kind, bad words).
    `category` is the failure category the hub's policy uses: a contract/map mismatch is config."""

    category = "config"

    def __init__(self, point: Point, value: object, reason: str) -> None:
        self.point, self.value, self.reason = point, value, reason
        super().__init__(f"points.{point.name}: {reason} (value {value!r}, type {point.type.value})")


class JournalError(AgentError):
    """The journal cannot do what was asked (I/O error, corrupt or too-new file, not open)."""


class JournalFull(JournalError):
    """SQLITE_FULL: the append was rolled back. Retention (`enforce_budget`) may make room."""
