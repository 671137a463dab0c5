"""Semantic validation of a parsed contract (placeholder: being written)."""
from __future__ import annotations

from contracts.errors import Issue
from contracts.schema import Contract


def validate(contract: Contract) -> list[Issue]:
    """Every cross-field problem in `contract`, in document order. Empty means valid."""
    return []
