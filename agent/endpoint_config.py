"""The agent's named Modbus endpoints, as agent.toml declares them — values only, no I/O.

    [endpoints.plc]                        # a PLC on Modbus TCP
    kind = "modbus-tcp"
    host = "192.0.2.10"
    port = 502
    timeout_s = 0.3                        # per-request reply timeout
    retry = {initial_s = 0.05, max_s = 5}  # reconnect backoff (exponential, with jitter)

    [endpoints.line1]                      # drives and meters on an RS-485 line
    kind = "modbus-rtu"
    device = "/dev/ttyUSB0"
    baud = 19200
    parity = "E"                           # N, E or O
    stop_bits = 1
    byte_timeout_s = 0.002                 # silence kept between frames on the line

    [endpoints.gateway]                    # a serial gateway that passes RTU frames over TCP
    kind = "modbus-rtu-over-tcp"
    host = "192.0.2.20"
    port = 4001

A contract point names its endpoint (`endpoint: line1`); a point that names none is on the agent's
only endpoint. The old `[modbus] host/port/timeout_s` table is one `modbus-tcp` endpoint named
`modbus` (LEGACY_NAME). Read by runtime/settings.py (agent/config.py): errors name the key, the
file and the variable; a key of another kind (`baud` on a modbus-tcp endpoint) is refused as
unknown.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from runtime.settings import Table

DEFAULT_TIMEOUT_S = 0.5
"""Loopback and LAN Modbus TCP answers within tens of ms; half a second is slow enough for a busy
gateway and still lets a 1 s stale guard see the failure in time."""

DEFAULT_RETRY_INITIAL_S = 0.05
DEFAULT_RETRY_MAX_S = 5.0
"""Start retrying a device fast (a dropped TCP connection usually comes straight back) and back
off to 5 s, so a dead device costs one connect attempt per 5 s, not one per scan."""

DEFAULT_BAUD = 19200
"""The default rate of Modbus over Serial Line v1.02, section 2.5.1 ("19200 bps ... required")."""

DEFAULT_PARITY = "E"
"""Even parity is the serial line spec's default (section 2.5.1: "the default parity mode must be even")."""

MIN_FRAME_GAP_S = 0.00175
"""Modbus over Serial Line v1.02, 2.5.1.1: above 19200 baud the 3.5-character silence between
frames is fixed at 1.750 ms."""

LEGACY_NAME = "modbus"
"""The name the old `[modbus]` table's one endpoint gets."""


class EndpointKind(enum.StrEnum):
    TCP = "modbus-tcp"
    RTU = "modbus-rtu"
    RTU_OVER_TCP = "modbus-rtu-over-tcp"

    @property
    def serial(self) -> bool:
        return self is EndpointKind.RTU

    @property
    def rtu_framing(self) -> bool:
        return self is not EndpointKind.TCP


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One named endpoint: where it is, how it is framed, and its own timeout and retry policy."""

    name: str
    kind: EndpointKind
    host: str = ""            # TCP kinds
    port: int = 0
    device: str = ""          # modbus-rtu: the serial device
    baud: int = DEFAULT_BAUD
    parity: str = DEFAULT_PARITY
    stop_bits: int = 1
    byte_timeout_s: float = 0.0
    timeout_s: float = DEFAULT_TIMEOUT_S
    retry_initial_s: float = DEFAULT_RETRY_INITIAL_S
    retry_max_s: float = DEFAULT_RETRY_MAX_S

    @property
    def label(self) -> str:
        """Where it is, for logs: `tcp://h:p`, `rtu:/dev/ttyUSB0`, `rtu+tcp://h:p`."""
        if self.kind.serial:
            return f"rtu:{self.device}"
        return f"{'rtu+tcp' if self.kind.rtu_framing else 'tcp'}://{self.host}:{self.port}"

    @property
    def frame_gap_s(self) -> float:
        """Silence kept between frames on a serial line: byte_timeout_s when set, else 3.5
        characters of 11 bits at the baud rate (never less than MIN_FRAME_GAP_S); 0 for TCP."""
        if not self.kind.serial:
            return 0.0
        return self.byte_timeout_s or max(MIN_FRAME_GAP_S, 3.5 * 11 / self.baud)


def char_time_s(baud: int) -> float:
    """One RTU character on the wire: 11 bits (start, 8 data, parity or 2nd stop, stop)."""
    return 11 / baud


def read_endpoints(t: Table) -> tuple[Endpoint, ...]:
    """The `[endpoints.NAME]` tables of agent.toml, by name. Raises ConfigError naming the key."""
    tables = t.optional_table("endpoints")
    return () if tables is None else tuple(_endpoint(name, et) for name, et in tables.subtables())


def _endpoint(name: str, t: Table) -> Endpoint:
    kind = t.choice("kind", EndpointKind)
    retry = t.table("retry")
    common: dict[str, Any] = {
        "name": name, "kind": kind, "timeout_s": t.seconds("timeout_s", DEFAULT_TIMEOUT_S, above=0),
        "retry_initial_s": retry.seconds("initial_s", DEFAULT_RETRY_INITIAL_S, above=0),
        "retry_max_s": retry.seconds("max_s", DEFAULT_RETRY_MAX_S, above=0)}
    if kind.serial:
        return Endpoint(**common, device=t.string("device"),
                        baud=t.integer("baud", DEFAULT_BAUD, min=1),
                        parity=t.parsed("parity", _parity, DEFAULT_PARITY),
                        stop_bits=t.integer("stop_bits", 1, min=1, max=2),
                        byte_timeout_s=t.seconds("byte_timeout_s", 0.0, min=0))
    return Endpoint(**common, host=t.string("host"), port=t.integer("port", min=1, max=65535))


def _parity(text: str) -> str:
    if text.upper() not in ("N", "E", "O"):
        raise ValueError("must be N, E or O")
    return text.upper()


def legacy_endpoint(host: str, port: int, timeout_s: float) -> Endpoint:
    """The old `[modbus] host/port/timeout_s` table as the `modbus-tcp` endpoint named `modbus`."""
    return Endpoint(name=LEGACY_NAME, kind=EndpointKind.TCP, host=host, port=port, timeout_s=timeout_s)
