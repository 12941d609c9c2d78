"""``nhs-number-inactive`` notifications (issue 4 item 6) on a real PostgreSQL.

The person index is the real local adapter, loaded from a small CSV in the
``cpis person-index load`` format. When it says an NHS number that LAs hold
plans for was superseded or retired, each owning LA gets one notification,
with the new number where known: over its rest-hook Subscription (served
app, real receiving HTTP server), in its MESH mailbox (mesh-sandbox) and in
its web inbox, never twice for the same change however often the check runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import orjson
import pytest
from structlog.testing import capture_logs

from cpis.adapters.crypto import FieldVault
from cpis.adapters.mesh import MeshClient
from cpis.adapters.postgres import (
    LocalPersonIndex,
    PgDatabase,
    PgIndexCheckStore,
    create_pool,
    inactive_notification_id,
    load_person_index,
)
from cpis.app import Runtime, build_dispatcher
from cpis.fhir import subscriptions as fs
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import LocalAuthority, PlanFields, PlanType, Principal, Role
from cpis.model.persons import CheckResult
from cpis.services import plans as plan_service
from cpis.services.person_index import check_plan_subjects, notify_inactive
from cpis.workers.dispatcher import Dispatcher
from cpis.workers.index_check import run_index_check
from tests.e2e.conftest import (  # noqa: F401 - client_keys, e2e, e2e_* are fixtures
    E2E,
    LA_NORTH_CLIENT,
    LA_SOUTH_CLIENT,
    NHS_SYSTEM,
    client_keys,
    e2e,
    e2e_base_path,
    e2e_overrides,
    user_headers,
)
from tests.fhir_validation import validate_resource
from tests.integration.conftest import FakeClock, another_runtime
from tests.integration.test_dispatcher import Receiver, receiver  # noqa: F401 - a fixture
from tests.mesh_sandbox import running_mesh_sandbox
from tests.polling import wait_until

OLD, NEW, GONE, FINE, LONE_OLD, LONE_NEW = synthetic_numbers(6, start=900)
NORTH = LocalAuthority("XLA01", "Northshire", "01632 960001", "01632 960101", 24)
SOUTH = LocalAuthority("XLA02", "Southborough", "01632 960002", "01632 960102", 24)
HEADER = "nhs_number,family_name,given_names,birth_date,sex,postcode,sensitive,superseded_by,active"


def index_file(*rows: str) -> bytes:
    return "\n".join((HEADER, *rows, "")).encode()


# OLD was merged into NEW; GONE was retired with no replacement; FINE is in use;
# LONE_OLD was merged too, but nobody holds a plan for it.
INDEX = index_file(
    f"{OLD},Smith,Alex,2015-04-02,M,LS1 4AP,N,{NEW},",
    f"{NEW},Smith,Alex,2015-04-02,M,LS1 4AP,N,,",
    f"{GONE},Jones,Sam,2016-05-03,F,,N,,N",
    f"{FINE},Brown,Kit,2017-06-04,U,,N,,",
    f"{LONE_OLD},Green,Jo,2014-01-01,F,,N,{LONE_NEW},",
    f"{LONE_NEW},Green,Jo,2014-01-01,F,,N,,",
)
# Plans as (LA, plan id, subject): north holds two plans on OLD, south one.
PLANS = (
    (NORTH.ods_code, "N-1", OLD),
    (NORTH.ods_code, "N-2", OLD),
    (NORTH.ods_code, "N-3", GONE),
    (NORTH.ods_code, "N-4", FINE),
    (SOUTH.ods_code, "S-1", OLD),
)


async def seed(db: PgDatabase, clock: FakeClock) -> None:
    for la in (NORTH, SOUTH):
        await db.upsert_la(la)
    for la_ods, plan_id, nhs in PLANS:
        principal = Principal(client_id="la", role=Role.LA, ods_codes=(la_ods,))
        await plan_service.put_plan(
            db, clock, principal=principal, la_ods=la_ods, la_plan_id=plan_id,
            fields=PlanFields(nhs, PlanType.CPP, date(2026, 1, 1)), if_match=None,
        )  # fmt: skip


async def outbox(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT * FROM outbox WHERE kind = 'nhs-number-inactive' ORDER BY la_ods, plan_ids"
            )
        )


def parameters(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = bundle["entry"][0]["resource"]["parameter"]
    return params


def parts(bundle: dict[str, Any], name: str) -> list[dict[str, Any]]:
    [param] = [p for p in parameters(bundle) if p["name"] == name]
    found: list[dict[str, Any]] = param["part"]
    return found


def event_view(bundle: dict[str, Any]) -> dict[str, list[Any]]:
    """The one ``notification-event`` as name -> values, for assertions: its event type and
    notification id (our extensions), the focus (the old number), and its additional
    context: the replacement number (``replaced-by``) and the plan ids."""
    [event] = [p for p in parameters(bundle) if p["name"] == "notification-event"]
    out: dict[str, list[Any]] = {}
    for ext in event.get("extension", []):
        name = ext["url"].rsplit("/", 1)[-1]
        value = ext.get("valueId") or ext["valueCoding"]["code"]
        out.setdefault(name, []).append(value)
    for part in event["part"]:
        ref = part.get("valueReference")
        if part["name"] == "focus":
            # An attendance's focus is an AuditEvent, by URL only.
            out.setdefault("subject", []).append(ref.get("identifier", {}).get("value"))
        elif part["name"] == "additional-context" and ref["type"] == "Patient":
            out.setdefault("replaced-by", []).append(ref["identifier"]["value"])
        elif part["name"] == "additional-context" and ref["type"] == "CareTeam":
            out.setdefault("plan-id", []).append(ref["identifier"]["value"])
    return out


# --- storage and the check -------------------------------------------------------------


async def test_each_owning_la_is_queued_once_per_change(
    db: PgDatabase, clock: FakeClock, vault: FieldVault
) -> None:
    """A load's newly retired numbers queue one notification per LA holding plans on them
    (with that LA's plan ids, the new number sealed or null); the daily check and the
    load notifying again queue nothing more; numbers nobody holds plans for queue
    nothing; and a later, different change of the same number is a new notification."""
    await seed(db, clock)
    store = PgIndexCheckStore(db.pool, vault)
    loaded = await load_person_index(db.pool, vault, INDEX)
    assert {p.nhs_number for p in loaded.newly_inactive} == {OLD, GONE, LONE_OLD}

    assert await notify_inactive(store, loaded.newly_inactive, now=clock.now()) == 3
    index = LocalPersonIndex(db.pool, vault)
    for _ in range(2):
        result = await check_plan_subjects(store, index, now=clock.now(), batch=2)
        assert result == CheckResult(subjects=3, inactive=2, queued=0)
    assert await notify_inactive(store, loaded.newly_inactive, now=clock.now()) == 0

    rows = await outbox(db.pool)
    got = [
        (
            r["la_ods"],
            list(r["plan_ids"]),
            vault.open("nhs_number", r["old_nhs_sealed"]),
            None if r["new_nhs_sealed"] is None else vault.open("nhs_number", r["new_nhs_sealed"]),
        )
        for r in rows
    ]
    assert got == [
        ("XLA01", ["N-1", "N-2"], OLD, NEW),
        ("XLA01", ["N-3"], GONE, None),
        ("XLA02", ["S-1"], OLD, NEW),
    ]
    for r in rows:
        assert (r["user_key"], r["org_ods"], r["access_event_id"]) == (None, None, None)
        assert r["state"] == "pending"
        new_key = None if r["new_nhs_sealed"] is None else vault.subject_key(NEW)
        assert r["notification_id"] == inactive_notification_id(
            r["la_ods"], r["subject_key"], new_key
        )
        # sealed at rest, like every NHS number
        for nhs in (OLD, NEW, GONE):
            assert nhs.encode() not in r["old_nhs_sealed"]
            assert nhs.encode() not in (r["new_nhs_sealed"] or b"")

    # The index later learns GONE's replacement: that is news, told once.
    later = await load_person_index(
        db.pool, vault, index_file(f"{GONE},Jones,Sam,2016-05-03,F,,N,{LONE_NEW},")
    )
    assert await notify_inactive(store, later.newly_inactive, now=clock.now()) == 1
    assert (await check_plan_subjects(store, index, now=clock.now())).queued == 0
    assert len(await outbox(db.pool)) == 4


async def test_numbers_in_use_or_unknown_to_the_index_queue_nothing(
    db: PgDatabase, clock: FakeClock, vault: FieldVault
) -> None:
    """With every planned number in use (or absent from the index), the check looks them
    all up and queues nothing; an empty index is the same."""
    await seed(db, clock)
    store = PgIndexCheckStore(db.pool, vault)
    index = LocalPersonIndex(db.pool, vault)
    assert await check_plan_subjects(store, index, now=clock.now()) == CheckResult(3, 0, 0)
    await load_person_index(db.pool, vault, index_file(f"{FINE},Brown,Kit,2017-06-04,U,,N,,"))
    assert await check_plan_subjects(store, index, now=clock.now()) == CheckResult(3, 0, 0)
    assert await outbox(db.pool) == []


async def test_the_serve_loop_checks_and_survives_an_unavailable_index(
    db: PgDatabase, clock: FakeClock, vault: FieldVault, database_url: str
) -> None:
    """``run_index_check`` returns at once without an index; with one it queues and logs
    counts; when the index cannot answer it logs and tries at the next run. No log
    line carries an NHS number."""
    store = PgIndexCheckStore(db.pool, vault)
    await asyncio.wait_for(run_index_check(store, None, clock, first_after=3600), timeout=5)

    await seed(db, clock)
    await load_person_index(db.pool, vault, INDEX)
    dead_pool = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=5000)
    await dead_pool.close()
    with capture_logs() as logs:
        for index, event, count in (
            (LocalPersonIndex(dead_pool, vault), "index_check_deferred", 2),
            (LocalPersonIndex(db.pool, vault), "index_check_done", 1),
        ):
            task = asyncio.create_task(
                run_index_check(store, index, clock, interval=0.01, first_after=0)
            )

            async def logged(event: str = event, count: int = count) -> bool:
                return sum(1 for e in logs if e["event"] == event) >= count

            try:
                await wait_until(logged, what=event)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    deferred = next(e for e in logs if e["event"] == "index_check_deferred")
    assert deferred["reason"] == "index unavailable"
    done = next(e for e in logs if e["event"] == "index_check_done")
    assert (done["subjects"], done["inactive"], done["queued"]) == (3, 2, 3)
    text = repr(logs)
    for nhs in (OLD, NEW, GONE, FINE, LONE_OLD, LONE_NEW):
        assert nhs not in text


# --- delivery -----------------------------------------------------------------------------


def subscription(service: E2E, endpoint: str, secret: str, payload: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Notifications about our children",
        "criteria": f"{service.fhir_base}/SubscriptionTopic/cpis-attendance",
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": fs.PAYLOAD_CONTENT_EXT, "valueCode": payload}]},
            "header": [f"Authorization: Bearer {secret}"],
        },
    }


async def test_las_are_told_over_rest_hook_and_in_the_inbox(
    e2e: E2E,  # noqa: F811 - the fixture imported above
    receiver: Receiver,  # noqa: F811 - the fixture imported above
) -> None:
    """With plans from two LAs on a superseded number, each LA's subscription receives one
    valid, signed-envelope event of type cpis-nhs-number-inactive-1 naming the old and new
    numbers and only its own plan ids (id-only: a Patient focus by identifier;
    full-resource: plus the inactive Patient ``replaced-by`` the new number); a retired
    number's event has no new number. The web inbox lists them apart from attendances,
    and acknowledging works."""
    for la_ods, plan_id, nhs in PLANS:
        client = LA_NORTH_CLIENT if la_ods == "XLA01" else LA_SOUTH_CLIENT
        await e2e.put_plan(client, plan_id, nhs_number=nhs, plan_type="CPP",
                           start_date="2025-03-03")  # fmt: skip
    for client, payload in ((LA_NORTH_CLIENT, "id-only"), (LA_SOUTH_CLIENT, "full-resource")):
        reply = await e2e.request(
            "POST", "/FHIR/R4/Subscription",
            headers={**await e2e.auth(client), "Content-Type": "application/fhir+json"},
            json=subscription(e2e, receiver.url, client, payload),
        )  # fmt: skip
        assert reply.status == 201, reply.text

    async def active() -> bool:
        rows = await e2e.fetch("SELECT status FROM subscription")
        return [r["status"] for r in rows] == ["active", "active"]

    await wait_until(active, what="handshakes")
    # an attendance too, to see both kinds side by side
    assert (await e2e.search("CareTeam", FINE, headers=user_headers())).status == 200

    rt = e2e.runtime
    await load_person_index(rt.pool, rt.vault, INDEX)
    store = PgIndexCheckStore(rt.pool, rt.vault)
    index = LocalPersonIndex(rt.pool, rt.vault)
    result = await check_plan_subjects(store, index, now=rt.clock.now())
    assert result == CheckResult(subjects=3, inactive=2, queued=3)
    assert (await check_plan_subjects(store, index, now=rt.clock.now())).queued == 0

    def changes() -> list[tuple[str, dict[str, Any]]]:
        out = []
        for headers, body in receiver.received:
            bundle = orjson.loads(body)
            if not any(p["name"] == "notification-event" for p in parameters(bundle)):
                continue  # a handshake
            if event_view(bundle)["notification-event-type"] == [fs.NHS_NUMBER_INACTIVE_EVENT_TYPE]:
                out.append((headers["Authorization"].removeprefix("Bearer "), bundle))
        return out

    async def three() -> bool:
        return len(changes()) == 3

    await wait_until(three, what="three nhs-number-inactive notifications")
    by_la: dict[tuple[str, str], dict[str, Any]] = {}
    for secret, bundle in changes():
        validate_resource(bundle)
        context = event_view(bundle)
        by_la[(secret, context["subject"][0])] = bundle
        assert bundle["id"] == context["notification-id"][0]
    assert set(by_la) == {(LA_NORTH_CLIENT, OLD), (LA_NORTH_CLIENT, GONE), (LA_SOUTH_CLIENT, OLD)}

    north_old = by_la[(LA_NORTH_CLIENT, OLD)]
    context = event_view(north_old)
    assert context["replaced-by"] == [NEW]  # superseded
    assert context["plan-id"] == ["N-1", "N-2"]
    [focus] = [p for p in parts(north_old, "notification-event") if p["name"] == "focus"]
    assert focus["valueReference"] == {
        "type": "Patient",
        "identifier": {"system": NHS_SYSTEM, "value": OLD},
    }
    assert len(north_old["entry"]) == 1  # id-only

    north_gone = event_view(by_la[(LA_NORTH_CLIENT, GONE)])
    assert "replaced-by" not in north_gone  # retired
    assert north_gone["plan-id"] == ["N-3"]

    south = by_la[(LA_SOUTH_CLIENT, OLD)]
    assert event_view(south)["plan-id"] == ["S-1"]
    patient_entry, new_entry, plan_entry = south["entry"][1:]
    [focus] = [p for p in parts(south, "notification-event") if p["name"] == "focus"]
    assert focus["valueReference"]["reference"] == patient_entry["fullUrl"]
    patient = patient_entry["resource"]
    assert patient["active"] is False
    assert patient["identifier"] == [{"system": NHS_SYSTEM, "value": OLD}]
    assert patient["link"] == [
        {
            "other": {
                "reference": new_entry["fullUrl"],
                "type": "Patient",
                "identifier": {"system": NHS_SYSTEM, "value": NEW},
            },
            "type": "replaced-by",
        }
    ]
    assert new_entry["resource"]["identifier"] == [{"system": NHS_SYSTEM, "value": NEW}]
    assert plan_entry["resource"]["resourceType"] == "CareTeam"

    # The web inbox: the changes apart from the attendance.
    async def inbox(client: str, status: str = "new") -> dict[str, Any]:
        reply = await e2e.request(
            "GET", "/la/v1/notifications", headers=await e2e.auth(client), params={"status": status}
        )
        assert reply.status == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    async def delivered() -> bool:
        changes = (await inbox(LA_NORTH_CLIENT))["nhs_number_changes"]
        return all(c["deliveries"] == ["rest-hook:delivered"] for c in changes)

    await wait_until(delivered, what="deliveries recorded")
    north = await inbox(LA_NORTH_CLIENT)
    assert [c["nhs_number"] for c in north["children"]] == [FINE]
    listed = {c["nhs_number"]: c for c in north["nhs_number_changes"]}
    assert set(listed) == {OLD, GONE}
    assert listed[OLD]["kind"] == "nhs-number-inactive"
    assert (listed[OLD]["status"], listed[OLD]["new_nhs_number"]) == ("superseded", NEW)
    assert listed[OLD]["plan_ids"] == ["N-1", "N-2"]
    assert (listed[GONE]["status"], listed[GONE]["new_nhs_number"]) == ("inactive", None)
    south_box = await inbox(LA_SOUTH_CLIENT)
    assert [(c["nhs_number"], c["plan_ids"]) for c in south_box["nhs_number_changes"]] == [
        (OLD, ["S-1"])
    ]
    assert south_box["children"] == []

    ack = await e2e.request(
        "POST", "/la/v1/notifications/acknowledge", headers=await e2e.auth(LA_NORTH_CLIENT),
        json={"ids": [listed[OLD]["notification_id"]]},
    )  # fmt: skip
    assert ack.json() == {"acknowledged": 1}
    left = await inbox(LA_NORTH_CLIENT)
    assert [c["nhs_number"] for c in left["nhs_number_changes"]] == [GONE]
    done = await inbox(LA_NORTH_CLIENT, "acknowledged")
    [acked] = done["nhs_number_changes"]
    assert (acked["nhs_number"], acked["acknowledged_by"]["id"]) == (OLD, LA_NORTH_CLIENT)
    # South cannot acknowledge north's notification
    other = await e2e.request(
        "POST", "/la/v1/notifications/acknowledge", headers=await e2e.auth(LA_SOUTH_CLIENT),
        json={"ids": [listed[GONE]["notification_id"]]},
    )  # fmt: skip
    assert other.json() == {"acknowledged": 0}


@pytest.fixture
async def mesh_world(
    runtime: Runtime, db: PgDatabase, clock: FakeClock
) -> AsyncIterator[tuple[Dispatcher, MeshClient]]:
    """North with a MESH mailbox on a running mesh-sandbox, and a dispatcher sending to it
    as `cpis serve` builds it."""
    async with running_mesh_sandbox() as box:
        service_box, la_box = box.mailboxes[0], box.mailboxes[1]
        await seed(db, clock)
        await db.set_la_mesh(NORTH.ods_code, la_box, "CPIS_NOTIFICATION")
        service_mesh = MeshClient(**box.client_kwargs(service_box))
        async with (
            another_runtime(runtime, mesh=service_mesh) as with_mesh,
            MeshClient(**box.client_kwargs(la_box)) as la_client,
        ):
            yield build_dispatcher(with_mesh), la_client


async def test_the_las_mesh_mailbox_gets_the_change(
    db: PgDatabase,
    clock: FakeClock,
    vault: FieldVault,
    mesh_world: tuple[Dispatcher, MeshClient],
) -> None:
    """An LA with a MESH mailbox gets each change there as a full-resource bundle under its
    own subject line, with the notification id as the local id; other LAs' plans and
    numbers are not in it."""
    dispatcher, la_client = mesh_world
    await load_person_index(db.pool, vault, INDEX)
    store = PgIndexCheckStore(db.pool, vault)
    await check_plan_subjects(store, LocalPersonIndex(db.pool, vault), now=clock.now())

    async def two() -> bool:
        return len(await la_client.list_inbox()) == 2

    task = asyncio.create_task(dispatcher.run())
    try:
        await wait_until(two, what="two MESH messages")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    seen = {}
    for message_id in await la_client.list_inbox():
        message = await la_client.read_message(message_id)
        bundle = orjson.loads(message.body)
        validate_resource(bundle)
        assert message.subject == "CP-IS NHS number inactive notification"
        assert message.workflow_id == "CPIS_NOTIFICATION"
        assert message.local_id == bundle["id"]
        assert uuid.UUID(bundle["id"])
        context = event_view(bundle)
        seen[context["subject"][0]] = (context.get("replaced-by"), context["plan-id"])
        assert {e["resource"]["resourceType"] for e in bundle["entry"][1:]} == {
            "Patient",
            "CareTeam",
        }
        assert "S-1" not in message.body.decode()
    assert seen == {OLD: ([NEW], ["N-1", "N-2"]), GONE: (None, ["N-3"])}
