"""Errors of the hub, kept apart by whose fault they are (STYLE 8; h11's local/remote split).

    HubError                        the root: every error the hub raises on purpose
    ├── ProtocolError               a state machine event that its table does not allow
    │   ├── LocalProtocolError      OUR bug: the hub itself asked for an illegal move. It raises,
    │   │   │                       all the way out (a bug must be seen, never logged and skipped)
    │   │   └── IllegalTransition   hub.states.transition(): `(state, event)` is not in the table
    │   └── RemoteProtocolError     the PEER's doing: a device sent something out of order, or
    │                               something the hub cannot read or place. The sync dispatcher
    │                               logs it, counts it (fieldpact_hub_remote_protocol_errors) and
    │                               carries on: it never raises out of the dispatcher
    ├── RequestRefused              an operator request the hub will not carry out (hub.refusals);
    │   ├── InvalidContract         422  the contract does not validate
    │   ├── WriteConflict           409  its write points overlap another active contract's
    │   ├── StaleVersion            409  not newer than the version the hub holds
    │   ├── IllegalRequest          409  not allowed in the contract's or device's state (an
    │   │                                IllegalTransition of the operator's, answered, not raised)
    │   ├── PublishFailed           503  the command or contract could not be sent
    │   ├── FleetRefused            422  a design, binding, snapshot or plan request that does not
    │   │                                check, every issue naming design, binding, device and
    │   │                                field (hub.fleet_api)
    │   └── FleetConflict           409  a design version that is stored already (never replaced)
    ├── LoopThreadError             a thread's event loop did not start or stop in time
    │                               (hub.loop_thread; also a RuntimeError)
    ├── StoreError                  hub.store: the database cannot be used
    │   ├── NotFound                no record with that id
    │   └── Duplicate               a record with that id exists already
    ├── RegistryRefused             hub.registry: an admin request on the device registry refused
    └── PacketTooLarge              hub.mqtt_framing: an MQTT client declared an oversize packet

Whose fault an illegal transition is depends on who triggered the event, and that is transition
knowledge: hub/states says it (`origin`, `refused`). Configuration errors are
runtime.settings' (shared with the agent), not the hub's.
"""
from __future__ import annotations

import enum
from typing import Any


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ProtocolError(HubError):
    """A state machine event that its table does not allow in the current state."""


class LocalProtocolError(ProtocolError):
    """The hub itself asked for something illegal: a bug in the hub. Never caught to be ignored."""


class IllegalTransition(LocalProtocolError):
    """An event that the machine's table does not allow in the current state. Raised by
    hub.states.transition(); a caller handling a peer's message turns it into a
    RemoteProtocolError (hub.states.refused)."""

    def __init__(self, machine: str, state: enum.StrEnum, event: enum.StrEnum) -> None:
        self.machine, self.state, self.event = machine, state, event
        super().__init__(f"{machine}: event {event.value!r} is illegal in state {state.value!r}")


class PeerFault(enum.StrEnum):
    """What a peer got wrong; the label of the remote protocol error metric."""

    OUT_OF_ORDER = "out_of_order"      # an event its state machine does not allow now
    UNREADABLE = "unreadable"          # a payload that does not decode
    UNKNOWN_RECORD = "unknown_record"  # names a record the hub does not hold (or holds already)


class RemoteProtocolError(ProtocolError):
    """A device sent something out of order or unreadable. Logged and counted by the sync
    dispatcher, never raised out of it. `fault` labels the metric; `device` is the topic's."""

    def __init__(self, fault: PeerFault, device: str | None, detail: str) -> None:
        self.fault, self.device, self.detail = fault, device, detail
        super().__init__(f"{fault.value}: {detail}")


class RemoteErrorCounts:
    """Remote protocol errors counted by fault, one per hub process (the MQTT side counts, the
    API's metrics read). Every key exists from the start, so a scrape from another thread never
    sees the mapping change size."""

    def __init__(self) -> None:
        self._counts: dict[PeerFault, int] = {fault: 0 for fault in PeerFault}

    def count(self, exc: RemoteProtocolError) -> None:
        self._counts[exc.fault] += 1

    def __getitem__(self, fault: PeerFault) -> int:
        return self._counts[fault]

    def snapshot(self) -> dict[str, Any]:
        return {fault.value: self._counts[fault] for fault in PeerFault}
