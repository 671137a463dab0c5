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
`modbus` (LEGACY_NAME). Errors name the key and the bad value (ConfigError).
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


class ConfigError(ValueError):
    """A configuration key missing or malformed; the message names the key and value."""


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


def _get(m: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
         default: Any = ...) -> Any:
    if key not in m:
        if default is ...:
            raise ConfigError(f"{where}{key}: is required")
        return default
    value = m[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _seconds(m: Mapping[str, Any], key: str, where: str, default: float, *, zero: bool = False) -> float:
    value = float(_get(m, key, (int, float), where, default))
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{where}{key}: must be > 0, got {value!r}")
    return value


_KNOWN = {"kind", "host", "port", "device", "baud", "parity", "stop_bits", "byte_timeout_s",
          "timeout_s", "retry"}


def parse_endpoint(name: str, m: Mapping[str, Any]) -> Endpoint:
    """One `[endpoints.NAME]` table. Raises ConfigError naming `endpoints.NAME.key`."""
    where = f"endpoints.{name}."
    if unknown := sorted(set(m) - _KNOWN):
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(_KNOWN))})")
    raw_kind = _get(m, "kind", str, where)
    try:
        kind = EndpointKind(raw_kind)
    except ValueError:
        raise ConfigError(f"{where}kind: expected one of {', '.join(k.value for k in EndpointKind)}, "
                          f"got {raw_kind!r}") from None
    retry = _get(m, "retry", dict, where, {})
    common: dict[str, Any] = {
        "name": name, "kind": kind, "timeout_s": _seconds(m, "timeout_s", where, DEFAULT_TIMEOUT_S),
        "retry_initial_s": _seconds(retry, "initial_s", where + "retry.", DEFAULT_RETRY_INITIAL_S),
        "retry_max_s": _seconds(retry, "max_s", where + "retry.", DEFAULT_RETRY_MAX_S)}
    if kind.serial:
        return Endpoint(**common, **_serial(m, where))
    port = _get(m, "port", int, where)
    if not 0 < port < 65536:
        raise ConfigError(f"{where}port: must be within 1..65535, got {port!r}")
    return Endpoint(**common, host=_get(m, "host", str, where), port=port)


def _serial(m: Mapping[str, Any], where: str) -> dict[str, Any]:
    parity = _get(m, "parity", str, where, DEFAULT_PARITY).upper()
    if parity not in ("N", "E", "O"):
        raise ConfigError(f"{where}parity: expected N, E or O, got {m['parity']!r}")
    stop_bits = _get(m, "stop_bits", int, where, 1)
    if stop_bits not in (1, 2):
        raise ConfigError(f"{where}stop_bits: expected 1 or 2, got {stop_bits!r}")
    baud = _get(m, "baud", int, where, DEFAULT_BAUD)
    if baud <= 0:
        raise ConfigError(f"{where}baud: must be > 0, got {baud!r}")
    return {"device": _get(m, "device", str, where), "baud": baud, "parity": parity,
            "stop_bits": stop_bits, "byte_timeout_s": _seconds(m, "byte_timeout_s", where, 0.0, zero=True)}


def parse_endpoints(m: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    """The `[endpoints.*]` tables, plus the legacy `[modbus]` one as the endpoint `modbus`. At least
    one is required; a name given twice is refused."""
    tables = _get(m, "endpoints", dict, "", {})
    found = [parse_endpoint(name, _get(tables, name, dict, "endpoints.")) for name in sorted(tables)]
    if "modbus" in m:
        if LEGACY_NAME in tables:
            raise ConfigError(f"modbus: the legacy table and endpoints.{LEGACY_NAME} name the same endpoint")
        found.insert(0, legacy_endpoint(_get(m, "modbus", dict, "")))
    if not found:
        raise ConfigError("endpoints: is required (or the legacy [modbus] table)")
    return tuple(found)


def legacy_endpoint(mb: Mapping[str, Any]) -> Endpoint:
    """`[modbus] host/port/timeout_s` as the one `modbus-tcp` endpoint named `modbus`."""
    return Endpoint(name=LEGACY_NAME, kind=EndpointKind.TCP, host=_get(mb, "host", str, "modbus."),
                    port=_get(mb, "port", int, "modbus."),
                    timeout_s=_seconds(mb, "timeout_s", "modbus.", DEFAULT_TIMEOUT_S))
