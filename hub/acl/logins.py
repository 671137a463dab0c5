"""The broker logins a hub configuration defines: the hub's own, each device's, each integration's."""
from __future__ import annotations

from hub.acl.policy import HUB_LOGIN, BrokerRole, UserSpec
from hub.config import HubConfig

HUB_USER = HUB_LOGIN


def broker_users(cfg: HubConfig, hub_password_hash: str, *,
                 hub_user: str = HUB_USER) -> dict[str, UserSpec]:
    """Login name -> UserSpec for the hub (`hub_user`), every device and every integration."""
    users = {hub_user: UserSpec(password_hash=hub_password_hash, role=BrokerRole.HUB)}
    for d in cfg.devices:
        users[d.id] = UserSpec(password_hash=d.password_hash, role=BrokerRole.DEVICE, site=d.site,
                               device=d.id)
    for i in cfg.integrations:
        users[i.name] = UserSpec(password_hash=i.password_hash, role=BrokerRole.INTEGRATION,
                                 sites=i.sites)
    return users
