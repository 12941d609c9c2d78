"""Refused requests in the security audit log, without letting junk fill it (SPEC §3, §6).

Every request goes to the audit log, but a flood of requests that nobody was
authenticated for (no or a bad token, an unknown path, a malformed request) or
that were refused for their rate (429) must not become a flood of rows: one
address could otherwise write the log as fast as it can send.

So, per source address and window (a minute): the first few such requests that
are not 429s are written one by one, as any request is (enough to trace a
misconfigured client by its TraceID); the rest are counted, and when the window
closes each source gets one summary line per outcome and client, action
``refused_requests``, saying how many requests, for which routes, and when.
A 429 is never written one by one. At most ``max_keys`` counts are kept per
window; beyond that, further sources are counted together under ``"other"``,
so a spread of addresses costs bounded memory too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from cpis.model import AuditEntry
from cpis.ports.clock import Clock
from cpis.ports.database import Database

log = structlog.get_logger("cpis.web")

ACTION = "refused_requests"
OTHER_SOURCES = "other"


@dataclass(slots=True)
class _Tally:
    since: datetime
    until: datetime
    actions: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.actions.values())


class RefusedRequests:
    def __init__(
        self, *, window_seconds: float = 60.0, one_by_one: int = 10, max_keys: int = 10_000
    ) -> None:
        self.window_seconds = window_seconds
        self._one_by_one = one_by_one
        self._max_keys = max_keys
        self._written: dict[str, int] = {}
        self._tallies: dict[tuple[str, int, str | None], _Tally] = {}

    def note(
        self, source: str, *, action: str, status: int, client_id: str | None, at: datetime
    ) -> bool:
        """Count a refused request; True if it is also to be written one by one."""
        if status != 429:
            written = self._written.get(source, 0)
            if written < self._one_by_one and (
                source in self._written or len(self._written) < self._max_keys
            ):
                self._written[source] = written + 1
                return True
        key = (source, status, client_id)
        if key not in self._tallies and len(self._tallies) >= self._max_keys:
            key = (OTHER_SOURCES, status, None)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally(since=at, until=at)
        tally.until = at
        tally.actions[action] += 1
        return False

    def summary(self) -> list[AuditEntry]:
        """The window's summary lines (and a new window)."""
        tallies, self._tallies, self._written = self._tallies, {}, {}
        return [
            AuditEntry(
                action=ACTION,
                outcome=status,
                client_id=client_id,
                detail={
                    "source": source,
                    "requests": tally.requests,
                    "actions": dict(tally.actions),
                    "since": tally.since.isoformat(),
                    "until": tally.until.isoformat(),
                },
            )
            for (source, status, client_id), tally in tallies.items()
        ]

    async def flush(self, db: Database, clock: Clock) -> None:
        """Write the window's summary lines to the audit log."""
        for entry in self.summary():
            try:
                await db.append_audit(entry, clock.now())
            except Exception:
                log.error("audit_write_failed", action=ACTION, status=entry.outcome)

    async def run(self, db: Database, clock: Clock) -> None:
        """Flush every window until cancelled, and once more then."""
        try:
            while True:
                await asyncio.sleep(self.window_seconds)
                await self.flush(db, clock)
        finally:
            with contextlib.suppress(Exception):
                await self.flush(db, clock)
