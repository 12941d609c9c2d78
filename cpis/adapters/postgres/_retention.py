"""Retention (SPEC §3): plans are deleted for good at their delete date, and access
events, with their notifications, go once their subject has no plan left.

The delete date may depend on the child's birth date (the 18th-birthday end),
which is only stored sealed, so SQL cannot work it out: candidate plans are
read, :func:`cpis.rules.is_due_for_purge` judges each, and the DELETE receives
the ids it chose. One replica at a time purges (a transaction advisory lock);
a purge is one transaction, deleting plans in batches of ids. Visits and
notifications go for the subjects ``purge_candidate`` names that have no plan
left (migration 0005), so what a purge costs follows what it deletes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

from cpis import rules
from cpis.adapters.postgres._connection import LONG_SECONDS, borrow
from cpis.model import PlanFields, PlanType, PurgeResult
from cpis.ports.vault import Vault

_PURGE_LOCK = 7_201_843_554


class PgRetention:
    def __init__(self, pool: asyncpg.Pool, vault: Vault) -> None:
        self._pool = pool
        self._vault = vault

    def _due(self, r: asyncpg.Record, today: date) -> bool:
        birth = None
        if r["birth_sealed"] is not None and r["plan_type"] != PlanType.UCPP.value:
            birth = date.fromisoformat(self._vault.open("birth_date", r["birth_sealed"]))
        fields = PlanFields(
            nhs_number="",  # not needed to judge retention; never opened here
            plan_type=PlanType(r["plan_type"]),
            start_date=r["start_date"],
            end_date=r["end_date"],
            delete_date=r["delete_date"],
            birth_date=birth,
        )
        return rules.is_due_for_purge(fields, today)

    async def purge(self, *, today: date, batch: int = 1000) -> PurgeResult:
        """Delete what retention says must go, as of ``today``; counts of what went."""
        # Batches of statements, each held to the statement timeout; as many as are due.
        async with borrow(self._pool, within=LONG_SECONDS) as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _PURGE_LOCK):
                return PurgeResult(0, 0, 0)
            # Only plans that can be due: an explicit delete date, an end date, or a
            # birth date (the 18th birthday ends CPP/LAC plans).
            rows = await conn.fetch(
                "SELECT p.id, v.plan_type, v.start_date, v.end_date, v.delete_date,"
                " v.birth_sealed FROM plan p"
                " JOIN plan_version v ON v.plan_id = p.id AND v.version = p.version"
                " WHERE v.delete_date IS NOT NULL OR v.end_date IS NOT NULL"
                " OR v.birth_sealed IS NOT NULL"
            )
            due = [r["id"] for r in rows if self._due(r, today)]
            plans = 0
            for i in range(0, len(due), batch):
                status = await conn.execute(
                    "DELETE FROM plan WHERE id = ANY($1::uuid[])", due[i : i + batch]
                )
                plans += int(status.split()[-1])
            # Every plan that goes, by this purge or any other way, leaves its subject and
            # LA in purge_candidate (migration 0005): only those subjects can be left with
            # no plan, so their visits and notifications are found by index, not by
            # scanning every access event (millions at England's volume; issue 13).
            gone = await conn.fetch(
                "DELETE FROM purge_candidate c WHERE NOT EXISTS"
                " (SELECT 1 FROM plan p WHERE p.subject_key = c.subject_key)"
                " RETURNING subject_key, la_ods"
            )
            # In batches of subjects: a year's expiries carry a million visits, which one
            # statement could not delete within the statement timeout.
            events = notes = 0
            for i in range(0, len(gone), batch):
                counts = await self._forget(conn, gone[i : i + batch])
                events, notes = events + counts[0], notes + counts[1]
            return PurgeResult(plans, events, notes)

    async def _forget(self, conn: Any, gone: Sequence[Any]) -> tuple[int, int]:
        """Delete the visits, notifications and deliveries of ``gone`` (subject key and
        LA pairs, subjects with no plan left); how many visits and notifications went."""
        subjects = list({r["subject_key"] for r in gone})
        events = 0
        for repeat in (False, True):  # each on its own partial index
            status = await conn.execute(
                "DELETE FROM access_event WHERE subject_key = ANY($1::bytea[]) AND is_repeat = $2",
                subjects,
                repeat,
            )
            events += int(status.split()[-1])
        # A subject's notifications, of both kinds, are for the LAs that held its plans:
        # each of those plans left a candidate with its LA when it went.
        notes = await conn.fetch(
            "DELETE FROM outbox o USING unnest($1::text[], $2::bytea[]) AS g(la, k)"
            " WHERE o.la_ods = g.la AND o.subject_key = g.k RETURNING o.notification_id",
            [r["la_ods"] for r in gone],
            [r["subject_key"] for r in gone],
        )
        await conn.execute(
            "DELETE FROM delivery WHERE notification_id = ANY($1::uuid[])",
            [r["notification_id"] for r in notes],
        )
        return events, len(notes)
