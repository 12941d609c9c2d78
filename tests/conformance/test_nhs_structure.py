"""This service's answers against NHS England's published CP-IS examples, element by element.

For each example (synthetic copies in ``nhs_examples/``, see its README), every
element path NHS's JSON has must be in ours with the same JSON type, and every
system and fixed code it uses must be in ours at the same path. What we add is
allowed (a client built from the examples ignores it). The few places where we
deliberately differ are listed in ``DIFFERENCES`` with the reason; the test
fails if one of them stops being true, so the list cannot go stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cpis.matching.nhs_number import synthetic_numbers
from tests.cis2_issuer import LocalCis2
from tests.e2e.conftest import CLIENTS, E2E, ED_CLIENT, LA_NORTH_CLIENT, identifier

EXAMPLES = Path(__file__).parent / "nhs_examples"
CHILD, UNKNOWN = synthetic_numbers(2, start=901)
VIEWER_INCLUDE = (
    "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED"
)
# Keys whose values are systems or fixed codes (not data) in these examples.
CODE_KEYS = frozenset(
    {"resourceType", "system", "code", "use", "mode", "relation", "type", "severity"}
)
AE = "Bundle.entry.resource(AuditEvent)"
PR = "Bundle.entry.resource(PractitionerRole)"

# (example, path, what NHS has there) -> why we differ
DIFFERENCES = {
    ("auditevent-bundle.json", f"{AE}.agent.requestor", "type string"): (
        "NHS's example sends requestor as the strings 'true'/'false'; FHIR R4 JSON requires a "
        "boolean (a string there is invalid), so we send true/false"
    ),
    ("auditevent-bundle.json", f"{PR}.code.coding.system", "http://snomed.info/sct"): (
        "the example's viewer holds a SNOMED CT-coded occupation; a CIS2 user's role is a "
        "national RBAC job role, coded in NHS England's England-SDS-JobRoleCode (the consumer "
        "data mapping reads only code.coding.display)"
    ),
    ("auditevent-bundle.json", f"{PR}.code.coding.code", "158992006"): (
        "a SNOMED CT occupation code: see the system above"
    ),
    (
        "opoutcome.json",
        "OperationOutcome.issue.details.coding.system",
        "https://fhir.nhs.uk/CodeSystem/England-SpineErrorOrWarningCode",
    ): (
        "the producer guide's error page profiles UK Core's OperationOutcome, whose codes are "
        "UKCore-SpineErrorOrWarningCode (same codes); the example still shows the older "
        "England system"
    ),
}


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number"
    )


def flatten(node: Any, path: str = "") -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """Element paths with their JSON types, and (path, value) of systems and fixed codes.

    A resource adds its type to the path, so a bundle's AuditEvents and
    PractitionerRoles are compared separately; list positions are not part of
    a path.
    """
    types: dict[str, set[str]] = {}
    codes: set[tuple[str, str]] = set()

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, path)
            return
        if not isinstance(node, dict):
            return
        if "resourceType" in node:
            path = f"{path}({node['resourceType']})" if path else node["resourceType"]
        for key, value in node.items():
            child = f"{path}.{key}"
            types.setdefault(child, set()).add(_json_type(value))
            if key in CODE_KEYS and isinstance(value, str):
                codes.add((child, value))
            walk(value, child)

    walk(node, path)
    return types, codes


def differences(example: str, theirs: Any, ours: Any) -> set[tuple[str, str, str]]:
    """What the example has that ours does not: (example, path, what)."""
    their_types, their_codes = flatten(theirs)
    our_types, our_codes = flatten(ours)
    missing = set()
    for path, kinds in their_types.items():
        for kind in kinds - our_types.get(path, set()):
            missing.add((example, path, f"type {kind}"))
    for path, value in their_codes - our_codes:
        missing.add((example, path, value))
    return missing


async def _answers(e2e: E2E, cis2: LocalCis2) -> dict[str, Any]:
    """This service's answers to the requests behind each example, by a signed-in nurse."""
    await e2e.put_plan(
        LA_NORTH_CLIENT,
        "S-1",
        nhs_number=CHILD,
        plan_type="CPP",
        start_date="2026-01-05",
        end_date="2027-01-05",
    )
    aud = CLIENTS[ED_CLIENT].cis2_client_id
    token = await e2e.user_token(ED_CLIENT, cis2.id_token(cis2.nurse(audience=aud)))
    headers = {"Authorization": f"Bearer {token}", "TraceID": "structure-1"}

    async def get(path: str, params: dict[str, str], hdrs: dict[str, str]) -> Any:
        reply = await e2e.request("GET", f"/FHIR/R4/{path}", headers=hdrs, params=params)
        return reply.fhir()

    care_team = await get("CareTeam", {"patient:identifier": identifier(CHILD)}, headers)
    history = await get(
        "AuditEvent",
        {"patient:identifier": identifier(CHILD), "_include": VIEWER_INCLUDE},
        headers,
    )
    empty = await get("CareTeam", {"patient:identifier": identifier(UNKNOWN)}, headers)
    la = {**await e2e.auth(LA_NORTH_CLIENT), "TraceID": "structure-2"}
    forbidden = await get("CareTeam", {"patient:identifier": identifier(CHILD)}, la)
    return {
        "careteam-bundle.json": care_team,
        "auditevent-bundle.json": history,
        "empty-bundle.json": empty,
        "opoutcome.json": forbidden,
    }


async def test_every_element_system_and_code_of_nhs_examples_is_in_our_answers(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """Each NHS example's element paths (with their JSON types), systems and fixed codes are
    in this service's answer to the same request, but for the listed deliberate differences,
    each of which is still true."""
    answers = await _answers(e2e, cis2)
    found = set()
    for example, ours in answers.items():
        theirs = json.loads((EXAMPLES / example).read_text())
        found |= differences(example, theirs, ours)
    unexplained = found - set(DIFFERENCES)
    assert not unexplained, sorted(unexplained)
    assert found == set(DIFFERENCES), sorted(set(DIFFERENCES) - found)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_the_comparison_sees_a_missing_element(example: str) -> None:
    """The comparison is not vacuous: dropping any one element of an example is caught."""
    theirs = json.loads((EXAMPLES / example).read_text())
    types, _codes = flatten(theirs)
    for path in types:
        cut = json.loads((EXAMPLES / example).read_text())
        _drop(cut, path.split(".")[1:] if "." in path else [])
        assert differences(example, theirs, cut), path


def _drop(node: Any, keys: list[str]) -> None:
    """Remove the element at ``keys`` (resource types in the path ignored) everywhere."""
    if isinstance(node, list):
        for item in node:
            _drop(item, keys)
        return
    if not isinstance(node, dict) or not keys:
        return
    key = keys[0].split("(")[0]
    if len(keys) == 1:
        node.pop(key, None)
    elif key in node:
        _drop(node[key], keys[1:])
