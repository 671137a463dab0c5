"""The uplink's live view (agent/uplink.py): telemetry and the retained `points/{name}` documents
for site integrations, published every `telemetry_s` while the broker is reachable.

Rules:
- They carry the device's truth: the last good read of every point (inputs and the read-back of
  write points) with its time, never the engine's belief; the engine's outputs go beside it as
  `commanded`, and a point's document names `commanded` only while the device does not show it.
- One telemetry message per running contract, from its latest cycle report; a retired contract
  reports no more.
- Telemetry is QoS 0 (the next one supersedes it); a point's retained document is published only
  when its value or its `commanded` changed.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from agent.config import AgentConfig
from agent.journal_thread import AsyncJournal
from agent.scan import CycleReport, ScanLoop
from contracts.topics import Channel
from contracts.types import Value
from contracts.wire import Telemetry
from transport.cancel import raise_if_cancelled
from transport.mqtt import LinkDown, MqttLink


class TelemetryPublisher:
    """The latest cycle report of each contract, published on `link` every `cfg.telemetry_s`."""

    def __init__(self, cfg: AgentConfig, journal: AsyncJournal, scan: ScanLoop, link: MqttLink,
                 topic: Callable[[Channel, str | None], str]) -> None:
        self.cfg, self.journal, self.scan, self.link = cfg, journal, scan, link
        self._topic = topic
        self.latest: dict[str | None, CycleReport] = {}  # by contract id: one telemetry each
        self._published_points: dict[str, object] = {}

    async def run(self) -> None:
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.cfg.telemetry_s)
            if not self.link.connected.is_set():
                continue
            running = self.scan.segments
            for key, report in sorted(self.latest.items(), key=lambda kv: str(kv[0])):
                if key not in running:
                    del self.latest[key]  # a retired contract reports no more
                    continue
                try:
                    await self.publish(report)
                except LinkDown:
                    break

    async def publish(self, report: CycleReport) -> None:
        """Telemetry of `report`, then each changed point's document. Raises LinkDown."""
        seg = self.scan.segments.get(report.contract) if report.contract else self.scan.segment
        state = report.result.state
        truth: dict[str, tuple[Value, int]] = dict(seg.last_good) if seg else {}
        commanded = dict(state.outputs)
        safe = seg.actuator.safe_view() if seg else None
        trip = (seg.trip_cause if seg else None) or (state.trip.value if state.trip else None)
        c = seg.active.contract if seg else None
        msg = Telemetry(ts_ms=report.now_ms, values=tuple(sorted((n, v) for n, (v, _) in truth.items())),
                        mode=state.mode.value, step=seg.step_name() if seg else None,
                        seq=(await self.journal.head())[0], contract=c.contract if c else None,
                        version=c.version if c else None, state=state.to_mapping(),
                        commanded=tuple(sorted(commanded.items())),
                        read_ms=tuple(sorted((n, ts) for n, (_, ts) in truth.items())),
                        safe=safe.state if safe else None, trip=trip if state.trip else None,
                        faults=seg.telemetry_faults() if seg else ())
        await self.link.publish(self._topic(Channel.TELEMETRY, None), msg.to_bytes(), qos=0)
        for name, (value, read_ms) in sorted(truth.items()):
            doc: dict[str, object] = {"value": value, "ts_ms": read_ms, "device": self.cfg.device}
            if seg and name in commanded and not seg.actuator.device_shows(name, commanded[name], value):
                doc["commanded"] = commanded[name]
            key = (value, doc.get("commanded"))
            if self._published_points.get(name, object()) != key:
                self._published_points[name] = key
                await self.link.publish(self._topic(Channel.POINTS, name), json.dumps(doc).encode(),
                                        qos=0, retain=True)
