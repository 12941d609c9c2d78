"""Links committed security audit rows into the hash chain, every second.

Requests only insert their audit row; chaining them here, after commit, keeps
one global lock off every request's path. Any number of replicas run this:
the database lets one chain at a time and the others find nothing to do.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from cpis.errors import Unavailable

log = structlog.get_logger("cpis.audit")


class AuditChain(Protocol):
    async def chain_audit(self, batch: int = 5000) -> int: ...


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
