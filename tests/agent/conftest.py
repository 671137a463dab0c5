"""Agent test fixtures: hub keys, contracts with a validity window around now, a signer."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.loader import check_mapping
from contracts.schema import Contract
from contracts.schema_serialize import format_time
from contracts.signing import generate_keypair, load_private_key, sign_contract

EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "examples"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "keys")


def tank_document(**overrides: Any) -> dict[str, Any]:
    """tank-fill with a window around now and a 50 ms scan (fast tests), device `d1`."""
    doc = yaml.safe_load((EXAMPLES / "tank-fill.yaml").read_text())
    now = now_ms()
    doc.update(device="d1", site="s1", scan_period_ms=50,
               valid_from=format_time(now - 1000), valid_until=format_time(now + 3_600_000))
    for p in doc["points"]:
        if p["name"] == "level":
            p["frozen_after_ms"] = 600
            p["stale_after_ms"] = 1000
            del p["max_rate_per_s"]  # tests jump the level with sim.set(); spikes are unit-tested
        if p["name"] == "high_level":
            p["stale_after_ms"] = 1000
    doc.update(overrides)
    return doc


@pytest.fixture
def signer(keys: tuple[Path, Path]) -> Callable[[Contract], bytes]:
    key = load_private_key(keys[0])
    return lambda c: sign_contract(c, key)


@pytest.fixture
def tank_contract() -> Contract:
    return check_mapping(tank_document())
