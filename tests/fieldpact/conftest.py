"""The shell's tests drive the agent's commands too: the agent tests' hub keys and signer."""
from tests.agent.conftest import keys, signer

__all__ = ["keys", "signer"]
