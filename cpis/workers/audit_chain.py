"""Seals committed security audit lines into the signed chain, every second.

Requests only insert their audit line; sealing them here, in batches after
commit, keeps a global lock and a second write off every request's path
(cpis/schema/functions/audit_seal_next.sql). Any number of replicas run this: the
database lets one seal at a time and the others find nothing to do. Each seal
is signed with the service's audit key and its hash exported as an anchor
(a log line, and a file when the service has one): the sealer does both, so
every seal, whoever makes it, leaves its anchor outside the database
(cpis.adapters.audit_log).
"""

from __future__ import annotations

import asyncio

import structlog

from cpis.errors import Unavailable
from cpis.ports.access import AuditSealer

log = structlog.get_logger("cpis.audit")


async def run_audit_chainer(sealer: AuditSealer, *, interval: float = 1.0) -> None:
    """Seal pending lines until cancelled; a database outage only delays it."""
    while True:
        try:
            await sealer.seal_pending()
        except Unavailable:
            log.warning("audit_chain_deferred", reason="database unavailable")
        except Exception:
            log.exception("audit_chain_failed")
        await asyncio.sleep(interval)
