"""Seals committed security audit rows into the hash chain, every second.

Requests only insert their audit row; sealing them here, in batches after
commit, keeps a global lock and a second write off every request's path
(schemas/migrations/0009). Any number of replicas run this: the database
lets one seal at a time and the others find nothing to do.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from cpis.errors import Unavailable

log = structlog.get_logger("cpis.audit")


class AuditChain(Protocol):
    async def chain_audit(self) -> int: ...


async def run_audit_chainer(db: AuditChain, *, interval: float = 1.0) -> None:
    """Chain pending rows until cancelled; a database outage only delays it."""
    while True:
        try:
            await db.chain_audit()
        except Unavailable:
            log.warning("audit_chain_deferred", reason="database unavailable")
        except Exception:
            log.exception("audit_chain_failed")
        await asyncio.sleep(interval)
