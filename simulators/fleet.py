"""Many simulated devices in one process and event loop, each on its own ephemeral port.

The fleet is what integration tests and the demo use to stand up a site: `SimFleet([("pump-7",
"tank"), ("booster-2", "pump_skid")])` gives device id -> port. One AsyncExitStack owns every
device, so a failure while starting the n-th device stops the ones already started.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType

from simulators.server import DEFAULT_TICK_MS, SimDevice

DeviceSpec = tuple[str, str]
"""(device id, model name), e.g. ("pump-station-7", "tank")."""


class SimFleet:
    """Start `specs` as SimDevices on `host`; raises ValueError for a duplicate device id.

    Each device gets its own noise seed (`seed` + its index), so their noise is independent but
    reproducible."""

    def __init__(self, specs: Sequence[DeviceSpec], *, host: str = "127.0.0.1",
                 tick_ms: int = DEFAULT_TICK_MS, seed: int = 0, time_scale: float = 1.0) -> None:
        ids = [device_id for device_id, _ in specs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"specs: duplicate device ids in {ids}")
        self.devices: dict[str, SimDevice] = {
            device_id: SimDevice(model, host=host, tick_ms=tick_ms, seed=seed + i,
                                 time_scale=time_scale)
            for i, (device_id, model) in enumerate(specs)
        }
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> SimFleet:
        async with AsyncExitStack() as stack:
            for device in self.devices.values():
                await stack.enter_async_context(device)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.aclose()

    @property
    def ports(self) -> dict[str, int]:
        """Device id -> bound TCP port (0 before the fleet has started)."""
        return {device_id: device.port for device_id, device in self.devices.items()}

    def device(self, device_id: str) -> SimDevice:
        """The device called `device_id`; raises KeyError naming the known ids."""
        try:
            return self.devices[device_id]
        except KeyError:
            raise KeyError(f"no device {device_id!r} (have: {', '.join(self.devices)})") from None
