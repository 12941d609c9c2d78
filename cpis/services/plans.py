"""The LA plan API (SPEC §5): one plan created, replaced, read or removed at a time by
its LA, scoped to the LA's own ODS code; and retention, which removes plans (and
what goes with them) for good at their delete date (SPEC §3).

Each call runs in one database transaction.
"""

from __future__ import annotations

from cpis.errors import Forbidden, InvalidRequest, NotFound, VersionMismatch
from cpis.model import Plan, PlanFields, Principal, PurgeResult, Role
from cpis.ports.clock import Clock
from cpis.ports.database import Database
from cpis.ports.person_index import PersonIndex
from cpis.ports.plans import Retention
from cpis.services.verification import verify_plan


def _check_la(principal: Principal, la_ods: str) -> None:
    if principal.role is not Role.LA or la_ods not in principal.ods_codes:
        raise Forbidden("this client may not act for that local authority")


async def get_plan(db: Database, *, principal: Principal, la_ods: str, la_plan_id: str) -> Plan:
    _check_la(principal, la_ods)
    async with db.transaction() as tx:
        plan = await tx.get_plan(la_ods, la_plan_id)
    if plan is None:
        raise NotFound("no such plan")
    return plan


async def put_plan(
    db: Database,
    clock: Clock,
    *,
    principal: Principal,
    la_ods: str,
    la_plan_id: str,
    fields: PlanFields,
    if_match: int | None,
    if_none_match_any: bool = False,
    index: PersonIndex | None = None,
) -> tuple[Plan, bool]:
    """Create or replace an LA's plan; If-Match protects against lost updates.

    With a person index the NHS number is checked as an upload's would be
    (:mod:`cpis.services.verification`): a plan on the wrong child is worse than none,
    whichever way it arrives. A refusal is a 422 naming the record code.
    """
    _check_la(principal, la_ods)
    if index is not None:
        # Before the transaction: a PDS call must not hold one open.
        rejection = await verify_plan(index, fields)
        if rejection is not None:
            raise InvalidRequest(f"{rejection.code}: {rejection.reason}", expression="nhs_number")
    async with db.transaction() as tx:
        if await tx.get_la(la_ods) is None:
            raise NotFound("local authority is not registered")
        existing = await tx.get_plan(la_ods, la_plan_id)
        if if_match is not None and (existing is None or existing.version != if_match):
            raise VersionMismatch("the plan has changed since the version given in If-Match")
        if if_none_match_any and existing is not None:
            raise VersionMismatch("the plan already exists (If-None-Match: *)")
        return await tx.put_plan(la_ods, la_plan_id, fields, clock.now())


async def delete_plan(
    db: Database, *, principal: Principal, la_ods: str, la_plan_id: str, if_match: int | None
) -> None:
    """Remove a plan entered in error, with its history, at once."""
    _check_la(principal, la_ods)
    async with db.transaction() as tx:
        existing = await tx.get_plan(la_ods, la_plan_id)
        if existing is None:
            raise NotFound("no such plan")
        if if_match is not None and existing.version != if_match:
            raise VersionMismatch("the plan has changed since the version given in If-Match")
        await tx.delete_plan(la_ods, la_plan_id)


async def purge(retention: Retention, clock: Clock) -> PurgeResult:
    """Delete for good what retention says must go today (``cpis purge``, and on a
    schedule inside ``cpis serve``)."""
    return await retention.purge(today=clock.today())
