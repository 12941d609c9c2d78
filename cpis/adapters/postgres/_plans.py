"""Plans one at a time: the plan API's reads and writes, and the lookup's read of a
child's plans with their LAs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

import asyncpg

from cpis.adapters.ids import uuid7
from cpis.adapters.postgres._connection import Session
from cpis.adapters.postgres._reference import la_from_row
from cpis.model import LocalAuthority, Plan, PlanFields, PlanType

_PLAN_COLUMNS = """
    p.id, p.la_ods, p.la_plan_id, p.updated_at, v.version, v.nhs_sealed, v.plan_type,
    v.start_date, v.end_date, v.delete_date, v.birth_sealed, v.family_sealed, v.given_sealed,
    v.recorded_at,
    la.name AS la_name, la.office_phone, la.edt_phone, la.repeat_window_hours,
    la.version AS la_version, la.updated_at AS la_updated_at
"""


class PgPlans(Session):
    """Plans, one at a time, over one connection (part of :class:`~cpis.ports.plans.PlanStore`)."""

    def _open_opt(self, purpose: str, sealed: bytes | None) -> str | None:
        return None if sealed is None else self._vault.open(purpose, sealed)

    def _plan(self, r: asyncpg.Record) -> Plan:
        birth = self._open_opt("birth_date", r["birth_sealed"])
        fields = PlanFields(
            nhs_number=self._vault.open("nhs_number", r["nhs_sealed"]),
            plan_type=PlanType(r["plan_type"]),
            start_date=r["start_date"],
            end_date=r["end_date"],
            delete_date=r["delete_date"],
            birth_date=None if birth is None else date.fromisoformat(birth),
            family_name=self._open_opt("family_name", r["family_sealed"]),
            given_name=self._open_opt("given_name", r["given_sealed"]),
        )
        return Plan(
            id=r["id"],
            la_ods=r["la_ods"],
            la_plan_id=r["la_plan_id"],
            fields=fields,
            version=r["version"],
            updated_at=r["recorded_at"],
        )

    async def visible_plan_rows(self, nhs_number: str) -> Sequence[tuple[Plan, LocalAuthority]]:
        # subject_plans() pins the plan to its indexes (cpis/schema/functions/subject_plans.sql).
        rows = await self._conn.fetch("SELECT * FROM subject_plans($1)", self._subject(nhs_number))
        return [(self._plan(r), la_from_row(r)) for r in rows]

    async def get_plan(self, la_ods: str, la_plan_id: str) -> Plan | None:
        r = await self._conn.fetchrow(
            f"SELECT {_PLAN_COLUMNS} FROM plan p"  # noqa: S608
            " JOIN plan_version v ON v.plan_id = p.id AND v.version = p.version"
            " JOIN local_authority la ON la.ods_code = p.la_ods"
            " WHERE p.la_ods = $1 AND p.la_plan_id = $2",
            la_ods,
            la_plan_id,
        )
        return None if r is None else self._plan(r)

    async def get_plan_by_id(
        self, plan_id: uuid.UUID, version: int | None = None
    ) -> tuple[Plan, LocalAuthority] | None:
        r = await self._conn.fetchrow(
            f"SELECT {_PLAN_COLUMNS} FROM plan p"  # noqa: S608
            " JOIN plan_version v ON v.plan_id = p.id AND v.version = coalesce($2, p.version)"
            " JOIN local_authority la ON la.ods_code = p.la_ods"
            " WHERE p.id = $1",
            plan_id,
            version,
        )
        return None if r is None else (self._plan(r), la_from_row(r))

    async def put_plan(
        self, la_ods: str, la_plan_id: str, fields: PlanFields, at: datetime
    ) -> tuple[Plan, bool]:
        key = self._subject(fields.nhs_number)
        row = await self._conn.fetchrow(
            "INSERT INTO plan (id, la_ods, la_plan_id, subject_key, version, updated_at)"
            " VALUES ($1, $2, $3, $4, 1, $5)"
            " ON CONFLICT (la_ods, la_plan_id) DO UPDATE"
            " SET version = plan.version + 1, subject_key = EXCLUDED.subject_key,"
            "     updated_at = EXCLUDED.updated_at"
            " RETURNING id, version, (xmax = 0) AS created",
            uuid7(),  # time-ordered, as uploads make them
            la_ods,
            la_plan_id,
            key,
            at,
        )
        assert row is not None
        seal = self._vault.seal
        await self._conn.execute(
            "INSERT INTO plan_version (plan_id, version, nhs_sealed, plan_type, start_date,"
            " end_date, delete_date, birth_sealed, family_sealed, given_sealed, recorded_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            row["id"],
            row["version"],
            seal("nhs_number", fields.nhs_number),
            fields.plan_type.value,
            fields.start_date,
            fields.end_date,
            fields.delete_date,
            None
            if fields.birth_date is None
            else seal("birth_date", fields.birth_date.isoformat()),
            None if fields.family_name is None else seal("family_name", fields.family_name),
            None if fields.given_name is None else seal("given_name", fields.given_name),
            at,
        )
        plan = Plan(
            id=row["id"],
            la_ods=la_ods,
            la_plan_id=la_plan_id,
            fields=fields,
            version=row["version"],
            updated_at=at,
        )
        return plan, bool(row["created"])

    async def delete_plan(self, la_ods: str, la_plan_id: str) -> bool:
        result = await self._conn.execute(
            "DELETE FROM plan WHERE la_ods = $1 AND la_plan_id = $2", la_ods, la_plan_id
        )
        return bool(result.endswith(" 1"))
