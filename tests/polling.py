"""Waiting for something the system does in the background: poll with a deadline,
never sleep a fixed time and hope."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, limit: float = 15.0, what: str = "it"
) -> None:
    """Poll ``predicate`` until it holds; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
