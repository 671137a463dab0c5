"""placeholder replaced below"""
import contextlib
from collections.abc import AsyncIterator
from typing import Any


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    yield
