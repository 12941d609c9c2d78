"""Use cases: what the service does, in terms of ports and domain values.

Each use case runs in one database transaction. The unscheduled lookup reads
the plans, records the access event and its outbox rows and appends the
security audit line in that one transaction, so no lookup that was answered
can lack its access event or its notification (SPEC §3, §8).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict

from cpis import rules
from cpis.errors import Forbidden, InvalidRequest, NotFound, Unavailable, VersionMismatch
from cpis.model import (
    AccessEvent,
    Accessor,
    AuditEntry,
    JsonValue,
    LocalAuthority,
    LookupResult,
    Plan,
    PlanFields,
    Principal,
    Role,
    StoredAccessEvent,
    VisiblePlan,
)
from cpis.ports.clock import Clock
from cpis.ports.database import Database, Transaction
from cpis.ports.person_index import PersonIndex
from cpis.uploads.verify import verify_plan


def _visible(rows: list[tuple[Plan, LocalAuthority]], clock: Clock) -> list[VisiblePlan]:
    today = clock.today()
    return [
        VisiblePlan(
            plan=p,
            la=la,
            effective_end=rules.effective_end(p.fields),
            active=rules.is_active(p.fields, today),
        )
        for p, la in rows
        if rules.is_visible(p.fields, today)
    ]


async def lookup(
    db: Database,
    clock: Clock,
    *,
    nhs_number: str,
    accessor: Accessor,
    unscheduled: bool,
    audit: AuditEntry,
) -> LookupResult:
    """Find a subject's visible plans; if unscheduled, record the access and queue notifications.

    Two statements, each its own transaction, instead of BEGIN/read/write/COMMIT:
    the write names the exact plan versions the read saw and is refused if
    they changed in between, in which case the lookup reads again. The access
    event is therefore always recorded against the plans that were shown.
    """
    async with db.connection() as conn:
        for _attempt in range(_LOOKUP_ATTEMPTS):
            rows = list(await conn.visible_plan_rows(nhs_number))
            visible = _visible(rows, clock)
            detail: dict[str, JsonValue] = {"plans": len(visible), "unscheduled": unscheduled}
            entry = dataclasses.replace(audit, detail=detail)
            if not (unscheduled and visible):
                await conn.append_audit(entry, clock.now())
                return LookupResult(plans=tuple(visible), access_event=None)
            plan_ids: dict[str, list[str]] = defaultdict(list)
            for vp in visible:
                plan_ids[vp.la.ods_code].append(vp.plan.la_plan_id)
            recorded = await conn.record_access(
                nhs_number,
                accessor,
                sorted(plan_ids),
                clock.now(),
                plan_ids,
                entry,
                based_on=[p for p, _ in rows],
            )
            if recorded is not None:
                event, notified = recorded
                return LookupResult(plans=tuple(visible), access_event=event, notified_las=notified)
    # Plans for one child changing on every read, several times running, means
    # something is badly wrong upstream; don't spin.
    raise Unavailable("the subject's plans are changing; try again", retry_after=1)


_LOOKUP_ATTEMPTS = 5


async def _subject_visible_to(
    tx: Transaction, principal: Principal, nhs: str, clock: Clock
) -> bool:
    rows = list(await tx.visible_plan_rows(nhs))
    if principal.role is Role.LA:
        return any(p.la_ods in principal.ods_codes for p, _ in rows)
    return bool(_visible(rows, clock))


async def history(
    db: Database, clock: Clock, *, nhs_number: str, principal: Principal, audit: AuditEntry
) -> list[AccessEvent]:
    """The 25 most recent unscheduled visits, newest first, repeats by one user in 24 h once.

    Health sees the history of a subject with a visible plan. An LA sees only
    the visits made while it held a visible plan for the subject (those it was
    told of, or would have been but for its repeat window): a plan it adds now,
    or one that starts in the future, shows it nothing from before. Anyone else
    gets an empty result, not an error, so the answer does not reveal whether a
    child is known.
    """
    async with db.transaction() as tx:
        events: list[StoredAccessEvent] = []
        if await _subject_visible_to(tx, principal, nhs_number, clock):
            only = principal.ods_codes if principal.role is Role.LA else None
            events = list(await tx.access_history(nhs_number, rules.HISTORY_SIZE, la_codes=only))
        await tx.append_audit(
            dataclasses.replace(audit, detail={"events": len(events)}), clock.now()
        )
    return [e.event for e in events]


async def read_plan(
    db: Database,
    clock: Clock,
    *,
    plan_id: uuid.UUID,
    version: int | None,
    principal: Principal,
) -> VisiblePlan:
    """One plan (as CareTeam or Flag), current or a past version, if the caller may see it."""
    async with db.transaction() as tx:
        found = await tx.get_plan_by_id(plan_id, version)
        current = found if version is None else await tx.get_plan_by_id(plan_id)
    if found is None or current is None:
        raise NotFound("no such resource")
    plan, la = found
    today = clock.today()
    if principal.role is Role.LA:
        allowed = plan.la_ods in principal.ods_codes
    elif principal.role is Role.HEALTH:
        # Health may read a plan only while its current version is visible.
        allowed = rules.is_visible(current[0].fields, today)
    else:
        allowed = True
    if not allowed:
        raise NotFound("no such resource")
    return VisiblePlan(
        plan=plan,
        la=la,
        effective_end=rules.effective_end(plan.fields),
        active=rules.is_active(plan.fields, today),
    )


async def read_access_event(
    db: Database, clock: Clock, *, event_id: uuid.UUID, principal: Principal
) -> AccessEvent:
    async with db.transaction() as tx:
        stored = await tx.get_access_event(event_id)
        if stored is None:
            raise NotFound("no such resource")
        allowed = await _may_read_event(tx, clock, principal, stored.event)
    if not allowed:
        raise NotFound("no such resource")
    return stored.event


async def _may_read_event(
    tx: Transaction, clock: Clock, principal: Principal, event: AccessEvent
) -> bool:
    """An LA reads the events that notified it; health those of a subject with a visible plan."""
    if principal.role is Role.LA:
        return bool(set(event.la_codes) & set(principal.ods_codes))
    if principal.role is Role.HEALTH:
        return await _subject_visible_to(tx, principal, event.nhs_number, clock)
    return True


async def read_viewer(
    db: Database, clock: Clock, *, practitioner_role_id: uuid.UUID, principal: Principal
) -> Accessor:
    """The viewer behind a PractitionerRole id, if the caller may read an AuditEvent naming it.

    A PractitionerRole is only ever seen through an access event, so it is
    readable exactly when one of the access events naming it is (the most
    recent few are tried; a viewer the caller could never have been shown
    answers 404 like an unknown id).
    """
    async with db.transaction() as tx:
        for stored in await tx.access_events_by_viewer(practitioner_role_id, _VIEWER_EVENTS):
            if await _may_read_event(tx, clock, principal, stored.event):
                return stored.event.accessor
    raise NotFound("no such resource")


_VIEWER_EVENTS = 25


async def read_la(db: Database, *, ods_code: str) -> LocalAuthority:
    async with db.transaction() as tx:
        la = await tx.get_la(ods_code)
    if la is None:
        raise NotFound("no such resource")
    return la


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
    (:mod:`cpis.uploads.verify`): a plan on the wrong child is worse than none,
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
