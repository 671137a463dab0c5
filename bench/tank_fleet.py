"""The fleet the hub benches register: tank devices spread over sites, labelled `kind: tank`.

Rules: device i is `dev-{i:04d}` on `site-{i % sites:02d}` (so a site's devices are every
`sites`-th one, and ids sort in registration order); no password (the benches do not log devices
in over MQTT: "-" matches no hash).
"""
from __future__ import annotations

from hub.config import DeviceCredential


def tank_fleet(devices: int, sites: int) -> list[DeviceCredential]:
    return [DeviceCredential(id=f"dev-{i:04d}", site=f"site-{i % sites:02d}", password_hash="-",
                             labels={"kind": "tank"}) for i in range(devices)]
