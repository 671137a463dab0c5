"""One contract's view of the device link the agent's contracts share.

Everything passes through to the one link but `hurry`: each contract's actuator asks the link to
look for the device every scan period while its safe state is unconfirmed because the device does
not answer its read-backs (agent/actuation.py), and says None once it is confirmed or the device
answers (an exception answer is no link failure: hurrying would not confirm it). With several contracts, one saying None must not cancel
another's request, so `hurry` is a vote: the link hurries while any contract asks, at the
shortest interval asked. A retired contract's vote is withdrawn (`withdraw`).

A vote may name the endpoints it is for (those of the points the device does not answer): on an
EndpointSet only those endpoints hurry, each at the shortest interval asked of it. A hurried
endpoint leaves the rest of a read BAD after one slow reply (agent/modbus.py), so hurrying an
endpoint that answers would take its contracts' reads down for another endpoint's dead device.
"""
from __future__ import annotations

from collections.abc import Sequence

from agent.endpoints import EndpointSet
from agent.link import DeviceLink
from agent.registers import ReadRequest
from contracts.inputs import Reading
from contracts.schema import Point
from contracts.types import EpochMs, PointName, Value


class HurryVotes:
    """The contracts' hurry requests on one link."""

    def __init__(self, link: DeviceLink) -> None:
        self.link = link
        self._votes: dict[str, tuple[float, frozenset[str | None] | None]] = {}

    def vote(self, key: str, interval_s: float | None,
             endpoints: frozenset[str | None] | None = None) -> None:
        """Contract `key` asks for `interval_s` (None: nothing) on `endpoints` (None: all; a
        point's endpoint None is the default one)."""
        if interval_s is None:
            self._votes.pop(key, None)
        else:
            self._votes[key] = (interval_s, endpoints)
        if not isinstance(self.link, EndpointSet):
            self.link.hurry(min((v for v, _ in self._votes.values()), default=None))
            return
        default = self.link.default
        asked: dict[str, float] = {}
        for interval, names in self._votes.values():
            for name in self.link.names if names is None else (n or default for n in names):
                if name is not None:
                    asked[name] = min(interval, asked.get(name, interval))
        self.link.hurry_each(asked)

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

    def hurry(self, interval_s: float | None,
              endpoints: frozenset[str | None] | None = None) -> None:
        self._votes.vote(self._key, interval_s, endpoints)

    def pace(self, deadline: float | None) -> None:
        self._link.pace(deadline)

    @property
    def connected(self) -> bool:
        return self._link.connected
