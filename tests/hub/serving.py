"""A Starlette app on a real uvicorn at 127.0.0.1 and an ephemeral port, for as long as a block
runs: the hub API tests, the live hub process (tests/hub/live_hub.py) and bench/sync.py."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from tests.waiting import eventually


@contextlib.asynccontextmanager
async def serving(app: Any, *, timeout_s: float = 30.0,
                  name: str = "hub-api") -> AsyncIterator[str]:
    """Serve `app` (lifespan on) and yield its base URL, `http://127.0.0.1:<port>`.

    Raises what the server raised if it stops while starting, WaitTimeout if it has not started
    within `timeout_s`. On exit the server is asked to stop and awaited within the same bound."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    task = asyncio.create_task(server.serve(), name=name)
    try:
        await eventually(lambda: server.started or task.done(), timeout_s, f"{name} started")
        if task.done():
            task.result()  # the startup error
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(timeout_s):
            await task
