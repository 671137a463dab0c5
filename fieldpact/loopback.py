"""A whole site on loopback: hub (embedded broker, API), simulated devices, agents, cuttable links.

Used by `fieldpact demo` and by the end-to-end tests, so what the demo shows is what the tests
prove. Every server binds 127.0.0.1 on an ephemeral port; `LocalSite` is an async context manager
that stops everything it started, in reverse order.
"""
from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import uvicorn

from agent.journal_signing import default_key_path, load_or_create_key
from agent.config import AgentConfig, BrokerConfig as AgentBroker, ModbusConfig
from agent.modbus import ModbusLink
from agent.process import Agent
from contracts.journal_sig import public_key_text
from contracts.model_divergence import DEFAULT_AFTER_S
from transport.backoff import Backoff
from runtime.files import private_dir
from hub.app import HubRuntime
from hub.auth import AuthConfig, ApiRole, Token, hash_token
from hub.acl.passwords import hash_password
from hub.config import BrokerConfig, DeviceCredential, HubConfig
from hub.policy import DEFAULT_POLICIES, FailureCategory, Policy, RetryConfig
from hub.states import DeviceState
from simulators.netcut import NetCut
from simulators.server import SimDevice


@dataclass(frozen=True, kw_only=True)
class DeviceSpec:
    id: str
    model: str  # simulator model: tank | pump_skid
    initial: Mapping[str, Any] = field(default_factory=dict)
    time_scale: float = 1.0
    model_divergence_after_s: float = DEFAULT_AFTER_S  # the agent's (contracts/model_divergence.py)


@dataclass
class SiteDevice:
    spec: DeviceSpec
    sim: SimDevice
    cut: NetCut
    agent: Agent
    task: asyncio.Task[None]
    journal: Path


class LocalSite:
    def __init__(self, workdir: Path, devices: Sequence[DeviceSpec], *, site: str = "north-field",
                 policies: Mapping[FailureCategory, Policy] = DEFAULT_POLICIES,
                 silence_timeout_s: float = 10.0, scan_period_ms: int = 100,
                 retry: RetryConfig = RetryConfig()) -> None:
        self.workdir, self.specs, self.site = workdir, tuple(devices), site
        self.policies, self.silence_timeout_s, self.retry = policies, silence_timeout_s, retry
        self.token = secrets.token_urlsafe(24)
        self.viewer_token = secrets.token_urlsafe(24)
        self._passwords = {d.id: secrets.token_urlsafe(16) for d in self.specs}
        self.devices: dict[str, SiteDevice] = {}
        self.hub: HubRuntime | None = None
        self.api_url = ""
        self._stack = contextlib.AsyncExitStack()

    def hub_config(self) -> HubConfig:
        tokens = (Token(name="operator", sha256=hash_token(self.token), role=ApiRole.ADMIN),
                  Token(name="viewer", sha256=hash_token(self.viewer_token), role=ApiRole.VIEWER))
        creds = tuple(DeviceCredential(id=d.id, site=self.site,
                                       password_hash=hash_password(self._passwords[d.id]),
                                       journal_key=self._journal_key(d.id))
                      for d in self.specs)
        return HubConfig(db_path=self.workdir / "hub.db", key_path=self.workdir / "keys" / "hub.key",
                         broker=BrokerConfig(listen_port=0), auth=AuthConfig(tokens=tokens),
                         devices=creds, silence_timeout_ms=int(self.silence_timeout_s * 1000),
                         policies=MappingProxyType(dict(self.policies)), retry=self.retry)

    def journal_path(self, device: str) -> Path:
        return self.workdir / "agents" / device / "journal.db"

    def _journal_key(self, device: str) -> str:
        """Make the agent's journal key now (as its first start would) and pin its public half in
        the hub's config, as an admin does with `fieldpact agent pubkey` (fixed interface 6)."""
        key = load_or_create_key(default_key_path(self.journal_path(device)))
        return public_key_text(key.public_key())

    async def __aenter__(self) -> LocalSite:
        private_dir(self.workdir)
        await self._stack.__aenter__()
        try:
            await self._start_hub()
            for spec in self.specs:
                await self._start_device(spec)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start_hub(self) -> None:
        hub = HubRuntime(self.hub_config())
        self._stack.callback(hub.close)
        self.hub = hub
        app = hub.app()
        # log_config=None: uvicorn's records propagate to the root logger like every other
        # library's (the demo sends them to its log file) instead of its own stderr handlers.
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                               lifespan="on", log_config=None))
        task = asyncio.create_task(server.serve(), name="hub-api")
        self._stack.push_async_callback(_stop_server, server, task)
        async with asyncio.timeout(20):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        self.api_url = f"http://127.0.0.1:{port}"

    async def _start_device(self, spec: DeviceSpec) -> None:
        assert self.hub is not None and self.hub.broker is not None
        sim = await self._stack.enter_async_context(
            SimDevice(spec.model, port=0, tick_ms=50, initial=spec.initial, time_scale=spec.time_scale))
        cut = await self._stack.enter_async_context(NetCut("127.0.0.1", self.hub.broker.port))
        journal = self.journal_path(spec.id)
        private_dir(journal.parent)
        cfg = AgentConfig(device=spec.id, site=self.site, journal=journal,
                          trusted_key=self.hub.cfg.key_path.with_suffix(".pub"),
                          modbus=ModbusConfig(host="127.0.0.1", port=sim.port, timeout_s=0.3),
                          broker=AgentBroker(url=cut.url, username=spec.id,
                                             password=self._passwords[spec.id]),
                          model_divergence_after_s=spec.model_divergence_after_s)
        agent = Agent(cfg, link=ModbusLink("127.0.0.1", sim.port, timeout_s=0.3),
                      reconnect=Backoff(initial_s=0.2, max_s=2.0, jitter=0.3))
        task = asyncio.create_task(agent.run(), name=f"agent-{spec.id}")
        self._stack.push_async_callback(_cancel, task)
        async with asyncio.timeout(20):
            await agent.started.wait()
        self.devices[spec.id] = SiteDevice(spec=spec, sim=sim, cut=cut, agent=agent, task=task,
                                           journal=journal)

    # -- observation helpers ------------------------------------------------------------------
    def device_state(self, device: str) -> DeviceState | None:
        assert self.hub is not None
        try:
            return self.hub.store.devices.get(device).state
        except Exception:
            return None

    async def wait_for(self, what: str, check: Any, timeout_s: float) -> Any:
        """Poll `check()` until truthy; raise TimeoutError naming `what`."""
        try:
            async with asyncio.timeout(timeout_s):
                while not (result := check()):
                    await asyncio.sleep(0.1)
                return result
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}") from None


async def _stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, Exception):
        async with asyncio.timeout(10):
            await task


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
