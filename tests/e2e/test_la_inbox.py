"""The LA's web inbox API: attendances grouped by child, acknowledged one or many,
each LA seeing only its own, and the repeat-view rule keeping duplicates out."""

from __future__ import annotations

from typing import Any

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import (
    E2E,
    ED_CLIENT,
    LA_NORTH_CLIENT,
    LA_SOUTH_CLIENT,
    TRUST_CLIENT,
    UTC,
    user_headers,
)

CHILD, SIBLING = synthetic_numbers(2, start=700)


async def inbox(e2e: E2E, client_id: str, status: str = "new") -> dict[str, Any]:
    reply = await e2e.request(
        "GET",
        "/la/v1/notifications",
        headers=await e2e.auth(client_id),
        params={"status": status},
    )
    assert reply.status == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def test_attendances_are_grouped_by_child_newest_first(e2e: E2E) -> None:
    """Visits by different staff and settings show under the child, with the LA's plan id,
    when, where (ODS, name, type) and who (name, role); repeat views by the same user at
    the same setting within 24 h do not appear twice."""
    await e2e.put_plan(LA_NORTH_CLIENT, "N-7", nhs_number=CHILD, plan_type="CPP",
                       start_date="2025-03-03")  # fmt: skip
    await e2e.put_plan(LA_NORTH_CLIENT, "N-8", nhs_number=SIBLING, plan_type="LAC",
                       start_date="2025-03-03")  # fmt: skip
    for headers in (
        user_headers("555000000001"),
        user_headers("555000000001"),  # repeat: no second notification
        user_headers("555000000002", name="Robin Doctor", role="Registrar"),
        user_headers("555000000003", org=UTC.ods_code),
    ):
        # the UTC belongs to a trust whose client may act for both settings
        at_utc = headers["NHSD-End-User-Organisation-ODS"] == UTC.ods_code
        client = TRUST_CLIENT if at_utc else ED_CLIENT
        reply = await e2e.search("CareTeam", CHILD, client_id=client, headers=headers)
        assert reply.status == 200
    assert (await e2e.search("Flag", SIBLING)).status == 200

    body = await inbox(e2e, LA_NORTH_CLIENT)
    assert body["la_ods"] == "XLA01"
    by_child = {c["nhs_number"]: c for c in body["children"]}
    assert set(by_child) == {CHILD, SIBLING}
    child = by_child[CHILD]
    assert child["plan_ids"] == ["N-7"]
    assert child["count"] == 3
    attendances = child["attendances"]
    assert [a["when"] for a in attendances] == sorted((a["when"] for a in attendances),
                                                      reverse=True)  # fmt: skip
    assert {(a["setting"]["ods_code"], a["setting"]["type"]) for a in attendances} == {
        ("XED01", "ED"),
        ("XUT01", "UTC"),
    }
    assert {a["user"]["name"] for a in attendances} == {"Casey Nurse", "Robin Doctor"}
    assert all(a["acknowledged_at"] is None for a in attendances)


async def test_acknowledging_moves_attendances_out_of_new(e2e: E2E) -> None:
    """Acknowledged notifications leave the 'new' list and show under 'acknowledged'
    with who acknowledged them; acknowledging twice changes nothing."""
    await e2e.put_plan(LA_NORTH_CLIENT, "N-7", nhs_number=CHILD, plan_type="CPP",
                       start_date="2025-03-03")  # fmt: skip
    for user in ("555000000001", "555000000002"):
        assert (await e2e.search("CareTeam", CHILD, headers=user_headers(user))).status == 200
    new = await inbox(e2e, LA_NORTH_CLIENT)
    ids = [a["notification_id"] for a in new["children"][0]["attendances"]]
    assert len(ids) == 2
    ack = await e2e.request(
        "POST", "/la/v1/notifications/acknowledge",
        headers=await e2e.auth(LA_NORTH_CLIENT), json={"ids": ids[:1]},
    )  # fmt: skip
    assert ack.status == 200 and ack.json() == {"acknowledged": 1}
    again = await e2e.request(
        "POST", "/la/v1/notifications/acknowledge",
        headers=await e2e.auth(LA_NORTH_CLIENT), json={"ids": ids[:1]},
    )  # fmt: skip
    assert again.json() == {"acknowledged": 0}
    left = await inbox(e2e, LA_NORTH_CLIENT)
    assert [a["notification_id"] for a in left["children"][0]["attendances"]] == ids[1:]
    done = await inbox(e2e, LA_NORTH_CLIENT, "acknowledged")
    [acked] = done["children"][0]["attendances"]
    assert acked["notification_id"] == ids[0]
    assert acked["acknowledged_by"] == {
        "kind": "system", "id": LA_NORTH_CLIENT, "name": None, "role": "manager",
    }  # fmt: skip


async def test_an_la_sees_and_acknowledges_only_its_own(e2e: E2E) -> None:
    """Another LA's inbox does not show this LA's children, and its acknowledgement of
    this LA's notification ids changes nothing."""
    await e2e.put_plan(LA_NORTH_CLIENT, "N-7", nhs_number=CHILD, plan_type="CPP",
                       start_date="2025-03-03")  # fmt: skip
    assert (await e2e.search("CareTeam", CHILD)).status == 200
    north = await inbox(e2e, LA_NORTH_CLIENT)
    ids = [a["notification_id"] for c in north["children"] for a in c["attendances"]]
    assert (await inbox(e2e, LA_SOUTH_CLIENT))["children"] == []
    ack = await e2e.request(
        "POST", "/la/v1/notifications/acknowledge",
        headers=await e2e.auth(LA_SOUTH_CLIENT), json={"ids": ids},
    )  # fmt: skip
    assert ack.json() == {"acknowledged": 0}
    assert len((await inbox(e2e, LA_NORTH_CLIENT))["children"][0]["attendances"]) == 1


async def test_bad_inbox_requests_are_refused(e2e: E2E) -> None:
    """Health clients get 403; bad status, bad ids and non-JSON bodies get clear errors."""
    health = await e2e.request("GET", "/la/v1/notifications", headers=await e2e.auth(ED_CLIENT))
    assert health.status == 403
    la = await e2e.auth(LA_NORTH_CLIENT)
    bad_status = await e2e.request(
        "GET", "/la/v1/notifications", headers=la, params={"status": "maybe"}
    )
    assert bad_status.status == 400
    for body, status in (({"ids": ["not-a-uuid"]}, 422), ({"ids": []}, 422), ({}, 422)):
        reply = await e2e.request("POST", "/la/v1/notifications/acknowledge", headers=la, json=body)
        assert reply.status == status, (body, reply.text)
    text = await e2e.request(
        "POST", "/la/v1/notifications/acknowledge", headers={**la, "Content-Type": "text/plain"},
        data="ids",
    )  # fmt: skip
    assert text.status == 415
