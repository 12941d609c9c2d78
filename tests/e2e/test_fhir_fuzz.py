"""A property test of the FHIR API, driven by its own CapabilityStatement (Hypothesis).

The FHIR API has no OpenAPI document: ``/FHIR/R4/metadata`` says what it
serves, and this test reads it from the live service to know which types may
be searched with which parameters and includes, and which may be read and
vread. It then sends, with a fixed seed:

- searches with any mix of the declared parameters, unknown and repeated
  ones, the ``patient`` and ``patient:identifier`` forms with valid, unknown
  and malformed NHS numbers (and other systems, bare numbers, references,
  lists), ``_include``, ``_format`` and ``status`` values good and bad;
- reads and vreads of every readable type, by the ids of resources seeded
  first, by unknown ids and by ids that cannot be ids, at good and bad versions;
- the CP-IS headers, present or not, good or malformed: ``TraceID``,
  ``IsUnscheduledAccessEvent``, ``NHSD-End-User-*``, ``Accept``, ``Prefer``;
- as each kind of client (health, silent-only, a trust with two settings, an
  LA), with a bad token, or none; now and then with a method not served.

and holds, for every answer: never a 5xx; always ``application/fhir+json``
and a ``TraceID`` (the caller's, when it sent a well-formed one); a 200 is a
valid FHIR R4 resource (a searchset Bundle for a search, with an ETag for a
read); anything else is a valid OperationOutcome that repeats no NHS number,
user id or name that was sent; a 401 says ``WWW-Authenticate``, a 405
``Allow``. Every readable type's read and vread and every search type's search
are also sent once as a correct request (explicit examples), so each is seen
to answer 200.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import Phase, example, given, seed, settings
from hypothesis import strategies as st

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import (
    E2E,
    ED,
    ED_CLIENT,
    LA_NORTH_CLIENT,
    LA_SOUTH_CLIENT,
    NHS_SYSTEM,
    SILENT_CLIENT,
    TRUST_CLIENT,
    UTC,
    Reply,
    user_headers,
)
from tests.e2e.fuzzing import SEED, SUPPRESSED, echoed, message_texts, nhs_shaped
from tests.fhir_validation import validate_resource

CHILD, OTHER_CHILD, UNKNOWN = synthetic_numbers(3, start=9200)
EXAMPLES = 200
TRACE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
ETAG = re.compile(r'^W/"[0-9]+"$')
# Header values go on the wire as sent: printable ASCII, a tab, a couple of letters
# beyond ASCII; never CR or LF, which no client can send.
HEADER_TEXT = st.text(
    alphabet=st.one_of(st.characters(min_codepoint=32, max_codepoint=126), st.sampled_from("\té")),
    max_size=40,
)
# Digits and numerals of every script (superscript two, Arabic-Indic one...): str.isdigit()
# says yes to many that int() refuses.
NUMERALS = st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=3)
ID_TEXT = st.text(
    alphabet=st.one_of(st.characters(min_codepoint=33, max_codepoint=126), st.sampled_from("é ")),
    min_size=1,
    max_size=70,
)


@pytest.fixture
def e2e_overrides() -> dict[str, Any]:
    return {"workers_in_serve": False}


@dataclass(frozen=True)
class Request:
    """One request to the FHIR API; ``client`` None sends no Authorization, "bad" a forged one."""

    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    client: str | None = ED_CLIENT
    method: str = "GET"


@dataclass
class World:
    """What the CapabilityStatement says, and the ids of the resources seeded for the run."""

    searches: dict[str, list[str]]  # type -> its declared search parameters
    includes: dict[str, list[str]]  # type -> its declared _include values
    readable: list[str]
    vreadable: list[str]
    ids: dict[str, str]  # type -> id of a resource it can read
    versions: dict[str, str]
    owners: dict[str, str]  # type -> the client that may read the seeded one


# --- strategies -----------------------------------------------------------------------------


def _wrong_check_digit(nhs: str) -> str:
    return nhs[:9] + str((int(nhs[9]) + 1) % 10)


NHS_VALUES = st.one_of(
    st.sampled_from([CHILD, OTHER_CHILD, UNKNOWN]),
    st.sampled_from(
        [
            _wrong_check_digit(CHILD),
            CHILD[:9],
            CHILD + "1",
            f"{CHILD[:3]} {CHILD[3:6]} {CHILD[6:]}",
            f"{CHILD[:3]}-{CHILD[3:6]}-{CHILD[6:]}",
            f"{CHILD},{OTHER_CHILD}",
            "999000001A",
            "0000000000",
            "",
        ]
    ),
    st.from_regex(r"[0-9]{10}", fullmatch=True),
)
PATIENT_VALUES = st.one_of(
    NHS_VALUES.map(lambda n: f"{NHS_SYSTEM}|{n}"),
    NHS_VALUES.map(lambda n: f"{NHS_SYSTEM}|{n}"),
    NHS_VALUES.map(lambda n: f"https://fhir.nhs.uk/Id/other|{n}"),
    NHS_VALUES.map(lambda n: f"Patient/{n}"),
    NHS_VALUES,
    st.text(max_size=30),
)
SUBJECT_NAMES = ("patient:identifier", "patient")
OTHER_NAMES = (
    "_format",
    "_include",
    "status",
    "_count",
    "_id",
    "_revinclude",
    "subject:identifier",
    "identifier",
    "patient:identifer",
    "Patient",
    "patient.identifier",
    "url",
    CHILD,  # a name can be an NHS number too: it must not come back either
    f"{NHS_SYSTEM}|{CHILD}",
)
FORMATS = ("json", "application/json", "application/fhir+json", "xml", "application/xml", "html")
STATUSES = ("active", "inactive", "entered-in-error", "off", "requested", "ACTIVE", "")
UNSCHEDULED = ("true", "false", "TRUE", " false ", "yes", "0", "")
ORGS = (ED.ods_code, UTC.ods_code, "XLA01", "xed01", "XNOTREG", "")
ACCEPTS = (
    "application/fhir+json",
    "application/json",
    "*/*",
    "application/*",
    "application/fhir+json;q=0",
    "application/xml",
    "text/html",
    "application/fhir+xml, application/fhir+json;q=0.5",
    "garbage",
)
PREFERS = ("handling=lenient", "handling=strict", "return=minimal", "handling=lenient, x=1")
CLIENTS = (ED_CLIENT, SILENT_CLIENT, TRUST_CLIENT, LA_NORTH_CLIENT, LA_SOUTH_CLIENT, None, "bad")


def _optional(values: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), values)


@st.composite
def cp_is_headers(draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
    """The CP-IS headers, each absent, good, or malformed."""
    names_and_values: list[tuple[str, str | None]] = [
        ("TraceID", draw(_optional(st.one_of(st.uuids().map(str), HEADER_TEXT)))),
        ("IsUnscheduledAccessEvent", draw(_optional(st.sampled_from(UNSCHEDULED) | HEADER_TEXT))),
        ("NHSD-End-User-Organisation-ODS", draw(_optional(st.sampled_from(ORGS) | HEADER_TEXT))),
        (
            "NHSD-End-User-Id",
            draw(_optional(st.sampled_from(["555000000001", "555000000002"]) | HEADER_TEXT)),
        ),
        (
            "NHSD-End-User-Name",
            draw(_optional(st.sampled_from(["Casey Nurse", "Robin Doctor"]) | HEADER_TEXT)),
        ),
        ("NHSD-End-User-Role", draw(_optional(st.sampled_from(["Staff Nurse"]) | HEADER_TEXT))),
        ("Accept", draw(_optional(st.sampled_from(ACCEPTS) | HEADER_TEXT))),
        ("Prefer", draw(_optional(st.sampled_from(PREFERS) | HEADER_TEXT))),
    ]
    return tuple((name, value) for name, value in names_and_values if value is not None)


def searches(world: World) -> st.SearchStrategy[Request]:
    @st.composite
    def search(draw: st.DrawFn) -> Request:
        resource_type = draw(st.sampled_from([*world.searches, "Patient", "Subscription"]))
        declared = world.searches.get(resource_type, [])
        includes = world.includes.get(resource_type, [])
        query: list[tuple[str, str]] = []
        if draw(st.booleans()):  # often a good subject parameter, to get past it to the rest
            good = st.sampled_from([CHILD, OTHER_CHILD, UNKNOWN]).map(lambda n: f"{NHS_SYSTEM}|{n}")
            query.append((draw(st.sampled_from(SUBJECT_NAMES)), draw(good | PATIENT_VALUES)))
        for _ in range(draw(st.integers(0, 3))):
            name = draw(
                st.one_of(
                    st.sampled_from([*SUBJECT_NAMES, *declared, *OTHER_NAMES]),
                    st.from_regex(r"[A-Za-z_][A-Za-z0-9_:.\-]{0,20}", fullmatch=True),
                )
            )
            if name in SUBJECT_NAMES:
                value = draw(PATIENT_VALUES)
            elif name == "_include":
                value = draw(st.sampled_from([*includes, "Flag:author", "*", "AuditEvent:agent"]))
            elif name == "_format":
                value = draw(st.sampled_from(FORMATS))
            elif name == "status":
                value = draw(st.sampled_from(STATUSES))
            else:
                value = draw(st.text(max_size=20))
            query.append((name, value))
        if draw(st.booleans()):
            query.reverse()
        headers = draw(st.one_of(cp_is_headers(), st.just(tuple(user_headers().items()))))
        return Request(
            f"/FHIR/R4/{resource_type}",
            tuple(query),
            headers,
            draw(st.sampled_from(CLIENTS) | st.just(ED_CLIENT)),
            draw(st.sampled_from(["GET"] * 9 + ["POST", "DELETE", "PATCH"])),
        )

    return search()


def good_searches(world: World) -> st.SearchStrategy[Request]:
    """Health searches that pass every check but the ones varied: the declared extras with
    good values, silent or not, lenient or not, as each health client: the 200 paths."""

    @st.composite
    def search(draw: st.DrawFn) -> Request:
        resource_type = draw(st.sampled_from([t for t in world.searches if t != "Subscription"]))
        nhs = draw(st.sampled_from([CHILD, OTHER_CHILD, UNKNOWN]))
        query = [(draw(st.sampled_from(SUBJECT_NAMES)), f"{NHS_SYSTEM}|{nhs}")]
        extras = {
            "_include": st.sampled_from(world.includes.get(resource_type) or ["none"]),
            "_format": st.sampled_from(FORMATS[:3]),
            "status": st.sampled_from(STATUSES[:3]),
        }
        for name in draw(st.sets(st.sampled_from(world.searches[resource_type] + ["_include"]))):
            if name in extras and (name != "_include" or world.includes.get(resource_type)):
                query.append((name, draw(extras[name])))
        client = draw(st.sampled_from([ED_CLIENT, SILENT_CLIENT, TRUST_CLIENT]))
        headers = user_headers(org=draw(st.sampled_from([ED.ods_code, UTC.ods_code])))
        headers["IsUnscheduledAccessEvent"] = draw(st.sampled_from(["true", "false"]))
        if draw(st.booleans()):
            headers["Prefer"] = "handling=lenient"
        return Request(f"/FHIR/R4/{resource_type}", tuple(query), tuple(headers.items()), client)

    return search()


def reads(world: World) -> st.SearchStrategy[Request]:
    @st.composite
    def read(draw: st.DrawFn) -> Request:
        resource_type = draw(st.sampled_from([*world.readable, "Patient", "careteam"]))
        known = world.ids.get(resource_type)
        raw_id = draw(
            st.one_of(
                st.sampled_from([known] if known else ["XLA01"]),
                st.uuids().map(str),
                st.sampled_from(["XLA01", "XLA02", "xla01", "XED01", "0", "-1", "..", "$status"]),
                ID_TEXT,
            )
        )
        path = f"/FHIR/R4/{resource_type}/{quote(raw_id, safe='')}"
        if resource_type in world.vreadable and draw(st.booleans()):
            vid = draw(
                st.sampled_from(
                    [world.versions.get(resource_type, "1"), "1", "2", "0", "01", "x", "9" * 12]
                )
                | NUMERALS
            )
            path += f"/_history/{quote(vid, safe='')}"
        client = draw(st.sampled_from([*CLIENTS, world.owners.get(resource_type, ED_CLIENT)]))
        return Request(path, (), draw(cp_is_headers()), client)

    return read()


# --- the properties ---------------------------------------------------------------------------


@dataclass
class Tally:
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def interaction(request: Request) -> tuple[str, str]:
    """``(search | read | vread | other, resource type)`` of a request."""
    parts = request.path.split("/")
    kind = {4: "search", 5: "read", 7: "vread"}.get(len(parts), "other")
    return ("other" if request.method != "GET" else kind), parts[3]


def _check(request: Request, reply: Reply) -> None:
    """Every property of one answer; raises AssertionError saying which broke."""
    assert reply.status < 500, f"{reply.status}: {reply.text[:500]}"
    content_type = reply.headers.get("Content-Type", "")
    assert content_type.startswith("application/fhir+json"), content_type
    sent = dict(request.headers)
    trace = reply.headers.get("TraceID", "")
    assert trace, "no TraceID"
    if TRACE_ID.match(sent.get("TraceID", "")):
        assert trace == sent["TraceID"], "TraceID not echoed"
    body = json.loads(reply.text)
    validate_resource(body)
    if reply.status == 200:
        kind, resource_type = interaction(request)
        if kind == "search":
            assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
            assert "total" in body
        elif unquote(request.path.split("/")[4]).startswith("$"):
            assert body["resourceType"] == "Bundle"  # an operation ($status), not an id
        else:
            assert kind in ("read", "vread") and body["resourceType"] == resource_type
            assert ETAG.match(reply.headers.get("ETag", "")), reply.headers.get("ETag")
        return
    assert body["resourceType"] == "OperationOutcome", body["resourceType"]
    needles = {n for pair in request.query for text in pair for n in nhs_shaped(text)}
    needles |= set(nhs_shaped(request.path))
    for name in ("NHSD-End-User-Id", "NHSD-End-User-Name"):
        value = sent.get(name, "").strip()
        if len(value) >= 4:
            needles.add(value)
    hits = echoed(needles, message_texts(body))
    assert not hits, f"personal data repeated: {hits}"
    if reply.status == 401:
        assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer")
    if reply.status == 405:
        assert reply.headers.get("Allow"), "405 without Allow"


def describe(request: Request, reply: Reply | None) -> str:
    status = "no answer" if reply is None else f"{reply.status} {reply.text[:300]}"
    return (
        f"{request.method} {request.path} query={list(request.query)} "
        f"headers={dict(request.headers)} client={request.client} -> {status}"
    )


async def seed_world(e2e: E2E) -> World:
    """Plans for two children (one active, one ended), a visit (AuditEvent and the
    nurse's PractitionerRole), an LA Subscription; then what /metadata declares."""
    await e2e.put_plan(
        LA_NORTH_CLIENT,
        "N-CPP-9200",
        nhs_number=CHILD,
        plan_type="CPP",
        start_date="2025-01-06",
        family_name="Propertyfamily",
    )
    await e2e.put_plan(
        LA_SOUTH_CLIENT,
        "S-LAC-9201",
        nhs_number=OTHER_CHILD,
        plan_type="LAC",
        start_date="2024-01-06",
        end_date="2025-06-01",
    )
    plans = (await e2e.search("CareTeam", CHILD)).fhir()
    care_team = plans["entry"][0]["resource"]
    visits = await e2e.search(
        "AuditEvent",
        params=[
            ("patient:identifier", f"{NHS_SYSTEM}|{CHILD}"),
            ("_include", "AuditEvent:agent"),
        ],
        headers={**user_headers(), "IsUnscheduledAccessEvent": "false"},
    )
    entries = visits.fhir()["entry"]
    event = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "AuditEvent")
    role = next(e["resource"] for e in entries if e["resource"]["resourceType"] != "AuditEvent")
    document = (await e2e.request("GET", "/openapi.json")).json()
    subscription = document["components"]["requestBodies"]["Subscription"]["content"][
        "application/fhir+json"
    ]["example"]
    created = await e2e.request(
        "POST",
        "/FHIR/R4/Subscription",
        headers={**await e2e.auth(LA_NORTH_CLIENT), "Content-Type": "application/fhir+json"},
        data=json.dumps(subscription),
    )
    assert created.status == 201, created.text

    metadata = await e2e.request("GET", "/FHIR/R4/metadata")
    assert metadata.status == 200, metadata.text
    resources = metadata.json()["rest"][0]["resource"]

    def does(resource: dict[str, Any], code: str) -> bool:
        return any(i["code"] == code for i in resource.get("interaction", []))

    return World(
        searches={
            r["type"]: [p["name"] for p in r.get("searchParam", [])]
            for r in resources
            if does(r, "search-type")
        },
        includes={r["type"]: r.get("searchInclude", []) for r in resources},
        readable=[r["type"] for r in resources if does(r, "read")],
        vreadable=[r["type"] for r in resources if does(r, "vread")],
        ids={
            "CareTeam": care_team["id"],
            "Flag": care_team["id"],  # a plan's Flag and CareTeam share its id
            "Organization": "XLA01",
            "AuditEvent": event["id"],
            "PractitionerRole": role["id"],
            "Subscription": created.json()["id"],
        },
        versions={"CareTeam": "1", "Flag": "1", "Organization": "1"},
        owners={"Subscription": LA_NORTH_CLIENT},
    )


def correct_requests(world: World) -> list[Request]:
    """One request per readable type's read and vread, and per search type, that must be 200."""
    good = good_headers()
    la = (("TraceID", "property-test"),)  # an LA client acts for its own (only) ODS code
    out: list[Request] = []
    for resource_type in world.readable:
        client = world.owners.get(resource_type, ED_CLIENT)
        headers = la if client == LA_NORTH_CLIENT else good
        path = f"/FHIR/R4/{resource_type}/{world.ids[resource_type]}"
        out.append(Request(path, (), headers, client))
        if resource_type in world.vreadable:
            version = world.versions.get(resource_type, "1")
            out.append(Request(f"{path}/_history/{version}", (), headers, client))
    for resource_type in world.searches:
        if resource_type == "Subscription":
            out.append(Request("/FHIR/R4/Subscription", (), la, LA_NORTH_CLIENT))
        else:
            query = (("patient:identifier", f"{NHS_SYSTEM}|{CHILD}"),)
            out.append(Request(f"/FHIR/R4/{resource_type}", query, good, ED_CLIENT))
    return out


def canary_requests(world: World) -> list[Request]:
    """An NHS number where no one would put one (a parameter's name, an id), and a version
    in digits that are not ASCII: refused, and never repeated in the refusal."""
    out: list[Request] = []
    for resource_type in world.searches:
        client = world.owners.get(resource_type, ED_CLIENT)
        headers = (("TraceID", "canary"),) if client == LA_NORTH_CLIENT else good_headers()
        subject = ("patient:identifier", f"{NHS_SYSTEM}|{CHILD}")
        for query in (((OTHER_CHILD, "1"), subject), ((f"{NHS_SYSTEM}|{OTHER_CHILD}", "1"),)):
            out.append(Request(f"/FHIR/R4/{resource_type}", query, headers, client))
    for resource_type in world.readable:
        client = world.owners.get(resource_type, ED_CLIENT)
        out.append(Request(f"/FHIR/R4/{resource_type}/{OTHER_CHILD}", (), good_headers(), client))
    for resource_type in world.vreadable:  # a version in digits int() refuses
        client = world.owners.get(resource_type, ED_CLIENT)
        path = f"/FHIR/R4/{resource_type}/{world.ids[resource_type]}/_history/{quote(chr(0xB2))}"
        out.append(Request(path, (), good_headers(), client))
    return out


def good_headers() -> tuple[tuple[str, str], ...]:
    return tuple(user_headers(trace_id="property-test").items())


async def test_the_fhir_api_never_fails_and_answers_only_valid_fhir_without_personal_data(
    e2e: E2E,
) -> None:
    """Searches, reads and vreads of every type the CapabilityStatement declares, with
    generated parameters, headers, ids and clients: the properties in the module
    docstring hold for every answer."""
    world = await seed_world(e2e)
    assert set(world.searches) >= {"CareTeam", "Flag", "AuditEvent"}
    assert set(world.readable) >= {"CareTeam", "Flag", "Organization", "AuditEvent"}
    loop = asyncio.get_running_loop()
    auth = {
        client: (await e2e.auth(client))["Authorization"]
        for client in CLIENTS
        if client not in (None, "bad")
    }
    auth["bad"] = "Bearer e30.e30.c2lnbmF0dXJl"
    tally = Tally()

    def send(request: Request) -> Reply:
        headers = dict(request.headers)
        if request.client is not None:
            headers["Authorization"] = auth[request.client]
        call = e2e.request(
            request.method, request.path, headers=headers, params=list(request.query)
        )
        return asyncio.run_coroutine_threadsafe(call, loop).result(timeout=30)

    def run() -> None:
        def prop(request: Request) -> None:
            reply = None
            try:
                reply = send(request)
                tally.statuses[(*interaction(request), reply.status)] += 1
                _check(request, reply)
            except AssertionError as exc:
                tally.problems.append(f"{exc}\n  {describe(request, reply)}")

        test: Callable[[Request], None] = given(
            st.one_of(good_searches(world), searches(world), reads(world))
        )(prop)
        for request in correct_requests(world) + canary_requests(world):
            test = example(request)(test)
        settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=SUPPRESSED,
        )(seed(SEED)(test))()

    await asyncio.to_thread(run)

    assert not tally.problems, f"{len(tally.problems)} problems:\n" + "\n".join(tally.problems[:20])
    total = sum(tally.statuses.values())
    explicit = correct_requests(world)
    assert total == EXAMPLES + len(explicit) + len(canary_requests(world)), total
    for request in explicit:  # each correct request was answered 200
        assert tally.statuses[(*interaction(request), 200)] >= 1, request.path
    print(f"FHIR property test: {total} requests")
    for (kind, resource_type, status), count in sorted(tally.statuses.items()):
        print(f"  {kind} {resource_type} {status}: {count}")
