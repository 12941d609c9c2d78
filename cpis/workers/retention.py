"""Runs the retention purge (:func:`cpis.services.plans.purge`) on a schedule inside
``cpis serve`` (every replica may; the database lets one purge at a time)."""

from __future__ import annotations

import asyncio

import structlog

from cpis.ports.clock import Clock
from cpis.ports.plans import Retention
from cpis.services import plans

log = structlog.get_logger("cpis.retention")


async def run_retention(
    retention: Retention, clock: Clock, *, interval: float = 6 * 3600, first_after: float = 60
) -> None:
    await asyncio.sleep(first_after)
    while True:
        try:
            result = await plans.purge(retention, clock)
            log.info(
                "retention_purged",
                plans=result.plans,
                access_events=result.access_events,
                notifications=result.notifications,
            )
        except Exception:
            log.exception("retention_failed")
        await asyncio.sleep(interval)
