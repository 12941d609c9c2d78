"""Schemathesis against the live service, from the document it serves at ``/openapi.json``.

Every operation of the document is called with the document's examples, with
data generated to fit it (positive) and to break it (negative), as an LA
client with a real token; then a few times as a health client and with no
token. Resources named by path (a plan, a Subscription) are also called by the
ids of ones seeded first, so that their 200s are checked as well as their 404s.

A call fails the test when its answer is a 5xx; has a status, content type,
header or body the document does not describe for it; is an
``application/fhir+json`` body that is not valid FHIR R4; or, as an error (or an
upload acknowledgement), repeats personal data the request carried: an NHS
number, a name, a date of birth, sent anywhere.

The run is seeded (:data:`tests.e2e.fuzzing.SEED`) and bounded (the counts
below); it asserts how many operations and calls it made, so an operation that
stopped being generated cannot pass unnoticed. The service runs with its
background workers off: no Subscription it is given is ever called.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.errors import FailureGroup

from cpis.matching.nhs_number import synthetic_numbers
from cpis.web.oauth import ASSERTION_TYPE, ID_TOKEN_TYPE, TOKEN_EXCHANGE
from tests.cis2_issuer import LocalCis2
from tests.e2e.conftest import E2E, ED_CLIENT, LA_NORTH, LA_NORTH_CLIENT
from tests.e2e.fuzzing import SEED, SUPPRESSED, echoed, message_texts, nhs_shaped
from tests.fhir_validation import validate_resource

CHILD, CANARY = synthetic_numbers(2, start=9100)
PLAN_ID = "N-CPP-0001"  # the document's example plan_id
POSITIVE_EXAMPLES = 12
NEGATIVE_EXAMPLES = 12
OTHER_ROLE_EXAMPLES = 3
SEEDED_EXAMPLES = 6
PERSONAL_FIELDS = frozenset({"nhs_number", "family_name", "given_name", "birth_date"})
PERSONAL_HEADERS = frozenset({"nhsd-end-user-id", "nhsd-end-user-name"})
# Values of these are the caller's own identifiers, echoed by design (an acknowledgement
# names each record by its plan_id), or not data at all.
NOT_PERSONAL = frozenset({"plan_id", "la_ods", "sequence", "created", "action", "plan_type"})
NOT_SENT_AS_DATA = frozenset({"authorization", "traceid", "if-match", "content-type"})


@pytest.fixture
def e2e_overrides(cis2: LocalCis2) -> dict[str, Any]:
    # No dispatcher: Subscriptions the fuzzer creates are never called. The local CIS2
    # issuer is trusted, so a token exchange can succeed.
    return {"workers_in_serve": False, "cis2_issuers": (cis2.issuer,)}


@pytest.fixture
def e2e_base_path() -> str:
    return "/cpis"


# --- what was sent, and whether it came back ------------------------------------------------


def _walk_json(node: Any, key: str | None, needles: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            needles.update(nhs_shaped(str(k)))  # a name can be an NHS number too
            _walk_json(v, str(k), needles)
    elif isinstance(node, list):
        for v in node:
            _walk_json(v, key, needles)
    elif isinstance(node, str) and key not in NOT_PERSONAL:
        if key in PERSONAL_FIELDS and len(node.strip()) >= 4:
            needles.add(node.strip())
        needles.update(nhs_shaped(node))


def _csv_needles(text: str, needles: set[str]) -> None:
    rows = list(csv.reader(io.StringIO(text)))
    header = next((row for row in rows if "nhs_number" in row), None)
    if header is None:
        return
    columns = [i for i, name in enumerate(header) if name in PERSONAL_FIELDS]
    for row in rows[rows.index(header) + 1 :]:
        for i in columns:
            if i < len(row) and len(row[i].strip()) >= 4:
                needles.add(row[i].strip())
                needles.update(nhs_shaped(row[i]))


def sent_personal_data(case: schemathesis.Case, vocabulary: str) -> set[str]:
    """Personal data the case carried: values of personal fields, and NHS-number-shaped
    runs anywhere but in the caller's own identifiers. Words the document itself uses
    (an enum value generated as a name) are not personal data."""
    needles: set[str] = set()
    body = case.body
    if isinstance(body, str):
        _csv_needles(body, needles)
    else:
        _walk_json(body, None, needles)
    _walk_json({**(case.query or {}), **(case.path_parameters or {})}, None, needles)
    for name, value in (case.headers or {}).items():
        lower = name.lower()
        if lower in NOT_SENT_AS_DATA or not isinstance(value, str):
            continue
        if lower in PERSONAL_HEADERS and len(value.strip()) >= 4:
            needles.add(value.strip())
        needles.update(nhs_shaped(value))
    return {n for n in needles if n not in vocabulary}


def no_personal_data_echoed(vocabulary: str) -> Callable[..., None]:
    def no_personal_data_echoed(ctx: Any, response: schemathesis.Response, case: Any) -> None:
        is_ack = case.operation.definition.raw.get("operationId") == "la_upload"
        if response.status_code < 400 and not is_ack:
            return
        try:
            body = json.loads(response.content)
        except ValueError:
            texts = [response.content.decode("utf-8", "replace")]
        else:
            texts = message_texts(body)
        hits = echoed(sent_personal_data(case, vocabulary), texts)
        assert not hits, f"personal data sent was repeated in the answer: {hits}"

    return no_personal_data_echoed


def fhir_resources_are_valid(ctx: Any, response: schemathesis.Response, case: Any) -> None:
    content_type = response.headers.get("content-type", [""])[0]
    if content_type.startswith("application/fhir+json"):
        validate_resource(json.loads(response.content))


# --- the run -------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the run did, per operation, and the first report of each distinct failure."""

    calls: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    nothing_to_negate: set[str] = field(default_factory=set)

    def record(self, label: str, status: int) -> None:
        self.calls[label] += 1
        self.statuses.setdefault(label, Counter())[status] += 1


@dataclass
class Fuzz:
    base_url: str
    schema: Any
    tokens: dict[str, str]
    checks: list[Callable[..., Any]]
    tally: Tally = field(default_factory=Tally)

    def run(self, operation: Any, strategy: Any, *, examples: int, token: str | None) -> None:
        headers = {} if token is None else {"Authorization": f"Bearer {self.tokens[token]}"}
        tally, checks, base_url = self.tally, self.checks, self.base_url

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=SUPPRESSED,
        )
        @seed(SEED)
        @given(case=strategy)
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=15)
            tally.record(operation.label, response.status_code)
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except FailureGroup as group:
                for failure in group.exceptions:
                    tally.failures.setdefault(
                        (operation.label, failure.title), f"{failure.message}\n{group}"
                    )
            except AssertionError as exc:
                tally.failures.setdefault((operation.label, type(exc).__name__), str(exc))

        call()

    def operation(self, operation: Any, *, fixed: list[dict[str, Any]]) -> None:
        """The document's examples, positive and negative data as an LA client (or with no
        token where none is needed), then ``fixed`` parts (seeded ids, a real assertion)
        with generated rest, then a few positive calls as a health client and with none."""
        public = operation.definition.raw.get("security") == []
        own = None if public else "la"
        for example in self.schema.get_strategies_from_examples(operation):
            self.run(operation, example, examples=1, token=own)
        positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        self.run(operation, positive, examples=POSITIVE_EXAMPLES, token=own)
        try:
            negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
            self.run(operation, negative, examples=NEGATIVE_EXAMPLES, token=own)
        except Unsatisfiable:
            # Nothing in it can be sent wrong (only free-text headers): no negative calls.
            self.tally.nothing_to_negate.add(operation.label)
        for parts in fixed:
            self.run(operation, operation.as_strategy(**parts), examples=SEEDED_EXAMPLES, token=own)
        if not public:
            self.run(operation, positive, examples=OTHER_ROLE_EXAMPLES, token="health")
            self.run(operation, positive, examples=OTHER_ROLE_EXAMPLES, token=None)


async def seed_world(e2e: E2E) -> dict[str, str]:
    """A plan with names and a birth date, an attendance notification for it, a
    Subscription, a delivery given up on and an applied upload, all for la-north; their
    ids (and the child's NHS number) by path name."""
    await e2e.put_plan(
        LA_NORTH_CLIENT,
        PLAN_ID,
        nhs_number=CHILD,
        plan_type="CPP",
        start_date="2025-01-06",
        birth_date="2015-05-05",
        family_name="Fuzzfamily",
        given_name="Fuzzgiven",
    )
    seen = await e2e.search("CareTeam", CHILD)
    assert seen.status == 200, seen.text
    (notification_id,) = [
        r["notification_id"]
        for r in await e2e.fetch("SELECT notification_id FROM outbox WHERE la_ods = $1", "XLA01")
    ]
    delivery_id = await e2e.db.fetchval(
        "INSERT INTO delivery (notification_id, la_ods, channel, target, state, attempts,"
        " next_attempt_at, created_at, last_error)"
        " VALUES ($1, $2, 'mesh', 'XLA01OT001', 'dead', 7, $3, $3, 'HTTP 403') RETURNING id",
        notification_id,
        LA_NORTH.ods_code,
        datetime.now(UTC),
    )
    upload = {
        "la_ods": LA_NORTH.ods_code,
        "sequence": 1,
        "created": "2026-03-03T18:30:00Z",
        "records": [{"action": "delete", "plan_id": "N-GONE-0001"}],
    }
    applied = await e2e.request(
        "POST", "/la/v1/uploads", headers=await e2e.auth(LA_NORTH_CLIENT), json=upload
    )
    assert applied.status == 200, applied.text
    document = (await e2e.request("GET", "/openapi.json")).json()
    body = document["components"]["requestBodies"]["Subscription"]["content"][
        "application/fhir+json"
    ]["example"]
    created = await e2e.request(
        "POST",
        "/FHIR/R4/Subscription",
        headers={**await e2e.auth(LA_NORTH_CLIENT), "Content-Type": "application/fhir+json"},
        data=json.dumps(body),
    )
    assert created.status == 201, created.text
    return {
        "plan_id": PLAN_ID,
        "id": created.json()["id"],
        "nhs_number": CHILD,
        "sequence": "1",
        "delivery_id": str(delivery_id),
    }


def fixed_parts(
    operation: Any, seeded: dict[str, str], e2e: E2E, cis2: LocalCis2
) -> list[dict[str, Any]]:
    """What to hold fixed in some of an operation's calls, the rest generated.

    To get past 404 and 401: the seeded plan's and Subscription's ids, and a real client
    assertion (usable once: the calls after the first are its replays) alone and with a
    nurse's CIS2 ID token. As canaries: an NHS number where no one would put one, as an
    unknown query parameter's name, a body's key or a Parameters parameter's name; it must
    not come back in any answer.
    """
    operation_id = operation.definition.raw["operationId"]
    if operation_id == "oauth_token":
        assertion = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": e2e.assertion(LA_NORTH_CLIENT),
        }
        exchange = {
            "grant_type": TOKEN_EXCHANGE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": e2e.assertion(ED_CLIENT),
            "subject_token": cis2.id_token(cis2.nurse(audience=f"{ED_CLIENT}.cis2")),
            "subject_token_type": ID_TOKEN_TYPE,
        }
        return [{"body": assertion}, {"body": exchange}, *encodings(operation, assertion)]
    path = {k: v for k, v in seeded.items() if "{" + k + "}" in operation.path}
    fixed: list[dict[str, Any]] = [{"path_parameters": path}] if path else []
    fixed.append({"path_parameters": path, "query": {CANARY: "1"}})
    for name in integer_query_parameters(operation):
        # Digits that are not ASCII (superscript two, Arabic-Indic one): str.isdigit() says
        # yes to both, int() to one only.
        fixed.extend({"path_parameters": path, "query": {name: d}} for d in ("\u00b2", "\u0661"))
    if not operation.body:
        return fixed
    example = _example_body(operation)
    media_type = str(operation.body[0].media_type)
    fixed.extend({"path_parameters": path, **parts} for parts in encodings(operation, example))
    bodies = []
    if isinstance(example, dict) and example.get("resourceType") == "Parameters":
        bodies.append({**example, "parameter": [{"name": CANARY, "valueString": "1"}]})
    elif isinstance(example, dict):
        bodies.append({**example, CANARY: "1"})
    if operation_id == "subscription_update":
        # A body naming the seeded Subscription, at its own URL: the only PUT that can succeed.
        bodies.append({**example, "id": seeded["id"]})
    elif operation_id == "la_plan_put":
        # A good body at generated plan ids: creates (201), where generated bodies are refused.
        fixed.append({"body": example, "media_type": media_type})
    fixed.extend({"path_parameters": path, "body": b, "media_type": media_type} for b in bodies)
    return fixed


def encodings(operation: Any, body: Any) -> list[dict[str, Any]]:
    """A body in bytes that are not UTF-8, and a good body whose charset names no encoding."""
    media_type = str(operation.body[0].media_type)
    bogus = {"Content-Type": f"{media_type}; charset=no-such-charset"}
    return [
        {"body": b"\xff\xfe=\xfd", "media_type": media_type},
        {"body": body, "media_type": media_type, "headers": bogus},
    ]


def integer_query_parameters(operation: Any) -> list[str]:
    return [
        p.name for p in operation.query if p.definition.get("schema", {}).get("type") == "integer"
    ]


def _example_body(operation: Any) -> Any:
    """The document's example request body for ``operation`` (its first media type's)."""
    body = operation.definition.raw.get("requestBody", {})
    if "$ref" in body:
        name = body["$ref"].removeprefix("#/components/requestBodies/")
        body = operation.schema.raw_schema["components"]["requestBodies"][name]
    content = body.get("content", {})
    return next(media["example"] for media in content.values() if "example" in media)


async def test_schemathesis_finds_no_server_error_contract_break_or_echoed_personal_data(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """Every operation of /openapi.json, fuzzed with real LA, health and no tokens against
    the running service: no 5xx, nothing the document does not describe, only valid FHIR,
    no personal data repeated; and every operation really was called."""
    seeded = await seed_world(e2e)
    reply = await e2e.request("GET", "/openapi.json")
    document = reply.json()
    tokens = {"la": await e2e.token(LA_NORTH_CLIENT), "health": await e2e.token(ED_CLIENT)}
    schema = schemathesis.openapi.from_dict(document)
    # Deletes last: the seeded plan and Subscription must still be there for the rest.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: op.method == "delete",
    )
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        fhir_resources_are_valid,
        no_personal_data_echoed(reply.text),
    ]
    fuzz = Fuzz(e2e.base, schema, tokens, checks)
    plan = [(op, fixed_parts(op, seeded, e2e, cis2)) for op in operations]

    def run_all() -> None:
        for operation, fixed in plan:
            fuzz.operation(operation, fixed=fixed)

    await asyncio.to_thread(run_all)

    tally = fuzz.tally
    report = "\n\n".join(
        f"{label}: {title}\n{text}" for (label, title), text in tally.failures.items()
    )
    assert not tally.failures, f"{len(tally.failures)} distinct failures:\n\n{report}"
    labels = {op.label for op in operations}
    assert len(labels) == len(documented_operations(document)) == 31
    assert set(tally.calls) == labels, labels - set(tally.calls)
    thin = {label: n for label, n in tally.calls.items() if n < 10}
    assert not thin, f"operations called fewer than 10 times: {thin}"
    print(f"schemathesis: {sum(tally.calls.values())} calls over {len(labels)} operations")
    print(f"  no negative data possible: {sorted(tally.nothing_to_negate)}")
    for label in sorted(tally.statuses):
        print(f"  {label}: {dict(sorted(tally.statuses[label].items()))}")


def documented_operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    ]
