"""One contract's view of the device link the agent's contracts share.

Everything passes through to the one link but `hurry`: each contract's actuator asks the link to
look for the device every scan period while its safe state is unconfirmed because the device does
not answer its read-backs (agent/actuation.py), and says None once it is confirmed or the device
answers (an exception answer is no link failure: hurrying would not confirm it). With several contracts, one saying None must not cancel
another's request, so `hurry` is a vote: the link hurries while any contract asks, at the
shortest interval asked. A retired contract's vote is withdrawn (`withdraw`).
"""
from __future__ import annotations

from collections.abc import Sequence

from agent.link import DeviceLink
from agent.registers import ReadRequest
from contracts.inputs import Reading
from contracts.schema import Point
from contracts.types import EpochMs, PointName, Value


class HurryVotes:
    """The contracts' hurry requests on one link."""

    def __init__(self, link: DeviceLink) -> None:
        self.link = link
        self._votes: dict[str, float] = {}

    def vote(self, key: str, interval_s: float | None) -> None:
        if interval_s is None:
            self._votes.pop(key, None)
        else:
            self._votes[key] = interval_s
        self.link.hurry(min(self._votes.values()) if self._votes else None)

    def withdraw(self, key: str) -> None:
        self.vote(key, None)


class SharedLink:
    """Contract `key`'s view of the shared link (a DeviceLink)."""

    def __init__(self, votes: HurryVotes, key: str) -> None:
        self._votes, self._key, self._link = votes, key, votes.link

    async def connect(self) -> None:
        await self._link.connect()

    async def close(self) -> None:
        await self._link.close()

    async def read(self, plan: Sequence[ReadRequest], now_ms: EpochMs) -> dict[PointName, Reading]:
        return await self._link.read(plan, now_ms)

    async def write(self, point: Point, value: Value) -> None:
        await self._link.write(point, value)

    def hurry(self, interval_s: float | None) -> None:
        self._votes.vote(self._key, interval_s)

    def pace(self, deadline: float | None) -> None:
        self._link.pace(deadline)

    @property
    def connected(self) -> bool:
        return self._link.connected
