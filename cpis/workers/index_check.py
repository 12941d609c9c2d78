"""Runs the person index check (:func:`cpis.services.person_index.check_plan_subjects`)
daily inside ``cpis serve``: tells LAs when the person index retires an NHS number
they hold plans for (issue 4 item 6), because a remote index such as PDS tells
nobody when it merges records. Logs carry counts only, never a number.
"""

from __future__ import annotations

import asyncio

import structlog

from cpis.errors import PersonIndexUnavailable, Unavailable
from cpis.ports.clock import Clock
from cpis.ports.person_index import IndexCheckStore, PersonIndex
from cpis.services.person_index import check_plan_subjects

log = structlog.get_logger("cpis.index_check")

DEFAULT_INTERVAL = 24 * 3600.0


async def run_index_check(
    store: IndexCheckStore,
    index: PersonIndex | None,
    clock: Clock,
    *,
    interval: float = DEFAULT_INTERVAL,
    first_after: float = 300,
) -> None:
    """The check every ``interval`` seconds inside ``cpis serve``; returns at once when
    there is no index (``CPIS_PERSON_INDEX=none``: nothing can say a number is retired).
    When the index or the database cannot answer, it logs and tries at the next run."""
    if index is None:
        return
    await asyncio.sleep(first_after)
    while True:
        try:
            result = await check_plan_subjects(store, index, now=clock.now())
            log.info(
                "index_check_done",
                index=index.name,
                subjects=result.subjects,
                inactive=result.inactive,
                queued=result.queued,
            )
        except PersonIndexUnavailable:
            log.warning("index_check_deferred", index=index.name, reason="index unavailable")
        except Unavailable:
            log.warning("index_check_deferred", index=index.name, reason="database unavailable")
        except Exception:
            log.exception("index_check_failed", index=index.name)
        await asyncio.sleep(interval)
