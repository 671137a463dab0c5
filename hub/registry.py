"""The device registry: only devices an admin registered exist (issue 9).

Rules:
- A device is registered by an admin, either in hub.toml (`[[devices]]`: id, site, broker password
  hash, optional labels and pinned `journal_key`) or through the admin API (`POST /api/devices`,
  stored in the hub database; `DELETE /api/devices/{id}` removes it). hub.toml wins: the API can
  neither re-register nor remove a configured device, nor replace a key pinned there.
- Nothing else creates a device: a contract for an unregistered device is refused (422 naming
  it), and a birth from one (possible on an external broker with a broad ACL) is refused with an
  `unknown_device` alarm — raised once per name, for at most MAX_UNKNOWN_TRACKED names, so a client
  inventing names cannot fill the alarm table.
- A device's journal key is pinned in hub.toml or enrolled by an admin (`PUT
  /api/devices/{id}/journal-key`), never learnt from the device itself. With a key known, every
  journal batch must carry a signature that verifies under it (hub/claims.py).
- A device's endpoints (hub/device_endpoints.py) are listed in hub.toml (pinned) or set by an admin
  (`POST /api/devices`, `PUT /api/devices/{id}/endpoints`), the same way as its key.
"""
from __future__ import annotations

from hub.errors import HubError

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.journal_sig import parse_public_key
from contracts.limits import quote
from contracts.types import EpochMs
from hub.claims import CLAIM_MISMATCH, UNKNOWN_DEVICE, Verdict
from hub.config import DeviceCredential
from hub.device_endpoints import DeviceEndpoint, from_json, to_json
from hub.store import Duplicate, HubStore, NotFound

MAX_UNKNOWN_TRACKED = 1024
"""Unregistered device names remembered for alarming once each; past this many the hub only logs
(one compromised broker login could otherwise invent names without end)."""


class RegistryRefused(HubError):
    """An admin request the registry will not carry out; `field` names what is wrong."""

    def __init__(self, field_name: str, reason: str, *, conflict: bool = False) -> None:
        self.field, self.reason, self.conflict = field_name, reason, conflict
        super().__init__(f"{field_name}: {reason}")


@dataclass(frozen=True, kw_only=True)
class RegisteredDevice:
    id: str
    site: str
    labels: Mapping[str, str] = field(default_factory=dict)
    journal_key: str | None = None  # `ed25519:<base64>`
    source: str = "config"          # "config" (hub.toml) or "api"
    key_pinned: bool = False        # the key is in hub.toml: the API may not change it
    endpoints: tuple[DeviceEndpoint, ...] = ()
    endpoints_pinned: bool = False  # listed in hub.toml: the API may not change them


class DeviceRegistry:
    """hub.toml devices plus the store's API-registered ones. The API rows and enrolled keys are
    read once and re-read after every change made through this object — the one per hub process
    that the API and the MQTT side share — so a lookup per message costs no query."""

    def __init__(self, store: HubStore, configured: Iterable[DeviceCredential] = (), *,
                 require_signed_journals: bool = False) -> None:
        self.store = store
        self.require_signed_journals = require_signed_journals
        self._config = {d.id: _from_config(d) for d in configured}
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._unknown: set[str] = set()
        self._api: dict[str, RegisteredDevice] = {}
        self._enrolled: dict[str, str] = {}
        self._endpoints: dict[str, tuple[DeviceEndpoint, ...]] = {}
        self._by_device: tuple[int, dict[str, tuple[DeviceEndpoint, ...]]] = (-1, {})
        self.generation = 0
        """Counts changes made through this object: readers may cache what they derive from it."""
        self._reload()

    def _reload(self) -> None:
        self.generation += 1
        self._api = {i: RegisteredDevice(id=i, site=s, labels=labels, source="api")
                     for i, s, labels in self.store.registry.devices()}
        self._enrolled = self.store.registry.keys()
        self._endpoints = {d: from_json(t) for d, t in self.store.registry.endpoints().items()}

    def get(self, device: str) -> RegisteredDevice | None:
        found = self._config.get(device) or self._api.get(device)
        if found is not None and not found.key_pinned:
            found = replace(found, journal_key=self._enrolled.get(device))
        if found is not None and not found.endpoints_pinned:
            found = replace(found, endpoints=self._endpoints.get(device, ()))
        return found

    def all(self) -> list[RegisteredDevice]:
        ids = sorted({*self._config, *self._api})
        return [d for d in (self.get(i) for i in ids) if d is not None]

    def endpoints_by_device(self) -> Mapping[str, tuple[DeviceEndpoint, ...]]:
        """device -> its listed endpoints (only devices that list some), kept per generation."""
        if self._by_device[0] != self.generation:
            self._by_device = (self.generation, {d.id: d.endpoints for d in self.all()
                                                 if d.endpoints})
        return self._by_device[1]

    def labels(self, device: str, claimed: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
        """The device's labels: what it says about itself, overridden by what an admin set."""
        rec = self.get(device)
        return {**dict(claimed), **(dict(rec.labels) if rec else {})}

    def journal_key(self, device: str) -> Ed25519PublicKey | None:
        """The device's journal public key, or None when none is pinned or enrolled."""
        rec = self.get(device)
        if rec is None or rec.journal_key is None:
            return None
        if rec.journal_key not in self._keys:
            self._keys[rec.journal_key] = parse_public_key(rec.journal_key)
        return self._keys[rec.journal_key]

    def registered(self, device: str) -> bool:
        """Whether `device` is registered (`get` without building its record: the sync side
        asks for every message it handles)."""
        return device in self._config or device in self._api

    def admits(self, site: str, device: str) -> Verdict:
        """Whether `device` of `site` (a topic's identity, or a contract's) is registered."""
        rec = self._config.get(device) or self._api.get(device)  # the site is all it needs
        if rec is None:
            return Verdict(ok=False, alarm=UNKNOWN_DEVICE,
                           detail=f"device {quote(device, bare=True)} is not registered")
        if rec.site != site:
            return Verdict(ok=False, alarm=CLAIM_MISMATCH,
                           detail=f"device {quote(device, bare=True)} is registered for site "
                                  f"{quote(rec.site, bare=True)}, not {quote(site, bare=True)}")
        return Verdict(ok=True)

    def first_sight(self, device: str) -> bool:
        """True the first time an unregistered `device` is seen (alarm it), else False."""
        if device in self._unknown or len(self._unknown) >= MAX_UNKNOWN_TRACKED:
            return False
        self._unknown.add(device)
        return True

    # -- admin changes --------------------------------------------------------------------
    def register(self, device: str, site: str, labels: Mapping[str, str], journal_key: str | None,
                 ts_ms: EpochMs, actor: str,
                 endpoints: tuple[DeviceEndpoint, ...] = ()) -> RegisteredDevice:
        """Raises RegistryRefused (conflict for an id already registered)."""
        if device in self._config:
            raise RegistryRefused("id", f"{quote(device, bare=True)} is configured in hub.toml",
                                  conflict=True)
        _check_key(journal_key)
        try:
            self.store.registry.add(device, site, labels, ts_ms, actor)
        except Duplicate:
            raise RegistryRefused("id", f"{quote(device, bare=True)} is registered already",
                                  conflict=True) from None
        if journal_key is not None:
            self.store.registry.set_key(device, journal_key, ts_ms, actor)
        if endpoints:
            self.store.registry.set_endpoints(device, to_json(endpoints), ts_ms, actor)
        self.store.devices.ensure(device, site, ts_ms, labels)  # listed (unknown) until it speaks
        self._reload()
        self._unknown.discard(device)
        registered = self.get(device)
        assert registered is not None
        return registered

    def remove(self, device: str) -> None:
        """Unregister an API device and drop its device row (it no longer exists); its journal,
        contracts and audit stay. Raises NotFound, or RegistryRefused for a hub.toml device or
        one with contracts still in force."""
        if device in self._config:
            raise RegistryRefused("id", f"{quote(device, bare=True)} is configured in hub.toml; "
                                        "remove it there", conflict=True)
        if device not in self._api:
            raise NotFound("device", device)
        claiming = [r.id for r in self.store.contracts.find(device=device) if r.status.claims_points]
        if claiming:
            raise RegistryRefused("id", f"{quote(device, bare=True)} still has contracts in force "
                                        f"({quote(', '.join(claiming), bare=True)}); "
                                        "abort them first",
                                  conflict=True)
        self.store.registry.remove(device)  # its journal and history stay on record
        self._reload()

    def enroll_key(self, device: str, journal_key: str, ts_ms: EpochMs, actor: str) -> None:
        """Raises NotFound, or RegistryRefused for a bad key or one pinned in hub.toml."""
        rec = self.get(device)
        if rec is None:
            raise NotFound("device", device)
        if rec.key_pinned:
            raise RegistryRefused("journal_key", "pinned in hub.toml; change it there",
                                  conflict=True)
        _check_key(journal_key)
        self.store.registry.set_key(device, journal_key, ts_ms, actor)
        self._reload()

    def set_endpoints(self, device: str, endpoints: tuple[DeviceEndpoint, ...], ts_ms: EpochMs,
                      actor: str) -> RegisteredDevice:
        """Replace a device's endpoints (an empty list: unknown again). Raises NotFound, or
        RegistryRefused for endpoints listed in hub.toml."""
        rec = self.get(device)
        if rec is None:
            raise NotFound("device", device)
        if rec.endpoints_pinned:
            raise RegistryRefused("endpoints", "listed in hub.toml; change them there",
                                  conflict=True)
        self.store.registry.set_endpoints(device, to_json(endpoints), ts_ms, actor)
        self._reload()
        updated = self.get(device)
        assert updated is not None
        return updated


def _check_key(journal_key: str | None) -> None:
    if journal_key is None:
        return
    try:
        parse_public_key(journal_key)
    except ValueError as exc:
        raise RegistryRefused("journal_key", str(exc)) from None


def _from_config(d: DeviceCredential) -> RegisteredDevice:
    return RegisteredDevice(id=d.id, site=d.site, labels=dict(d.labels), journal_key=d.journal_key,
                            source="config", key_pinned=d.journal_key is not None,
                            endpoints=d.endpoints, endpoints_pinned=bool(d.endpoints))
