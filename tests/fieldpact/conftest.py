"""The hub fixtures of tests/hub (a real store, a real signing key, the app under uvicorn on an
ephemeral 127.0.0.1 port): the shell's clients are tested against the same real hub."""
from __future__ import annotations

from tests.hub.conftest import (  # noqa: F401 - fixtures, found by name
    auth_config, client, clock, publisher, registry, service, signing_key, store, tank_fill,
)
