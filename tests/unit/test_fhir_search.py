"""Search-parameter parsing: one NHS number, strictly given, and errors that never echo it."""

from __future__ import annotations

import re

import pytest

from cpis.errors import InvalidSearch, NotFound
from cpis.fhir.search import SearchRequest, parse_search
from cpis.matching.nhs_number import synthetic_numbers

NHS = synthetic_numbers(1, 1)[0]
OTHER_NHS = synthetic_numbers(1, 2)[0]
SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
PID = "patient:identifier"
GOOD = (PID, f"{SYSTEM}|{NHS}")
# Same first nine digits, wrong check digit.
BAD_CHECK = NHS[:9] + str((int(NHS[9]) + 1) % 10)


@pytest.mark.parametrize(
    ("resource_type", "query", "expected"),
    [
        pytest.param("CareTeam", [GOOD], SearchRequest("CareTeam", NHS), id="careteam"),
        pytest.param("AuditEvent", [GOOD], SearchRequest("AuditEvent", NHS), id="auditevent"),
        pytest.param("Flag", [GOOD], SearchRequest("Flag", NHS), id="flag"),
        pytest.param(
            "CareTeam",
            [(PID, f"{SYSTEM}|{NHS[:3]} {NHS[3:6]} {NHS[6:]}")],
            SearchRequest("CareTeam", NHS),
            id="spaced-number",
        ),
        pytest.param(
            "Flag",
            [GOOD, ("status", "active"), ("_include", "Flag:author")],
            SearchRequest("Flag", NHS, "active", include_author=True),
            id="flag-status-include",
        ),
        pytest.param(
            "Flag",
            [("status", "entered-in-error"), GOOD],
            SearchRequest("Flag", NHS, "entered-in-error"),
            id="flag-status-first",
        ),
        pytest.param(
            "CareTeam",
            [GOOD, ("_format", "json")],
            SearchRequest("CareTeam", NHS),
            id="format-json",
        ),
        pytest.param(
            "AuditEvent",
            [GOOD, ("_format", "application/fhir+json")],
            SearchRequest("AuditEvent", NHS),
            id="format-fhir-json",
        ),
        pytest.param(
            "AuditEvent",
            [
                GOOD,
                (
                    "_include",
                    "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED",
                ),
            ],
            SearchRequest("AuditEvent", NHS, include_viewers=True),
            id="cp-is-guide-include",
        ),
        pytest.param(
            "AuditEvent",
            [GOOD, ("_include", "AuditEvent:agent")],
            SearchRequest("AuditEvent", NHS, include_viewers=True),
            id="fhir-agent-include",
        ),
        pytest.param(
            "AuditEvent",
            [GOOD, ("_include", "AuditEvent:agent:PractitionerRole")],
            SearchRequest("AuditEvent", NHS, include_viewers=True),
            id="fhir-agent-practitioner-role-include",
        ),
        pytest.param(
            "CareTeam",
            [("patient", f"{SYSTEM}|{NHS}")],
            SearchRequest("CareTeam", NHS),
            id="patient-token-form",
        ),
        pytest.param(
            "AuditEvent",
            [("patient", f"{SYSTEM}|{NHS}")],
            SearchRequest("AuditEvent", NHS),
            id="patient-token-form-audit",
        ),
    ],
)
@pytest.mark.parametrize("lenient", [False, True], ids=["strict", "lenient"])
def test_valid_searches(
    resource_type: str, query: list[tuple[str, str]], expected: SearchRequest, lenient: bool
):
    assert parse_search(resource_type, query, lenient=lenient) == expected


# (query, resource type, a fragment the message must contain)
REFUSED_ALWAYS = [
    pytest.param([], "CareTeam", "Missing required", id="missing"),
    pytest.param([GOOD, GOOD], "CareTeam", "more than once", id="repeated-same"),
    pytest.param(
        [GOOD, (PID, f"{SYSTEM}|{OTHER_NHS}")], "Flag", "more than once", id="repeated-other"
    ),
    pytest.param([(PID, NHS)], "CareTeam", SYSTEM, id="no-system"),
    pytest.param([(PID, f"|{NHS}")], "CareTeam", SYSTEM, id="empty-system"),
    pytest.param(
        [(PID, f"https://fhir.nhs.uk/Id/local|{NHS}")], "CareTeam", SYSTEM, id="other-system"
    ),
    pytest.param([(PID, f"{SYSTEM.upper()}|{NHS}")], "CareTeam", SYSTEM, id="system-case"),
    pytest.param([(PID, f"{SYSTEM}|")], "AuditEvent", "10 digits", id="empty-number"),
    pytest.param([(PID, f"{SYSTEM}|{NHS[:9]}")], "CareTeam", "10 digits", id="nine-digits"),
    pytest.param([(PID, f"{SYSTEM}|{BAD_CHECK}")], "CareTeam", "check digit", id="check-digit"),
    pytest.param([(PID, f"{SYSTEM}|9999999999")], "CareTeam", "same", id="all-same"),
    pytest.param([(PID, f"{SYSTEM}|{NHS},{OTHER_NHS}")], "CareTeam", "exactly one", id="or-list"),
    pytest.param([(PID, f"{SYSTEM}|{NHS}|x")], "CareTeam", "10 digits", id="extra-bar"),
    pytest.param([("subject:identifier", f"{SYSTEM}|{NHS}")], "CareTeam", "Unknown", id="subject"),
    pytest.param([GOOD, ("patient", "Patient/1")], "CareTeam", "'patient'", id="patient-ref"),
    pytest.param([GOOD, ("patient", f"{SYSTEM}|{NHS}")], "CareTeam", "not both", id="both-forms"),
    pytest.param([("patient", f"Patient/{NHS}")], "CareTeam", SYSTEM, id="patient-reference"),
    pytest.param([("patient", NHS)], "AuditEvent", SYSTEM, id="patient-bare-number"),
    pytest.param(
        [("patient", f"{SYSTEM}|{NHS}"), ("patient", f"{SYSTEM}|{NHS}")],
        "Flag",
        "more than once",
        id="patient-repeated",
    ),
    pytest.param([GOOD, ("Patient:identifier", "x")], "Flag", "Unknown", id="patient-case"),
    pytest.param([GOOD, ("identifier", "x")], "Flag", "'identifier'", id="identifier"),
    pytest.param([GOOD, ("patient:identifer", "x")], "Flag", "Unknown", id="misspelt-patient"),
    pytest.param([GOOD, ("status", "open")], "Flag", "must be one of", id="bad-status"),
    pytest.param([GOOD, ("status", "active,inactive")], "Flag", "must be one of", id="status-list"),
    pytest.param(
        [GOOD, ("status", "active"), ("status", "active")], "Flag", "more than once", id="status-2"
    ),
    pytest.param(
        [GOOD, ("_format", "json"), ("_format", "json")], "CareTeam", "more than once", id="fmt-2"
    ),
]

REFUSED_UNLESS_LENIENT = [
    pytest.param([GOOD, ("_count", "1")], "CareTeam", "'_count'", id="count"),
    pytest.param([GOOD, ("foo", "bar")], "AuditEvent", "'foo'", id="unknown"),
    pytest.param([GOOD, ("status", "active")], "CareTeam", "'status'", id="status-on-careteam"),
    pytest.param([GOOD, ("_include", "Flag:author")], "CareTeam", "'_include'", id="include-ct"),
    pytest.param([GOOD, ("_include", "Flag:subject")], "Flag", "Flag:author", id="include-other"),
    pytest.param(
        [GOOD, ("_include", "AuditEvent:entity")], "AuditEvent", "_include", id="include-audit"
    ),
    pytest.param([GOOD, ("_summary", "count")], "Flag", "'_summary'", id="summary"),
]


@pytest.mark.parametrize(("query", "resource_type", "fragment"), REFUSED_ALWAYS)
@pytest.mark.parametrize("lenient", [False, True], ids=["strict", "lenient"])
def test_refused_even_when_lenient(
    query: list[tuple[str, str]], resource_type: str, fragment: str, lenient: bool
):
    """Anything about the NHS number, and bad values of known parameters, is always a 400."""
    with pytest.raises(InvalidSearch) as caught:
        parse_search(resource_type, query, lenient=lenient)
    assert fragment in caught.value.message
    assert caught.value.status == 400
    assert caught.value.code == "INVALID_SEARCH_DATA"


@pytest.mark.parametrize(("query", "resource_type", "fragment"), REFUSED_UNLESS_LENIENT)
def test_unknown_parameters_refused_when_strict(
    query: list[tuple[str, str]], resource_type: str, fragment: str
):
    with pytest.raises(InvalidSearch) as caught:
        parse_search(resource_type, query, lenient=False)
    assert fragment in caught.value.message


@pytest.mark.parametrize(("query", "resource_type", "fragment"), REFUSED_UNLESS_LENIENT)
def test_unknown_parameters_ignored_when_lenient(
    query: list[tuple[str, str]], resource_type: str, fragment: str
):
    """Prefer: handling=lenient ignores them, and the NHS number still comes through."""
    req = parse_search(resource_type, query, lenient=True)
    assert req.nhs_number == NHS
    assert req.status is None
    assert req.include_author is False
    assert req.include_viewers is False


@pytest.mark.parametrize(
    "query",
    [
        [(PID, f"{SYSTEM}|{BAD_CHECK}")],
        [(PID, BAD_CHECK)],
        [(PID, f"https://example.org/other|{NHS}")],
        [(PID, f"{SYSTEM}|{NHS},{OTHER_NHS}")],
        [GOOD, (PID, f"{SYSTEM}|{OTHER_NHS}")],
        [GOOD, ("status", NHS)],
        [GOOD, ("_include", NHS)],
        [GOOD, (NHS, "")],
        [GOOD, (f"x{NHS}", "")],
        [GOOD, (f"nhs{NHS[:3]}", "1")],
        [GOOD, ("patient:identifier:x", NHS)],
        [("patient", NHS)],
        [("patient", f"Patient/{NHS}")],
        [GOOD, ("a" * 200, NHS)],
    ],
)
@pytest.mark.parametrize("resource_type", ["CareTeam", "Flag", "AuditEvent"])
def test_errors_never_echo_a_value_or_a_number_like_name(
    query: list[tuple[str, str]], resource_type: str
):
    """Diagnostics carry no personal data: neither NHS number appears, nor any long digit run."""
    with pytest.raises(InvalidSearch) as caught:
        parse_search(resource_type, query, lenient=False)
    message = caught.value.message
    for number in (NHS, OTHER_NHS, BAD_CHECK, NHS[:3] + NHS[3:], "999"):
        assert number not in message
    assert re.search(r"[0-9]{3}", message) is None


@pytest.mark.parametrize("resource_type", ["Organization", "Patient", "Bogus", ""])
def test_only_the_three_searches_exist(resource_type: str):
    with pytest.raises(NotFound):
        parse_search(resource_type, [GOOD], lenient=False)


@pytest.mark.parametrize(
    ("status", "active", "shown"),
    [
        (None, True, True),
        (None, False, True),
        ("active", True, True),
        ("active", False, False),
        ("inactive", True, False),
        ("inactive", False, True),
        ("entered-in-error", True, False),
        ("entered-in-error", False, False),
    ],
)
def test_status_filter_semantics(status: str | None, active: bool, shown: bool):
    """active = in force today; inactive = ended but still visible; entered-in-error = nothing."""
    req = SearchRequest("Flag", NHS, status)
    assert req.wants(active=active) is shown
