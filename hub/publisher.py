"""Where the hub sends things to agents: the Publisher interface and its in-memory implementation.

Production publishes over MQTT (`…/contract`, `…/cmd`, `…/commission`: hub/sync/outbound.py's
MqttPublisher); tests
use MemoryPublisher, a real implementation that records what was sent. The hub service changes a
record's state only after its publish succeeded, so a Publisher signals failure by raising.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from contracts.inputs import Command


class Publisher(Protocol):
    """Where the hub sends things to agents (MQTT `…/contract`, `…/cmd` and `…/commission` in
    production)."""

    async def push_contract(self, site: str, device: str, signed: bytes) -> None: ...

    async def send_command(self, site: str, device: str, command: Command,
                           contract: str | None = None) -> None:
        """`command` for the contract with id `contract` (an agent runs several)."""

    async def request_commissioning(self, site: str, device: str, payload: bytes) -> None: ...


@dataclass
class MemoryPublisher:
    """A real in-memory Publisher: records what was sent, in order. `fail` makes the next calls
    raise ConnectionError, to exercise the publish-failed path."""

    contracts: list[tuple[str, str, bytes]] = field(default_factory=list)
    commands: list[tuple[str, str, Command]] = field(default_factory=list)
    commissioning: list[tuple[str, str, bytes]] = field(default_factory=list)
    fail: bool = False

    async def push_contract(self, site: str, device: str, signed: bytes) -> None:
        self._check()
        self.contracts.append((site, device, signed))

    async def send_command(self, site: str, device: str, command: Command,
                           contract: str | None = None) -> None:
        self._check()
        self.commands.append((site, device, command))

    async def request_commissioning(self, site: str, device: str, payload: bytes) -> None:
        self._check()
        self.commissioning.append((site, device, payload))

    def _check(self) -> None:
        if self.fail:
            raise ConnectionError("publisher is down")
