"""Shared aliases for the contract language. Imported by the agent and the hub alike."""
from __future__ import annotations

from typing import TypeAlias

Value: TypeAlias = "bool | int | float"
"""A point value in engineering units: bool for coils/discrete inputs, a number otherwise."""

EpochMs: TypeAlias = int
"""Wall-clock time as integer milliseconds since the Unix epoch (UTC). Never a float: the engine
compares times exactly, and the same integer means the same instant on agent and hub."""

PointName: TypeAlias = str
"""A point's name, unique within a contract; the key of inputs, outputs and expressions."""
