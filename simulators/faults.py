"""Fault injection for the simulators: what each fault does, and how it is switched.

Rules of this module:
- `Fault` is a bit flag; the active set lives in `FaultSettings` (frozen) together with the
  parameters (latency, noise amplitude, exception code, drop duration).
- `FaultSwitch` is the one mutable holder a running device exposes as `device.faults`; every change
  goes through it and is announced to its listeners (the server closes connections on DROP).
- The same settings are mirrored in holding registers from `CONTROL_BASE` (9000) so a separate
  process can flip faults over Modbus; `to_registers`/`from_registers` are the pure mapping.
- Analog perturbation (noise, spikes) takes an explicit `random.Random`, so a seeded device replays
  the same noise.
"""
from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger(__name__)


class Fault(enum.IntFlag):
    """Faults a simulated device can show; the values are the bits of control register 9000."""

    FROZEN = 1       # keeps answering, read values stop changing
    NOISE = 2        # gaussian noise on analog inputs
    SPIKE = 4        # occasional large jump on an analog input
    EXCEPTION = 8    # every request answered with a Modbus exception
    DROP = 16        # client connections closed, new ones refused
    LATENCY = 32     # each response delayed
    SWAP_WORDS = 64  # word order of 32/64-bit values swapped
    HANG = 128       # connections stay open, requests are swallowed unanswered (a hung PLC)

    @classmethod
    def parse(cls, name: str) -> Fault:
        """`frozen`, `SWAP_WORDS`, `swap-words` -> the fault; raises ValueError naming the choices."""
        try:
            return cls[name.strip().upper().replace("-", "_")]
        except KeyError:
            choices = ", ".join(f.name.lower() for f in cls if f.name)
            raise ValueError(f"unknown fault {name!r} (choose from {choices})") from None


NO_FAULTS = Fault(0)
ALL_FAULTS = Fault(sum(f.value for f in Fault))

CONTROL_BASE = 9000
"""First control holding register; far above every model's map so it never collides with a point."""


class Control(enum.IntEnum):
    """Offsets of the control registers from CONTROL_BASE."""

    MASK = 0            # bitmask of Fault
    LATENCY_MS = 1      # delay of each response while LATENCY is active
    NOISE_MILLI = 2     # noise standard deviation, in thousandths of the engineering unit
    EXCEPTION_CODE = 3  # Modbus exception code answered while EXCEPTION is active
    DROP_FOR_MS = 4     # DROP clears itself after this long (0 = until cleared); without it a
                        # remote DROP could never be undone, since the device refuses connections
    HANG_FOR_MS = 5     # HANG clears itself after this long (0 = until cleared): a hung device
                        # answers nothing, its control registers included


CONTROL_COUNT = len(Control)

VALID_EXCEPTION_CODES = frozenset({1, 2, 3, 4, 5, 6, 8, 10, 11})
"""Exception codes of the Modbus Application Protocol v1.1b3, section 7."""

SERVER_DEVICE_FAILURE = 4
SPIKE_PROBABILITY = 0.05
"""Chance per tick that an analog input jumps: every few seconds at the default 100 ms tick."""
SPIKE_FRACTION = 0.5
"""Size of a spike as a fraction of the point's span: large enough to trip rate and range guards."""


@dataclass(frozen=True, kw_only=True)
class FaultSettings:
    active: Fault = NO_FAULTS
    latency_ms: int = 500
    noise_milli: int = 50
    exception_code: int = SERVER_DEVICE_FAILURE
    drop_for_ms: int = 0
    hang_for_ms: int = 0
    spike_probability: float = SPIKE_PROBABILITY

    def __post_init__(self) -> None:
        if self.exception_code not in VALID_EXCEPTION_CODES:
            raise ValueError(f"exception_code: {self.exception_code} is not a Modbus exception code")
        for name in ("latency_ms", "noise_milli", "drop_for_ms", "hang_for_ms"):
            if not 0 <= getattr(self, name) <= 0xFFFF:
                raise ValueError(f"{name}: {getattr(self, name)} is outside 0..65535")

    def has(self, fault: Fault) -> bool:
        return bool(self.active & fault)


def to_registers(settings: FaultSettings) -> list[int]:
    """The control registers (9000..) that describe `settings`."""
    return [int(settings.active), settings.latency_ms, settings.noise_milli,
            settings.exception_code, settings.drop_for_ms, settings.hang_for_ms]


def from_registers(settings: FaultSettings, offset: int, values: Sequence[int]) -> FaultSettings:
    """`settings` after a client wrote `values` at CONTROL_BASE + offset.

    Raises ValueError for an offset outside the control block, unknown fault bits or a bad code."""
    if offset < 0 or offset + len(values) > CONTROL_COUNT:
        raise ValueError(f"control register {CONTROL_BASE + offset}+{len(values)} is outside the block")
    words = to_registers(settings)
    words[offset:offset + len(values)] = list(values)
    if words[Control.MASK] & ~int(ALL_FAULTS):
        raise ValueError(f"control register {CONTROL_BASE}: unknown fault bits in {words[0]:#x}")
    return replace(settings, active=Fault(words[Control.MASK]), latency_ms=words[Control.LATENCY_MS],
                   noise_milli=words[Control.NOISE_MILLI],
                   exception_code=words[Control.EXCEPTION_CODE], drop_for_ms=words[Control.DROP_FOR_MS],
                   hang_for_ms=words[Control.HANG_FOR_MS])


def perturb(value: float, span: float, settings: FaultSettings, rng: random.Random) -> float:
    """`value` with the active analog faults applied (noise, then maybe a spike)."""
    if settings.has(Fault.NOISE):
        value += rng.gauss(0.0, settings.noise_milli / 1000)
    if settings.has(Fault.SPIKE) and rng.random() < settings.spike_probability:
        value += rng.choice((-1.0, 1.0)) * span * SPIKE_FRACTION
    return value


Listener = Callable[[FaultSettings, FaultSettings], None]


class FaultSwitch:
    """The run-time switch of one device's faults (`device.faults`)."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._settings = settings or FaultSettings()
        self._listeners: list[Listener] = []

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    @property
    def active(self) -> Fault:
        return self._settings.active

    def enable(self, fault: Fault) -> None:
        self.update(replace(self._settings, active=self._settings.active | fault))

    def disable(self, fault: Fault) -> None:
        self.update(replace(self._settings, active=self._settings.active & ~fault))

    def clear(self) -> None:
        self.update(replace(self._settings, active=NO_FAULTS))

    def configure(self, *, latency_ms: int | None = None, noise_milli: int | None = None,
                  exception_code: int | None = None, drop_for_ms: int | None = None,
                  hang_for_ms: int | None = None, spike_probability: float | None = None) -> None:
        """Change fault parameters; raises ValueError for out-of-range values."""
        given: dict[str, Any] = dict(
            latency_ms=latency_ms, noise_milli=noise_milli, exception_code=exception_code,
            drop_for_ms=drop_for_ms, hang_for_ms=hang_for_ms, spike_probability=spike_probability)
        self.update(replace(self._settings, **{k: v for k, v in given.items() if v is not None}))

    def update(self, settings: FaultSettings) -> None:
        old, self._settings = self._settings, settings
        if old != settings:
            log.info("sim_faults_changed active=%s", fault_names(settings.active))
            for listener in list(self._listeners):
                listener(old, settings)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)


def fault_names(faults: Fault) -> str:
    """`frozen|noise`, or `none`: for logs and the CLI."""
    return "|".join(f.name.lower() for f in Fault if f in faults and f.name) or "none"
