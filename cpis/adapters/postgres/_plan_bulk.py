"""Plans in bulk: an upload's deletions and upserts, a COPY of versions at a time."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
from asyncpg.pgproto.pgproto import UUID as PgUUID

from cpis.adapters.postgres._connection import Session
from cpis.model import PlanFields

# An upload's upserts (PgTransaction.put_plans) do to plan what put_plan does
# once per call: a plan given k times in the file moves k versions on, and a
# new one starts at version k. The plan ids in the arrays are distinct. First
# the plans that exist (an UPDATE, HOT when the subject key is unchanged: see
# plan's fillfactor in cpis/schema/migrations/0001_baseline.sql), returning each
# one's place in the arrays and new version; then the rest are created by a
# COPY, or, when a plan was created meanwhile through the plan API, by an
# INSERT that moves such a plan on instead.
_MOVE_ON_PLANS = """
    UPDATE plan AS p
    SET version = p.version + u.total, subject_key = u.subject_key, updated_at = $2
    FROM unnest($3::text[], $4::bytea[], $5::integer[])
        WITH ORDINALITY AS u (la_plan_id, subject_key, total, n)
    WHERE p.la_ods = $1 AND p.la_plan_id = u.la_plan_id
    RETURNING u.n, p.id, p.version
"""
_NEW_PLAN_COLUMNS = ("id", "la_ods", "la_plan_id", "subject_key", "version", "updated_at")
_CREATE_PLANS = """
    INSERT INTO plan AS p (id, la_ods, la_plan_id, subject_key, version, updated_at)
    SELECT u.id, $1, u.la_plan_id, u.subject_key, u.total, $2
    FROM unnest($3::text[], $4::bytea[], $5::integer[], $6::uuid[])
        AS u (la_plan_id, subject_key, total, id)
    ON CONFLICT (la_ods, la_plan_id) DO UPDATE
    SET version = p.version + EXCLUDED.version, subject_key = EXCLUDED.subject_key,
        updated_at = EXCLUDED.updated_at
    RETURNING p.id, p.la_plan_id, p.version
"""
_PLAN_VERSION_COLUMNS = (
    "plan_id", "version", "nhs_sealed", "plan_type", "start_date", "end_date", "delete_date",
    "birth_sealed", "family_sealed", "given_sealed", "recorded_at",
)  # fmt: skip
_PROGRESS_EVERY = 5_000
_SEAL_CHUNK = 1_000


class _BulkPlans(NamedTuple):
    """An upload's plans, once each: ids in first-seen order, subject keys, row counts."""

    ids: list[str]
    keys: list[bytes]
    totals: list[int]


def _time_ordered_ids(count: int) -> list[uuid.UUID]:
    """``count`` new UUIDv7 plan ids (see cpis.adapters.ids): the time, then random bits.

    The ids of one upload share their first 48 bits, so the new rows' entries
    in plan's and plan_version's keys land together at the right-hand edge
    instead of on a random page each. One ``os.urandom`` call for them all,
    and asyncpg's own UUID type, built from bytes: a uuid.UUID per id costs
    more than the rest of this.
    """
    prefix = (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")
    raw = os.urandom(10 * count)
    made: list[uuid.UUID] = []
    for i in range(0, 10 * count, 10):
        # The version (7) over the top 4 bits of byte 6, the variant (10) over byte 8's.
        made.append(
            PgUUID(
                prefix
                + bytes((0x70 | raw[i] & 0x0F, raw[i + 1], 0x80 | raw[i + 2] & 0x3F))
                + raw[i + 3 : i + 10]
            )
        )
    return made


class PgBulkPlans(Session):
    """An upload's plans over one connection (part of :class:`~cpis.ports.plans.PlanStore`)."""

    async def delete_plans(self, la_ods: str, la_plan_ids: Sequence[str]) -> frozenset[str]:
        if not la_plan_ids:
            return frozenset()
        rows = await self._conn.fetch(
            "DELETE FROM plan WHERE la_ods = $1 AND la_plan_id = ANY($2::text[])"
            " RETURNING la_plan_id",
            la_ods,
            list(la_plan_ids),
        )
        return frozenset(r["la_plan_id"] for r in rows)

    async def put_plans(
        self,
        la_ods: str,
        plans: Sequence[tuple[str, PlanFields]],
        at: datetime,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """``put_plan`` for each of ``plans`` in order: plan in bulk, then one COPY of versions.

        In a savepoint, so that a failure leaves the caller's transaction as
        it was. The COPY that creates new plans fails when the plan API has
        created one of them since the UPDATE looked (it takes no upload lock);
        then the savepoint is rolled back and it all runs again, creating
        plans with an INSERT that cannot fail that way.
        """
        if not plans:
            return
        # Per plan id, in first-seen order: how many rows, and the NHS number of the last.
        total: dict[str, int] = {}
        last: dict[str, str] = {}
        for la_plan_id, f in plans:
            total[la_plan_id] = total.get(la_plan_id, 0) + 1
            last[la_plan_id] = f.nhs_number
        subject_key = self._vault.subject_key
        bulk = _BulkPlans(list(last), [subject_key(n) for n in last.values()], list(total.values()))
        try:
            async with self._conn.transaction():
                first = await self._move_on_plans(la_ods, at, bulk, copy=True)
                await self._copy_versions(plans, first, at, progress)
        except asyncpg.UniqueViolationError:
            async with self._conn.transaction():
                first = await self._move_on_plans(la_ods, at, bulk, copy=False)
                await self._copy_versions(plans, first, at, progress)

    async def _move_on_plans(
        self, la_ods: str, at: datetime, bulk: _BulkPlans, *, copy: bool
    ) -> dict[str, list[Any]]:
        """Each plan's id and the version its first row in the file becomes."""
        first: dict[str, list[Any]] = {}
        ids, keys, totals = bulk
        rows = await self._conn.fetch(_MOVE_ON_PLANS, la_ods, at, ids, keys, totals)
        for n, plan_id, version in rows:
            first[ids[n - 1]] = [plan_id, version - totals[n - 1] + 1]
        new = [i for i, la_plan_id in enumerate(ids) if la_plan_id not in first]
        if not new:
            return first
        new_ids = _time_ordered_ids(len(new))
        if copy:
            await self._conn.copy_records_to_table(
                "plan",
                records=[
                    (plan_id, la_ods, ids[i], keys[i], totals[i], at)
                    for plan_id, i in zip(new_ids, new, strict=True)
                ],
                columns=_NEW_PLAN_COLUMNS,
            )
            for plan_id, i in zip(new_ids, new, strict=True):
                first[ids[i]] = [plan_id, 1]
            return first
        rows = await self._conn.fetch(
            _CREATE_PLANS,
            la_ods,
            at,
            [ids[i] for i in new],
            [keys[i] for i in new],
            [totals[i] for i in new],
            new_ids,
        )
        count = {ids[i]: totals[i] for i in new}
        for plan_id, la_plan_id, version in rows:
            first[la_plan_id] = [plan_id, version - count[la_plan_id] + 1]
        return first

    async def _copy_versions(
        self,
        plans: Sequence[tuple[str, PlanFields]],
        first: dict[str, list[Any]],
        at: datetime,
        progress: Callable[[int], None] | None,
    ) -> None:
        await self._conn.copy_records_to_table(
            "plan_version",
            records=self._version_rows(plans, first, at, progress),
            columns=_PLAN_VERSION_COLUMNS,
        )

    def _version_rows(
        self,
        plans: Sequence[tuple[str, PlanFields]],
        first: dict[str, list[Any]],
        at: datetime,
        progress: Callable[[int], None] | None,
    ) -> Iterator[tuple[object, ...]]:
        """plan_version rows, sealed as ``put_plan`` seals; ``first`` is counted on in place.

        A generator, sealing a thousand rows at a time, so asyncpg streams the
        COPY while later rows are sealed and the server works on earlier ones
        (two cores, both busy).
        """
        vault = self._vault
        for start in range(0, len(plans), _SEAL_CHUNK):
            chunk = plans[start : start + _SEAL_CHUNK]
            nhs = vault.seal_many("nhs_number", [f.nhs_number for _, f in chunk])
            birth = vault.seal_many(
                "birth_date",
                [None if f.birth_date is None else f.birth_date.isoformat() for _, f in chunk],
            )
            family = vault.seal_many("family_name", [f.family_name for _, f in chunk])
            given = vault.seal_many("given_name", [f.given_name for _, f in chunk])
            for (la_plan_id, f), *sealed in zip(chunk, nhs, birth, family, given, strict=True):
                slot = first[la_plan_id]
                version = slot[1]
                slot[1] = version + 1
                yield (
                    slot[0],
                    version,
                    sealed[0],
                    f.plan_type.value,
                    f.start_date,
                    f.end_date,
                    f.delete_date,
                    *sealed[1:],
                    at,
                )
            done = start + len(chunk)
            if progress is not None and (done % _PROGRESS_EVERY == 0 or done == len(plans)):
                progress(done)
