"""Bad input, at every endpoint, over real HTTP: the right refusal, and nothing changed.

For each refusal: the HTTP status and the NHS England error code
(``issue[0].details.coding[0].code``) from SPEC §4's table, a body that is a
valid FHIR R4 OperationOutcome, diagnostics that never echo an NHS number
that was sent, and the same number of plan, plan version, access event and
outbox rows afterwards. No request in this module may answer 500.

The token endpoint answers in RFC 6749's shape (``{"error": ...}``), as OAuth
client libraries expect, not with an OperationOutcome.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from cpis.adapters.tokens import JwtTokenAuthority, generate_client_key, make_client_assertion
from cpis.app import create_app
from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import (
    E2E,
    ED_CLIENT,
    LA_NORTH,
    LA_NORTH_CLIENT,
    LA_SOUTH,
    LA_SOUTH_CLIENT,
    MAX_BODY_BYTES,
    NHS_SYSTEM,
    SILENT_CLIENT,
    TRUST_CLIENT,
    Reply,
    error_code,
    identifier,
    user_headers,
)

CHILD, SOUTH_ONLY, NEW_CHILD = synthetic_numbers(3, start=201)
WATCHED_TABLES = ("plan", "plan_version", "access_event", "outbox")
SEARCHES = ("CareTeam", "Flag", "AuditEvent")


def wrong_check_digit(nhs: str) -> str:
    return nhs[:9] + str((int(nhs[9]) + 1) % 10)


MALFORMED_NUMBERS = {
    "wrong check digit": wrong_check_digit(CHILD),
    "nine digits": CHILD[:9],
    "eleven digits": CHILD + "1",
    "letters": CHILD[:4] + "AB" + CHILD[6:],
    "all the same digit": "9999999999",
    "empty": "",
    "two numbers": f"{CHILD},{SOUTH_ONLY}",
}
# Every NHS-number-like string sent by any test here: none may come back in an error.
SENT = [CHILD, SOUTH_ONLY, NEW_CHILD, *MALFORMED_NUMBERS.values(), CHILD[:9], CHILD[1:]]


@dataclass(frozen=True)
class World:
    north_plan: str  # FHIR ids (uuids) of the seeded plans
    south_plan: str
    south_only_plan: str


@pytest.fixture
async def world(e2e: E2E) -> World:
    """One child with plans in both LAs, one known only to Southborough."""
    start = (e2e.runtime.clock.today() - timedelta(days=90)).isoformat()
    north = await e2e.put_plan(
        LA_NORTH_CLIENT,
        "N-1",
        nhs_number=CHILD,
        plan_type="CPP",
        start_date=start,
        family_name="Testchild",
        given_name="Morgan",
        birth_date="2014-02-11",
    )
    south = await e2e.put_plan(
        LA_SOUTH_CLIENT, "S-1", nhs_number=CHILD, plan_type="LAC", start_date=start
    )
    south_only = await e2e.put_plan(
        LA_SOUTH_CLIENT, "S-2", nhs_number=SOUTH_ONLY, plan_type="CPP", start_date=start
    )
    return World(north.json()["id"], south.json()["id"], south_only.json()["id"])


async def refused(
    e2e: E2E,
    method: str,
    path: str,
    *,
    status: int,
    code: str,
    headers: Mapping[str, str] | None = None,
    params: Any = None,
    why: str = "",
    **kwargs: Any,
) -> dict[str, Any]:
    """Make a request that must be refused; check the refusal and that nothing changed."""
    before = await e2e.counts(*WATCHED_TABLES)
    reply = await e2e.request(method, path, headers=headers, params=params, **kwargs)
    label = f"{method} {path} {why}".strip()
    assert reply.status == status, (label, reply.status, reply.text)
    outcome = reply.fhir()
    assert outcome["resourceType"] == "OperationOutcome", label
    assert error_code(outcome) == code, (label, outcome)
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["diagnostics"], label
    assert_no_number_in(reply, SENT)
    assert await e2e.counts(*WATCHED_TABLES) == before, label
    return outcome


def assert_no_number_in(reply: Reply, numbers: Iterable[str]) -> None:
    for number in numbers:
        if len(number) >= 9:
            assert number not in reply.text, reply.text


def assert_clean(e2e: E2E) -> None:
    """No answer in this test was a 500, and no error answer echoed an NHS number."""
    statuses = [r.status for r in e2e.replies]
    assert all(s < 500 for s in statuses), statuses
    for reply in e2e.replies:
        if reply.status >= 400:
            assert_no_number_in(reply, SENT)


def diagnostics(outcome: Mapping[str, Any]) -> str:
    return str(outcome["issue"][0]["diagnostics"])


# --- health searches ------------------------------------------------------------


async def test_malformed_nhs_numbers_are_400_invalid_search_data(e2e: E2E, world: World) -> None:
    """A wrong check digit, 9 or 11 digits, letters, all-same digits, an empty value or a
    list, the wrong identifier system, a missing ``|`` or a missing parameter: 400
    INVALID_SEARCH_DATA on CareTeam, Flag and AuditEvent, without echoing the number."""
    auth = await e2e.auth(ED_CLIENT)
    bad_values = {why: f"{NHS_SYSTEM}|{value}" for why, value in MALFORMED_NUMBERS.items()}
    bad_values |= {
        "wrong system": f"https://fhir.nhs.uk/Id/local-number|{CHILD}",
        "missing bar": f"{NHS_SYSTEM}{CHILD}",
        "bare number": CHILD,
        "system only": NHS_SYSTEM,
        "no system": f"|{CHILD}",
    }
    for resource_type in SEARCHES:
        for why, value in bad_values.items():
            outcome = await refused(
                e2e,
                "GET",
                f"/FHIR/R4/{resource_type}",
                status=400,
                code="INVALID_SEARCH_DATA",
                headers={**auth, **user_headers()},
                params=[("patient:identifier", value)],
                why=why,
            )
            assert outcome["issue"][0]["code"] == "invalid"
            assert "patient:identifier" in diagnostics(outcome)
        await refused(
            e2e,
            "GET",
            f"/FHIR/R4/{resource_type}",
            status=400,
            code="INVALID_SEARCH_DATA",
            headers={**auth, **user_headers()},
            why="no parameters",
        )
    assert_clean(e2e)


async def test_unknown_and_repeated_search_parameters_are_400(e2e: E2E, world: World) -> None:
    """An unknown parameter (a misspelt ``patient:identifer`` would otherwise list
    everyone), ``_count``, a bad ``status`` or ``_include``, or ``patient:identifier``
    given twice: 400 INVALID_SEARCH_DATA, and no visit recorded. A parameter name that
    is an NHS number is not echoed either."""
    auth = await e2e.auth(ED_CLIENT)
    good = ("patient:identifier", identifier(CHILD))
    cases: dict[str, tuple[str, list[tuple[str, str]]]] = {
        "misspelt": ("CareTeam", [("patient:identifer", identifier(CHILD))]),
        "subject": ("CareTeam", [("subject:identifier", identifier(CHILD))]),
        "unknown": ("CareTeam", [good, ("colour", "blue")]),
        "count": ("Flag", [good, ("_count", "1")]),
        "number as name": ("CareTeam", [good, (SOUTH_ONLY, "1")]),
        "status on CareTeam": ("CareTeam", [good, ("status", "active")]),
        "bad status": ("Flag", [good, ("status", "archived")]),
        "status twice": ("Flag", [good, ("status", "active"), ("status", "inactive")]),
        "bad include": ("Flag", [good, ("_include", "Flag:subject")]),
        "include on CareTeam": ("CareTeam", [good, ("_include", "CareTeam:subject")]),
        "repeated same": ("CareTeam", [good, good]),
        "repeated other": ("Flag", [good, ("patient:identifier", identifier(SOUTH_ONLY))]),
        "repeated audit": ("AuditEvent", [good, ("patient:identifier", identifier(SOUTH_ONLY))]),
    }
    for why, (resource_type, params) in cases.items():
        outcome = await refused(
            e2e,
            "GET",
            f"/FHIR/R4/{resource_type}",
            status=400,
            code="INVALID_SEARCH_DATA",
            headers={**auth, **user_headers()},
            params=params,
            why=why,
        )
        assert SOUTH_ONLY not in diagnostics(outcome)
    assert_clean(e2e)


async def test_lenient_handling_relaxes_only_non_safety_parameters(e2e: E2E, world: World) -> None:
    """With ``Prefer: handling=lenient`` an unknown non-safety parameter is ignored (200,
    and the lookup is a real one), but a subject-like parameter, a repeated or malformed
    ``patient:identifier`` and a bad value of a known parameter are still refused."""
    lenient = {**await e2e.auth(ED_CLIENT), **user_headers(), "Prefer": "handling=lenient"}
    good = ("patient:identifier", identifier(CHILD))

    for params in ([good, ("colour", "blue")], [good, ("_count", "1")], [good, ("_sort", "x")]):
        reply = await e2e.request("GET", "/FHIR/R4/CareTeam", headers=lenient, params=params)
        assert reply.status == 200, reply.text
        assert reply.fhir()["total"] == 2
    flag = await e2e.request(
        "GET", "/FHIR/R4/Flag", headers=lenient, params=[good, ("_include", "Flag:subject")]
    )
    assert flag.status == 200
    assert [e["search"]["mode"] for e in flag.fhir()["entry"]] == ["match", "match"]

    still_refused = {
        "subject": [good, ("subject:identifier", identifier(SOUTH_ONLY))],
        "patient": [good, ("patient", "x")],
        "identifier": [good, ("identifier", identifier(SOUTH_ONLY))],
        "misspelt only": [("patient:identifer", identifier(CHILD))],
        "repeated": [good, ("patient:identifier", identifier(SOUTH_ONLY))],
        "malformed": [("patient:identifier", f"{NHS_SYSTEM}|{wrong_check_digit(CHILD)}")],
        "bad status": [good, ("status", "archived")],
    }
    for why, params in still_refused.items():
        await refused(
            e2e,
            "GET",
            "/FHIR/R4/Flag",
            status=400,
            code="INVALID_SEARCH_DATA",
            headers=lenient,
            params=params,
            why=why,
        )
    assert_clean(e2e)


async def test_missing_or_malformed_headers_are_400_precondition_failed(
    e2e: E2E, world: World
) -> None:
    """Searches need a well-formed TraceID; an unscheduled lookup needs the end user's
    id, name and role; IsUnscheduledAccessEvent must be true or false: otherwise 400
    PRECONDITION_FAILED naming the header. A silent read needs no end-user headers, and
    a client may not assert an organisation it is not registered for (403)."""
    auth = await e2e.auth(ED_CLIENT)
    params = [("patient:identifier", identifier(CHILD))]

    def without(name: str) -> dict[str, str]:
        return {k: v for k, v in user_headers().items() if k != name}

    for resource_type in SEARCHES:
        outcome = await refused(
            e2e,
            "GET",
            f"/FHIR/R4/{resource_type}",
            status=400,
            code="PRECONDITION_FAILED",
            headers={**auth, **without("TraceID")},
            params=params,
            why="no TraceID",
        )
        assert outcome["issue"][0]["expression"] == ["TraceID"]
        for bad_trace in ("has spaces in it", "x" * 200, "semi;colon"):
            await refused(
                e2e,
                "GET",
                f"/FHIR/R4/{resource_type}",
                status=400,
                code="PRECONDITION_FAILED",
                headers={**auth, **user_headers(), "TraceID": bad_trace},
                params=params,
                why=f"TraceID {bad_trace[:10]}",
            )

    for resource_type in ("CareTeam", "Flag"):
        for name in ("NHSD-End-User-Id", "NHSD-End-User-Name", "NHSD-End-User-Role"):
            outcome = await refused(
                e2e,
                "GET",
                f"/FHIR/R4/{resource_type}",
                status=400,
                code="PRECONDITION_FAILED",
                headers={**auth, **without(name)},
                params=params,
                why=f"no {name}",
            )
            assert outcome["issue"][0]["expression"] == [name]
            await refused(
                e2e,
                "GET",
                f"/FHIR/R4/{resource_type}",
                status=400,
                code="PRECONDITION_FAILED",
                headers={**auth, **user_headers(), name: "   "},
                params=params,
                why=f"blank {name}",
            )
        for value in ("yes", "1", "", "TRUE-ish"):
            outcome = await refused(
                e2e,
                "GET",
                f"/FHIR/R4/{resource_type}",
                status=400,
                code="PRECONDITION_FAILED",
                headers={**auth, **user_headers(), "IsUnscheduledAccessEvent": value},
                params=params,
                why=f"IsUnscheduledAccessEvent={value!r}",
            )
            assert outcome["issue"][0]["expression"] == ["IsUnscheduledAccessEvent"]
        await refused(
            e2e,
            "GET",
            f"/FHIR/R4/{resource_type}",
            status=403,
            code="ACCESS_DENIED",
            headers={**auth, **user_headers(org=LA_NORTH.ods_code)},
            params=params,
            why="organisation not registered to the client",
        )

    # A client registered for two settings must say which one it acts for.
    trust = await e2e.auth(TRUST_CLIENT)
    outcome = await refused(
        e2e,
        "GET",
        "/FHIR/R4/CareTeam",
        status=400,
        code="PRECONDITION_FAILED",
        headers={**trust, **without("NHSD-End-User-Organisation-ODS")},
        params=params,
        why="two-setting client without an organisation",
    )
    assert outcome["issue"][0]["expression"] == ["NHSD-End-User-Organisation-ODS"]

    # A silent read by the same client needs only the TraceID, and records nothing.
    before = await e2e.counts(*WATCHED_TABLES)
    silent = await e2e.request(
        "GET",
        "/FHIR/R4/CareTeam",
        headers={**auth, "TraceID": "silent-1", "IsUnscheduledAccessEvent": "false"},
        params=params,
    )
    assert silent.status == 200, silent.text
    assert silent.headers["TraceID"] == "silent-1"
    assert silent.fhir()["total"] == 2
    assert await e2e.counts(*WATCHED_TABLES) == before
    assert_clean(e2e)


async def test_formats_other_than_json_are_406(e2e: E2E, world: World) -> None:
    """``_format=xml`` or ``Accept: application/fhir+xml`` is 406 on every FHIR endpoint
    (metadata, searches, reads); ``_format=json`` and ``Accept: application/json`` are
    served."""
    auth = {**await e2e.auth(ED_CLIENT), **user_headers()}
    ident = ("patient:identifier", identifier(CHILD))
    targets = [
        ("/FHIR/R4/metadata", []),
        ("/FHIR/R4/CareTeam", [ident]),
        ("/FHIR/R4/Flag", [ident]),
        ("/FHIR/R4/AuditEvent", [ident]),
        (f"/FHIR/R4/CareTeam/{world.north_plan}", []),
        (f"/FHIR/R4/Organization/{LA_NORTH.ods_code}", []),
    ]
    for path, params in targets:
        for fmt in ("xml", "application/fhir+xml", "text/html"):
            await refused(
                e2e,
                "GET",
                path,
                status=406,
                code="UNSUPPORTED_VALUE",
                headers=auth,
                params=[*params, ("_format", fmt)],
                why=f"_format={fmt}",
            )
        for accept in ("application/fhir+xml", "application/xml", "text/html"):
            await refused(
                e2e,
                "GET",
                path,
                status=406,
                code="UNSUPPORTED_VALUE",
                headers={**auth, "Accept": accept},
                params=params,
                why=f"Accept: {accept}",
            )
    for path, params in targets[:1] + targets[4:]:
        ok = await e2e.request("GET", path, headers=auth, params=[*params, ("_format", "json")])
        assert ok.status == 200, (path, ok.text)
        ok.fhir()
        ok = await e2e.request("GET", path, headers={**auth, "Accept": "application/json"})
        assert ok.status == 200, (path, ok.text)
    assert_clean(e2e)


# --- the LA plan API -------------------------------------------------------------


def plan_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "nhs_number": NEW_CHILD,
        "plan_type": "CPP",
        "start_date": "2025-06-01",
        "family_name": "Testchild",
        "given_name": "Quinn",
        "birth_date": "2016-09-09",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def test_la_plan_bodies_that_are_not_valid_change_nothing(e2e: E2E, world: World) -> None:
    """LA PUT: a non-JSON content type is 415; a body that is not JSON (or not an object)
    is 400; an unknown field, a bad date, plan type or NHS number, a missing required
    field or an end before the start is 422 naming the field in ``expression``, never
    echoing its value; a body over the size limit is 413."""
    auth = await e2e.auth(LA_NORTH_CLIENT)
    path = "/la/v1/plans/N-NEW"

    await refused(
        e2e,
        "PUT",
        path,
        status=415,
        code="UNSUPPORTED_VALUE",
        headers={**auth, "Content-Type": "text/plain"},
        data=json.dumps(plan_body()),
    )
    await refused(
        e2e,
        "PUT",
        path,
        status=415,
        code="UNSUPPORTED_VALUE",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
        data="nhs_number=1",
    )
    for raw in (b"{not json", b"", b"[1, 2]", b"null", b'"a string"', b"\xff\xfe"):
        await refused(
            e2e,
            "PUT",
            path,
            status=400,
            code="INVALID_VALUE",
            headers={**auth, "Content-Type": "application/json"},
            data=raw,
            why=repr(raw),
        )

    invalid: dict[str, dict[str, Any]] = {
        "colour": plan_body(colour="blue"),
        "start_date": plan_body(start_date="01/06/2025"),
        "end_date": plan_body(end_date="2025-02-30"),
        "birth_date": plan_body(birth_date=20160909),
        "delete_date": plan_body(delete_date="tomorrow"),
        "plan_type": plan_body(plan_type="CP"),
        # a JSON list where a code belongs used to reach a set lookup and answer 500
        "plan_type ": plan_body(plan_type=["CPP"]),
        "nhs_number": plan_body(nhs_number=wrong_check_digit(NEW_CHILD)),
        "family_name": plan_body(family_name="x" * 101),
        "given_name": plan_body(given_name=""),
    }
    for field, body in invalid.items():
        outcome = await refused(
            e2e,
            "PUT",
            path,
            status=422,
            code="INVALID_VALUE",
            headers=auth,
            json=body,
            why=field,
        )
        field = field.strip()
        assert outcome["issue"][0]["expression"] == [field], outcome
        assert field in diagnostics(outcome)
    for field in ("nhs_number", "plan_type", "start_date"):
        outcome = await refused(
            e2e,
            "PUT",
            path,
            status=422,
            code="INVALID_VALUE",
            headers=auth,
            json={k: v for k, v in plan_body().items() if k != field},
            why=f"missing {field}",
        )
        assert outcome["issue"][0]["expression"] == [field]
    for number in (CHILD[:9], NEW_CHILD + "0", int(NEW_CHILD), "9999999999"):
        outcome = await refused(
            e2e,
            "PUT",
            path,
            status=422,
            code="INVALID_VALUE",
            headers=auth,
            json=plan_body(nhs_number=number),
            why=f"nhs_number {number!r}",
        )
        assert outcome["issue"][0]["expression"] == ["nhs_number"]
        assert str(number) not in diagnostics(outcome)
    outcome = await refused(
        e2e,
        "PUT",
        path,
        status=422,
        code="INVALID_VALUE",
        headers=auth,
        json=plan_body(start_date="2025-06-01", end_date="2025-05-01"),
    )
    assert outcome["issue"][0]["expression"] == ["end_date"]
    name_outcome = await refused(
        e2e,
        "PUT",
        path,
        status=422,
        code="INVALID_VALUE",
        headers=auth,
        json=plan_body(family_name="Testchild\x00"),
    )
    assert "Testchild" not in json.dumps(name_outcome)

    await refused(
        e2e,
        "PUT",
        path,
        status=413,
        code="VALIDATION_ERROR",
        headers=auth,
        json=plan_body(family_name="y" * (MAX_BODY_BYTES + 1)),
    )
    await refused(
        e2e,
        "PUT",
        "/la/v1/plans/" + "p" * 65,
        status=400,
        code="INVALID_VALUE",
        headers=auth,
        json=plan_body(),
        why="plan id too long",
    )
    await refused(
        e2e,
        "PUT",
        "/la/v1/plans/has%20space",
        status=400,
        code="INVALID_VALUE",
        headers=auth,
        json=plan_body(),
        why="plan id with a space",
    )
    # None of that stored anything under the new plan id.
    missing = await e2e.request("GET", path, headers=auth)
    assert missing.status == 404
    assert_clean(e2e)


async def test_unknown_field_named_with_personal_data_is_not_echoed(e2e: E2E, world: World) -> None:
    """An unknown body field whose *name* is personal data (a CMS that keys objects by
    NHS number, or by the child's name) is 422 without echoing that name in
    diagnostics or expression: SPEC §4, diagnostics never contain personal data."""
    auth = await e2e.auth(LA_NORTH_CLIENT)
    path = "/la/v1/plans/N-NEW"
    for key in (SOUTH_ONLY, "Testchild Morgan", f"nhs {SOUTH_ONLY[:3]} {SOUTH_ONLY[3:6]}"):
        outcome = await refused(
            e2e,
            "PUT",
            path,
            status=422,
            code="INVALID_VALUE",
            headers=auth,
            json={**plan_body(), key: "x"},
            why="unknown field named with personal data",
        )
        assert key not in json.dumps(outcome), outcome
        assert "Testchild" not in json.dumps(outcome), outcome
    assert_clean(e2e)


async def test_if_match_mismatch_is_412_and_keeps_the_plan(e2e: E2E, world: World) -> None:
    """A PUT or DELETE whose If-Match names another version is 412 RESOURCE_VERSION_MISMATCH
    and leaves the plan as it was; ``If-None-Match: *`` on an existing plan is 412; a
    malformed If-Match is 400 PRECONDITION_FAILED."""
    auth = await e2e.auth(LA_NORTH_CLIENT)
    for etag in ('W/"2"', '"7"', 'W/"0"'):
        await refused(
            e2e,
            "PUT",
            "/la/v1/plans/N-1",
            status=412,
            code="RESOURCE_VERSION_MISMATCH",
            headers={**auth, "If-Match": etag},
            json=plan_body(nhs_number=CHILD, plan_type="LAC"),
            why=etag,
        )
        await refused(
            e2e,
            "DELETE",
            "/la/v1/plans/N-1",
            status=412,
            code="RESOURCE_VERSION_MISMATCH",
            headers={**auth, "If-Match": etag},
            why=etag,
        )
    await refused(
        e2e,
        "PUT",
        "/la/v1/plans/N-1",
        status=412,
        code="RESOURCE_VERSION_MISMATCH",
        headers={**auth, "If-None-Match": "*"},
        json=plan_body(nhs_number=CHILD),
    )
    await refused(
        e2e,
        "PUT",
        "/la/v1/plans/N-NOT-THERE",
        status=412,
        code="RESOURCE_VERSION_MISMATCH",
        headers={**auth, "If-Match": 'W/"1"'},
        json=plan_body(),
        why="If-Match on a plan that does not exist",
    )
    for etag in ("1", "W/1", "*", 'W/"abc"'):
        await refused(
            e2e,
            "PUT",
            "/la/v1/plans/N-1",
            status=400,
            code="PRECONDITION_FAILED",
            headers={**auth, "If-Match": etag},
            json=plan_body(nhs_number=CHILD),
            why=f"If-Match {etag}",
        )
    plan = await e2e.request("GET", "/la/v1/plans/N-1", headers=auth)
    assert plan.status == 200
    assert plan.headers["ETag"] == 'W/"1"'
    assert plan.json()["plan_type"] == "CPP"
    assert_clean(e2e)


# --- tokens ----------------------------------------------------------------------


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


async def _always_new(client_id: str, jti: str, expires_at: datetime) -> bool:
    return True


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_access_tokens_missing_garbage_expired_or_forged_are_401(
    e2e: E2E, world: World
) -> None:
    """No token, a garbage one, another scheme, an expired one, one signed by a key that
    is not the service's, one from another issuer, or ``alg: none``: 401 ACCESS_DENIED
    with issue code ``login`` and a WWW-Authenticate challenge, on FHIR and LA routes."""
    client = await e2e.runtime.db.get_client(ED_CLIENT)
    assert client is not None
    past = datetime.now(UTC) - timedelta(hours=2)
    expired_authority = JwtTokenAuthority(
        signing_key=e2e.runtime.keys.signing_key,
        issuer=e2e.settings.public_base_url,
        ttl_seconds=600,
        use_jti=_always_new,
        clock=FixedClock(past),
    )
    expired = await expired_authority.exchange(
        e2e.assertion(ED_CLIENT, now=past), client=client, token_url=e2e.settings.token_url
    )
    stranger = JwtTokenAuthority(
        signing_key=ec.generate_private_key(ec.SECP256R1()),
        issuer=e2e.settings.public_base_url,
        ttl_seconds=600,
        use_jti=_always_new,
        clock=FixedClock(datetime.now(UTC)),
    )
    foreign_key = await stranger.exchange(
        e2e.assertion(ED_CLIENT), client=client, token_url=e2e.settings.token_url
    )
    elsewhere = JwtTokenAuthority(
        signing_key=e2e.runtime.keys.signing_key,
        issuer="https://cpis.elsewhere.example",
        ttl_seconds=600,
        use_jti=_always_new,
        clock=FixedClock(datetime.now(UTC)),
    )
    other_issuer = await elsewhere.exchange(
        e2e.assertion(ED_CLIENT), client=client, token_url=e2e.settings.token_url
    )
    real = await e2e.token(ED_CLIENT)
    header, payload, _signature = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    tampered = f"{header}.{_b64({**claims, 'role': 'admin'})}.{_signature}"

    authorizations = {
        "none": None,
        "empty bearer": "Bearer ",
        "garbage": "Bearer not-a-token",
        "three dots of garbage": "Bearer a.b.c",
        "basic": f"Basic {base64.b64encode(b'ed-system:secret').decode()}",
        "token without scheme": real,
        "expired": f"Bearer {expired}",
        "foreign key": f"Bearer {foreign_key}",
        "other issuer": f"Bearer {other_issuer}",
        "alg none": f"Bearer {unsigned}",
        "tampered claims": f"Bearer {tampered}",
        "long garbage": "Bearer " + "a" * 8000,
    }
    targets = [
        ("GET", "/FHIR/R4/CareTeam", [("patient:identifier", identifier(CHILD))], None),
        ("GET", "/FHIR/R4/AuditEvent", [("patient:identifier", identifier(CHILD))], None),
        ("GET", f"/FHIR/R4/CareTeam/{world.north_plan}", None, None),
        ("PUT", "/la/v1/plans/N-1", None, plan_body(nhs_number=CHILD)),
        ("GET", "/la/v1/plans/N-1", None, None),
        ("DELETE", "/la/v1/plans/N-1", None, None),
    ]
    for why, authorization in authorizations.items():
        headers = user_headers()
        if authorization is not None:
            headers["Authorization"] = authorization
        for method, path, params, body in targets:
            reply_outcome = await refused(
                e2e,
                method,
                path,
                status=401,
                code="ACCESS_DENIED",
                headers=headers,
                params=params,
                json=body,
                why=why,
            )
            assert reply_outcome["issue"][0]["code"] == "login"
            assert e2e.replies[-1].headers["WWW-Authenticate"].startswith("Bearer")
    # The genuine token still works: the refusals were about the tokens.
    ok = await e2e.request(
        "GET", f"/FHIR/R4/CareTeam/{world.north_plan}", headers={"Authorization": f"Bearer {real}"}
    )
    assert ok.status == 200
    assert_clean(e2e)


async def test_token_endpoint_refuses_bad_client_assertions(e2e: E2E) -> None:
    """POST /oauth2/token: a replayed assertion jti, an assertion signed by an unregistered
    key, one addressed to another audience, expired, living over 5 minutes, for an
    unknown client or with the wrong grant type is refused with RFC 6749 errors
    (401 invalid_client, 400 otherwise), and issues no token."""
    first = e2e.assertion(LA_SOUTH_CLIENT)
    assert (await e2e.token_request(first)).status == 200
    replay = await e2e.token_request(first)
    assert replay.status == 401
    assert replay.json()["error"] == "invalid_client"

    forger_pem, _ = generate_client_key("EdDSA", kid=f"{LA_SOUTH_CLIENT}-key-1")
    forged = make_client_assertion(
        forger_pem,
        client_id=LA_SOUTH_CLIENT,
        token_url=e2e.settings.token_url,
        kid=f"{LA_SOUTH_CLIENT}-key-1",
        alg="EdDSA",
    )
    unknown_kid = make_client_assertion(
        forger_pem,
        client_id=LA_SOUTH_CLIENT,
        token_url=e2e.settings.token_url,
        kid="someone-elses-key",
        alg="EdDSA",
    )
    invalid_client = {
        "forged": forged,
        "unregistered kid": unknown_kid,
        "wrong aud": e2e.assertion(ED_CLIENT, token_url="https://elsewhere.example/oauth2/token"),
        "fhir base as aud": e2e.assertion(ED_CLIENT, token_url=e2e.fhir_base),
        "expired": e2e.assertion(SILENT_CLIENT, now=datetime.now(UTC) - timedelta(minutes=10)),
        "too long lived": e2e.assertion(ED_CLIENT, lifetime=timedelta(minutes=30)),
        "issued in the future": e2e.assertion(
            LA_NORTH_CLIENT, now=datetime.now(UTC) + timedelta(minutes=3)
        ),
        "unknown client": make_client_assertion(
            forger_pem,
            client_id="nobody",
            token_url=e2e.settings.token_url,
            kid="nobody-1",
            alg="EdDSA",
        ),
        "wrong alg for key": _resigned_with_alg(e2e.assertion(LA_NORTH_CLIENT), "HS256"),
    }
    for why, assertion in invalid_client.items():
        reply = await e2e.token_request(assertion)
        assert reply.status == 401, (why, reply.text)
        body = reply.json()
        assert body["error"] == "invalid_client", (why, body)
        assert "access_token" not in body
        assert reply.headers["Cache-Control"] == "no-store"

    bad_requests = [
        ({"grant_type": "password", "client_assertion": e2e.assertion(ED_CLIENT)}, "grant"),
        (
            {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                "client_assertion": e2e.assertion(ED_CLIENT),
            },
            "assertion type",
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": "not-a-jwt",
            },
            "not a jwt",
        ),
    ]
    for form, why in bad_requests:
        reply = await e2e.request("POST", "/oauth2/token", data=form)
        assert reply.status == 400, (why, reply.text)
        assert reply.json()["error"] in ("invalid_request", "unsupported_grant_type")
    as_json = await e2e.request("POST", "/oauth2/token", json={"grant_type": "client_credentials"})
    assert as_json.status == 400
    assert as_json.json()["error"] == "invalid_request"
    too_big = await e2e.request(
        "POST",
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_assertion": "a" * (MAX_BODY_BYTES * 2)},
    )
    assert too_big.status == 413
    assert error_code(too_big.fhir()) == "VALIDATION_ERROR"
    assert_clean(e2e)


async def test_absurd_times_in_a_signed_assertion_are_refused_never_a_500(e2e: E2E) -> None:
    """A client assertion correctly signed by a registered key whose exp, iat or nbf is a
    huge, negative or non-finite number (1e300, 10**30, 1e999): 401 invalid_client (400
    invalid_request for a number no JSON parser here reads); never a 500 (an
    OverflowError once escaped)."""
    from cryptography.hazmat.primitives import serialization
    from joserfc import jws
    from joserfc.jwk import ECKey

    key = e2e.keys[LA_NORTH_CLIENT]
    signer = ECKey.import_key(serialization.load_pem_private_key(key.pem, password=None))  # type: ignore[arg-type]
    now = int(datetime.now(UTC).timestamp())
    for name in ("exp", "iat", "nbf"):
        for value in ("1e300", str(10**30), "-1e300", "1e999", "-1e999"):
            claims = {
                "iss": LA_NORTH_CLIENT,
                "sub": LA_NORTH_CLIENT,
                "aud": e2e.settings.token_url,
                "jti": str(uuid.uuid4()),
                "iat": now,
                "exp": now + 120,
            }
            raw = json.dumps({**claims, name: 0}).replace(f'"{name}": 0', f'"{name}": {value}')
            assertion = jws.serialize_compact(
                {"alg": "ES256", "kid": key.kid}, raw, signer, algorithms=["ES256"]
            )
            reply = await e2e.token_request(assertion)
            assert reply.status in (400, 401), (name, value, reply.status, reply.text)
            assert reply.json()["error"] in ("invalid_client", "invalid_request")
            assert "access_token" not in reply.json()


def _resigned_with_alg(assertion: str, alg: str) -> str:
    """The assertion with its header's alg swapped (the signature no longer matches)."""
    header, payload, signature = assertion.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    return f"{_b64({**decoded, 'alg': alg})}.{payload}.{signature}"


# --- authorisation ---------------------------------------------------------------


async def test_la_client_never_reaches_another_las_plans(e2e: E2E, world: World) -> None:
    """Northshire's client cannot read, change or delete Southborough's plans through the
    LA API (404 in its own scope, 403 when it names Southborough), nor read them as
    FHIR (404), nor see the history of a child only Southborough holds; the answers
    never carry Southborough's data, and Southborough's plans are untouched."""
    north = await e2e.auth(LA_NORTH_CLIENT)
    act_as_south = {**north, "NHSD-End-User-Organisation-ODS": LA_SOUTH.ods_code}

    for method, body in (("GET", None), ("DELETE", None)):
        outcome = await refused(
            e2e,
            method,
            "/la/v1/plans/S-2",
            status=404,
            code="RESOURCE_NOT_FOUND",
            headers=north,
            json=body,
        )
        assert "S-2" not in json.dumps(outcome)
    for method, body in (("GET", None), ("DELETE", None), ("PUT", plan_body(nhs_number=CHILD))):
        await refused(
            e2e,
            method,
            "/la/v1/plans/S-1",
            status=403,
            code="ACCESS_DENIED",
            headers=act_as_south,
            json=body,
            why="acting for another LA",
        )
    for path in (
        f"/FHIR/R4/CareTeam/{world.south_only_plan}",
        f"/FHIR/R4/Flag/{world.south_only_plan}",
        f"/FHIR/R4/CareTeam/{world.south_plan}/_history/1",
    ):
        outcome = await refused(
            e2e, "GET", path, status=404, code="RESOURCE_NOT_FOUND", headers=north
        )
        assert LA_SOUTH.name not in json.dumps(outcome)

    history = await e2e.request(
        "GET",
        "/FHIR/R4/AuditEvent",
        headers={**north, "TraceID": "la-history"},
        params=[("patient:identifier", identifier(SOUTH_ONLY))],
    )
    assert history.status == 200
    assert history.fhir()["total"] == 0

    # Southborough's own view of its plans is unchanged.
    south = await e2e.auth(LA_SOUTH_CLIENT)
    for plan_id in ("S-1", "S-2"):
        plan = await e2e.request("GET", f"/la/v1/plans/{plan_id}", headers=south)
        assert plan.status == 200
        assert plan.json()["version"] == 1
        assert plan.json()["la_ods"] == LA_SOUTH.ods_code

    # An access event that only notified Southborough is not Northshire's to read.
    await e2e.search("CareTeam", SOUTH_ONLY)
    (event_row,) = await e2e.fetch("SELECT id FROM access_event")
    await refused(
        e2e,
        "GET",
        f"/FHIR/R4/AuditEvent/{event_row['id']}",
        status=404,
        code="RESOURCE_NOT_FOUND",
        headers=north,
    )
    assert_clean(e2e)


async def test_roles_are_enforced(e2e: E2E, world: World) -> None:
    """A health client calling the LA plan API is 403; an LA client searching CareTeam or
    Flag is 403; both ACCESS_DENIED with issue code ``forbidden``, and nothing recorded."""
    for client_id in (ED_CLIENT, SILENT_CLIENT):
        health = await e2e.auth(client_id)
        for method, body in (("GET", None), ("DELETE", None), ("PUT", plan_body())):
            outcome = await refused(
                e2e,
                method,
                "/la/v1/plans/N-1",
                status=403,
                code="ACCESS_DENIED",
                headers=health,
                json=body,
                why=client_id,
            )
            assert outcome["issue"][0]["code"] == "forbidden"
    for client_id in (LA_NORTH_CLIENT, LA_SOUTH_CLIENT):
        la = {**await e2e.auth(client_id), **user_headers()}
        for resource_type in ("CareTeam", "Flag"):
            await refused(
                e2e,
                "GET",
                f"/FHIR/R4/{resource_type}",
                status=403,
                code="ACCESS_DENIED",
                headers=la,
                params=[("patient:identifier", identifier(CHILD))],
                why=client_id,
            )
    assert_clean(e2e)


async def test_methods_types_and_ids_not_served(e2e: E2E, world: World) -> None:
    """Writes to the FHIR API are 405 UNSUPPORTED_SERVICE; an unknown resource type is 404;
    an unknown or malformed id, or an unknown LA, is 404 RESOURCE_NOT_FOUND."""
    auth = {**await e2e.auth(ED_CLIENT), **user_headers()}
    fhir_body = {"resourceType": "CareTeam", "status": "active"}
    for method, path in (
        ("POST", "/FHIR/R4/CareTeam"),
        ("PUT", f"/FHIR/R4/CareTeam/{world.north_plan}"),
        ("DELETE", f"/FHIR/R4/CareTeam/{world.north_plan}"),
        ("PATCH", f"/FHIR/R4/Flag/{world.north_plan}"),
        ("POST", "/FHIR/R4/metadata"),
        ("POST", "/FHIR/R4/AuditEvent"),
    ):
        await refused(
            e2e, method, path, status=405, code="UNSUPPORTED_SERVICE", headers=auth, json=fhir_body
        )
    for path, params in (
        ("/FHIR/R4/Patient", [("identifier", identifier(CHILD))]),
        ("/FHIR/R4/Observation", None),
        ("/FHIR/R4/Patient/123", None),
        ("/FHIR/R4/Patient/123/_history/1", None),
        ("/FHIR/R5/CareTeam", [("patient:identifier", identifier(CHILD))]),
        ("/nothing-here", None),
    ):
        await refused(
            e2e, "GET", path, status=404, code="RESOURCE_NOT_FOUND", headers=auth, params=params
        )
    for path in (
        f"/FHIR/R4/CareTeam/{uuid.uuid4()}",
        f"/FHIR/R4/Flag/{uuid.uuid4()}/_history/1",
        "/FHIR/R4/CareTeam/not-a-uuid",
        f"/FHIR/R4/CareTeam/{CHILD}",
        f"/FHIR/R4/AuditEvent/{uuid.uuid4()}",
        "/FHIR/R4/Organization/XNOPE",
        f"/FHIR/R4/Organization/{LA_NORTH.ods_code}/_history/9",
    ):
        await refused(e2e, "GET", path, status=404, code="RESOURCE_NOT_FOUND", headers=auth)
    assert_clean(e2e)


async def test_405_says_which_methods_are_allowed(e2e: E2E, world: World) -> None:
    """RFC 9110 §15.5.6: a 405 answer MUST carry an ``Allow`` header listing the methods
    the resource supports (here GET), also when rendered as an OperationOutcome."""
    auth = {**await e2e.auth(ED_CLIENT), **user_headers()}
    missing = []
    for method, path in (
        ("POST", "/FHIR/R4/CareTeam"),
        ("DELETE", f"/FHIR/R4/CareTeam/{world.north_plan}"),
        ("POST", "/la/v1/plans/N-1"),
    ):
        reply = await e2e.request(method, path, headers=auth, json={})
        assert reply.status == 405
        error_code(reply.fhir())
        if "GET" not in reply.headers.get("Allow", ""):
            missing.append(f"{method} {path}")
    assert not missing, f"405 without an Allow header: {missing}"
    assert_clean(e2e)


async def test_rate_limited_client_gets_429_with_retry_after(e2e: E2E, world: World) -> None:
    """A client over its rate limit gets 429 UNABLE_TO_CALL_SERVICE with Retry-After, and the
    refused lookups record nothing; other clients are not affected."""
    settings = dataclasses.replace(e2e.settings, rate_limit_per_second=1, rate_limit_burst=3)
    runtime = dataclasses.replace(e2e.runtime, settings=settings)
    server = TestServer(create_app(runtime), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        lookup = {**await e2e.auth(ED_CLIENT), **user_headers()}
        params = [("patient:identifier", identifier(CHILD))]
        for _ in range(3):
            ok = await e2e.request("GET", f"{base}/FHIR/R4/CareTeam", headers=lookup, params=params)
            assert ok.status == 200
        outcome = await refused(
            e2e,
            "GET",
            f"{base}/FHIR/R4/CareTeam",
            status=429,
            code="UNABLE_TO_CALL_SERVICE",
            headers=lookup,
            params=params,
        )
        assert outcome["issue"][0]["code"] == "throttled"
        assert int(e2e.replies[-1].headers["Retry-After"]) >= 1
        other = await e2e.request(
            "GET", f"{base}/la/v1/plans/N-1", headers=await e2e.auth(LA_NORTH_CLIENT)
        )
        assert other.status == 200
    finally:
        await server.close()
    assert_clean(e2e)
