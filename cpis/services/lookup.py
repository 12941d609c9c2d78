"""What health (and an LA) sees of a child: the lookup, the 25 visits, and reads of
one resource (SPEC §3, §4).

A lookup is two statements, each committing on its own, not one transaction:
the plans are read, then one write (``record_lookup``) records the access event,
its outbox rows and the request's audit line together, and is refused if the
plans it names changed in between (then the plans are read again); a lookup that
records nothing writes only its audit line. So no lookup that was answered lacks
its access event or its notification, the event names the plans that were
shown (SPEC §3, §8), and it costs two round trips. The other reads run in one
transaction each.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict

from cpis import rules
from cpis.errors import NotFound, Unavailable
from cpis.model import (
    AccessEvent,
    Accessor,
    AuditEntry,
    JsonValue,
    LocalAuthority,
    LookupResult,
    Organisation,
    Plan,
    Principal,
    Role,
    SettingType,
    StoredAccessEvent,
    VisiblePlan,
)
from cpis.ports.clock import Clock
from cpis.ports.database import Database, Transaction


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


async def organisation(db: Database, *, ods_code: str) -> Organisation:
    """The setting a lookup is made from: the registered organisation (its name and
    setting type), or one known only by its code (setting type ``other``)."""
    async with db.transaction() as tx:
        org = await tx.get_organisation(ods_code)
    if org is None:
        return Organisation(ods_code=ods_code, name=ods_code, setting_type=SettingType.OTHER)
    return org


async def read_la(db: Database, *, ods_code: str) -> LocalAuthority:
    async with db.transaction() as tx:
        la = await tx.get_la(ods_code)
    if la is None:
        raise NotFound("no such resource")
    return la
