"""An ED lookup made with a real FHIR client (fhirpy) against the running service.

What an ED system integrated with NHS England's CP-IS sees: CareTeam and Flag
searches by NHS number, the child's recent visits as AuditEvents, reads and
vreads, the LA Organization and the CapabilityStatement. Every FHIR resource
received (bundles included) is validated as R4. The database is queried
directly to check what was recorded: access events and the notification
outbox.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from cpis.adapters.postgres import user_key
from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import (
    CLIENTS,
    E2E,
    ED,
    ED_CLIENT,
    LA_NORTH,
    LA_NORTH_CLIENT,
    LA_SOUTH,
    LA_SOUTH_CLIENT,
    NHS_SYSTEM,
    SILENT_CLIENT,
    TRUST_CLIENT,
    UTC,
    identifier,
    plain,
    user_headers,
)
from tests.fhir_validation import validate_resource

CHILD, PART_ENDED, UNKNOWN, UPDATED = synthetic_numbers(4, start=101)
CPP_CODE = "342191000000101"
LAC_CODE = "764841000000100"
UCPP_CODE = "818901000000100"

NURSE = "555000000001"
DOCTOR = "555000000002"


def today(e2e: E2E) -> date:
    return e2e.runtime.clock.today()


def days(e2e: E2E, n: int) -> str:
    return (today(e2e) + timedelta(days=n)).isoformat()


async def fhir_client(
    e2e: E2E, client_id: str = ED_CLIENT, user: str = NURSE, **extra: str
) -> AsyncFHIRClient:
    """fhirpy as an ED system configures it: bearer token and the CP-IS headers (an LA's
    system names its own organisation)."""
    org = CLIENTS[client_id].ods[0]
    headers = user_headers(user, name=f"User {user[-2:]}", org=org)
    headers.update(extra)
    return AsyncFHIRClient(
        url=e2e.fhir_base,
        authorization=f"Bearer {await e2e.token(client_id)}",
        extra_headers=headers,
    )


async def seed_child_with_two_las(e2e: E2E) -> None:
    """A child on Northshire's CPP who moved to Southborough, now also looked after there."""
    await e2e.put_plan(
        LA_NORTH_CLIENT,
        "N-CPP-1",
        nhs_number=CHILD,
        plan_type="CPP",
        start_date=days(e2e, -200),
        birth_date="2015-04-03",
        family_name="Testchild",
        given_name="Robin",
    )
    await e2e.put_plan(
        LA_SOUTH_CLIENT,
        "S-LAC-1",
        nhs_number=CHILD,
        plan_type="LAC",
        start_date=days(e2e, -20),
        birth_date="2015-04-03",
        family_name="Testchild",
        given_name="Robin",
    )


async def outbox_las(e2e: E2E) -> list[str]:
    rows = await e2e.fetch("SELECT la_ods FROM outbox ORDER BY created_at, notification_id")
    return [r["la_ods"] for r in rows]


def validated_bundle(bundle: Any) -> dict[str, Any]:
    """fhirpy's raw bundle as plain JSON, validated as a FHIR R4 searchset."""
    body = plain(bundle)
    validate_resource(body)
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    assert isinstance(body["total"], int)
    assert [link["relation"] for link in body["link"]] == ["self"]
    assert body["link"][0]["url"].startswith("http://127.0.0.1:")
    for entry in body.get("entry", []):
        validate_resource(entry["resource"])
        assert entry["search"]["mode"] in ("match", "include")
    return body


async def test_careteam_lookup_returns_every_las_plan_with_its_phones(e2e: E2E) -> None:
    """A CareTeam search through fhirpy returns one CareTeam per visible plan, from both
    LAs, each naming its LA team and carrying that LA's office-hours (rank 1) and EDT
    (rank 2) phones; absolute links; never the child's name or date of birth."""
    await seed_child_with_two_las(e2e)
    client = await fhir_client(e2e)
    search = client.resources("CareTeam").search(**{"patient:identifier": identifier(CHILD)})

    bundle = validated_bundle(await search.fetch_raw())

    assert bundle["total"] == 2
    assert bundle["link"][0]["url"].startswith(f"{e2e.fhir_base}/CareTeam?")
    by_la = {}
    for entry in bundle["entry"]:
        team = entry["resource"]
        assert entry["search"]["mode"] == "match"
        assert entry["fullUrl"] == f"{e2e.fhir_base}/CareTeam/{team['id']}"
        assert team["subject"]["identifier"] == {"system": NHS_SYSTEM, "value": CHILD}
        (org,) = team["managingOrganization"]
        by_la[org["identifier"]["value"]] = team
    assert set(by_la) == {LA_NORTH.ods_code, LA_SOUTH.ods_code}
    for la, code in ((LA_NORTH, CPP_CODE), (LA_SOUTH, LAC_CODE)):
        team = by_la[la.ods_code]
        assert team["name"].startswith(la.name)
        assert team["status"] == "active"
        assert team["category"][0]["coding"][0]["code"] == code
        assert team["managingOrganization"][0]["reference"] == (
            f"{e2e.fhir_base}/Organization/{la.ods_code}"
        )
        phones = sorted((p["rank"], p["value"]) for p in team["telecom"])
        assert phones == [(1, la.office_phone), (2, la.edt_phone)]
        assert all(p["system"] == "phone" for p in team["telecom"])
    text = repr(bundle)
    assert "Testchild" not in text
    assert "Robin" not in text
    assert "2015-04-03" not in text

    # The same search as typed resources (fhirpy's fetch) sees the same CareTeams.
    teams = await search.fetch()
    assert sorted(t.id for t in teams) == sorted(t["id"] for t in by_la.values())
    for team in teams:
        validate_resource(plain(team.serialize()))


async def test_lookup_notifies_each_owning_la_once_per_user_and_setting(e2e: E2E) -> None:
    """The first unscheduled lookup queues one outbox row per owning LA; a repeat view by
    the same user at the same setting within 24 h queues none (but is still recorded);
    a different user queues one per LA again."""
    await seed_child_with_two_las(e2e)
    search = {"patient:identifier": identifier(CHILD)}

    nurse = await fhir_client(e2e, user=NURSE)
    validated_bundle(await nurse.resources("CareTeam").search(**search).fetch_raw())
    assert sorted(await outbox_las(e2e)) == [LA_NORTH.ods_code, LA_SOUTH.ods_code]

    validated_bundle(await nurse.resources("CareTeam").search(**search).fetch_raw())
    validated_bundle(await nurse.resources("Flag").search(**search).fetch_raw())
    assert sorted(await outbox_las(e2e)) == [LA_NORTH.ods_code, LA_SOUTH.ods_code]
    assert (await e2e.counts("access_event"))["access_event"] == 3

    doctor = await fhir_client(e2e, user=DOCTOR)
    validated_bundle(await doctor.resources("CareTeam").search(**search).fetch_raw())
    assert sorted(await outbox_las(e2e)) == sorted([LA_NORTH.ods_code, LA_SOUTH.ods_code] * 2)
    rows = await e2e.fetch(
        "SELECT la_ods, user_key, org_ods, plan_ids FROM outbox"
        " ORDER BY created_at, notification_id"
    )
    # the outbox compares users by a keyed hash of their id (staff data is sealed at rest)
    keys = {user_key(e2e.runtime.vault, user): user for user in (NURSE, DOCTOR)}
    assert {(r["la_ods"], keys[r["user_key"]]) for r in rows} == {
        (la, user) for la in (LA_NORTH.ods_code, LA_SOUTH.ods_code) for user in (NURSE, DOCTOR)
    }
    assert {r["org_ods"] for r in rows} == {ED.ods_code}
    plan_ids = {r["la_ods"]: r["plan_ids"] for r in rows}
    assert plan_ids == {LA_NORTH.ods_code: ["N-CPP-1"], LA_SOUTH.ods_code: ["S-LAC-1"]}


async def test_same_user_at_another_setting_notifies_again_but_is_shown_once(
    e2e: E2E,
) -> None:
    """A trust's system registered for an ED and a UTC: the same user looking the child up
    at the UTC after the ED notifies each LA again (the repeat rule is per user *and*
    setting), while the 25-visit history shows that user once, at the first setting."""
    await seed_child_with_two_las(e2e)
    search = {"patient:identifier": identifier(CHILD)}
    at_ed = await fhir_client(
        e2e, TRUST_CLIENT, user=NURSE, **{"NHSD-End-User-Organisation-ODS": ED.ods_code}
    )
    at_utc = await fhir_client(
        e2e, TRUST_CLIENT, user=NURSE, **{"NHSD-End-User-Organisation-ODS": UTC.ods_code}
    )
    validated_bundle(await at_ed.resources("CareTeam").search(**search).fetch_raw())
    validated_bundle(await at_utc.resources("CareTeam").search(**search).fetch_raw())
    validated_bundle(await at_utc.resources("Flag").search(**search).fetch_raw())

    rows = await e2e.fetch(
        "SELECT la_ods, org_ods FROM outbox ORDER BY created_at, notification_id"
    )
    assert sorted((r["la_ods"], r["org_ods"]) for r in rows) == sorted(
        (la, org)
        for la in (LA_NORTH.ods_code, LA_SOUTH.ods_code)
        for org in (ED.ods_code, UTC.ods_code)
    )
    history = validated_bundle(await at_utc.resources("AuditEvent").search(**search).fetch_raw())
    assert history["total"] == 1
    (event,) = (e["resource"] for e in history["entry"])
    assert event["agent"][2]["who"]["identifier"]["value"] == ED.ods_code
    stored = await e2e.fetch("SELECT org_ods, setting_type FROM access_event ORDER BY occurred_at")
    assert [(r["org_ods"], r["setting_type"]) for r in stored] == [
        (ED.ods_code, "ED"),
        (UTC.ods_code, "UTC"),
        (UTC.ods_code, "UTC"),
    ]


async def test_flag_search_with_author_include_and_status(e2e: E2E) -> None:
    """Flag search: one safety Flag per visible plan; ``status`` filters active from
    ended-but-visible plans; ``_include=Flag:author`` adds each LA Organization once
    with search.mode=include, and ``total`` counts matches only."""
    await e2e.put_plan(
        LA_NORTH_CLIENT,
        "N-CPP-ENDED",
        nhs_number=PART_ENDED,
        plan_type="CPP",
        start_date=days(e2e, -400),
        end_date=days(e2e, -30),
    )
    await e2e.put_plan(
        LA_SOUTH_CLIENT,
        "S-CPP-NOW",
        nhs_number=PART_ENDED,
        plan_type="CPP",
        start_date=days(e2e, -10),
    )
    client = await fhir_client(e2e)
    flags = client.resources("Flag").search(**{"patient:identifier": identifier(PART_ENDED)})

    everything = validated_bundle(await flags.fetch_raw())
    assert everything["total"] == 2
    assert {e["resource"]["status"] for e in everything["entry"]} == {"active", "inactive"}
    for entry in everything["entry"]:
        flag = entry["resource"]
        assert flag["category"][0]["coding"][0]["code"] == "safety"
        assert flag["code"]["coding"][0]["code"] == CPP_CODE
        assert flag["author"]["reference"].startswith(f"{e2e.fhir_base}/Organization/")

    active = validated_bundle(
        await flags.search(status="active").include("Flag", "author").fetch_raw()
    )
    assert active["total"] == 1
    modes = [(e["search"]["mode"], e["resource"]["resourceType"]) for e in active["entry"]]
    assert modes == [("match", "Flag"), ("include", "Organization")]
    flag, org = (e["resource"] for e in active["entry"])
    assert flag["author"]["reference"] == active["entry"][1]["fullUrl"]
    assert org["id"] == LA_SOUTH.ods_code
    assert sorted(p["value"] for p in org["telecom"]) == sorted(
        [LA_SOUTH.office_phone, LA_SOUTH.edt_phone]
    )

    inactive = validated_bundle(await flags.search(status="inactive").fetch_raw())
    assert inactive["total"] == 1
    assert inactive["entry"][0]["resource"]["author"]["identifier"]["value"] == LA_NORTH.ods_code
    assert inactive["entry"][0]["resource"]["period"]["end"] == days(e2e, -30)

    both = validated_bundle(await flags.include("Flag", "author").fetch_raw())
    assert both["total"] == 2
    included = [e["resource"]["id"] for e in both["entry"] if e["search"]["mode"] == "include"]
    assert sorted(included) == [LA_NORTH.ods_code, LA_SOUTH.ods_code]

    typed = await flags.search(status="active").include("Flag", "author").fetch()
    assert [f.resourceType for f in typed] == ["Flag"]
    validate_resource(plain(typed[0].serialize()))


async def test_audit_event_history_newest_first_repeats_once_silent_reads_never(
    e2e: E2E,
) -> None:
    """AuditEvent search lists unscheduled visits newest first; a second view by the same
    user within 24 h is shown once; a different user is shown; silent reads (the header
    ``IsUnscheduledAccessEvent: false``, or a silent-only client even when it says true)
    record no visit and notify nobody."""
    await seed_child_with_two_las(e2e)
    search = {"patient:identifier": identifier(CHILD)}

    nurse = await fhir_client(e2e, user=NURSE)
    validated_bundle(await nurse.resources("CareTeam").search(**search).fetch_raw())
    validated_bundle(await nurse.resources("CareTeam").search(**search).fetch_raw())
    doctor = await fhir_client(e2e, user=DOCTOR)
    validated_bundle(await doctor.resources("Flag").search(**search).fetch_raw())
    before = await e2e.counts("access_event", "outbox")
    assert before == {"access_event": 3, "outbox": 4}

    silent = await fhir_client(e2e, user="555000000003", IsUnscheduledAccessEvent="false")
    silent_bundle = validated_bundle(
        await silent.resources("CareTeam").search(**search).fetch_raw()
    )
    assert silent_bundle["total"] == 2
    silent_only = await fhir_client(
        e2e, SILENT_CLIENT, user="555000000004", IsUnscheduledAccessEvent="true"
    )
    validated_bundle(await silent_only.resources("CareTeam").search(**search).fetch_raw())
    bare_silent = AsyncFHIRClient(
        url=e2e.fhir_base,
        authorization=f"Bearer {await e2e.token(SILENT_CLIENT)}",
        extra_headers={"TraceID": str(uuid.uuid4())},
    )
    validated_bundle(await bare_silent.resources("Flag").search(**search).fetch_raw())
    assert await e2e.counts("access_event", "outbox") == before

    history = validated_bundle(
        await nurse.resources("AuditEvent")
        .search(**search, _include="AuditEvent:agent:PractitionerRole")
        .fetch_raw()
    )
    assert history["total"] == 2
    events = [e["resource"] for e in history["entry"] if e["search"]["mode"] == "match"]
    viewers = {
        f"PractitionerRole/{e['resource']['id']}": e["resource"]
        for e in history["entry"]
        if e["search"]["mode"] == "include"
    }
    users = [
        viewers[ev["agent"][1]["who"]["reference"]]["practitioner"]["identifier"]["value"]
        for ev in events
    ]
    assert users == [DOCTOR, NURSE]
    assert events[0]["recorded"] >= events[1]["recorded"]
    for ev in events:
        assert ev["entity"][0]["what"]["identifier"] == {"system": NHS_SYSTEM, "value": CHILD}
        setting = ev["agent"][2]
        assert setting["who"]["identifier"]["value"] == ED.ods_code
        assert setting["role"][0]["coding"][0]["code"] == "ED"
    # The AuditEvent search is itself no visit.
    assert await e2e.counts("access_event", "outbox") == before

    # Each listed event can be read back, as health and as an owning LA.
    la_client = await fhir_client(e2e, LA_SOUTH_CLIENT)
    for ev in events:
        read = plain(await nurse.get("AuditEvent", ev["id"]))
        validate_resource(read)
        assert read == ev
        validate_resource(plain(await la_client.get("AuditEvent", ev["id"])))
    la_history = validated_bundle(
        await la_client.resources("AuditEvent").search(**search).fetch_raw()
    )
    assert [e["resource"]["id"] for e in la_history["entry"]] == [ev["id"] for ev in events]
    # And each viewer's PractitionerRole, by id, as health and as an owning LA.
    for ref, viewer in viewers.items():
        for reader in (nurse, la_client):
            read = plain(await reader.get("PractitionerRole", ref.split("/")[1]))
            validate_resource(read)
            assert read == viewer


async def test_no_plan_is_200_with_total_zero_and_records_nothing(e2e: E2E) -> None:
    """A child with no plan: CareTeam, Flag and AuditEvent searches answer 200 with
    ``total: 0`` and no entries (never 404), and nothing is recorded or notified."""
    await seed_child_with_two_las(e2e)
    client = await fhir_client(e2e)
    search = {"patient:identifier": identifier(UNKNOWN)}
    for resource_type in ("CareTeam", "Flag", "AuditEvent"):
        bundle = validated_bundle(
            await client.resources(resource_type).search(**search).fetch_raw()
        )
        assert bundle["total"] == 0
        assert "entry" not in bundle
    assert await e2e.counts("access_event", "outbox") == {"access_event": 0, "outbox": 0}


async def test_reads_and_vreads_carry_version_etag_and_last_modified(e2e: E2E) -> None:
    """After a plan is updated twice, ``GET /CareTeam/{id}`` (and Flag) shows version 3
    with ``ETag: W/"3"`` and a Last-Modified matching meta.lastUpdated; each
    ``_history/{vid}`` shows that version's content with its own ETag; a version that
    never existed is 404 RESOURCE_NOT_FOUND."""
    first = await e2e.put_plan(
        LA_NORTH_CLIENT,
        "N-VERSIONED",
        expect=201,
        nhs_number=UPDATED,
        plan_type="CPP",
        start_date=days(e2e, -60),
    )
    plan_id = first.json()["id"]
    await e2e.put_plan(
        LA_NORTH_CLIENT,
        "N-VERSIONED",
        expect=200,
        headers={"If-Match": 'W/"1"'},
        nhs_number=UPDATED,
        plan_type="CPP",
        start_date=days(e2e, -50),
    )
    third = await e2e.put_plan(
        LA_NORTH_CLIENT,
        "N-VERSIONED",
        expect=200,
        headers={"If-Match": 'W/"2"'},
        nhs_number=UPDATED,
        plan_type="LAC",
        start_date=days(e2e, -40),
    )
    assert third.headers["ETag"] == 'W/"3"'
    auth = {**await e2e.auth(ED_CLIENT), "TraceID": str(uuid.uuid4())}

    current = await e2e.request("GET", f"/FHIR/R4/CareTeam/{plan_id}", headers=auth)
    assert current.status == 200
    team = current.fhir()
    assert current.headers["ETag"] == 'W/"3"'
    assert team["meta"]["versionId"] == "3"
    assert team["category"][0]["coding"][0]["code"] == LAC_CODE
    assert team["period"]["start"] == days(e2e, -40)
    modified = parsedate_to_datetime(current.headers["Last-Modified"])
    last_updated = team["meta"]["lastUpdated"]
    assert modified.strftime("%Y-%m-%dT%H:%M:%S") == last_updated[:19]

    starts = {1: days(e2e, -60), 2: days(e2e, -50), 3: days(e2e, -40)}
    codes = {1: CPP_CODE, 2: CPP_CODE, 3: LAC_CODE}
    stamps = []
    for vid in (1, 2, 3):
        reply = await e2e.request(
            "GET", f"/FHIR/R4/CareTeam/{plan_id}/_history/{vid}", headers=auth
        )
        assert reply.status == 200, reply.text
        old = reply.fhir()
        assert reply.headers["ETag"] == f'W/"{vid}"'
        assert old["meta"]["versionId"] == str(vid)
        assert old["id"] == plan_id
        assert old["period"]["start"] == starts[vid]
        assert old["category"][0]["coding"][0]["code"] == codes[vid]
        stamps.append(parsedate_to_datetime(reply.headers["Last-Modified"]))
    assert stamps == sorted(stamps)

    flag = await e2e.request("GET", f"/FHIR/R4/Flag/{plan_id}/_history/2", headers=auth)
    assert flag.status == 200
    assert flag.fhir()["code"]["coding"][0]["code"] == CPP_CODE
    assert flag.headers["ETag"] == 'W/"2"'

    for vid in ("4", "0", "x"):
        missing = await e2e.request(
            "GET", f"/FHIR/R4/CareTeam/{plan_id}/_history/{vid}", headers=auth
        )
        assert missing.status == 404
        assert missing.fhir()["issue"][0]["details"]["coding"][0]["code"] == ("RESOURCE_NOT_FOUND")

    # fhirpy reads the same resource.
    client = await fhir_client(e2e)
    read = plain(await client.get("CareTeam", plan_id))
    validate_resource(read)
    assert read["meta"]["versionId"] == "3"
    with pytest.raises(ResourceNotFound):
        await client.get("CareTeam", str(uuid.uuid4()))


async def test_organization_read(e2e: E2E) -> None:
    """``GET /Organization/{ods}`` returns the LA with its ODS identifier, name and both
    phones, versioned with ETag and Last-Modified; the CareTeam's managingOrganization
    reference resolves to it."""
    await seed_child_with_two_las(e2e)
    client = await fhir_client(e2e)
    teams = client.resources("CareTeam").search(**{"patient:identifier": identifier(CHILD)})
    for team in await teams.fetch():
        validate_resource(plain(team.serialize()))
        ref = team["managingOrganization"][0]
        # Absolute references: fhirpy follows them when they are under its base URL.
        org = plain(await client.execute(ref["reference"], method="get"))
        validate_resource(org)
        assert org["resourceType"] == "Organization"
        assert org["id"] == ref["identifier"]["value"]

    reply = await e2e.request(
        "GET", f"/FHIR/R4/Organization/{LA_SOUTH.ods_code}", headers=await e2e.auth(ED_CLIENT)
    )
    assert reply.status == 200
    org = reply.fhir()
    assert reply.headers["ETag"] == f'W/"{org["meta"]["versionId"]}"'
    assert parsedate_to_datetime(reply.headers["Last-Modified"])
    assert org["identifier"] == [
        {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": LA_SOUTH.ods_code}
    ]
    assert org["name"] == LA_SOUTH.name
    assert sorted((p["rank"], p["value"]) for p in org["telecom"]) == [
        (1, LA_SOUTH.office_phone),
        (2, LA_SOUTH.edt_phone),
    ]


async def test_capability_statement_needs_no_auth(e2e: E2E) -> None:
    """``GET /FHIR/R4/metadata`` answers without a token: a valid R4 CapabilityStatement
    for FHIR 4.0.1, JSON only, listing CareTeam, Flag, AuditEvent, PractitionerRole and
    Organization, with the token endpoint at this server's absolute URL."""
    reply = await e2e.request("GET", "/FHIR/R4/metadata")
    assert reply.status == 200
    cap = reply.fhir()
    assert cap["resourceType"] == "CapabilityStatement"
    assert cap["fhirVersion"] == "4.0.1"
    assert cap["implementation"]["url"] == e2e.fhir_base
    (rest,) = cap["rest"]
    served = {r["type"]: r for r in rest["resource"]}
    assert set(served) == {
        "CareTeam",
        "Flag",
        "AuditEvent",
        "PractitionerRole",
        "Organization",
        "Subscription",
    }
    assert served["Flag"]["searchInclude"] == ["Flag:author"]
    token_uri = rest["security"]["extension"][0]["extension"][0]["valueUri"]
    assert token_uri == e2e.settings.token_url

    client = AsyncFHIRClient(url=e2e.fhir_base)
    via_fhirpy = plain(await client.execute("metadata", method="get"))
    validate_resource(via_fhirpy)
    assert via_fhirpy["fhirVersion"] == "4.0.1"


async def test_plan_deleted_in_error_is_gone_at_once(e2e: E2E) -> None:
    """``DELETE /la/v1/plans/{id}`` (entered in error) removes the plan at once: the next
    lookup shows only the other LA's plan, and the deleted plan's read and every
    ``_history`` version are 404."""
    await seed_child_with_two_las(e2e)
    la = await e2e.auth(LA_NORTH_CLIENT)
    plan = await e2e.request("GET", "/la/v1/plans/N-CPP-1", headers=la)
    plan_id = plan.json()["id"]
    deleted = await e2e.request("DELETE", "/la/v1/plans/N-CPP-1", headers=la)
    assert deleted.status == 204
    assert (await e2e.request("GET", "/la/v1/plans/N-CPP-1", headers=la)).status == 404

    client = await fhir_client(e2e)
    search = {"patient:identifier": identifier(CHILD)}
    bundle = validated_bundle(await client.resources("CareTeam").search(**search).fetch_raw())
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["managingOrganization"][0]["identifier"]["value"] == (
        LA_SOUTH.ods_code
    )
    assert await outbox_las(e2e) == [LA_SOUTH.ods_code]
    ed = await e2e.auth(ED_CLIENT)
    for path in (
        f"/FHIR/R4/CareTeam/{plan_id}",
        f"/FHIR/R4/Flag/{plan_id}",
        f"/FHIR/R4/CareTeam/{plan_id}/_history/1",
    ):
        reply = await e2e.request("GET", path, headers=ed)
        assert reply.status == 404, path
        assert reply.fhir()["issue"][0]["details"]["coding"][0]["code"] == "RESOURCE_NOT_FOUND"
    assert await e2e.counts("plan", "plan_version") == {"plan": 1, "plan_version": 1}
