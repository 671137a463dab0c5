"""The shell's tests drive the agent's commands too (the agent tests' hub keys and signer), and
the operator client against the hub tests' real hub (a real store, a real signing key, the app
under uvicorn on an ephemeral 127.0.0.1 port)."""
from tests.agent.conftest import keys, signer
from tests.hub.conftest import (
    auth_config, client, clock, publisher, registry, service, signing_key, store, tank_fill,
)

__all__ = ["auth_config", "client", "clock", "keys", "publisher", "registry", "service", "signer",
           "signing_key", "store", "tank_fill"]
