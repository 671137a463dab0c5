"""Errors of the contract language.

    ContractError
    ├── ContractInvalid        one or more Issues (path + reason), all reported at once
    ├── PointsTableInvalid     an I/O table (CSV) with bad cells, each by line and column (points_csv)
    ├── ExprSyntaxError        an expression that does not parse; carries the column
    ├── EncodingError          bytes that are not a well-formed contract payload
    ├── ContractRefused        a signed contract the receiver must not run; carries a Refusal
    ├── SigningKeyError        a key file that is missing, malformed, not Ed25519, or already there
    ├── DocumentError          a contract file that cannot be read or decoded; names file and line
    └── FleetInvalid           a design, binding or snapshot that does not compile; every FleetIssue
                               names the design, the binding, the device and the field
    EngineError                a fault inside the engine (a bug or an impossible state); the agent
                               treats it as a trip into safe_state (invariant 3)
    └── ExprEvalError          an expression that cannot be evaluated (unknown name, division by
                               zero, operands of the wrong kind)
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from contracts.limits import quote


class ContractError(Exception):
    """Base of every error about a contract's content, encoding or signature."""


@dataclass(frozen=True, kw_only=True)
class Issue:
    """One thing wrong with a contract: where (`points[2].limits`) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class ContractInvalid(ContractError):
    """A contract failed validation; `issues` lists every problem found, in document order."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues))


class ExprSyntaxError(ContractError):
    """An expression that does not parse. `column` is 1-based, counted in the expression text."""

    def __init__(self, text: str, column: int, reason: str) -> None:
        self.text, self.column, self.reason = text, column, reason
        super().__init__(f"column {column}: {reason} in {quote(text)}")


class EncodingError(ContractError):
    """Bytes that do not decode to a contract payload of a version we understand."""


class Refusal(enum.StrEnum):
    """Why a receiver refuses a signed contract. Distinct values, journaled and reported as-is."""

    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    WRONG_DEVICE = "wrong_device"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    OLDER_VERSION = "older_version"
    INVALID = "invalid"
    WRITE_CONFLICT = "write_conflict"  # its write points overlap a contract the agent runs
    FELL_BACK = "fell_back"  # the agent fell back from this very contract (agent/fallback_rules.py)


class ContractRefused(ContractError):
    """A contract the receiver must not run. `refusal` is the category, `detail` says more."""

    def __init__(self, refusal: Refusal, detail: str) -> None:
        self.refusal, self.detail = refusal, detail
        super().__init__(f"{refusal.value}: {detail}")


class EngineError(Exception):
    """A fault inside the engine. Never raised for bad inputs: those trip guards instead."""


class SigningKeyError(ContractError):
    """A signing key file that is missing, unreadable, not Ed25519, or would be overwritten."""


class ExprEvalError(EngineError):
    """An expression could not be evaluated: an unknown name, a division by zero, an overflow, or
    operands of the wrong kind (arithmetic on a bool, ordering between bool and number)."""


class DocumentError(ContractError):
    """A contract file that cannot be read or decoded (bad YAML/JSON, duplicate key, unknown file
    type). The message names the file and, where known, the line and column."""


@dataclass(frozen=True, kw_only=True)
class FleetIssue:
    """One thing wrong in fleet configuration: which design (`tank-fill@3`), binding and device,
    which field (`points.pump_speed.address`) of which of them (`origin`: "design" or "binding"),
    and why. None where it does not apply."""

    design: str | None
    binding: str | None
    device: str | None
    field: str
    reason: str
    origin: str | None = None

    def __str__(self) -> str:
        where = ", ".join(f"{k} {v}" for k, v in (("design", self.design), ("binding", self.binding),
                                                   ("device", self.device)) if v is not None)
        field = f"{self.origin} field {self.field}" if self.origin else self.field
        return f"{where}: {field}: {self.reason}" if where else f"{field}: {self.reason}"


class FleetInvalid(ContractError):
    """A design, binding or snapshot that cannot be used; `issues` lists every problem found."""

    def __init__(self, issues: list[FleetIssue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues[:20]))
