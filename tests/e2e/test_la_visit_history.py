"""An LA sees a child's visits only from while it held a visible plan for the child.

The probe's finding (issue 9, item 1): LA B put a future-dated plan on any NHS
number and its AuditEvent search showed LA A's earlier visits, with the nurse's
name, id and role. Now an LA sees exactly the visits it was told of, or would
have been (its repeat window aside): ``access_event.la_codes``.
"""

from __future__ import annotations

from datetime import timedelta

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import E2E, LA_NORTH_CLIENT, LA_SOUTH_CLIENT, identifier, user_headers

(CHILD,) = synthetic_numbers(1, start=951)
VIEWERS = "AuditEvent:agent:PractitionerRole"


async def history(e2e: E2E, client_id: str) -> dict:
    reply = await e2e.request(
        "GET",
        "/FHIR/R4/AuditEvent",
        headers={**await e2e.auth(client_id), "TraceID": "hist-1"},
        params={"patient:identifier": identifier(CHILD), "_include": VIEWERS},
    )
    assert reply.status == 200, reply.text
    return reply.fhir()


async def test_a_plan_added_later_or_in_the_future_opens_no_earlier_visit(e2e: E2E) -> None:
    """North's plan is visible when the ED looks; South then adds a plan starting next
    month, then one starting today: South's search shows none of the earlier visit, nor its
    viewer by id; the next visit, made while both plans are visible, both see."""
    today = e2e.runtime.clock.today()
    await e2e.put_plan(
        LA_NORTH_CLIENT, "N-1", nhs_number=CHILD, plan_type="CPP", start_date="2026-01-05"
    )
    first = await e2e.search("CareTeam", CHILD, headers=user_headers("555000000021"))
    assert first.status == 200
    (north_visit,) = [e["resource"] for e in (await history(e2e, LA_NORTH_CLIENT))["entry"]
                      if e["search"]["mode"] == "match"]  # fmt: skip

    await e2e.put_plan(
        LA_SOUTH_CLIENT,
        "S-1",
        nhs_number=CHILD,
        plan_type="LAC",
        start_date=(today + timedelta(days=30)).isoformat(),
    )
    assert (await history(e2e, LA_SOUTH_CLIENT))["total"] == 0
    await e2e.put_plan(
        LA_SOUTH_CLIENT, "S-1", nhs_number=CHILD, plan_type="LAC", start_date=today.isoformat()
    )
    south = await history(e2e, LA_SOUTH_CLIENT)
    assert south["total"] == 0
    assert "entry" not in south
    south_auth = {**await e2e.auth(LA_SOUTH_CLIENT), "TraceID": "hist-2"}
    viewer_ref = north_visit["agent"][1]["who"]["reference"]
    for path in (f"/FHIR/R4/AuditEvent/{north_visit['id']}", f"/FHIR/R4/{viewer_ref}"):
        reply = await e2e.request("GET", path, headers=south_auth)
        assert reply.status == 404, path

    second = await e2e.search("CareTeam", CHILD, headers=user_headers("555000000022"))
    assert second.status == 200
    south = await history(e2e, LA_SOUTH_CLIENT)
    assert south["total"] == 1
    assert "555000000021" not in str(south)
    north = await history(e2e, LA_NORTH_CLIENT)
    assert north["total"] == 2
