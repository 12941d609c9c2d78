"""The LA services (issue 12) as the web pages will call them, on the real PostgreSQL
adapters: a signed-in person acknowledges (and is kept, sealed), a caseworker reads but
cannot change settings, and the inbox's pages are exact when attendances share a time."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from cpis.app import Runtime
from cpis.errors import Forbidden, InvalidRequest, NotFound
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import Accessor, AuditEntry, LocalAuthority, PlanFields, PlanType, SettingType
from cpis.model.la import InboxCursor, LaActor, LaDetailsChange, LaRole
from cpis.model.notifications import SubscriptionRequest
from cpis.services import children, inbox, la_settings, lookup
from cpis.services import plans as plan_service
from tests.integration.conftest import FakeClock
from tests.integration.test_lookup_storage import la_principal

NORTH = LocalAuthority("XLA01", "Northshire", "01632 960001", "01632 960101", 0)
SOUTH = LocalAuthority("XLA02", "Southborough", "01632 960002", "01632 960102", 24)
CASEWORKER = LaActor.person(
    "XLA01", "idp-subject-7", name="Robin Caseworker", role=LaRole.CASEWORKER
)
MANAGER = dataclasses.replace(CASEWORKER, id="idp-subject-8", role=LaRole.MANAGER)
KIDS = synthetic_numbers(7, start=3300)


async def seed(rt: Runtime, clock: FakeClock, *, same_time: bool = False) -> None:
    """North's plans for seven children, each seen once (all at one instant with
    ``same_time``, else a minute apart, the first child first)."""
    await rt.db.upsert_la(NORTH)
    await rt.db.upsert_la(SOUTH)
    for i, nhs in enumerate(KIDS):
        await plan_service.put_plan(
            rt.db, clock, principal=la_principal(NORTH), la_ods="XLA01", la_plan_id=f"N-{i}",
            fields=PlanFields(nhs, PlanType.CPP, date(2026, 1, 1)), if_match=None,
        )  # fmt: skip
    for nhs in KIDS:
        if not same_time:
            clock.advance(minutes=1)
        await lookup.lookup(
            rt.db, clock, nhs_number=nhs, unscheduled=True,
            accessor=Accessor("ed", "XED01", "Demo ED", SettingType.ED, "u1", "Casey Nurse",
                              "Nurse", "t-1"),
            audit=AuditEntry(action="plan_search", outcome=200),
        )  # fmt: skip


async def all_pages(rt: Runtime, clock: FakeClock, actor: LaActor, size: int) -> list[str]:
    seen: list[str] = []
    after: InboxCursor | None = None
    while True:
        page = await inbox.page(rt.outbox, clock, actor=actor, after=after, children=size)
        seen.extend(c.nhs_number for c in page.children)
        if page.next is None:
            return seen
        after = inbox.parse_cursor(inbox.cursor_text(page.next))


@pytest.mark.parametrize("same_time", [False, True])
async def test_pages_list_every_child_once_in_order(
    runtime: Runtime, clock: FakeClock, same_time: bool
) -> None:
    """Pages of any size, followed by their cursors (as text, as a link carries them),
    list every child exactly once, newest first, also when every attendance has the
    same time (the notification id breaks the tie)."""
    await seed(runtime, clock, same_time=same_time)
    whole = await all_pages(runtime, clock, CASEWORKER, 100)
    assert sorted(whole) == sorted(KIDS)
    if not same_time:
        assert whole == list(reversed(KIDS))
    for size in (1, 2, 3):
        assert await all_pages(runtime, clock, CASEWORKER, size) == whole
    south = LaActor.system("XLA02", "la-south")
    assert await all_pages(runtime, clock, south, 3) == []


async def test_a_person_acknowledges_and_is_kept_sealed(runtime: Runtime, clock: FakeClock) -> None:
    """A caseworker's acknowledgement names them (subject, name, role) in the inbox; the
    outbox row holds none of it in clear."""
    await seed(runtime, clock)
    first = await inbox.page(runtime.outbox, clock, actor=CASEWORKER, children=1)
    ids = [a.notification_id for a in first.children[0].attendances]
    assert await inbox.acknowledge(runtime.outbox, clock, actor=CASEWORKER, ids=ids) == 1
    done = await inbox.page(runtime.outbox, clock, actor=CASEWORKER, status="acknowledged")
    [att] = done.children[0].attendances
    assert att.acknowledged_by is not None
    assert (att.acknowledged_by.kind, att.acknowledged_by.id) == ("person", CASEWORKER.id)
    assert (att.acknowledged_by.name, att.acknowledged_by.role) == (CASEWORKER.name, "caseworker")
    async with runtime.pool.acquire() as conn:
        raw = await conn.fetchval(
            "SELECT acknowledged_by_sealed FROM outbox WHERE notification_id = $1", ids[0]
        )
    assert CASEWORKER.id.encode() not in raw and b"Caseworker" not in raw
    with pytest.raises(InvalidRequest):
        await inbox.acknowledge(runtime.outbox, clock, actor=CASEWORKER, ids=[])


async def test_a_caseworker_reads_settings_and_a_manager_changes_them(
    runtime: Runtime, clock: FakeClock
) -> None:
    """Settings are the actor's own LA's; changing them (the details, the MESH mailbox,
    removing a Subscription) needs a manager of that LA; a child of another LA is not
    found."""
    await seed(runtime, clock)
    subs = runtime.subscriptions
    read = await la_settings.read(runtime.db, subs, actor=CASEWORKER)
    assert read.la.ods_code == "XLA01" and read.mesh is None
    change = LaDetailsChange(repeat_window_hours=12)
    with pytest.raises(Forbidden):
        await la_settings.change_details(runtime.db, actor=CASEWORKER, change=change)
    with pytest.raises(Forbidden):
        await la_settings.set_mesh(runtime.db, actor=CASEWORKER, mesh=None)
    la = await la_settings.change_details(runtime.db, actor=MANAGER, change=change)
    assert la.repeat_window_hours == 12
    mesh = la_settings.checked_mesh("xla01ot001")
    await la_settings.set_mesh(runtime.db, actor=MANAGER, mesh=mesh)
    assert (await la_settings.read(runtime.db, subs, actor=CASEWORKER)).mesh == mesh
    south = await la_settings.read(runtime.db, subs, actor=LaActor.system("XLA02", "s"))
    assert (south.la.repeat_window_hours, south.mesh) == (24, None)

    request = SubscriptionRequest(
        "requested", "cms", "https://cms.example/hook", (), "id-only", None, 10, None
    )
    sub = await subs.create(
        la_ods="XLA01", client_id="la-north", topic="t", request=request, at=clock.now()
    )
    with pytest.raises(Forbidden):
        await la_settings.remove_subscription(subs, actor=CASEWORKER, subscription_id=sub.id)
    with pytest.raises(NotFound):
        south_actor = LaActor.system("XLA02", "s")
        await la_settings.remove_subscription(subs, actor=south_actor, subscription_id=sub.id)
    await la_settings.remove_subscription(subs, actor=MANAGER, subscription_id=sub.id)
    assert (await la_settings.read(runtime.db, subs, actor=CASEWORKER)).subscriptions == ()

    record = await children.child(
        runtime.db, runtime.outbox, clock, actor=CASEWORKER, nhs_number=KIDS[0]
    )
    assert [p.plan.la_plan_id for p in record.plans] == ["N-0"] and len(record.visits) == 1
    with pytest.raises(NotFound):
        await children.child(
            runtime.db, runtime.outbox, clock, actor=LaActor.system("XLA02", "s"),
            nhs_number=KIDS[0],
        )  # fmt: skip
