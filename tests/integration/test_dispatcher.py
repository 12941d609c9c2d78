"""The dispatcher end to end on a real PostgreSQL, a real receiving HTTP server on
127.0.0.1 and NHS England's mesh-sandbox: handshake, signed notifications in
order with events-since-subscription-start numbers, retries while the endpoint
is down, dead after the horizon, and MESH delivery."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
import pytest
from aiohttp import web

from cpis.adapters.mesh import MeshClient
from cpis.adapters.postgres import PgDatabase, PgOutboxStore
from cpis.adapters.signing import SIGNATURE_HEADER, verify_detached
from cpis.app import Runtime, build_dispatcher
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
from cpis.workers.dispatcher import Dispatcher
from tests.fhir_validation import validate_resource
from tests.integration.conftest import FakeClock, another_runtime
from tests.mesh_sandbox import running_mesh_sandbox
from tests.polling import wait_until

CHILD, OTHER = synthetic_numbers(2, start=300)
LA = LocalAuthority("XLA01", "Alphashire", "01632 960001", "01632 960101", 24)
AUDIT = AuditEntry(action="plan_search", outcome=200, client_id="ed")


@dataclass
class Receiver:
    """An LA's endpoint: records what arrives; ``mode`` makes it misbehave."""

    url: str = ""
    mode: str = "ok"  # ok | error
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def bundles(self, kind: str) -> list[dict[str, Any]]:
        out = []
        for _headers, body in self.received:
            bundle = orjson.loads(body)
            status = bundle["entry"][0]["resource"]
            types = [p for p in status["parameter"] if p["name"] == "type"]
            if types and types[0]["valueCode"] == kind:
                out.append(bundle)
        return out


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def hook(request: web.Request) -> web.Response:
        if rec.mode == "error":
            return web.Response(status=500)
        rec.received.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


async def seed(db: PgDatabase, clock: FakeClock) -> None:
    await db.upsert_la(LA)
    la = Principal(client_id="la", role=Role.LA, ods_codes=(LA.ods_code,))
    for i, nhs in enumerate((CHILD, OTHER)):
        await plan_service.put_plan(
            db, clock, principal=la, la_ods=LA.ods_code, la_plan_id=f"A-{i}",
            fields=PlanFields(nhs, PlanType.CPP, date(2026, 1, 1)), if_match=None,
        )  # fmt: skip


async def view(db: PgDatabase, clock: FakeClock, nhs: str, user: str) -> uuid.UUID:
    acc = Accessor("ed", "XED01", "Demo ED", SettingType.ED, user, f"Nurse {user}", "Nurse", "t")
    result = await lookup_service.lookup(
        db, clock, nhs_number=nhs, accessor=acc, unscheduled=True, audit=AUDIT
    )
    assert result.access_event is not None
    return result.access_event.id


async def add_subscription(db: PgDatabase, url: str, clock: FakeClock) -> uuid.UUID:
    sub_id = uuid.uuid4()
    async with db.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO subscription (id, la_ods, client_id, status, topic, endpoint, headers,"
            " payload, timeout_seconds, created_at, updated_at)"
            " VALUES ($1, $2, 'la', 'requested', 'topic', $3, $4, 'id-only', 5, $5, $5)",
            sub_id, LA.ods_code, url, ["Authorization: Bearer la-secret"], clock.now(),
        )  # fmt: skip
    return sub_id


@dataclass
class Harness:
    dispatcher: Dispatcher
    jwks: dict[str, Any]
    store: PgOutboxStore


@pytest.fixture
def harness(runtime: Runtime) -> Harness:
    """The dispatcher as `cpis serve` builds it (cpis.app.build_dispatcher), on the test's
    runtime: its clock, loopback receivers, quick timings."""
    return Harness(build_dispatcher(runtime), runtime.tokens.public_jwks(), runtime.outbox)


async def run_until(dispatcher: Dispatcher, predicate: Any, limit: float = 15.0) -> None:
    task = asyncio.create_task(dispatcher.run())
    try:
        await wait_until(predicate, limit=limit)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_handshake_then_signed_notifications_in_order(
    db: PgDatabase, clock: FakeClock, receiver: Receiver, harness: Harness
) -> None:
    """A new subscription is handshaken and made active; each lookup's notification then
    arrives once, in order, numbered from 1, signed with the published key, carrying the
    subscription's channel headers and the notification id to de-duplicate on."""
    await seed(db, clock)
    sub_id = await add_subscription(db, receiver.url, clock)
    await run_until(harness.dispatcher, lambda: _status(db, sub_id, "active"))
    assert len(receiver.bundles("handshake")) == 1

    events = [await view(db, clock, CHILD, f"u{i}") for i in range(3)]

    async def three() -> bool:
        return len(receiver.bundles("event-notification")) == 3

    await run_until(harness.dispatcher, three)
    notes = receiver.bundles("event-notification")
    for headers, body in receiver.received:
        assert headers["Authorization"] == "Bearer la-secret"
        assert verify_detached(body, headers[SIGNATURE_HEADER], harness.jwks)
        assert not verify_detached(body + b" ", headers[SIGNATURE_HEADER], harness.jwks)
    numbers, focuses = [], []
    for bundle in notes:
        validate_resource(bundle)
        params = bundle["entry"][0]["resource"]["parameter"]
        event = next(p for p in params if p["name"] == "notification-event")
        numbers.append(next(x["valueString"] for x in event["part"] if x["name"] == "event-number"))
        focuses.append(next(x["valueReference"]["reference"] for x in event["part"]
                            if x["name"] == "focus"))  # fmt: skip
    assert numbers == ["1", "2", "3"]
    assert focuses == [f"http://cpis.test/FHIR/R4/AuditEvent/{e}" for e in events]
    async with db.pool.acquire() as conn:
        ids = {str(r[0]) for r in await conn.fetch("SELECT notification_id FROM outbox")}
    assert {b["id"] for b in notes} == ids


async def test_endpoint_down_then_back_gets_everything_in_order(
    db: PgDatabase, clock: FakeClock, receiver: Receiver, harness: Harness
) -> None:
    """While the endpoint answers 500 nothing is lost: deliveries back off and, when it
    recovers, all arrive, in order."""
    await seed(db, clock)
    sub_id = await add_subscription(db, receiver.url, clock)
    await run_until(harness.dispatcher, lambda: _status(db, sub_id, "active"))
    receiver.mode = "error"
    for i in range(4):
        await view(db, clock, CHILD, f"u{i}")

    async def attempted() -> bool:
        async with db.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT count(*) FROM delivery WHERE attempts > 0"))

    await run_until(harness.dispatcher, attempted)
    receiver.mode = "ok"
    clock.advance(hours=0.5)  # past any backoff so far, inside the 1 h horizon

    async def all_four() -> bool:
        return len(receiver.bundles("event-notification")) == 4

    await run_until(harness.dispatcher, all_four)
    numbers = [
        next(
            x["valueString"]
            for p in b["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"
            for x in p["part"] if x["name"] == "event-number"
        )
        for b in receiver.bundles("event-notification")
    ]  # fmt: skip
    assert numbers == ["1", "2", "3", "4"]


async def test_past_the_horizon_a_delivery_is_dead_and_can_be_retried(
    db: PgDatabase, clock: FakeClock, receiver: Receiver, harness: Harness
) -> None:
    """A delivery still failing after the horizon is marked dead (not dropped); an
    operator's retry puts it back and it is delivered."""
    await seed(db, clock)
    sub_id = await add_subscription(db, receiver.url, clock)
    await run_until(harness.dispatcher, lambda: _status(db, sub_id, "active"))
    receiver.mode = "error"
    await view(db, clock, CHILD, "u1")

    async def dead() -> bool:
        clock.advance(minutes=20)
        return bool(await harness.store.dead_deliveries(LA.ods_code))

    await run_until(harness.dispatcher, dead)
    [row] = await harness.store.dead_deliveries(LA.ods_code)
    assert row.last_error == "endpoint answered 500"
    receiver.mode = "ok"
    assert await harness.store.retry(row.id, now=clock.now())

    async def arrived() -> bool:
        return len(receiver.bundles("event-notification")) == 1

    await run_until(harness.dispatcher, arrived)


async def test_mesh_notifications_reach_the_las_mailbox(
    runtime: Runtime, db: PgDatabase, clock: FakeClock
) -> None:
    """An LA with a MESH mailbox gets each notification there as a message whose local id
    is the notification id, read back from the sandbox as the LA would."""
    await seed(db, clock)
    async with running_mesh_sandbox() as box:
        service_box, la_box = box.mailboxes[0], box.mailboxes[1]
        await db.set_la_mesh(LA.ods_code, la_box, "CPIS_NOTIFICATION")
        service_mesh = MeshClient(**box.client_kwargs(service_box))
        event_id = await view(db, clock, CHILD, "u1")
        async with (
            another_runtime(runtime, mesh=service_mesh) as with_mesh,
            MeshClient(**box.client_kwargs(la_box)) as la_client,
        ):

            async def inbox() -> bool:
                return bool(await la_client.list_inbox())

            await run_until(build_dispatcher(with_mesh), inbox)
            [message_id] = await la_client.list_inbox()
            message = await la_client.read_message(message_id)
        bundle = orjson.loads(message.body)
        validate_resource(bundle)
        assert message.workflow_id == "CPIS_NOTIFICATION"
        assert message.local_id == bundle["id"]
        # full-resource: the AuditEvent, and the child's Patient and plans it references.
        audit_events = [
            e["resource"]
            for e in bundle["entry"][1:]
            if e["resource"]["resourceType"] == "AuditEvent"
        ]
        assert [a["id"] for a in audit_events] == [str(event_id)]
        assert CHILD in message.body.decode()


async def _status(db: PgDatabase, sub_id: uuid.UUID, status: str) -> bool:
    async with db.pool.acquire() as conn:
        return bool(
            await conn.fetchval(
                "SELECT status = $2 FROM subscription WHERE id = $1", sub_id, status
            )
        )


async def test_a_subscription_past_its_end_is_switched_off(
    db: PgDatabase, clock: FakeClock, receiver: Receiver, harness: Harness
) -> None:
    """A subscription whose `end` has passed goes to status off and is sent nothing."""
    await seed(db, clock)
    sub_id = await add_subscription(db, receiver.url, clock)
    async with db.pool.acquire() as conn:
        await conn.execute("UPDATE subscription SET end_at = $2 WHERE id = $1", sub_id, clock.now())
    await run_until(harness.dispatcher, lambda: _status(db, sub_id, "off"))
    await view(db, clock, CHILD, "u1")
    assert await harness.store.fan_out(now=clock.now()) == 1
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM delivery") == 0
    assert receiver.received == []
