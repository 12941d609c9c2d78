"""The person-index check's side of PostgreSQL (issue 4 item 6): which NHS numbers
have plans, and queueing ``nhs-number-inactive`` notifications in the outbox.

A queued notification is an ordinary outbox row (kind ``nhs-number-inactive``)
that the dispatcher fans out and delivers like an attendance, and that the LA's
web inbox lists. Its id is derived, not drawn (:func:`inactive_notification_id`),
and the outbox's primary key makes a second insert of the same id a no-op: the
same change is never queued twice for the same LA, however often, or on however
many replicas, the check runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from cpis.adapters.postgres._connection import UNAVAILABLE, borrow
from cpis.errors import Unavailable
from cpis.model.persons import IndexPerson
from cpis.ports.vault import Vault

KIND = "nhs-number-inactive"
_NAMESPACE = uuid.UUID("bf5ae8eb-2f18-416a-807e-0a5863287e21")


def inactive_notification_id(la_ods: str, old_key: bytes, new_key: bytes | None) -> uuid.UUID:
    """The one notification id for "this LA's subject ``old_key`` is now ``new_key``
    (or inactive)". Built from subject keys, which are keyed hashes: a uuid5 over the
    numbers themselves could be reversed from a database dump by trying every number."""
    state = "inactive" if new_key is None else new_key.hex()
    return uuid.uuid5(_NAMESPACE, f"{KIND}:{la_ods}:{old_key.hex()}:{state}")


class PgIndexCheckStore:
    def __init__(self, pool: asyncpg.Pool, vault: Vault) -> None:
        self._pool = pool
        self._vault = vault

    async def plan_subjects(
        self, *, after: bytes | None, limit: int
    ) -> Sequence[tuple[bytes, str]]:
        """Up to ``limit`` distinct plan subjects whose key sorts after ``after`` (None:
        from the start), in key order, as (subject key, NHS number). The number is opened
        from the subject's current plan version: only the keyed hash is stored in clear."""
        rows = await self._fetch(
            "SELECT DISTINCT ON (p.subject_key) p.subject_key, v.nhs_sealed FROM plan p"
            " JOIN plan_version v ON v.plan_id = p.id AND v.version = p.version"
            " WHERE $1::bytea IS NULL OR p.subject_key > $1"
            " ORDER BY p.subject_key LIMIT $2",
            after,
            limit,
        )
        return [(r["subject_key"], self._vault.open("nhs_number", r["nhs_sealed"])) for r in rows]

    async def queue_inactive(self, people: Sequence[IndexPerson], *, now: datetime) -> int:
        """For each retired person (superseded or inactive; the caller decides), one
        notification per LA holding plans for their number, with that LA's plan ids and
        the new number if any; how many were queued now (not already queued before)."""
        by_key = {self._vault.subject_key(p.nhs_number): p for p in people}
        if not by_key:
            return 0
        try:
            async with borrow(self._pool) as conn, conn.transaction():
                owners = await conn.fetch(
                    "SELECT subject_key, la_ods, array_agg(la_plan_id ORDER BY la_plan_id)"
                    " AS plan_ids FROM plan WHERE subject_key = ANY($1::bytea[])"
                    " GROUP BY subject_key, la_ods ORDER BY subject_key, la_ods",
                    list(by_key),
                )
                queued = 0
                for owner in owners:
                    queued += await self._queue(conn, owner, by_key[owner["subject_key"]], now)
                return queued
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    async def _queue(self, conn: Any, owner: Any, person: IndexPerson, now: datetime) -> int:
        new = person.superseded_by if person.superseded_by != person.nhs_number else None
        new_key = None if new is None else self._vault.subject_key(new)
        inserted = await conn.fetchval(
            "INSERT INTO outbox (notification_id, kind, la_ods, subject_key, plan_ids,"
            " old_nhs_sealed, new_nhs_sealed, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (notification_id) DO NOTHING RETURNING true",
            inactive_notification_id(owner["la_ods"], owner["subject_key"], new_key),
            KIND,
            owner["la_ods"],
            owner["subject_key"],
            list(owner["plan_ids"]),
            self._vault.seal("nhs_number", person.nhs_number),
            None if new is None else self._vault.seal("nhs_number", new),
            now,
        )
        return 1 if inserted else 0

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        try:
            async with borrow(self._pool) as conn:
                return list(await conn.fetch(query, *args))
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc
