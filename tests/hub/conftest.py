"""Fixtures for the hub API tests: a real store file, a real signing key, an in-memory publisher,
and the app served by uvicorn on an ephemeral 127.0.0.1 port, spoken to over real HTTP."""
from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.loader import check_mapping, load_document
from contracts.schema_serialize import to_mapping
from contracts.signing import sign_contract
from hub.api import create_app
from hub.auth import AuthConfig, ApiRole, Token, hash_token
from hub.config import DeviceCredential
from hub.registry import DeviceRegistry
from hub.publisher import MemoryPublisher
from hub.service import HubService
from hub.store import HubStore
from tests.hub.serving import serving

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
START_MS = 1_795_500_000_000  # 2026-11-23, before the examples' validity windows
TOKENS = {ApiRole.VIEWER: "viewer-secret", ApiRole.OPERATOR: "operator-secret", ApiRole.ADMIN: "admin-secret"}
SERVER_START_TIMEOUT_S = 5.0


@dataclass
class StepClock:
    """A real clock for tests: returns `now`, which tests move explicitly."""

    now: int = START_MS

    def __call__(self) -> int:
        return self.now


def bearer(role: ApiRole) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def tank_fill() -> dict[str, Any]:
    """The example as a JSON-able document (YAML gives datetimes; the explicit mapping gives
    RFC 3339 strings and every field)."""
    return to_mapping(check_mapping(load_document(EXAMPLES / "tank-fill.yaml")))


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HubStore]:
    with HubStore.open(tmp_path / "hub.db") as s:
        yield s


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


REGISTERED = (("pump-station-7", "north-field"), ("booster-skid-2", "north-field"))
"""Devices registered in the API tests' hub (the examples' devices): only registered devices may
get contracts (hub/registry.py)."""


@pytest.fixture
def registry(store: HubStore) -> DeviceRegistry:
    return DeviceRegistry(store, [DeviceCredential(id=d, site=s, password_hash="-")
                                  for d, s in REGISTERED])


@pytest.fixture
def service(store: HubStore, signing_key: Ed25519PrivateKey, publisher: MemoryPublisher,
            clock: StepClock, registry: DeviceRegistry) -> HubService:
    signer = functools.partial(sign_contract, key=signing_key)
    return HubService(store, signer, publisher, clock, registry=registry)


@pytest.fixture
def auth_config() -> AuthConfig:
    return AuthConfig(tokens=tuple(Token(name=f"{role.name.lower()}-user", sha256=hash_token(t),
                                         role=role) for role, t in TOKENS.items()))


@pytest.fixture
async def client(service: HubService, auth_config: AuthConfig) -> AsyncIterator[httpx.AsyncClient]:
    """httpx client on the app served by a real uvicorn on 127.0.0.1:<ephemeral>."""
    async with serving(create_app(service, auth_config), timeout_s=SERVER_START_TIMEOUT_S,
                       name="uvicorn") as url, httpx.AsyncClient(base_url=url) as http:
        yield http
