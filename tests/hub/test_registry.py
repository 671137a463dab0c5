"""The device registry (hub/registry.py) over a real store file."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.journal_sig import public_key_text
from hub import registry as registry_module
from hub.config import DeviceCredential
from hub.registry import DeviceRegistry, RegistryRefused
from hub.store import HubStore, NotFound

T0 = 1_795_500_000_000


def _key() -> str:
    return public_key_text(Ed25519PrivateKey.generate().public_key())


PINNED = _key()
CONFIG = (DeviceCredential(id="d1", site="s1", password_hash="-", labels={"area": "tanks"},
                           journal_key=PINNED),
          DeviceCredential(id="d2", site="s1", password_hash="-"))


def test_config_and_api_devices_are_registered_and_nothing_else(store: HubStore) -> None:
    reg = DeviceRegistry(store, CONFIG)
    reg.register("d9", "s2", {"line": "3"}, None, T0, "admin")
    assert [d.id for d in reg.all()] == ["d1", "d2", "d9"]
    assert reg.admits("s1", "d1").ok and reg.admits("s2", "d9").ok
    assert reg.admits("s1", "ghost").alarm == "unknown_device"
    assert reg.admits("s2", "d1").alarm == "claim_mismatch"  # registered for another site
    assert [reg.registered(d) for d in ("d1", "d2", "d9", "ghost")] == [True, True, True, False]
    assert [d.id for d in DeviceRegistry(store, CONFIG).all()] == ["d1", "d2", "d9"]  # persisted


def test_hub_toml_wins_over_the_api(store: HubStore) -> None:
    reg = DeviceRegistry(store, CONFIG)
    for call in (lambda: reg.register("d1", "s1", {}, None, T0, "admin"),
                 lambda: reg.remove("d1"),
                 lambda: reg.enroll_key("d1", _key(), T0, "admin")):
        with pytest.raises(RegistryRefused) as refused:
            call()
        assert refused.value.conflict
    assert reg.get("d1").journal_key == PINNED  # type: ignore[union-attr]


def test_keys_are_enrolled_only_for_registered_devices_and_only_well_formed(store: HubStore) -> None:
    reg = DeviceRegistry(store, CONFIG)
    key = _key()
    reg.enroll_key("d2", key, T0, "admin")
    assert reg.journal_key("d2") is not None and reg.get("d2").journal_key == key  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        reg.enroll_key("ghost", key, T0, "admin")
    with pytest.raises(RegistryRefused) as bad:
        reg.enroll_key("d2", "ed25519:AAAA", T0, "admin")
    assert (bad.value.field, bad.value.conflict) == ("journal_key", False)


def test_removing_an_api_device_removes_its_key_too(store: HubStore) -> None:
    reg = DeviceRegistry(store, CONFIG)
    reg.register("d9", "s1", {}, _key(), T0, "admin")
    reg.remove("d9")
    assert reg.get("d9") is None and store.registry.keys() == {} and not reg.registered("d9")
    with pytest.raises(NotFound):
        reg.remove("d9")


def test_admin_labels_override_the_devices_own(store: HubStore) -> None:
    reg = DeviceRegistry(store, CONFIG)
    assert reg.labels("d1", (("area", "pumps"), ("fw", "2.1"))) == {"area": "tanks", "fw": "2.1"}


def test_unknown_names_are_alarmed_once_each_and_only_up_to_a_bound(
        store: HubStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "MAX_UNKNOWN_TRACKED", 3)
    reg = DeviceRegistry(store, CONFIG)
    seen = [reg.first_sight(n) for n in ("a", "a", "b", "c", "d", "e")]
    assert seen == [True, False, True, True, False, False]


def test_every_registry_route_is_admin_only() -> None:
    from hub.auth import ApiRole, required_role
    from hub.registry_api import ROUTES
    assert {required_role(m, r.path.replace("{device}", "d1"))
            for r in ROUTES for m in (r.methods or ())} == {ApiRole.ADMIN}
