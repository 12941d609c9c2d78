"""Retention (SPEC §3): plans go at their delete date (explicit, end of the visibility
window, or after the 18th birthday's window), and visits with their notifications go
once the child has no plan left."""

from __future__ import annotations

from datetime import date

import pytest

from cpis import rules
from cpis.adapters.postgres import PgDatabase, PgRetention
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import (
    Accessor,
    AuditEntry,
    LocalAuthority,
    PlanFields,
    PlanType,
    Principal,
    Role,
    SettingType,
)
from cpis.services import lookup as lookup_service
from cpis.services import plans as plan_service
from tests.integration.conftest import FakeClock

EXPLICIT, WINDOW, ADULT, OPEN, TWO_PLANS = synthetic_numbers(5, start=950)
LA = LocalAuthority("XLA01", "Alphashire", "01632 960001", "01632 960101", 24)
AUDIT = AuditEntry(action="plan_search", outcome=200, client_id="ed")


async def count(db: PgDatabase, table: str) -> int:
    async with db.pool.acquire() as conn:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def test_purge_follows_the_retention_rules(db: PgDatabase, clock: FakeClock) -> None:
    """On 1 June 2026: an explicit delete date passed goes; an end date more than a year
    ago goes; a child who turned 18 more than a year ago goes (birth date sealed); an
    open plan stays; a child with one plan gone and one left keeps the other and its
    visits; visits of children with no plan left go with their notifications."""
    await db.upsert_la(LA)
    la = Principal(client_id="la", role=Role.LA, ods_codes=(LA.ods_code,))
    plans = {
        "explicit": PlanFields(EXPLICIT, PlanType.CPP, date(2026, 1, 1), None,
                               date(2026, 5, 1)),
        "window": PlanFields(WINDOW, PlanType.LAC, date(2023, 1, 1), date(2025, 5, 1)),
        "adult": PlanFields(ADULT, PlanType.CPP, date(2020, 1, 1), None, None,
                            date(2007, 3, 1)),
        "open": PlanFields(OPEN, PlanType.CPP, date(2026, 1, 1)),
        "two-a": PlanFields(TWO_PLANS, PlanType.CPP, date(2023, 1, 1), date(2025, 1, 1)),
        "two-b": PlanFields(TWO_PLANS, PlanType.LAC, date(2026, 1, 1)),
    }  # fmt: skip
    # record visits while every plan was still visible
    clock.advance(days=-365 * 2)
    for plan_id, fields in plans.items():
        await plan_service.put_plan(db, clock, principal=la, la_ods=LA.ods_code,
                                la_plan_id=plan_id, fields=fields, if_match=None)  # fmt: skip
    clock.advance(days=365 * 2)
    acc = Accessor("ed", "XED01", "ED", SettingType.ED, "u1", "Nurse", "Nurse", "t")
    for nhs in (OPEN, TWO_PLANS):
        await lookup_service.lookup(db, clock, nhs_number=nhs, accessor=acc, unscheduled=True,
                              audit=AUDIT)  # fmt: skip
    async with db.pool.acquire() as conn:
        # visits of a child whose plans will all go (recorded directly: its plan is
        # no longer visible today, so a lookup now would record nothing)
        await conn.execute(
            "INSERT INTO access_event (id, subject_key, nhs_sealed, occurred_at, client_id,"
            " org_ods, org_name, setting_type, user_key, viewer_sealed, practitioner_role_id,"
            " trace_id, la_codes, is_repeat)"
            " SELECT gen_random_uuid(), p.subject_key, v.nhs_sealed, now(), 'ed', 'XED01', 'ED',"
            " 'ED', '\\x01', '\\x01', gen_random_uuid(), 't', '{XLA01}', false"
            " FROM plan p JOIN plan_version v ON v.plan_id = p.id WHERE p.la_plan_id = 'window'"
        )
    before_events = await count(db, "access_event")

    result = await PgRetention(db.pool, db._vault).purge(today=date(2026, 6, 1))

    async with db.pool.acquire() as conn:
        left = sorted(r[0] for r in await conn.fetch("SELECT la_plan_id FROM plan"))
    assert left == ["open", "two-b"]
    assert result.plans == 4
    assert result.access_events == 1 and before_events - 1 == await count(db, "access_event")
    assert await count(db, "outbox") == 2  # one each for OPEN and TWO_PLANS: kept
    again = await PgRetention(db.pool, db._vault).purge(today=date(2026, 6, 1))
    assert (again.plans, again.access_events) == (0, 0)


async def test_purge_and_lookup_follow_the_visibility_window_in_the_rules(
    db: PgDatabase, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retention worker and the lookup both judge by cpis.rules: a LAC plan that
    ended on 1 April is shown and kept on 1 June with the 365-day window, and with a
    30-day window it is neither shown nor kept."""
    await db.upsert_la(LA)
    la = Principal(client_id="la", role=Role.LA, ods_codes=(LA.ods_code,))
    fields = PlanFields(WINDOW, PlanType.LAC, date(2025, 1, 1), date(2026, 4, 1))
    await plan_service.put_plan(db, clock, principal=la, la_ods=LA.ods_code, la_plan_id="ended",
                            fields=fields, if_match=None)  # fmt: skip
    acc = Accessor("ed", "XED01", "ED", SettingType.ED, "u1", "Nurse", "Nurse", "t")
    retention = PgRetention(db.pool, db._vault)

    async def shown() -> int:
        result = await lookup_service.lookup(db, clock, nhs_number=WINDOW, accessor=acc,
                                       unscheduled=False, audit=AUDIT)  # fmt: skip
        return len(result.plans)

    assert clock.today() == date(2026, 6, 1)
    assert await shown() == 1
    assert (await retention.purge(today=clock.today())).plans == 0
    monkeypatch.setitem(rules.VISIBLE_DAYS_AFTER_END, PlanType.LAC, 30)
    assert await shown() == 0
    assert (await retention.purge(today=clock.today())).plans == 1


async def test_purge_forgets_visits_whatever_way_the_last_plan_went(
    db: PgDatabase, clock: FakeClock
) -> None:
    """Visits and notifications go once the child has no plan, however the plans went:
    retention, an LA's DELETE, a plan moved to another NHS number (each noted in
    purge_candidate by a trigger, migration 0005). A child who still has a plan at
    another LA keeps its visits, and those go too once that plan does."""
    other = LocalAuthority("XLA02", "Betashire", "01632 960002", "01632 960102", 24)
    deleted, moved, shared, new_number = synthetic_numbers(4, start=970)
    await db.upsert_la(LA)
    await db.upsert_la(other)
    las = {
        la.ods_code: Principal(client_id="la", role=Role.LA, ods_codes=(la.ods_code,))
        for la in (LA, other)
    }
    start = date(2026, 1, 1)
    for ods, plan_id, nhs in [
        (LA.ods_code, "deleted", deleted),
        (LA.ods_code, "moved", moved),
        (LA.ods_code, "shared", shared),
        (other.ods_code, "shared", shared),
    ]:
        await plan_service.put_plan(db, clock, principal=las[ods], la_ods=ods,
                                    la_plan_id=plan_id, fields=PlanFields(nhs, PlanType.CPP, start),
                                    if_match=None)  # fmt: skip
    acc = Accessor("ed", "XED01", "ED", SettingType.ED, "u1", "Nurse", "Nurse", "t")
    for nhs in (deleted, moved, shared):
        await lookup_service.lookup(db, clock, nhs_number=nhs, accessor=acc, unscheduled=True,
                                    audit=AUDIT)  # fmt: skip
    assert await count(db, "access_event") == 3 and await count(db, "outbox") == 4

    await plan_service.delete_plan(db, principal=las[LA.ods_code], la_ods=LA.ods_code,
                                   la_plan_id="deleted", if_match=None)  # fmt: skip
    moved_fields = PlanFields(new_number, PlanType.CPP, start)
    await plan_service.put_plan(db, clock, principal=las[LA.ods_code], la_ods=LA.ods_code,
                                la_plan_id="moved", fields=moved_fields, if_match=None)  # fmt: skip
    await plan_service.delete_plan(db, principal=las[LA.ods_code], la_ods=LA.ods_code,
                                   la_plan_id="shared", if_match=None)  # fmt: skip
    retention = PgRetention(db.pool, db._vault)
    result = await retention.purge(today=clock.today())
    assert (result.plans, result.access_events, result.notifications) == (0, 2, 2)
    assert await count(db, "access_event") == 1  # the shared child's: it has a plan left
    assert await count(db, "outbox") == 2  # its notifications, to both LAs

    await plan_service.delete_plan(db, principal=las[other.ods_code], la_ods=other.ods_code,
                                   la_plan_id="shared", if_match=None)  # fmt: skip
    result = await retention.purge(today=clock.today())
    assert (result.access_events, result.notifications) == (1, 2)
    assert await count(db, "access_event") == 0 and await count(db, "outbox") == 0
    assert await count(db, "purge_candidate") == 0
