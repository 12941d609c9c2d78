"""The lookup use case against a real PostgreSQL: plans, access events, outbox, history."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from cpis import rules
from cpis.adapters.crypto import FieldVault
from cpis.adapters.postgres import PgAuditLog, PgDatabase, PgOutboxStore, open_user_id
from cpis.errors import Forbidden, NotFound, VersionMismatch
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
from cpis.model.notifications import Acknowledger, InboxAttendance
from cpis.services import lookup as lookup_service
from cpis.services import plans as plan_service
from tests.integration.conftest import FakeClock


async def inbox_items(inbox: PgOutboxStore, clock: FakeClock) -> list[InboxAttendance]:
    """Every attendance in XLA01's inbox, acknowledged or not."""
    children = await inbox.inbox_page(
        "XLA01", status="all", after=None, children=10, per_child=10, recent_since=clock.now()
    )
    return [a for c in children for a in c.attendances]


CHILD, OTHER, MOTHER = synthetic_numbers(3, start=100)
LA_A = LocalAuthority("XLA01", "Alphashire", "01632 960001", "01632 960101", 24)
LA_B = LocalAuthority("XLA02", "Betaborough", "01632 960002", "01632 960102", repeat_window_hours=0)
AUDIT = AuditEntry(action="plan_search", outcome=200, client_id="ed")


def la_principal(la: LocalAuthority) -> Principal:
    return Principal(client_id=f"{la.ods_code}-sys", role=Role.LA, ods_codes=(la.ods_code,))


def accessor(user: str = "u1", org: str = "XED01") -> Accessor:
    return Accessor(
        client_id="ed",
        org_ods=org,
        org_name="Demo ED",
        setting_type=SettingType.ED,
        user_id=user,
        user_name=f"User {user}",
        user_role="Nurse",
        trace_id="t-1",
    )


async def put(
    db: PgDatabase,
    clock: FakeClock,
    la: LocalAuthority,
    plan_id: str,
    fields: PlanFields,
    *,
    if_match: int | None = None,
) -> None:
    await plan_service.put_plan(
        db,
        clock,
        principal=la_principal(la),
        la_ods=la.ods_code,
        la_plan_id=plan_id,
        fields=fields,
        if_match=if_match,
    )


@pytest.fixture
async def seeded(db: PgDatabase, clock: FakeClock) -> PgDatabase:
    await db.upsert_la(LA_A)
    await db.upsert_la(LA_B)
    await put(db, clock, LA_A, "A-1", PlanFields(CHILD, PlanType.CPP, date(2026, 1, 1)))
    await put(db, clock, LA_B, "B-7", PlanFields(CHILD, PlanType.LAC, date(2025, 5, 1)))
    # ended long ago: no longer visible
    await put(
        db,
        clock,
        LA_A,
        "A-old",
        PlanFields(OTHER, PlanType.CPP, date(2020, 1, 1), date(2021, 1, 1)),
    )
    return db


async def lookup(
    db: PgDatabase,
    clock: FakeClock,
    nhs: str,
    *,
    user: str = "u1",
    org: str = "XED01",
    unscheduled: bool = True,
):  # type: ignore[no-untyped-def]
    return await lookup_service.lookup(
        db,
        clock,
        nhs_number=nhs,
        accessor=accessor(user, org),
        unscheduled=unscheduled,
        audit=AUDIT,
    )


async def count(db: PgDatabase, table: str) -> int:
    async with db.pool.acquire() as conn:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def test_lookup_returns_every_visible_plan_from_every_la(
    seeded: PgDatabase, clock: FakeClock
) -> None:
    """A child with plans from two LAs gets both, each with its own LA."""
    result = await lookup(seeded, clock, CHILD)
    assert sorted(vp.la.ods_code for vp in result.plans) == ["XLA01", "XLA02"]
    assert result.access_event is not None
    assert result.notified_las == ("XLA01", "XLA02")
    assert await count(seeded, "outbox") == 2


async def test_plans_outside_their_window_are_not_shown_and_record_nothing(
    seeded: PgDatabase, clock: FakeClock
) -> None:
    """A plan past its visibility window is invisible; no access event, no notification."""
    result = await lookup(seeded, clock, OTHER)
    assert result.plans == ()
    assert result.access_event is None
    assert await count(seeded, "access_event") == 0
    assert await count(seeded, "outbox") == 0


async def test_silent_lookup_records_no_access_event(seeded: PgDatabase, clock: FakeClock) -> None:
    """IsUnscheduledAccessEvent: false reads the plans but records and notifies nothing."""
    result = await lookup(seeded, clock, CHILD, unscheduled=False)
    assert len(result.plans) == 2
    assert result.access_event is None
    assert await count(seeded, "access_event") == 0
    assert await count(seeded, "outbox") == 0
    assert await count(seeded, "audit_log") == 1


async def test_repeat_view_within_window_does_not_notify_again(
    seeded: PgDatabase, clock: FakeClock
) -> None:
    """Same user, same setting, within the LA's window: no second notification to that LA.

    LA_B's window is 0 hours, so it is told every time.
    """
    await lookup(seeded, clock, CHILD)
    clock.advance(hours=2)
    second = await lookup(seeded, clock, CHILD)
    assert second.notified_las == ("XLA02",)
    other_user = await lookup(seeded, clock, CHILD, user="u2")
    assert other_user.notified_las == ("XLA01", "XLA02")
    other_setting = await lookup(seeded, clock, CHILD, org="XED02")
    assert other_setting.notified_las == ("XLA01", "XLA02")
    clock.advance(hours=23)
    after_window = await lookup(seeded, clock, CHILD)
    assert after_window.notified_las == ("XLA01", "XLA02")


async def test_history_shows_newest_first_with_repeats_by_one_user_once(
    seeded: PgDatabase, clock: FakeClock
) -> None:
    """The 25 visits: newest first; a user's repeat views within 24 h shown once (the first)."""
    principal = Principal(client_id="ed", role=Role.HEALTH, ods_codes=("XED01",))
    first = await lookup(seeded, clock, CHILD, user="u1")
    clock.advance(hours=1)
    await lookup(seeded, clock, CHILD, user="u1")  # repeat: hidden
    clock.advance(hours=1)
    other = await lookup(seeded, clock, CHILD, user="u2")
    events = await lookup_service.history(
        seeded, clock, nhs_number=CHILD, principal=principal, audit=AUDIT
    )
    assert [e.id for e in events] == [other.access_event.id, first.access_event.id]  # type: ignore[union-attr]
    assert await count(seeded, "access_event") == 3


async def test_history_is_capped_at_25(seeded: PgDatabase, clock: FakeClock) -> None:
    """Only the 25 most recent visits are shown."""
    principal = Principal(client_id="ed", role=Role.HEALTH, ods_codes=("XED01",))
    for i in range(30):
        await lookup(seeded, clock, CHILD, user=f"user-{i}")
        clock.advance(minutes=1)
    events = await lookup_service.history(
        seeded, clock, nhs_number=CHILD, principal=principal, audit=AUDIT
    )
    assert len(events) == 25
    assert events[0].accessor.user_id == "user-29"
    assert events[-1].accessor.user_id == "user-5"


async def history_ids(db: PgDatabase, clock: FakeClock, nhs: str) -> list[object]:
    principal = Principal(client_id="ed", role=Role.HEALTH, ods_codes=("XED01",))
    events = await lookup_service.history(
        db, clock, nhs_number=nhs, principal=principal, audit=AUDIT
    )
    return [e.id for e in events]


async def test_a_view_is_a_repeat_until_24_hours_after_the_users_last_shown_view(
    seeded: PgDatabase, clock: FakeClock
) -> None:
    """23 h 59 after a user's shown view, their next view is a repeat and hidden; 24 h
    after it, the next is shown again (SPEC §3)."""
    first = await lookup(seeded, clock, CHILD)
    clock.advance(hours=23, minutes=59)
    await lookup(seeded, clock, CHILD)
    clock.advance(minutes=1)
    third = await lookup(seeded, clock, CHILD)
    assert await history_ids(seeded, clock, CHILD) == [
        third.access_event.id,  # type: ignore[union-attr]
        first.access_event.id,  # type: ignore[union-attr]
    ]


async def test_the_repeat_view_window_applied_in_sql_is_the_rules(
    seeded: PgDatabase, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """record_lookup() decides repeats with the window in cpis.rules, not a number of its
    own: with a one-hour window, a view 59 minutes after a shown one is hidden and one
    61 minutes after it is shown."""
    monkeypatch.setattr(rules, "REPEAT_VIEW_WINDOW", timedelta(hours=1))
    first = await lookup(seeded, clock, CHILD)
    clock.advance(minutes=59)
    await lookup(seeded, clock, CHILD)
    clock.advance(minutes=2)
    third = await lookup(seeded, clock, CHILD)
    assert await history_ids(seeded, clock, CHILD) == [
        third.access_event.id,  # type: ignore[union-attr]
        first.access_event.id,  # type: ignore[union-attr]
    ]


async def test_the_history_size_is_the_rules(
    seeded: PgDatabase, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history query's limit is cpis.rules.HISTORY_SIZE, whatever it is."""
    monkeypatch.setattr(rules, "HISTORY_SIZE", 3)
    ids = []
    for i in range(5):
        result = await lookup(seeded, clock, CHILD, user=f"user-{i}")
        ids.append(result.access_event.id)  # type: ignore[union-attr]
        clock.advance(minutes=1)
    assert await history_ids(seeded, clock, CHILD) == ids[:1:-1]


async def test_history_of_a_child_with_no_visible_plan_is_empty(
    seeded: PgDatabase, clock: FakeClock
) -> None:
    """Health cannot read visits of a child who is not (or no longer) visible."""
    principal = Principal(client_id="ed", role=Role.HEALTH, ods_codes=("XED01",))
    assert (
        await lookup_service.history(
            seeded, clock, nhs_number=OTHER, principal=principal, audit=AUDIT
        )
        == []
    )


async def test_plans_are_versioned_and_history_is_readable(
    seeded: PgDatabase, clock: FakeClock
) -> None:
    """Each PUT makes a new version; older versions stay readable (vread)."""
    clock.advance(days=1)
    await put(
        seeded,
        clock,
        LA_A,
        "A-1",
        PlanFields(CHILD, PlanType.CPP, date(2026, 1, 1), date(2026, 5, 31)),
        if_match=1,
    )
    plan = await plan_service.get_plan(
        seeded, principal=la_principal(LA_A), la_ods="XLA01", la_plan_id="A-1"
    )
    assert plan.version == 2
    health = Principal(client_id="ed", role=Role.HEALTH, ods_codes=("XED01",))
    v1 = await lookup_service.read_plan(seeded, clock, plan_id=plan.id, version=1, principal=health)
    assert v1.plan.fields.end_date is None
    v2 = await lookup_service.read_plan(
        seeded, clock, plan_id=plan.id, version=None, principal=health
    )
    assert v2.plan.fields.end_date == date(2026, 5, 31)
    assert not v2.active


async def test_if_match_refuses_a_stale_version(seeded: PgDatabase, clock: FakeClock) -> None:
    """A PUT with an old ETag is refused and changes nothing."""
    with pytest.raises(VersionMismatch):
        await put(
            seeded,
            clock,
            LA_A,
            "A-1",
            PlanFields(CHILD, PlanType.LAC, date(2026, 1, 1)),
            if_match=7,
        )
    plan = await plan_service.get_plan(
        seeded, principal=la_principal(LA_A), la_ods="XLA01", la_plan_id="A-1"
    )
    assert plan.plan_type is PlanType.CPP and plan.version == 1


async def test_an_la_cannot_touch_another_las_plans(seeded: PgDatabase, clock: FakeClock) -> None:
    """LA scoping: reading, writing or deleting another LA's plan is refused."""
    intruder = la_principal(LA_B)
    with pytest.raises(Forbidden):
        await plan_service.get_plan(seeded, principal=intruder, la_ods="XLA01", la_plan_id="A-1")
    with pytest.raises(Forbidden):
        await plan_service.delete_plan(
            seeded, principal=intruder, la_ods="XLA01", la_plan_id="A-1", if_match=None
        )
    plan = await plan_service.get_plan(
        seeded, principal=la_principal(LA_A), la_ods="XLA01", la_plan_id="A-1"
    )
    with pytest.raises(NotFound):
        await lookup_service.read_plan(
            seeded, clock, plan_id=plan.id, version=None, principal=intruder
        )


async def test_delete_removes_the_plan_and_its_history_at_once(
    seeded: PgDatabase, clock: FakeClock
) -> None:
    """A plan entered in error is gone at once, every version of it."""
    await plan_service.delete_plan(
        seeded, principal=la_principal(LA_A), la_ods="XLA01", la_plan_id="A-1", if_match=None
    )
    result = await lookup(seeded, clock, CHILD, unscheduled=False)
    assert [vp.la.ods_code for vp in result.plans] == ["XLA02"]
    async with seeded.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM plan_version WHERE version > 0") == 2


async def test_personal_data_is_not_stored_in_clear(db: PgDatabase, clock: FakeClock) -> None:
    """A dump of the plan tables reveals no NHS number, name or birth date."""
    await db.upsert_la(LA_A)
    await put(
        db,
        clock,
        LA_A,
        "A-9",
        PlanFields(
            MOTHER,
            PlanType.UCPP,
            date(2026, 1, 1),
            None,
            None,
            date(1999, 12, 24),
            "Zebedee",
            "Quintessa",
        ),
    )
    await lookup(db, clock, MOTHER)
    async with db.pool.acquire() as conn:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        dump = ""
        for t in tables:
            for r in await conn.fetch(f"SELECT row_to_json(x)::text FROM {t} x"):
                dump += r[0]
    for secret in (MOTHER, "Zebedee", "Quintessa", "1999-12-24"):
        assert secret not in dump


# Made-up staff: an ED consultant signed in with CIS2 (role code and SDS role profile),
# a nurse whose ED system names them in headers, and an LA social worker.
CONSULTANT = Accessor(
    client_id="ed",
    org_ods="XED01",
    org_name="Demo ED",
    setting_type=SettingType.ED,
    user_id="555066112233",
    user_name="Hortensia Quarrington-Vale",
    user_role="Consultant in Paediatric Emergency Medicine",
    trace_id="t-staff-1",
    role_code="R8000",
    role_profile_id="555066445566",
    user_verified=True,
)
NURSE = dataclasses.replace(
    accessor(),
    user_id="555066778800",
    user_name="Barnaby Thistlewood",
    user_role="Advanced Clinical Practitioner",
)
SOCIAL_WORKER = "555066990011"
SOCIAL_WORKER_NAME = "Sam Socialworker"
STAFF_VALUES = (
    CONSULTANT.user_id,
    CONSULTANT.user_name,
    CONSULTANT.user_role,
    "R8000",
    "555066445566",
    NURSE.user_id,
    NURSE.user_name,
    NURSE.user_role,
    SOCIAL_WORKER,
    SOCIAL_WORKER_NAME,
)


async def dump(db: PgDatabase) -> dict[str, list[str]]:
    """Every row of every table, as JSON text, by table."""
    async with db.pool.acquire() as conn:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        return {
            t: [r[0] for r in await conn.fetch(f"SELECT row_to_json(x)::text FROM {t} x")]
            for t in tables
        }


async def test_staff_data_is_not_stored_in_clear(
    seeded: PgDatabase, clock: FakeClock, vault: FieldVault
) -> None:
    """Issue 9 item 4: after lookups by named staff (one with a CIS2 role code and role
    profile), their repeat views, the history and an LA user's acknowledgement, no column
    of any row holds a staff id, name, role, role code or role profile, in text or as the
    hex of its bytes; yet everything reads back, and repeats are still told by user."""
    first = await lookup_service.lookup(
        seeded, clock, nhs_number=CHILD, accessor=CONSULTANT, unscheduled=True,
        audit=dataclasses.replace(AUDIT, user_id=CONSULTANT.user_id),
    )  # fmt: skip
    clock.advance(minutes=5)
    again = await lookup_service.lookup(
        seeded, clock, nhs_number=CHILD, accessor=CONSULTANT, unscheduled=True,
        audit=dataclasses.replace(AUDIT, user_id=CONSULTANT.user_id),
    )  # fmt: skip
    clock.advance(minutes=5)
    nurse = await lookup_service.lookup(
        seeded, clock, nhs_number=CHILD, accessor=NURSE, unscheduled=True,
        audit=dataclasses.replace(AUDIT, user_id=NURSE.user_id),
    )  # fmt: skip
    await seeded.append_audit(
        dataclasses.replace(AUDIT, action="history", user_id=NURSE.user_id), clock.now()
    )
    assert again.notified_las == ("XLA02",)  # XLA01's window: the same user, no second one
    assert nurse.notified_las == ("XLA01", "XLA02")
    inbox = PgOutboxStore(seeded.pool, vault)
    items = await inbox_items(inbox, clock)
    by = Acknowledger("person", SOCIAL_WORKER, SOCIAL_WORKER_NAME, "caseworker")
    assert await inbox.acknowledge(
        "XLA01", [i.notification_id for i in items], by=by, now=clock.now()
    ) == 2  # fmt: skip

    tables = await dump(seeded)
    assert {"access_event", "outbox", "audit_log"} <= tables.keys()
    hexed = {v: v.encode().hex() for v in STAFF_VALUES}
    for table, rows in tables.items():
        for row in rows:
            for value in STAFF_VALUES:
                assert value not in row, (table, value)
                assert hexed[value] not in row, (table, value)

    principal = Principal(client_id="ed", role=Role.HEALTH, ods_codes=("XED01",))
    events = await lookup_service.history(
        seeded, clock, nhs_number=CHILD, principal=principal, audit=AUDIT
    )
    assert [e.accessor for e in events] == [
        nurse.access_event.accessor,  # type: ignore[union-attr]
        first.access_event.accessor,  # type: ignore[union-attr]
    ]
    assert events[1].accessor.role_profile_id == "555066445566"
    items = await inbox_items(inbox, clock)
    assert {(i.user_name, i.acknowledged_by) for i in items} == {
        (CONSULTANT.user_name, by),
        (NURSE.user_name, by),
    }
    async with seeded.pool.acquire() as conn:
        sealed_users = [r[0] for r in await conn.fetch("SELECT user_sealed FROM audit_log")]
    assert sorted(open_user_id(vault, u) for u in sealed_users if u is not None) == sorted(
        [CONSULTANT.user_id] * 2 + [NURSE.user_id] * 2
    )


async def test_audit_log_is_sealed_and_append_only(
    seeded: PgDatabase, clock: FakeClock, audit: PgAuditLog
) -> None:
    """Every lookup appends an audit line that is sealed into the chain; edits are
    refused, and tampering with a sealed line is detected, naming its batch."""
    import asyncpg

    for _ in range(3):
        await lookup(seeded, clock, CHILD)
    report = await audit.verify()
    assert report.intact, report.problem
    assert report.rows == 3
    async with seeded.pool.acquire() as conn:
        with pytest.raises(asyncpg.exceptions.RaiseError):
            await conn.execute("UPDATE audit_log SET outcome = 500 WHERE seq = 2")
        with pytest.raises(asyncpg.exceptions.RaiseError):
            await conn.execute("DELETE FROM audit_log")
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
        await conn.execute("UPDATE audit_log SET outcome = 500 WHERE seq = 2")
        batch = await conn.fetchval(
            "SELECT batch FROM audit_seal WHERE 2 BETWEEN first_seq AND last_seq"
        )
    assert batch is not None
    report = await audit.verify()
    assert not report.intact
    assert report.broken_batch == batch
    assert "changed, removed or added" in (report.problem or "")


async def test_concurrent_migrations_apply_once(database_url: str) -> None:
    """Two replicas migrating at once: one applies, the other finds nothing to do."""
    import asyncio

    import asyncpg

    from cpis.adapters.postgres import create_pool, migrate

    # the template is already migrated; forget that to force a real re-run race
    conn = await asyncpg.connect(database_url)
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    await conn.close()
    pools = [
        await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=30_000)
        for _ in range(2)
    ]
    try:
        results = await asyncio.gather(*(migrate(p) for p in pools))
    finally:
        for p in pools:
            await p.close()
    assert sorted(len(r) for r in results) == [0, len(results[0]) + len(results[1])]


async def test_access_is_not_recorded_against_plans_that_changed_since_the_read(
    seeded: PgDatabase, clock: FakeClock
) -> None:
    """The write names the plan versions the read saw; if a plan changed (or a new one
    arrived) in between, nothing is written, so no event is based on stale plans."""
    async with seeded.connection() as conn:
        rows = list(await conn.visible_plan_rows(CHILD))
        stale = [p for p, _ in rows]
        # another LA's system updates a plan between the read and the write
        await put(seeded, clock, LA_A, "A-1", PlanFields(CHILD, PlanType.CPP, date(2026, 1, 2)))
        outcome = await conn.record_access(
            CHILD, accessor(), ["XLA01", "XLA02"], clock.now(), {}, AUDIT, based_on=stale
        )
        assert outcome is None
        assert await count(seeded, "access_event") == 0
        assert await count(seeded, "outbox") == 0
        # the lookup itself reads again and records against the new version
        result = await lookup(seeded, clock, CHILD)
        assert result.access_event is not None
        assert {vp.plan.version for vp in result.plans if vp.la.ods_code == "XLA01"} == {2}
