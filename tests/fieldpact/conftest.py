"""The shell's tests drive the agent's commands too (the agent tests' hub keys and signer), and
the operator client against the hub tests' real hub (a real store, a real signing key, the app
under uvicorn on an ephemeral 127.0.0.1 port)."""
import logging
from collections.abc import Iterator

import pytest

from tests.agent.conftest import keys, signer
from tests.hub.conftest import (
    auth_config, client, clock, publisher, registry, service, signing_key, store, tank_fill,
)

__all__ = ["auth_config", "client", "clock", "keys", "publisher", "registry", "service", "signer",
           "signing_key", "store", "tank_fill", "uvicorn_loggers_restored"]

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def uvicorn_loggers_restored() -> Iterator[None]:
    """A test that serves the hub in this process lets uvicorn configure its loggers (their own
    handlers, no propagation). Each test here starts with them as Python makes them and leaves
    them as it found them, so a test of the shell's logging (test_demo) sees only what it set up
    itself, whichever tests ran before it."""
    loggers = [logging.getLogger(n) for n in UVICORN_LOGGERS]
    saved = [(lg.handlers[:], lg.propagate, lg.level, lg.disabled) for lg in loggers]
    for logger in loggers:
        logger.handlers[:], logger.propagate, logger.disabled = [], True, False
        logger.setLevel(logging.NOTSET)
    yield
    for logger, (handlers, propagate, level, disabled) in zip(loggers, saved, strict=True):
        logger.handlers[:], logger.propagate, logger.disabled = handlers, propagate, disabled
        logger.setLevel(level)
