"""The broker policy, pure: topic ACL per role, and which client ids a login may use.

Rules (the embedded broker and the Mosquitto export enforce the same ones):
- Every client authenticates with a username and password; anonymous and unknown users are refused.
- A DEVICE publishes only its own upstream channels, fp/v1/{site}/{device}/{status, journal,
  contract/result, telemetry, commission/report, points/#}, and reads only its own downstream
  ones, {ack, contract, cmd, commission}.
  A device cannot forge another device's journal, nor read another device's contracts.
- The HUB may publish and read anything under fp/v1/#.
- An INTEGRATION (SCADA, historian) only reads fp/v1/{site}/+/points/# and fp/v1/{site}/+/status of
  the sites it is configured for, and publishes nothing.
- Everyone reads the hub's birth `fp/v1/_hub/status`; only the hub writes it (the hub's `fp/v1/#`).
- `fp/v1/_hub/probe` (the hub's subscription probe) is the hub's alone: no other role matches it.
- A last will is a publish made on the client's behalf later: its topic must pass the publish ACL.
- Client ids are bound to logins, so no login can take over another's session: the hub uses
  `fieldpact-hub`, a device `fp-agent-<device>`, an integration `fp-int-<name>`, each optionally
  followed by `/<suffix>` (a second connection of the same login, e.g. a test or debugging client).
  `/` never occurs in a site, device or login name, so one login's suffixed id is never another's
  base id. An empty id gets a random broker-assigned one (amqtt: `amqtt/<16 random chars>`); such
  an id is no login's, and one held by a connected session of another login is refused.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from contracts.topics import HUB_STATUS, PREFIX, Channel, check_id, covers, matches

HUB_STATUS_TOPIC = HUB_STATUS
"""The hub's retained birth (fixed interface 5): readable by every login, written by the hub only."""
HUB_LOGIN = "fieldpact-hub"
"""The hub's login on the embedded broker, and its default on an external one."""
HUB_CLIENT_ID = "fieldpact-hub"
DEVICE_CLIENT_PREFIX = "fp-agent-"
INTEGRATION_CLIENT_PREFIX = "fp-int-"
CLIENT_ID_SUFFIX_SEP = "/"
MAX_PACKET_BYTES = 4 * 1024 * 1024
"""Largest MQTT packet either broker accepts; a larger one disconnects the client. MQTT allows
256 MiB (section 2.2.3), which amqtt would buffer whole. Our largest payloads are a signed contract
(≤ 1 MiB document, contracts/loader.py) and a 500-entry journal batch (a few hundred kB)."""


class BrokerRole(enum.StrEnum):
    """What kind of MQTT client a broker login is; decides its ACL (not to be confused with
    hub.auth.ApiRole, what an HTTP API token may do)."""

    HUB = "hub"
    DEVICE = "device"
    INTEGRATION = "integration"


class Action(enum.StrEnum):
    """What a client asks the broker to do with a topic. RECEIVE is a delivery to a subscriber."""

    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    RECEIVE = "receive"


@dataclass(frozen=True, kw_only=True)
class UserSpec:
    """One broker user. A DEVICE names its site and device; an INTEGRATION the sites it reads.

    Raises ValueError naming the field from the constructor otherwise."""

    password_hash: str
    role: BrokerRole
    site: str | None = None
    device: str | None = None
    sites: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.role is BrokerRole.DEVICE:
            check_id("site", self.site or "")
            check_id("device", self.device or "")
        elif self.site is not None or self.device is not None:
            raise ValueError(f"role: {self.role.value} user must not name a site or device")
        if self.role is BrokerRole.INTEGRATION:
            if not self.sites:
                raise ValueError("sites: an integration must name at least one site")
            for i, site in enumerate(self.sites):
                check_id(f"sites[{i}]", site)
        elif self.sites:
            raise ValueError(f"sites: only an integration names sites, not a {self.role.value}")


_DEVICE_UP = (Channel.STATUS, Channel.JOURNAL, Channel.CONTRACT_RESULT, Channel.TELEMETRY,
              Channel.COMMISSION_REPORT)
_DEVICE_DOWN = (Channel.ACK, Channel.CONTRACT, Channel.CMD, Channel.COMMISSION)


def publish_filters(user: UserSpec) -> tuple[str, ...]:
    """Filters a user may publish under (a topic must match one)."""
    if user.role is BrokerRole.HUB:
        return (f"{PREFIX}/#",)
    if user.role is BrokerRole.DEVICE:
        base = f"{PREFIX}/{user.site}/{user.device}"
        return (*(f"{base}/{c.value}" for c in _DEVICE_UP), f"{base}/{Channel.POINTS.value}/#")
    return ()


def read_filters(user: UserSpec) -> tuple[str, ...]:
    """Filters a user may subscribe to (a requested filter must be covered by one)."""
    if user.role is BrokerRole.HUB:
        return (f"{PREFIX}/#",)
    if user.role is BrokerRole.DEVICE:
        own = tuple(f"{PREFIX}/{user.site}/{user.device}/{c.value}" for c in _DEVICE_DOWN)
        return (*own, HUB_STATUS_TOPIC)
    per_site = ((f"{PREFIX}/{s}/+/{Channel.POINTS.value}/#", f"{PREFIX}/{s}/+/{Channel.STATUS.value}")
                for s in user.sites)
    return (*(f for pair in per_site for f in pair), HUB_STATUS_TOPIC)


def allowed(user: UserSpec, action: Action, topic: str) -> bool:
    """The ACL decision. `topic` is a filter for SUBSCRIBE, a concrete topic otherwise.

    Never raises: a malformed topic or filter is refused.
    """
    try:
        if action is Action.PUBLISH:
            return any(matches(f, topic) for f in publish_filters(user))
        if action is Action.SUBSCRIBE:
            return any(covers(f, topic) for f in read_filters(user))
        return any(matches(f, topic) for f in read_filters(user))
    except ValueError:
        return False


def base_client_id(login: str, user: UserSpec) -> str:
    """The client id reserved for `login` (see the module rules)."""
    if user.role is BrokerRole.HUB:
        return HUB_CLIENT_ID
    if user.role is BrokerRole.DEVICE:
        return f"{DEVICE_CLIENT_PREFIX}{user.device}"
    return f"{INTEGRATION_CLIENT_PREFIX}{login}"


def client_id_allowed(login: str, user: UserSpec, client_id: str) -> bool:
    """True if `login` may connect with `client_id` (its base id, or base id + `/suffix`)."""
    base = base_client_id(login, user)
    if client_id == base:
        return True
    suffix = client_id.removeprefix(base + CLIENT_ID_SUFFIX_SEP)
    return suffix != client_id and suffix != ""


def check_login_name(part: str, name: str) -> str:
    """Return `name` if usable as a broker login (and in a Mosquitto file). Raises ValueError."""
    check_id(part, name)
    if any(c.isspace() or not c.isprintable() for c in name) or ":" in name:
        raise ValueError(f"{part}: {name[:80]!r} contains whitespace, ':' or a control character")
    return name
