"""What an LA's systems read and change of their own (issue 12), over HTTP: the inbox a
page at a time, a child by NHS number, plans by NHS number, uploads, failed deliveries
and settings; and, for every one of them, that another LA can neither read nor change
any of it (its answers are those for something that does not exist)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import (
    E2E,
    ED_CLIENT,
    LA_NORTH,
    LA_NORTH_CLIENT,
    LA_SOUTH,
    LA_SOUTH_CLIENT,
    user_headers,
)

CHILDREN = synthetic_numbers(5, start=1200)
CHILD = CHILDREN[0]


async def get(e2e: E2E, client_id: str, path: str, **params: Any) -> Any:
    reply = await e2e.request("GET", path, headers=await e2e.auth(client_id), params=params)
    return reply


async def ok(e2e: E2E, client_id: str, path: str, **params: Any) -> Any:
    reply = await get(e2e, client_id, path, **params)
    assert reply.status == 200, reply.text
    return reply.json()


async def north_plan(e2e: E2E, plan_id: str, nhs: str, **extra: Any) -> None:
    await e2e.put_plan(
        LA_NORTH_CLIENT, plan_id, nhs_number=nhs, plan_type="CPP", start_date="2025-03-03",
        **extra,
    )  # fmt: skip


async def seen(e2e: E2E, nhs: str, user: str = "555000000001") -> None:
    reply = await e2e.search("CareTeam", nhs, headers=user_headers(user))
    assert reply.status == 200, reply.text


# --- the inbox -------------------------------------------------------------------------


async def test_the_inbox_pages_by_child_newest_first_with_counts(e2e: E2E) -> None:
    """Five children seen in turn (the first twice more, last): pages of two follow ``next``
    to the end, listing each child once, the one with the newest attendance first, each
    with its attendances in the filter and its visits in the last 28 days; ``per_child``
    caps the attendances listed, not the count."""
    for i, nhs in enumerate(CHILDREN):
        await north_plan(e2e, f"N-{i}", nhs)
    for nhs in reversed(CHILDREN):
        await seen(e2e, nhs)
    await seen(e2e, CHILD, "555000000002")
    await seen(e2e, CHILD, "555000000003")

    listed: list[dict[str, Any]] = []
    after = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "per_child": 2}
        if after is not None:
            params["after"] = after
        body = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/notifications", **params)
        pages += 1
        assert len(body["children"]) <= 2
        if pages > 1:
            assert body["nhs_number_changes"] == []
        listed.extend(body["children"])
        after = body["next"]
        if after is None:
            break
    assert pages == 3
    assert [c["nhs_number"] for c in listed] == [CHILD, *CHILDREN[1:]]
    first = listed[0]
    assert (first["count"], first["recent_visits"], len(first["attendances"])) == (3, 3, 2)
    assert first["plan_ids"] == ["N-0"]
    assert [a["user"]["name"] for a in first["attendances"]] == ["Casey Nurse", "Casey Nurse"]
    assert all((c["count"], c["recent_visits"]) == (1, 1) for c in listed[1:])


async def test_acknowledged_children_leave_new_and_counts_keep_them(e2e: E2E) -> None:
    """Acknowledging a child's attendances moves the child to ``acknowledged``; its 28-day
    visit count still counts them. A cursor that is not one is a 400."""
    await north_plan(e2e, "N-0", CHILD)
    await north_plan(e2e, "N-1", CHILDREN[1])
    await seen(e2e, CHILD)
    await seen(e2e, CHILDREN[1])
    new = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/notifications")
    ids = [a["notification_id"] for a in new["children"][1]["attendances"]]
    assert new["children"][1]["nhs_number"] == CHILD
    ack = await e2e.request(
        "POST", "/la/v1/notifications/acknowledge",
        headers=await e2e.auth(LA_NORTH_CLIENT), json={"ids": ids},
    )  # fmt: skip
    assert ack.json() == {"acknowledged": 1}
    left = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/notifications")
    assert [c["nhs_number"] for c in left["children"]] == [CHILDREN[1]]
    done = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/notifications", status="acknowledged")
    [child] = done["children"]
    assert (child["nhs_number"], child["count"], child["recent_visits"]) == (CHILD, 1, 1)
    assert child["attendances"][0]["acknowledged_by"]["kind"] == "system"
    for bad in ("v1.nope", "x" * 41, "v1." + "A" * 32 + "é"):
        reply = await get(e2e, LA_NORTH_CLIENT, "/la/v1/notifications", after=bad)
        assert reply.status == 400, (bad, reply.text)


# --- a child, and plans by NHS number ---------------------------------------------------


async def test_a_child_is_found_only_among_the_las_own(e2e: E2E) -> None:
    """North opens its child: its plan, the visit and the notification sent. South, which
    holds no plan for the child, gets 404 for the child and no plans by its number; when
    South adds a plan, it sees its own plan and none of the visits from before it."""
    await north_plan(e2e, "N-0", CHILD, family_name="Childfamily", birth_date="2015-02-28")
    await seen(e2e, CHILD)

    north = await ok(e2e, LA_NORTH_CLIENT, f"/la/v1/children/{CHILD}")
    assert north["la_ods"] == LA_NORTH.ods_code
    [plan] = north["plans"]
    assert (plan["plan_id"], plan["visible"], plan["active"]) == ("N-0", True, True)
    assert plan["family_name"] == "Childfamily"
    # no end date sent: the service acts on the child's 18th birthday, and says so
    assert (plan["end_date"], plan["ends"]) == (None, "2033-02-28")
    [visit] = north["visits"]
    assert visit["user"]["name"] == "Casey Nurse"
    [sent] = north["notifications"]
    assert sent["access_event_id"] == visit["access_event_id"]

    missing = await get(e2e, LA_SOUTH_CLIENT, f"/la/v1/children/{CHILD}")
    assert missing.status == 404
    unknown = await get(e2e, LA_SOUTH_CLIENT, f"/la/v1/children/{CHILDREN[1]}")
    assert unknown.status == 404
    assert unknown.json()["issue"] == missing.json()["issue"]
    south_plans = await ok(e2e, LA_SOUTH_CLIENT, "/la/v1/plans", nhs_number=CHILD)
    assert south_plans == {"la_ods": LA_SOUTH.ods_code, "plans": []}

    await e2e.put_plan(
        LA_SOUTH_CLIENT, "S-0", nhs_number=CHILD, plan_type="LAC", start_date="2025-03-03"
    )
    south = await ok(e2e, LA_SOUTH_CLIENT, f"/la/v1/children/{CHILD}")
    assert [p["plan_id"] for p in south["plans"]] == ["S-0"]
    assert south["visits"] == [] and south["notifications"] == []
    north_plans = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/plans", nhs_number=CHILD)
    assert [p["plan_id"] for p in north_plans["plans"]] == ["N-0"]


async def test_child_requests_are_checked_and_audited(e2e: E2E) -> None:
    """A bad NHS number is a 400 that does not repeat it; a health client is 403; opening a
    child writes one audit line naming the child only as its keyed hash, and another LA's
    404 one naming no child."""
    await north_plan(e2e, "N-0", CHILD)
    bad = CHILD[:-1] + str((int(CHILD[-1]) + 1) % 10)
    for path, params in (
        (f"/la/v1/children/{bad}", {}),
        ("/la/v1/plans", {"nhs_number": bad}),
        ("/la/v1/plans", {}),
    ):
        reply = await get(e2e, LA_NORTH_CLIENT, path, **params)
        assert reply.status == 400, reply.text
        assert bad not in reply.text
    assert (await get(e2e, ED_CLIENT, f"/la/v1/children/{CHILD}")).status == 403
    assert (await get(e2e, ED_CLIENT, "/la/v1/plans", nhs_number=CHILD)).status == 403
    await ok(e2e, LA_NORTH_CLIENT, f"/la/v1/children/{CHILD}")
    assert (await get(e2e, LA_SOUTH_CLIENT, f"/la/v1/children/{CHILD}")).status == 404
    rows = await e2e.fetch(
        "SELECT outcome, client_id, subject, detail FROM audit_log WHERE action = 'la_child'"
        " AND outcome IN (200, 404) AND client_id IN ($1, $2) ORDER BY seq",
        LA_NORTH_CLIENT, LA_SOUTH_CLIENT,
    )  # fmt: skip
    found, refused = rows
    assert (found["outcome"], found["client_id"]) == (200, LA_NORTH_CLIENT)
    assert found["subject"] is not None and CHILD not in found["subject"]
    assert json.loads(found["detail"]) == {"plans": 1, "events": 0}
    assert (refused["outcome"], refused["client_id"], refused["subject"]) == (
        404, LA_SOUTH_CLIENT, None,
    )  # fmt: skip


# --- uploads ------------------------------------------------------------------------------


def upload_file(la_ods: str, sequence: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "la_ods": la_ods,
        "sequence": sequence,
        "created": "2026-03-03T18:30:00Z",
        "records": records,
    }


async def test_uploads_are_listed_and_read_by_their_own_la_only(e2e: E2E) -> None:
    """Two files from North: listed highest sequence first with their codes and counts,
    and each record's code and reason readable; South lists none and reads neither."""
    north = await e2e.auth(LA_NORTH_CLIENT)
    good = {"action": "upsert", "plan_id": "N-1", "nhs_number": CHILD, "plan_type": "CPP",
            "start_date": "2025-03-03"}  # fmt: skip
    for sequence, records in (
        (1, [good]),
        (2, [good, {"action": "delete", "plan_id": "N-404"}]),
    ):
        reply = await e2e.request(
            "POST", "/la/v1/uploads", headers=north,
            json=upload_file(LA_NORTH.ods_code, sequence, records),
        )  # fmt: skip
        assert reply.status == 200, reply.text
    listed = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/uploads")
    uploads = listed["uploads"]
    assert [(u["sequence"], u["file_code"], u["records"], u["summary"]) for u in uploads] == [
        (2, "CPF03", 2, {"CPR06": 1, "CPR07": 1}),
        (1, "CPF02", 1, {"CPR06": 1}),
    ]  # fmt: skip
    assert listed["next_before"] is None
    page = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/uploads", limit=1)
    assert [u["sequence"] for u in page["uploads"]] == [2] and page["next_before"] == 2
    rest = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/uploads", limit=1, before=2)
    assert [u["sequence"] for u in rest["uploads"]] == [1]
    second = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/uploads/2")
    assert [(r["plan_id"], r["code"], r.get("reason")) for r in second["records"]] == [
        ("N-1", "CPR06", None),
        ("N-404", "CPR07", "no such plan to delete"),
    ]

    assert (await ok(e2e, LA_SOUTH_CLIENT, "/la/v1/uploads"))["uploads"] == []
    for path in ("/la/v1/uploads/2", "/la/v1/uploads/99", "/la/v1/uploads/x"):
        assert (await get(e2e, LA_SOUTH_CLIENT, path)).status == 404, path
    assert (await get(e2e, ED_CLIENT, "/la/v1/uploads")).status == 403


# --- failed deliveries ---------------------------------------------------------------------


async def dead_delivery(e2e: E2E) -> int:
    """North's attendance notification, its MESH delivery given up on."""
    await north_plan(e2e, "N-0", CHILD)
    await seen(e2e, CHILD)
    [notification_id] = [
        r["notification_id"] for r in await e2e.fetch("SELECT notification_id FROM outbox")
    ]
    delivery_id: int = await e2e.db.fetchval(
        "INSERT INTO delivery (notification_id, la_ods, channel, target, state, attempts,"
        " next_attempt_at, created_at, last_error)"
        " VALUES ($1, $2, 'mesh', 'XLA01OT001', 'dead', 7, $3, $3, 'HTTP 403') RETURNING id",
        notification_id, LA_NORTH.ods_code, datetime.now(UTC),
    )  # fmt: skip
    return delivery_id


async def test_failed_deliveries_are_retried_by_their_own_la_only(e2e: E2E) -> None:
    """North lists its dead delivery and a Subscription in error; South lists neither and
    its retry of North's delivery is a 404 that changes nothing; North's retry queues it."""
    delivery_id = await dead_delivery(e2e)
    sub_id = uuid.uuid4()
    now = datetime.now(UTC)
    await e2e.db.execute(
        "INSERT INTO subscription (id, la_ods, client_id, status, topic, endpoint, payload,"
        " error, created_at, updated_at)"
        " VALUES ($1, $2, $3, 'error', 't', 'https://cms.example/hook', 'id-only',"
        " 'handshake failed', $4, $4)",
        sub_id, LA_NORTH.ods_code, LA_NORTH_CLIENT, now,
    )  # fmt: skip
    north = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/notifications/failed")
    assert [d["id"] for d in north["failed"]] == [delivery_id]
    assert [s["id"] for s in north["failing_subscriptions"]] == [str(sub_id)]
    south = await ok(e2e, LA_SOUTH_CLIENT, "/la/v1/notifications/failed")
    assert south == {"failed": [], "failing_subscriptions": []}

    path = f"/la/v1/notifications/failed/{delivery_id}/retry"
    refused = await e2e.request("POST", path, headers=await e2e.auth(LA_SOUTH_CLIENT))
    assert refused.status == 404
    state = "SELECT state FROM delivery WHERE id = $1"
    assert await e2e.db.fetchval(state, delivery_id) == "dead"
    retried = await e2e.request("POST", path, headers=await e2e.auth(LA_NORTH_CLIENT))
    assert retried.status == 200 and retried.json() == {"retried": delivery_id}
    assert await e2e.db.fetchval(state, delivery_id) == "pending"
    again = await e2e.request("POST", path, headers=await e2e.auth(LA_NORTH_CLIENT))
    assert again.status == 404
    for bad in ("x", "1" * 30, "-1"):
        reply = await e2e.request(
            "POST", f"/la/v1/notifications/failed/{bad}/retry",
            headers=await e2e.auth(LA_NORTH_CLIENT),
        )  # fmt: skip
        assert reply.status == 404, bad


# --- settings -----------------------------------------------------------------------------


async def patch(e2e: E2E, client_id: str, body: Any, **headers: str) -> Any:
    return await e2e.request(
        "PATCH",
        "/la/v1/settings",
        headers={**await e2e.auth(client_id), **headers},
        json=body,
    )


async def test_settings_are_read_and_changed_by_their_own_la_only(e2e: E2E) -> None:
    """North changes its phones, repeat window and MESH mailbox; South's settings and
    its own change touch only South; a stale If-Match is 412; a bad phone, window or
    mailbox is 422 naming the field and changes nothing, not even the fields that were
    good."""
    north = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/settings")
    assert (north["office_phone"], north["mesh_mailbox"], north["subscriptions"]) == (
        LA_NORTH.office_phone, None, [],
    )  # fmt: skip
    changed = await patch(
        e2e, LA_NORTH_CLIENT,
        {"office_phone": "01632 960999", "repeat_window_hours": 48, "mesh_mailbox": "xla01ot001"},
        **{"If-Match": f'W/"{north["version"]}"'},
    )  # fmt: skip
    assert changed.status == 200, changed.text
    body = changed.json()
    assert (body["office_phone"], body["repeat_window_hours"]) == ("01632 960999", 48)
    assert (body["mesh_mailbox"], body["mesh_workflow_id"]) == ("XLA01OT001", "CPIS_NOTIFICATION")
    assert changed.headers["ETag"] == f'W/"{body["version"]}"'
    stale = await patch(e2e, LA_NORTH_CLIENT, {"repeat_window_hours": 1}, **{"If-Match": 'W/"1"'})
    assert stale.status == 412

    south = await ok(e2e, LA_SOUTH_CLIENT, "/la/v1/settings")
    assert (south["la_ods"], south["office_phone"], south["mesh_mailbox"]) == (
        LA_SOUTH.ods_code, LA_SOUTH.office_phone, None,
    )  # fmt: skip
    assert (await patch(e2e, LA_SOUTH_CLIENT, {"edt_phone": "01632 960555"})).status == 200
    for bad, field in (
        ({"office_phone": "01632 960777", "edt_phone": "12"}, "edt_phone"),
        ({"office_phone": "01632 960777", "repeat_window_hours": 10_000}, "repeat_window_hours"),
        ({"office_phone": "01632 960777", "mesh_mailbox": "no spaces"}, "mesh_mailbox"),
        ({"repeat_window_hours": "24"}, "repeat_window_hours"),
    ):
        reply = await patch(e2e, LA_NORTH_CLIENT, bad)
        assert reply.status == 422, (bad, reply.text)
        assert reply.json()["issue"][0]["expression"] == [field]
    for nothing in ({}, {"name": "Elsewhere"}):
        assert (await patch(e2e, LA_NORTH_CLIENT, nothing)).status == 422
    after = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/settings")
    assert after == body
    assert (await patch(e2e, LA_NORTH_CLIENT, {"mesh_mailbox": None})).json()[
        "mesh_mailbox"
    ] is None
    assert (await ok(e2e, LA_SOUTH_CLIENT, "/la/v1/settings"))["edt_phone"] == "01632 960555"
    assert (await get(e2e, ED_CLIENT, "/la/v1/settings")).status == 403
    assert (await patch(e2e, ED_CLIENT, {"edt_phone": "01632 960555"})).status == 403


async def test_a_changed_repeat_window_applies_to_the_next_lookup(e2e: E2E) -> None:
    """With North's window set to 0 hours, the same nurse's second look notifies again."""
    await north_plan(e2e, "N-0", CHILD)
    assert (await patch(e2e, LA_NORTH_CLIENT, {"repeat_window_hours": 0})).status == 200
    await seen(e2e, CHILD)
    await seen(e2e, CHILD)
    body = await ok(e2e, LA_NORTH_CLIENT, "/la/v1/notifications")
    assert body["children"][0]["count"] == 2
