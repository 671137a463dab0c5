"""Drift: each device's desired contracts against what the device reports it runs.

Rules:
- Observed is what the device says: the contract and version of its birth and telemetry (the
  device row), the content hash of its journal's BOOT / CONTRACT entries, its refusals (hub/
  reports.py). Never "what the hub pushed": a contract pushed but not reported is not running.
- One entry per (device, contract) of the desired snapshot, each judged against what the device
  reports of that contract: the device row names one contract, so a device running several has
  the others' versions from its journal (`_head`; the last version of each it reported).
- A desired contract is in sync when the device reports running that contract id in a version
  whose configuration (contracts.fleet_compile.config_digest: the contract without version and
  validity) is the desired one, and the hash it journaled, if any, is the hub's record of it.
- Otherwise `why`, the first that holds (`judge`, pure): `fault` (the hub trusts nothing from the
  device), `offline`, `invalid` (the snapshot does not compile for it), `refused` (the device
  refused a version of it), `tripped` (what it runs is latched in safe state, so it takes nothing
  new until an operator resumes), `hash_mismatch`, `older_version` (it runs an older version and the
  desired configuration was issued since), `manual_push` (it runs a version of this contract the
  snapshot does not describe: pushed by hand or replanned), `other_contract`, `not_applied`.
- Since when: a (device, contract) row keeps the time it last went in or out of sync; a change of
  `why` keeps it. A drift lasting `alarm_after_ms` (due at the entry's `alarm_at_ms`) raises a
  `drift` alarm for the device; it clears when every desired contract of the device is in sync (or
  nothing is desired).
"""
from __future__ import annotations

import enum
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts.fleet_compile import document_digest
from contracts.types import EpochMs
from hub.alarms import AlarmKind
from hub.config import DEFAULT_DRIFT_ALARM_S
from hub.fleet import Desired, Fleet
from hub.states import ContractStatus, DeviceState
from hub.store import contract_id
from hub.store.fleet import ContractHead, DeviceHead, DriftRow

DEFAULT_ALARM_AFTER_MS = int(DEFAULT_DRIFT_ALARM_S * 1000)
"""hub.toml `drift_alarm_s` (hub/config.py says why a quarter of an hour)."""

FRESH_MS = 1000
"""How often the monitor evaluates drift (when the store changed): GET /api/drift answers from an
evaluation about this old and says when it was made. Drift is a minutes-scale fact, and one
evaluation reads every device row and contract head (~30 ms at 1,000 devices, bench/fleet.py)."""
STALE_MS = 3 * FRESH_MS
"""Older than this, the monitor is not running (or stalled): a request evaluates itself."""

MAX_ENTRIES = 100_000
"""Entries kept rendered (JSON) between evaluations: a fleet's worth, several times over."""

OFFLINE_STATES = frozenset({DeviceState.PROJECTED, DeviceState.UNKNOWN})


class Why(enum.StrEnum):
    FAULT = "fault"
    OFFLINE = "offline"
    INVALID = "invalid"
    REFUSED = "refused"
    TRIPPED = "tripped"
    HASH_MISMATCH = "hash_mismatch"
    OLDER_VERSION = "older_version"
    MANUAL_PUSH = "manual_push"
    OTHER_CONTRACT = "other_contract"
    NOT_APPLIED = "not_applied"


@dataclass(frozen=True, kw_only=True)
class Observed:
    """What one device reports, with the hub's facts about that contract version."""

    state: DeviceState
    contract: str | None           # "name@version" it runs, from birth / telemetry
    head: ContractHead | None      # the hub's record of it
    digest: str | None             # its config digest
    reported_hash: str | None      # from its journal
    refused: bool                  # it refused a version of the desired contract (journal)
    issued_since: bool             # a version of the desired contract newer than the one it runs
                                   # has the desired digest


def judge(desired: Desired, seen: Observed) -> tuple[bool, Why | None]:
    """(in sync, why not) for one desired contract of one device: the module's rules, pure."""
    if seen.state is DeviceState.FAULT:
        return False, Why.FAULT
    head = seen.head
    runs_it = head is not None and head.contract == desired.contract
    hash_ok = seen.reported_hash is None or head is None or seen.reported_hash == head.content_hash
    if desired.digest is not None and runs_it and seen.digest == desired.digest and hash_ok:
        return True, None
    for why, holds in ((Why.OFFLINE, seen.state in OFFLINE_STATES),
                       (Why.INVALID, desired.digest is None), (Why.REFUSED, seen.refused),
                       (Why.TRIPPED, head is not None and head.status is ContractStatus.TRIPPED),
                       (Why.HASH_MISMATCH, runs_it and not hash_ok),
                       (Why.OLDER_VERSION, runs_it and seen.issued_since),
                       (Why.MANUAL_PUSH, runs_it), (Why.OTHER_CONTRACT, head is not None)):
        if holds:
            return False, why
    return False, Why.NOT_APPLIED


class DriftMonitor:
    """Evaluates drift over the fleet, keeps since-when rows and the drift alarm."""

    def __init__(self, fleet: Fleet, alarm_after_ms: int = DEFAULT_ALARM_AFTER_MS) -> None:
        self.fleet, self.alarm_after_ms = fleet, alarm_after_ms
        self._digests: dict[str, str] = {}  # content hash -> config digest (records never change)
        self._rendered: tuple[Any, list[dict[str, Any]], bytes, EpochMs] = (None, [], b"[]", -STALE_MS)
        self._judged: dict[tuple[Any, ...], tuple[Observed, bool, Why | None]] = {}
        self._by_name: tuple[int, dict[str, list[ContractHead]]] = (-1, {})
        self._owner = threading.get_ident()
        self.timings_ms: list[float] = []
        """Duration of the last evaluations (at most 100): bench/fleet.py prints them."""
        self._entries: dict[tuple[Any, ...], tuple[dict[str, Any], bytes]] = {}

    def render(self) -> tuple[list[dict[str, Any]], bytes, EpochMs]:
        """The entries of the last evaluation, their JSON and when it was made. The monitor task
        (hub/drift_api.py) refreshes them every FRESH_MS; a request evaluates itself only when
        none is younger than STALE_MS (the task is not running), so polling costs no evaluation."""
        if self.fleet.clock() - self._rendered[3] >= STALE_MS and \
                threading.get_ident() == self._owner:  # its store connection is this thread's
            self.refresh()
        return self._rendered[1], self._rendered[2], self._rendered[3]

    def refresh(self) -> None:
        """Evaluate again when something was committed to the store (by either connection) or the
        registry changed since the last evaluation; else only raise the drift alarms that fell
        due (entries hold no "now": an unchanged store gives unchanged entries)."""
        key, now = (self.fleet.store.data_version(), self.fleet.registry.generation), self.fleet.clock()
        if key == self._rendered[0]:
            self._alarm(self._rendered[1], now)
            self._rendered = (*self._rendered[:3], now)
            return
        started = time.perf_counter()
        entries, fragments = self._evaluate()
        self.timings_ms = [*self.timings_ms[-99:], (time.perf_counter() - started) * 1000]
        after = (self.fleet.store.data_version(), self.fleet.registry.generation)
        self._rendered = (after, entries, b"[" + b",".join(fragments) + b"]", now)

    def evaluate(self) -> list[dict[str, Any]]:
        """Every desired contract of every device with a desired snapshot, as the API shows it;
        since-when rows and drift alarms updated."""
        return self._evaluate()[0]

    def _evaluate(self) -> tuple[list[dict[str, Any]], list[bytes]]:
        store, now = self.fleet.store, self.fleet.clock()
        devices, heads, by_name, epoch = self._facts()
        targets = {t.id: t for t in self.fleet.targets()}
        rows, kept = store.fleet.drift_rows(), set()
        changed: list[DriftRow] = []
        out, fragments, cache = [], [], {}
        for device, sid in sorted(store.fleet.desired().items()):
            t = targets.get(device)
            if t is None:
                continue  # unregistered since: nothing is desired of a device that is not there
            dev = devices.get(device) or DeviceHead(id=device, site=t.site,  # never heard from
                                                    state=DeviceState.UNKNOWN, last_seen_ms=None,
                                                    running=None)
            for want in self.fleet.desired(sid, t):
                key = (device, want.contract or "")
                inputs = self._inputs(dev, want, sid, heads, epoch)
                judged = self._judged.get(inputs)
                if judged is None:
                    seen = self._observe(dev, want, heads, by_name)
                    judged = (seen, *judge(want, seen))
                cache[inputs] = judged
                row = self._since(rows.get(key), device, key[1], judged[1], judged[2], now, changed)
                kept.add(key)
                entry, fragment = self._entry(inputs, row, dev, sid, want, judged[0])
                out.append(entry)
                fragments.append(fragment)
        self._judged = cache  # only what is current: the cache never grows past the fleet
        store.fleet.save_drift(changed, [k for k in rows if k not in kept])
        self._alarm(out, now)
        return out, fragments

    def _facts(self) -> tuple[dict[str, DeviceHead], Mapping[str, ContractHead],
                              Mapping[str, list[ContractHead]], int]:
        """Device heads, contract heads (and by contract name) and the contract epoch: read
        once per evaluation."""
        store = self.fleet.store
        self.fleet.reports.refresh()
        devices = {d.id: d for d in store.fleet.device_heads()}
        epoch, heads = store.fleet.contract_heads()  # a new epoch: judge every entry again
        if epoch != self._by_name[0]:
            by_name: dict[str, list[ContractHead]] = {}
            for h in heads.values():
                by_name.setdefault(h.contract, []).append(h)
            self._by_name = (epoch, by_name)
        return devices, heads, self._by_name[1], epoch

    def _head(self, dev: DeviceHead, want: Desired,
              heads: Mapping[str, ContractHead]) -> ContractHead | None:
        """The hub's record of what `dev` reports running of `want`'s contract: the version its
        birth / telemetry names when that is this contract; else the version of it its journal
        reported last (an agent runs several contracts, the device row names one); else, when
        it reports nothing of this contract, the one its device row names."""
        head = heads.get(dev.running) if dev.running else None
        if want.contract is None or (head is not None and head.contract == want.contract):
            return head
        told = self.fleet.reports.running(dev.id, want.contract)
        found = heads.get(contract_id(told.contract, told.version)) if told else None
        return found if found is not None and found.device == dev.id else head

    def _inputs(self, dev: DeviceHead, want: Desired, sid: str, heads: Mapping[str, ContractHead],
                epoch: int) -> tuple[Any, ...]:
        """Everything one judgment depends on: equal inputs, equal judgment (and entry)."""
        head = self._head(dev, want, heads)
        reports = self.fleet.reports
        return (want.contract, want.digest, want.design, want.binding, want.issues, sid, dev,
                epoch, head.id if head else None,
                reports.hash_of(dev.id, head.contract, head.version) if head else None,
                reports.refusal(dev.id, want.contract or "") is not None)

    def _entry(self, inputs: tuple[Any, ...], row: DriftRow, dev: DeviceHead, sid: str,
               want: Desired, seen: Observed) -> tuple[dict[str, Any], bytes]:
        key = (inputs, row)
        found = self._entries.get(key)
        if found is None:
            entry = _entry(dev, sid, want, seen, row, self.alarm_after_ms)
            found = self._entries[key] = (entry, json.dumps(entry, separators=(",", ":")).encode())
            if len(self._entries) > 4 * MAX_ENTRIES:
                self._entries = {key: found}
        return found

    def _observe(self, dev: DeviceHead, want: Desired, heads: Mapping[str, ContractHead],
                 by_name: Mapping[str, list[ContractHead]]) -> Observed:
        head = self._head(dev, want, heads)
        reported = (self.fleet.reports.hash_of(dev.id, head.contract, head.version)
                    if head is not None else None)
        refusal = self.fleet.reports.refusal(dev.id, want.contract) if want.contract else None
        versions = by_name.get(want.contract or "", ())
        runs_it = head is not None and head.contract == want.contract
        newer = [h for h in versions if head is not None and h.version > head.version]
        # The device's answer on `…/contract/result` (the record's status) counts as much as its
        # journal's: a version of the desired contract it refused, newer than what it runs.
        answered = any(h.status is ContractStatus.REFUSED for h in
                       (newer if runs_it else versions))
        return Observed(state=dev.state, contract=head.id if head else dev.running, head=head,
                        digest=self._digest(head) if head else None, reported_hash=reported,
                        refused=refusal is not None or answered,
                        issued_since=any(self._digest(h) == want.digest for h in newer))

    def _digest(self, head: ContractHead) -> str:
        if head.content_hash not in self._digests:
            doc = self.fleet.store.contracts.get(head.id).document
            self._digests[head.content_hash] = document_digest(doc)
        return self._digests[head.content_hash]

    @staticmethod
    def _since(row: DriftRow | None, device: str, contract: str, in_sync: bool, why: Why | None,
               now: EpochMs, changed: list[DriftRow]) -> DriftRow:
        if row is not None and row.in_sync == in_sync and row.why == (why and why.value):
            return row
        since = row.since_ms if row is not None and row.in_sync == in_sync else now
        new = DriftRow(device=device, contract=contract, in_sync=in_sync,
                       why=why.value if why else None, since_ms=since)
        changed.append(new)
        return new

    def _alarm(self, entries: list[dict[str, Any]], now: EpochMs) -> None:
        alarms = self.fleet.store.alarms
        drifting: dict[str, list[str]] = {}
        for e in entries:
            if e["alarm_at_ms"] is not None and e["alarm_at_ms"] <= now:
                drifting.setdefault(e["device"], []).append(f"{e['contract']} ({e['why']})")
        active = {a.device: a.detail for a in alarms.find(kind=AlarmKind.DRIFT)}
        for device, what in drifting.items():
            detail = "not running its desired snapshot: " + ", ".join(what)
            if active.get(device) != detail:  # raised again only when the reason changes
                alarms.raise_(device, AlarmKind.DRIFT, detail, now)
        for device in set(active) - set(drifting):
            alarms.clear_kind(device, AlarmKind.DRIFT, now)


def _entry(dev: DeviceHead, sid: str, want: Desired, seen: Observed, row: DriftRow,
           alarm_after_ms: int) -> dict[str, Any]:
    """One entry of GET /api/drift. It holds no "now" (the alarm is due at `alarm_at_ms`), so an
    evaluation is valid until the store changes (DriftMonitor.render caches it)."""
    return {
        "device": dev.id, "site": dev.site, "state": dev.state.value, "contract": want.contract,
        "desired": {"snapshot": sid, "design": want.design, "binding": want.binding,
                    "digest": want.digest, "issues": [str(i) for i in want.issues]},
        "observed": {"contract": seen.contract, "status": seen.head.status.value if seen.head
                     else None, "hash": seen.reported_hash, "digest": seen.digest,
                     "last_seen_ms": dev.last_seen_ms},
        "in_sync": row.in_sync, "why": row.why, "since_ms": row.since_ms,
        "alarm_at_ms": None if row.in_sync else row.since_ms + alarm_after_ms,
    }
