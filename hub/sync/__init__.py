"""The hub's MQTT side: registry, device state machine, journal ingestion with acks, projection.

Theory of operation. One MqttLink (hub credentials) subscribes to every device's status, journal,
contract results and telemetry. HubSync (dispatcher.py) takes each message through four steps:
message → meaning (messages.py) → transition (decisions.py, outcomes.py over hub/states.py's
tables) → ack (outbound.py). Before anything changes, a message's claims are checked against its
topic's identity and the hub's records (hub/claims.py); a refused message changes nothing and is
logged and alarmed (bounded: once a minute per refusal). A message out of order is the peer's
fault (RemoteProtocolError: logged, counted); an illegal move the hub makes itself is a bug
(LocalProtocolError: raises). Background (background.py): silence → SILENCE (projected); journal
caught up → reconcile (hub/offline.py) → RECONCILE_DONE → live. Every transition goes through the
store's state tables (invariant 7).

A device in `reconciling` is caught up only once it has spoken since (a fresh birth, telemetry or
a journal batch) and the hub holds everything up to the head it reported then; a retained birth
replayed by the broker (identical to the stored one) is not news. Batches, acks and restarts:
batches.py. Subscriptions are never assumed: the link's probe on `fp/v1/_hub/probe` must echo, or
the link reconnects; agents resend from the ack the hub re-publishes on every connect.

    module          holds                                                     pure
    messages.py     topic + payload → what the device said                    yes
    decisions.py    what a message or the time changes (telemetry, silence)   yes
    outcomes.py     journal entries → contract outcomes and alarms            yes
    outbound.py     acks held until commit; MqttPublisher (any event loop)    acks
    core.py         shared state; device/contract events; claims; alarms      no
    presence.py     status, telemetry, contract results                       no
    journal.py      journal batches: ingest, store, ack, apply outcomes       no
    background.py   ticker: silence, stalls, projections, flushes             no
    batches.py      store batches, ack publishing, restarts                   no
    dispatcher.py   HubSync: run, worker, on_message                          no
"""
from hub.sync.background import FLUSH_S, TICK_S
from hub.sync.batches import MAX_BATCH, MAX_BATCH_ENTRIES
from hub.sync.core import wall_ms
from hub.sync.dispatcher import PROBE_S, HubSync
from hub.sync.outbound import CROSS_THREAD_TIMEOUT_S, MqttPublisher

__all__ = ["CROSS_THREAD_TIMEOUT_S", "FLUSH_S", "MAX_BATCH", "MAX_BATCH_ENTRIES", "PROBE_S",
           "TICK_S", "HubSync", "MqttPublisher", "wall_ms"]
