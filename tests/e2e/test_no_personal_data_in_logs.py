"""No NHS number, name or date of birth in the logs, nor in clear in the database (SPEC §6),
and no clinician's id, name or role either (issue 9).

A full run over real HTTP: LA plan PUTs carrying names and birth dates, ED
lookups, the AuditEvent history, reads, and bad requests built from the same
NHS numbers and names. Everything the process logs is captured three ways:
structlog events (before any rendering or masking, so the code itself must
not log personal data), stdlib logging records (aiohttp, asyncpg) and whatever
reaches stdout/stderr. Then every row of every table is dumped as JSON text
and searched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from cpis.log import mask_nhs_numbers
from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import (
    E2E,
    ED_CLIENT,
    LA_NORTH_CLIENT,
    LA_SOUTH_CLIENT,
    NHS_SYSTEM,
    SILENT_CLIENT,
    identifier,
    user_headers,
)

CHILD, MOTHER, LOOKED_AFTER = synthetic_numbers(3, start=301)
NUMBERS = (CHILD, MOTHER, LOOKED_AFTER)
NAMES = ("Quillfeather", "Thaddeus", "Oakenshaw", "Perpetua", "Marchbanks", "Ignatius")
BIRTH_DATES = ("2013-07-19", "1994-11-03", "2010-02-27")
# Staff are people too (issue 9): the clinicians who look children up.
STAFF = {
    "user_id": "555077001122",
    "name": "Ottoline Fairweather-Brisk",
    "role": "Emergency Nurse Practitioner",
}
STAFF_VALUES = (*STAFF.values(), "555000000001", "Casey Nurse", "Staff Nurse")


def spaced(nhs: str) -> str:
    return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"


def hyphenated(nhs: str) -> str:
    return f"{nhs[:3]}-{nhs[3:6]}-{nhs[6:]}"


def forbidden_strings() -> Iterator[str]:
    for nhs in NUMBERS:
        yield from (nhs, spaced(nhs), hyphenated(nhs))
    yield from NAMES
    yield from BIRTH_DATES
    yield from STAFF_VALUES


async def scenario(e2e: E2E) -> None:
    """Everything a day brings: plans in, lookups, history, reads, and mistakes."""
    north, south = LA_NORTH_CLIENT, LA_SOUTH_CLIENT
    child_named = {"family_name": NAMES[0], "given_name": NAMES[1], "birth_date": BIRTH_DATES[0]}
    first = await e2e.put_plan(
        north, "N-1", nhs_number=CHILD, plan_type="CPP", start_date="2025-01-06", **child_named
    )
    await e2e.put_plan(
        south,
        "S-1",
        nhs_number=spaced(CHILD),
        plan_type="LAC",
        start_date="2025-08-11",
        **child_named,
    )
    await e2e.put_plan(
        south,
        "S-2",
        nhs_number=MOTHER,
        plan_type="UCPP",
        start_date="2025-09-01",
        end_date="2027-01-10",
        family_name=NAMES[2],
        given_name=NAMES[3],
        birth_date=BIRTH_DATES[1],
    )
    await e2e.put_plan(
        north,
        "N-2",
        nhs_number=LOOKED_AFTER,
        plan_type="LAC",
        start_date="2024-12-02",
        family_name=NAMES[4],
        given_name=NAMES[5],
        birth_date=BIRTH_DATES[2],
    )
    await e2e.put_plan(
        north,
        "N-1",
        headers={"If-Match": 'W/"1"'},
        nhs_number=CHILD,
        plan_type="CPP",
        start_date="2025-01-07",
        **child_named,
    )
    plan_id = first.json()["id"]
    assert (
        await e2e.request("GET", "/la/v1/plans/N-1", headers=await e2e.auth(north))
    ).status == 200

    for nhs in NUMBERS:
        for resource_type in ("CareTeam", "Flag", "AuditEvent"):
            reply = await e2e.search(resource_type, nhs)
            assert reply.status == 200, reply.text
    named = await e2e.search("CareTeam", CHILD, headers=user_headers(**STAFF))
    assert named.status == 200
    spaced_lookup = await e2e.search("CareTeam", spaced(CHILD))
    assert spaced_lookup.status == 200
    assert spaced_lookup.fhir()["total"] == 2
    silent = await e2e.search(
        "Flag",
        MOTHER,
        client_id=SILENT_CLIENT,
        headers={"TraceID": "silent-read"},
        params=[("patient:identifier", identifier(MOTHER)), ("_include", "Flag:author")],
    )
    assert silent.status == 200
    la_history = await e2e.search("AuditEvent", CHILD, client_id=south)
    assert la_history.status == 200
    ed = await e2e.auth(ED_CLIENT)
    for path in (f"/FHIR/R4/CareTeam/{plan_id}", f"/FHIR/R4/Flag/{plan_id}/_history/1"):
        assert (await e2e.request("GET", path, headers=ed)).status == 200

    # Mistakes, each carrying personal data somewhere a careless log line would show it.
    wrong_digit = CHILD[:9] + str((int(CHILD[9]) + 1) % 10)
    bad_searches: list[list[tuple[str, str]]] = [
        [("patient:identifier", f"{NHS_SYSTEM}|{wrong_digit}")],
        [("patient:identifier", f"{NHS_SYSTEM}|{CHILD[:9]}")],
        [("patient:identifier", CHILD)],
        [("patient:identifier", f"https://example.org/id|{MOTHER}")],
        [("patient:identifier", identifier(CHILD)), ("patient:identifier", identifier(MOTHER))],
        [("patient:identifier", identifier(CHILD)), (LOOKED_AFTER, NAMES[0])],
        [("patient:identifier", identifier(CHILD)), ("name", NAMES[1])],
        [("patient:identifier", identifier(CHILD)), ("birthdate", BIRTH_DATES[0])],
    ]
    for params in bad_searches:
        reply = await e2e.search("CareTeam", params=params)
        assert reply.status == 400, reply.text
    no_user = await e2e.search("CareTeam", CHILD, headers={"TraceID": "no-user-headers"})
    assert no_user.status == 400
    la_auth = await e2e.auth(north)
    bad_bodies: list[dict[str, Any]] = [
        {
            "nhs_number": wrong_digit,
            "plan_type": "CPP",
            "start_date": "2025-01-01",
            "family_name": NAMES[0],
        },
        {
            "nhs_number": CHILD,
            "plan_type": "CPP",
            "start_date": BIRTH_DATES[0] + "x",
            "given_name": NAMES[1],
        },
        {
            "nhs_number": CHILD,
            "plan_type": "CPP",
            "start_date": "2025-01-01",
            "birth_date": "19/07/2013",
            "family_name": NAMES[0],
        },
        {
            "nhs_number": CHILD,
            "plan_type": "CPP",
            "start_date": "2025-01-01",
            "family_name": NAMES[0] * 20,
        },
    ]
    for body in bad_bodies:
        reply = await e2e.request("PUT", "/la/v1/plans/N-BAD", headers=la_auth, json=body)
        assert reply.status == 422, reply.text
    truncated = json.dumps({"nhs_number": CHILD, "family_name": NAMES[0]})[:-5]
    not_json = await e2e.request(
        "PUT",
        "/la/v1/plans/N-BAD",
        headers={**la_auth, "Content-Type": "application/json"},
        data=truncated,
    )
    assert not_json.status == 400
    as_text = await e2e.request(
        "PUT",
        "/la/v1/plans/N-BAD",
        headers={**la_auth, "Content-Type": "text/plain"},
        data=f"{CHILD} {NAMES[0]} {BIRTH_DATES[0]}",
    )
    assert as_text.status == 415
    too_big = await e2e.request(
        "PUT",
        "/la/v1/plans/N-BAD",
        headers=la_auth,
        json={"nhs_number": CHILD, "family_name": NAMES[0] * 20_000},
    )
    assert too_big.status == 413
    for path in (
        f"/FHIR/R4/CareTeam/{CHILD}",
        f"/FHIR/R4/Patient/{CHILD}",
        f"/FHIR/R4/Patient?identifier={CHILD}&name={NAMES[0]}",
        f"/la/v1/plans/{NAMES[0]}%20{CHILD}",
    ):
        reply = await e2e.request("GET", path, headers=ed)
        assert reply.status in (400, 403, 404), (path, reply.status)
    unauthenticated = await e2e.request(
        "GET", "/FHIR/R4/CareTeam", params=[("patient:identifier", identifier(CHILD))]
    )
    assert unauthenticated.status == 401
    statuses = [r.status for r in e2e.replies]
    assert all(s < 500 for s in statuses), statuses


def leaks(text: str) -> list[str]:
    return [s for s in forbidden_strings() if s in text]


async def test_logs_never_carry_nhs_numbers_names_or_birth_dates(
    e2e: E2E, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Across a full run, no structlog event (before masking), stdlib log record or
    console output contains a test NHS number (compact, spaced or hyphenated), a child's
    or mother's name, or a date of birth."""
    caplog.set_level(logging.DEBUG)
    # Contextvars (trace id) and exception text included: what the JSON renderer would
    # see, minus the last-line NHS-number mask, which must not be what keeps them out.
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
    ]
    with capture_logs(processors=processors) as events:
        await scenario(e2e)

    assert any(ev.get("event") == "request" for ev in events), "no request log lines captured"
    assert sum(ev.get("event") == "request" for ev in events) >= len(e2e.replies) - 10
    for ev in events:
        assert not leaks(repr(ev)), ev
    for record in caplog.records:
        text = f"{record.getMessage()} {record.__dict__!r}"
        assert not leaks(text), text
    out, err = capfd.readouterr()
    assert not leaks(out), out
    assert not leaks(err), err


async def test_trace_ids_that_are_nhs_numbers_are_masked_in_logs(e2e: E2E) -> None:
    """A caller that (wrongly) uses an NHS number as its TraceID has it echoed back to
    it, but the production log pipeline's mask keeps it out of the log."""
    processors = [structlog.contextvars.merge_contextvars, mask_nhs_numbers]
    with capture_logs(processors=processors) as events:
        for trace in (CHILD, hyphenated(MOTHER)):
            reply = await e2e.search("CareTeam", CHILD, headers=user_headers(trace_id=trace))
            assert reply.status == 200
            assert reply.headers["TraceID"] == trace
    assert events
    for ev in events:
        assert not leaks(repr(ev)), ev


async def test_database_dump_reveals_no_nhs_number_name_or_birth_date(e2e: E2E) -> None:
    """After the same run, every row of every table in the public schema, dumped as JSON
    text, contains no test NHS number (compact, spaced, hyphenated, or as hex of its
    UTF-8 bytes), no name and no date of birth, and none of the looking-up staff's ids,
    names or roles."""
    await scenario(e2e)
    tables = [
        r["table_name"]
        for r in await e2e.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
    ]
    assert {"plan", "plan_version", "access_event", "outbox", "audit_log"} <= set(tables)
    hexed = [s.encode().hex() for s in forbidden_strings()]
    rows_seen = 0
    for table in tables:
        for row in await e2e.fetch(f"SELECT row_to_json(t)::text AS j FROM {table} t"):
            rows_seen += 1
            text = row["j"]
            assert not leaks(text), (table, leaks(text))
            assert not [h for h in hexed if h in text], (table, text)
    counts = await e2e.counts("plan", "plan_version", "access_event", "outbox")
    assert counts == {"plan": 4, "plan_version": 5, "access_event": 8, "outbox": 6}, counts
    assert rows_seen > 50
