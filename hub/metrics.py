"""Prometheus metrics for the hub, in a registry owned by one app (no module-level globals).

Fleet figures (devices by state, contracts by status, journal entries ingested) are read from the
store at scrape time by a collector, so they are right after a restart and never drift from the
database. API latency is a histogram fed by an ASGI middleware, labelled by endpoint name (not
path: device ids in paths would make the label set unbounded).
"""
from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.alarms import AlarmKind
from hub.errors import RemoteErrorCounts
from hub.states import ContractStatus, DeviceState
from hub.store import HubStore

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""API calls are local SQLite reads plus a publish; 1 ms .. 2.5 s spans healthy to stuck."""

CONTENT_TYPE = CONTENT_TYPE_LATEST


class StoreCollector(Collector):
    """Reads fleet counts from the store on every scrape."""

    def __init__(self, store: HubStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        yield _by_enum("fieldpact_hub_devices", "Devices by hub state", "state",
                       DeviceState, self.store.devices.count_by_state())
        yield _by_enum("fieldpact_hub_contracts", "Contract versions by status", "status",
                       ContractStatus, self.store.contracts.count_by_status())
        yield self._alarms()
        yield CounterMetricFamily("fieldpact_hub_journal_entries_ingested",
                                  "Journal entries stored (deduplicated by device and seq)",
                                  value=self.store.journal.count())


    def _alarms(self) -> Metric:
        alarms = GaugeMetricFamily("fieldpact_hub_alarms", "Active alarms by kind and state "
                                   "(unacknowledged, acknowledged)", labels=["kind", "state"])
        counts = self.store.alarms.count_active()
        kinds = sorted({k.value for k in AlarmKind} | {k for k, _ in counts})
        for kind in kinds:  # a kind raised by another part of the hub is exported too
            for acked, state in ((False, "unacknowledged"), (True, "acknowledged")):
                alarms.add_metric([kind, state], counts.get((kind, acked), 0))
        return alarms


def _by_enum(name: str, documentation: str, label: str, members: Iterable[enum.Enum],
             counts: Mapping[Any, int]) -> Metric:
    """A gauge with one sample per member of an enum (0 where `counts` has none)."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for member in members:
        family.add_metric([member.value], counts.get(member, 0))
    return family


class RemoteErrorCollector(Collector):
    """Devices' messages the sync side could not apply (out of order, unreadable, unknown
    record: hub/errors.py RemoteProtocolError), by fault; read through `counts()` at each scrape
    because the MQTT side hands its counter over once it runs."""

    def __init__(self, counts: Callable[[], RemoteErrorCounts]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("fieldpact_hub_remote_protocol_errors",
                                     "Device messages out of order or unreadable, by fault",
                                     labels=["fault"])
        for fault, n in self.counts().snapshot().items():
            family.add_metric([fault], n)
        yield family


class HubMetrics:
    """One app's registry: the store collector plus the API latency histogram, and the sync
    side's remote protocol errors when `remote_errors` is given."""

    def __init__(self, store: HubStore,
                 remote_errors: Callable[[], RemoteErrorCounts] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(store))
        if remote_errors is not None:
            self.registry.register(RemoteErrorCollector(remote_errors))
        self.api_latency = Histogram(
            "fieldpact_hub_api_request_seconds", "HTTP API request latency",
            labelnames=["method", "endpoint", "status"], buckets=LATENCY_BUCKETS_S,
            registry=self.registry)

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format."""
        return generate_latest(self.registry)


class LatencyMiddleware:
    """Pure ASGI middleware timing every HTTP request into HubMetrics.api_latency."""

    def __init__(self, app: ASGIApp, metrics: HubMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            endpoint = getattr(scope.get("endpoint"), "__name__", "unmatched")
            self.metrics.api_latency.labels(scope["method"], endpoint, str(status)).observe(
                time.perf_counter() - started)
