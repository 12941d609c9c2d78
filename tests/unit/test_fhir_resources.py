"""The FHIR resource builders: CP-IS shapes, valid R4, and no child's name or birth date."""

from __future__ import annotations

import dataclasses
import sys
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from cpis import errors
from cpis.fhir import resources as r
from cpis.fhir.capability import capability_statement
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import (
    AccessEvent,
    Accessor,
    LocalAuthority,
    Plan,
    PlanFields,
    PlanType,
    SettingType,
    VisiblePlan,
)

# tests/ is not a package; e2e tests share this helper too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fhir_validation import validate_resource

BASE = "https://cpis.example.org/FHIR/R4"
UPDATED = datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


NHS = synthetic_numbers(1, 1)[0]
assert NHS == "9990000018"

LA = LocalAuthority(
    ods_code="LA001",
    name="Exampleshire County Council",
    office_phone="01632 960001",
    edt_phone="01632 960999",
    repeat_window_hours=24,
    version=3,
    updated_at=UPDATED,
)


def visible(
    plan_type: PlanType = PlanType.CPP,
    *,
    active: bool = True,
    end: date | None = None,
    la: LocalAuthority = LA,
) -> VisiblePlan:
    fields = PlanFields(
        nhs_number=NHS,
        plan_type=plan_type,
        start_date=date(2024, 1, 15),
        end_date=end,
        birth_date=date(2015, 7, 4),
        family_name="Zebedee-Quartermain",
        given_name="Philomena",
    )
    plan = Plan(
        id=uuid.UUID("6f1c1c0e-2b7a-4a57-9a55-2f7a4ad0b001"),
        la_ods=la.ods_code,
        la_plan_id="PLAN-42",
        fields=fields,
        version=2,
        updated_at=UPDATED,
    )
    return VisiblePlan(plan=plan, la=la, effective_end=end, active=active)


# A viewer's PractitionerRole id, as the storage adapter gives it (a keyed hash:
# cpis.adapters.postgres.practitioner_role_id, tested in tests/unit/test_viewer_at_rest.py).
VIEWER_ID = uuid.UUID("5a1d7e1c-3f0b-8c2e-9d4a-6b7c8d9e0f12")


def access_event(setting: SettingType = SettingType.ED) -> AccessEvent:
    return AccessEvent(
        id=uuid.UUID("0b6a2f0c-8d2e-4c43-9d8a-7e1e6f3b0c11"),
        nhs_number=NHS,
        occurred_at=datetime(2024, 6, 1, 23, 5, tzinfo=timezone(timedelta(hours=1))),
        accessor=Accessor(
            client_id="ed-system-1",
            org_ods="RXX01",
            org_name="Example General Hospital",
            setting_type=setting,
            user_id="555021935107",
            user_name="Dr Alex Example",
            user_role="Consultant in emergency medicine",
            trace_id="b2acfb2c-c40e-4f9a-8916-950a2e86fc4e",
            practitioner_role_id=VIEWER_ID,
        ),
        la_codes=("LA001",),
    )


PLAN_CASES = [
    pytest.param(PlanType.CPP, True, None, id="cpp-open"),
    pytest.param(PlanType.LAC, True, date(2025, 1, 1), id="lac-ending"),
    pytest.param(PlanType.UCPP, True, date(2024, 9, 30), id="ucpp-edd"),
    pytest.param(PlanType.CPP, False, date(2024, 2, 1), id="cpp-ended"),
]


def assert_no_child_identity(resource: dict[str, Any]) -> None:
    text = orjson.dumps(resource).decode()
    for forbidden in ("Zebedee", "Philomena", "2015-07-04", "birthDate"):
        assert forbidden not in text


@pytest.mark.parametrize(("plan_type", "active", "end"), PLAN_CASES)
def test_care_team_has_the_cp_is_shape(plan_type: PlanType, active: bool, end: date | None):
    """A CareTeam names the plan type, period, subject, LA team, phones and LA; valid R4."""
    ct = r.care_team(visible(plan_type, active=active, end=end), BASE)

    validate_resource(ct)
    assert ct["id"] == "6f1c1c0e-2b7a-4a57-9a55-2f7a4ad0b001"
    assert ct["meta"] == {"versionId": "2", "lastUpdated": "2024-03-01T09:30:15.123Z"}
    assert ct["status"] == ("active" if active else "inactive")
    assert ct["category"][0]["coding"] == [
        {
            "system": "http://snomed.info/sct",
            "code": plan_type.snomed_code,
            "display": plan_type.display,
        }
    ]
    expected_period = {"start": "2024-01-15"}
    if end is not None:
        expected_period["end"] = end.isoformat()
    assert ct["period"] == expected_period
    assert ct["subject"] == {
        "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS},
        "display": "NHS number 999 000 0018",
    }
    assert ct["name"] == "Exampleshire County Council Children's Social Care"
    assert ct["managingOrganization"][0]["reference"] == f"{BASE}/Organization/LA001"
    assert ct["managingOrganization"][0]["identifier"] == {
        "system": "https://fhir.nhs.uk/Id/ods-organization-code",
        "value": "LA001",
    }
    assert ct["identifier"] == [{"system": f"{BASE}/la/LA001/plan-id", "value": "PLAN-42"}]
    assert_no_child_identity(ct)


def test_care_team_phones_are_told_apart_by_use_as_nhs_sends_them():
    """Office hours is ``use: work`` and the emergency duty team ``use: mobile``, in that order
    (NHS England's consumer data mapping finds the EDT number by ``use = "mobile"``)."""
    ct = r.care_team(visible(), BASE)

    assert ct["telecom"] == [
        {"system": "phone", "value": "01632 960001", "use": "work", "rank": 1},
        {"system": "phone", "value": "01632 960999", "use": "mobile", "rank": 2},
    ]
    edt = [t["value"] for t in ct["telecom"] if t["use"] == "mobile"]
    office = [t["value"] for t in ct["telecom"] if t["use"] == "work"]
    assert (office, edt) == (["01632 960001"], ["01632 960999"])
    assert "01632 960999" in ct["note"][0]["text"]


@pytest.mark.parametrize(
    ("office", "edt", "ranks"),
    [
        pytest.param("01632 960001", "", [1], id="no-edt"),
        pytest.param("", "01632 960999", [2], id="no-office"),
        pytest.param("", "", [], id="none"),
    ],
)
def test_missing_phone_numbers_are_left_out_not_sent_empty(office: str, edt: str, ranks: list[int]):
    """FHIR strings cannot be empty: a number the LA has not given is omitted."""
    la = LocalAuthority(
        "LA002", "Testborough", office_phone=office, edt_phone=edt, repeat_window_hours=24
    )
    ct = r.care_team(visible(la=la), BASE)
    org = r.organization(la, BASE)

    validate_resource(ct)
    validate_resource(org)
    assert [t["rank"] for t in ct.get("telecom", [])] == ranks
    assert [t["rank"] for t in org.get("telecom", [])] == ranks


@pytest.mark.parametrize(("plan_type", "active", "end"), PLAN_CASES)
def test_flag_is_a_safety_flag_authored_by_the_la(
    plan_type: PlanType, active: bool, end: date | None
):
    """A Flag has category safety, the plan type as code, and the LA as author; valid R4."""
    fl = r.flag(visible(plan_type, active=active, end=end), BASE)

    validate_resource(fl)
    assert fl["status"] == ("active" if active else "inactive")
    assert fl["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/flag-category",
        "code": "safety",
        "display": "Safety",
    }
    assert fl["code"]["coding"][0]["code"] == plan_type.snomed_code
    assert fl["author"]["reference"] == f"{BASE}/Organization/LA001"
    assert fl["subject"]["identifier"]["value"] == NHS
    assert fl["period"]["start"] == "2024-01-15"
    assert ("end" in fl["period"]) is (end is not None)
    assert_no_child_identity(fl)


def test_organization_is_the_la_by_ods_code():
    """The LA Organization: id and identifier are the ODS code; both phones; its version."""
    org = r.organization(LA, BASE)

    validate_resource(org)
    assert org["id"] == "LA001"
    assert org["identifier"] == [
        {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "LA001"}
    ]
    assert org["name"] == "Exampleshire County Council"
    assert org["meta"]["versionId"] == "3"
    assert {t["value"] for t in org["telecom"]} == {"01632 960001", "01632 960999"}


def test_organization_without_an_update_time_has_no_last_updated():
    la = LocalAuthority("LA003", "Newtown", "01632 960002", "01632 960003", 24)
    org = r.organization(la, BASE)
    validate_resource(org)
    assert org["meta"] == {"versionId": "1"}


@pytest.mark.parametrize("setting", list(SettingType))
def test_audit_event_has_nhs_shape_and_records_where_and_whom(setting: SettingType):
    """An AuditEvent as NHS's example: iso-21089 access type, PAT then ASSIGNED agents, the
    observer the viewer's PractitionerRole; then the setting (with its type) and the client,
    and the subject with the trace id."""
    ev = access_event(setting)
    ae = r.audit_event(ev, BASE)

    validate_resource(ae)
    assert ae["id"] == "0b6a2f0c-8d2e-4c43-9d8a-7e1e6f3b0c11"
    assert ae["recorded"] == "2024-06-01T22:05:00.000Z"
    assert ae["type"] == {
        "system": "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle",
        "code": "access",
        "display": "Access/View Record Lifecycle Event",
    }
    patient, viewer, org, client = ae["agent"]
    role_class = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
    assert patient["type"]["coding"] == [
        {"system": role_class, "code": "PAT", "display": "patient"}
    ]
    assert patient["who"] == {
        "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}
    }
    assert patient["requestor"] is False
    assert viewer["type"]["coding"][0]["code"] == "ASSIGNED"
    assert viewer["requestor"] is True
    pr_ref = f"PractitionerRole/{ev.accessor.practitioner_role_id}"
    assert viewer["who"]["reference"] == pr_ref
    assert ae["source"]["observer"]["reference"] == pr_ref
    assert viewer["name"] == "Dr Alex Example"
    assert org["who"]["identifier"] == {
        "system": "https://fhir.nhs.uk/Id/ods-organization-code",
        "value": "RXX01",
    }
    assert org["requestor"] is False
    assert org["role"][0]["coding"][0]["code"] == setting.value
    assert org["role"][0]["text"] == r.SETTING_TYPE_DISPLAY[setting]
    assert client["who"]["identifier"]["value"] == "ed-system-1"
    assert ae["source"]["site"] == "Example General Hospital"
    entity = ae["entity"][0]
    assert entity["what"]["identifier"] == {
        "system": "https://fhir.nhs.uk/Id/nhs-number",
        "value": NHS,
    }
    assert entity["detail"] == [
        {"type": "TraceID", "valueString": "b2acfb2c-c40e-4f9a-8916-950a2e86fc4e"}
    ]


def test_practitioner_role_names_the_viewer_as_nhs_consumers_read_it():
    """practitioner.display is the name, code.coding.display the job role, organization.display
    the organisation's name with its ODS code (NHS England's consumer data mapping); the SDS
    role profile id and the national RBAC code where a CIS2 sign-in gave them."""
    acc = access_event().accessor
    verified = dataclasses.replace(
        acc,
        user_role="Nurse Access Role",
        role_code="R8001",
        role_profile_id="555021935999",
        user_verified=True,
    )
    pr = r.practitioner_role(verified)

    validate_resource(pr)
    assert pr["id"] == str(verified.practitioner_role_id)
    assert pr["identifier"] == [
        {"system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": "555021935999"}
    ]
    assert pr["practitioner"] == {
        "identifier": {"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "555021935107"},
        "display": "Dr Alex Example",
    }
    assert pr["organization"]["display"] == "Example General Hospital (RXX01)"
    assert pr["code"] == [
        {
            "coding": [
                {
                    "system": "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode",
                    "code": "R8001",
                    "display": "Nurse Access Role",
                }
            ],
            "text": "Nurse Access Role",
        }
    ]

    asserted = r.practitioner_role(acc)
    validate_resource(asserted)
    assert "identifier" not in asserted
    assert asserted["practitioner"] == {
        "identifier": {"value": "555021935107"},
        "display": "Dr Alex Example",
    }
    assert asserted["code"][0]["coding"] == [{"display": "Consultant in emergency medicine"}]


def test_an_accessor_not_yet_stored_has_no_practitioner_role_to_show():
    """The PractitionerRole id is given by storage; rendering a viewer without one is a
    mistake in the code, not something to paper over with a made-up id."""
    acc = dataclasses.replace(access_event().accessor, practitioner_role_id=None)
    with pytest.raises(ValueError, match="PractitionerRole id"):
        r.practitioner_role(acc)


def test_every_setting_type_has_a_display():
    assert set(r.SETTING_TYPE_DISPLAY) == set(SettingType)


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        pytest.param(
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05.000Z", id="utc"
        ),
        pytest.param(
            datetime(2024, 7, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
            "2024-06-30T23:30:00.000Z",
            id="bst",
        ),
        pytest.param(datetime(2024, 1, 2, 3, 4, 5, 999999), "2024-01-02T03:04:05.999Z", id="naive"),
    ],
)
def test_instants_are_utc_with_milliseconds(dt: datetime, expected: str):
    assert r.instant(dt) == expected


def test_searchset_bundle_has_absolute_full_urls_modes_and_total():
    """Matches and includes each get an absolute fullUrl and a search mode; total counts matches."""
    vp = visible()
    self_url = f"{BASE}/Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|{NHS}"
    bundle = r.bundle_searchset(
        [(r.flag(vp, BASE), "match"), (r.organization(LA, BASE), "include")],
        total=1,
        self_url=self_url,
        base=BASE,
    )

    validate_resource(bundle)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    assert bundle["link"] == [{"relation": "self", "url": self_url}]
    assert [(e["fullUrl"], e["search"]["mode"]) for e in bundle["entry"]] == [
        (f"{BASE}/Flag/{vp.plan.id}", "match"),
        (f"{BASE}/Organization/LA001", "include"),
    ]
    assert uuid.UUID(bundle["id"]).version == 4


def test_empty_searchset_is_total_zero_without_entries():
    """No record is a valid empty searchset (never 404); FHIR forbids empty arrays."""
    bundle = r.bundle_searchset([], total=0, self_url=f"{BASE}/CareTeam", base=BASE)
    validate_resource(bundle)
    assert bundle["total"] == 0
    assert "entry" not in bundle


def test_searchset_of_care_teams_and_audit_events_validates():
    bundle = r.bundle_searchset(
        [(r.care_team(visible(t), BASE), "match") for t in PlanType]
        + [(r.audit_event(access_event(), BASE), "match")]
        + [(r.practitioner_role(access_event().accessor), "include")],
        total=4,
        self_url=f"{BASE}/CareTeam",
        base=BASE,
    )
    validate_resource(bundle)


@pytest.mark.parametrize(
    "err",
    [
        errors.InvalidSearch("Missing required search parameter 'patient:identifier'"),
        errors.PreconditionFailed("Missing required header 'TraceID'", expression="TraceID"),
        errors.Unauthenticated("Access token expired"),
        errors.Forbidden("Not allowed"),
        errors.NotFound("No such resource"),
        errors.NotAcceptable("Only JSON is served"),
        errors.VersionMismatch("Version does not match"),
        errors.RateLimited("Slow down", retry_after=3),
        errors.Unavailable("Database unreachable"),
        errors.InvalidRequest("start_date must be a date", expression="start_date", status=400),
        errors.MethodNotAllowed("Not here"),
        errors.PayloadTooLarge("Too big"),
        errors.RequestTimeout("Too slow"),
        errors.UnsupportedMediaType("Not JSON"),
        errors.InvalidGrant("Bad ID token"),
        errors.CpisError("Something went wrong"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_operation_outcome_from_each_error(err: errors.CpisError):
    """Every error renders as a UK Core OperationOutcome: a code of UKCore-SpineErrorOrWarningCode
    with that code system's display; valid R4."""
    oo = r.operation_outcome_from(err)

    validate_resource(oo)
    assert uuid.UUID(oo["id"])
    assert err.display == UKCORE_SPINE_CODES[err.code]
    (issue,) = oo["issue"]
    assert issue["severity"] == "error"
    assert issue["code"] == err.issue_code
    assert issue["details"]["coding"] == [
        {
            "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-SpineErrorOrWarningCode",
            "code": err.code,
            "display": err.display,
        }
    ]
    assert issue["diagnostics"] == err.message
    if err.expression:
        assert issue["expression"] == [err.expression]
    else:
        assert "expression" not in issue


# UKCore-SpineErrorOrWarningCode 1.0.0 (NHSDigital/FHIR-R4-UKCORE-STAGING-MAIN,
# codesystems/CodeSystem-UKCore-SpineErrorOrWarningCode.xml): code -> display.
UKCORE_SPINE_CODES = {
    "ACCESS_DENIED": "Access has been denied to process this request",
    "FAILURE_TO_PROCESS_MESSAGE": "Failure to process message",
    "UNABLE_TO_CALL_SERVICE": "Unable to call service",
    "UNSUPPORTED_SERVICE": "Unsupported service",
    "RESOURCE_NOT_FOUND": "Resource not found",
    "INVALID_RESOURCE_ID": "Invalid resource ID",
    "INVALIDATED_RESOURCE": "Invalidated resource",
    "INVALID_SEARCH_DATA": "Invalid search data",
    "TOO_MANY_MATCHES": "Too many matches",
    "PRECONDITION_FAILED": "Precondition failed",
    "RESOURCE_VERSION_MISMATCH": "Resource version mismatch",
    "FORBIDDEN_UPDATE": "Forbidden update",
    "VALIDATION_ERROR": "Validation error",
    "INVALID_UPDATE": "Invalid update",
    "MISSING_VALUE": "Missing value",
    "INVALID_VALUE": "Invalid value",
    "UNSUPPORTED_VALUE": "Unsupported value",
    "TOO_FEW_VALUES_SUBMITTED": "Too few values submitted",
    "TOO_MANY_VALUES_SUBMITTED": "Too many values submitted",
    "ADDITIONAL_PROPERTIES": "Additional properties",
    "POLLING_ID_NOT_FOUND": "Polling ID not found",
    "POLLING_MESSAGE_FAILURE": "Polling message failure",
}


@pytest.mark.parametrize(
    ("err", "status", "issue_code", "code"),
    [
        (errors.InvalidSearch("x"), 400, "invalid", "INVALID_SEARCH_DATA"),
        (errors.PreconditionFailed("x"), 400, "invalid", "PRECONDITION_FAILED"),
        (errors.Forbidden("x"), 403, "forbidden", "ACCESS_DENIED"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_errors_of_the_producer_guide_have_its_status_issue_code_and_code(
    err: errors.CpisError, status: int, issue_code: str, code: str
):
    """The CP-IS producer guide's error table: 400 invalid INVALID_SEARCH_DATA, 400 invalid
    PRECONDITION_FAILED, 403 forbidden ACCESS_DENIED."""
    assert (err.status, err.issue_code, err.code) == (status, issue_code, code)


def test_unauthenticated_is_access_denied_with_issue_code_login():
    oo = r.operation_outcome_from(errors.Unauthenticated("no token"))
    assert oo["issue"][0]["code"] == "login"
    assert oo["issue"][0]["details"]["coding"][0]["code"] == "ACCESS_DENIED"


def test_capability_statement_lists_exactly_what_is_served():
    """CareTeam, Flag, AuditEvent searchable by patient; Organization read-only; JSON; 4.0.1."""
    cs = capability_statement(BASE, software_version="0.1.0", now="2024-06-01T00:00:00Z")

    validate_resource(cs)
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    assert cs["instantiates"] == [
        "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/"
        "backport-subscription-server-r4"
    ]
    assert cs["format"] == ["application/fhir+json", "json"]
    assert cs["implementation"]["url"] == BASE
    (rest,) = cs["rest"]
    served = {res["type"]: res for res in rest["resource"]}
    assert set(served) == {
        "CareTeam",
        "Flag",
        "AuditEvent",
        "PractitionerRole",
        "Organization",
        "Subscription",
    }
    for type_ in ("CareTeam", "Flag", "AuditEvent"):
        assert {i["code"] for i in served[type_]["interaction"]} == {"read", "vread", "search-type"}
        params = {p["name"]: p["type"] for p in served[type_]["searchParam"]}
        assert params["patient"] == "reference"
    assert {p["name"] for p in served["Flag"]["searchParam"]} == {"patient", "status"}
    assert served["Flag"]["searchInclude"] == ["Flag:author"]
    assert served["AuditEvent"]["searchInclude"] == [
        "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED",
        "AuditEvent:agent",
        "AuditEvent:agent:PractitionerRole",
    ]
    assert "searchInclude" not in served["CareTeam"]
    for type_ in ("Organization", "PractitionerRole"):
        assert {i["code"] for i in served[type_]["interaction"]} == {"read", "vread"}
        assert "searchParam" not in served[type_]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "OAuth"
    token = rest["security"]["extension"][0]["extension"][0]["valueUri"]
    assert token == "https://cpis.example.org/oauth2/token"


def test_builders_return_independent_dicts():
    """Mutating one response must not leak into the next (nothing is shared)."""
    first = r.care_team(visible(), BASE)
    first["telecom"][0]["value"] = "changed"
    first["subject"]["identifier"]["value"] = "changed"
    second = r.care_team(visible(), BASE)
    assert second["telecom"][0]["value"] == "01632 960001"
    assert second["subject"]["identifier"]["value"] == NHS


def test_validator_rejects_an_invalid_resource():
    """The shared helper really fails: a Flag without its required code is refused."""
    fl = r.flag(visible(), BASE)
    del fl["code"]
    with pytest.raises(AssertionError, match="code"):
        validate_resource(fl)


def test_validator_checks_resources_nested_in_a_bundle():
    fl = r.flag(visible(), BASE)
    fl["status"] = "bogus"
    bundle = r.bundle_searchset([(fl, "match")], total=1, self_url=f"{BASE}/Flag", base=BASE)
    with pytest.raises(AssertionError, match=r"Bundle\.entry\[0\]\.resource"):
        validate_resource(bundle)


def test_audit_event_with_blank_user_details_is_still_valid():
    """Blank user id, name, role or trace id are left out (FHIR forbids empty strings)."""
    ev = access_event()
    blank = AccessEvent(
        id=ev.id,
        nhs_number=NHS,
        occurred_at=ev.occurred_at,
        accessor=Accessor(
            client_id="ed-system-1",
            org_ods="RXX01",
            org_name="Example General Hospital",
            setting_type=SettingType.OTHER,
            user_id="",
            user_name="",
            user_role="",
            trace_id="",
            practitioner_role_id=VIEWER_ID,
        ),
    )
    ae = r.audit_event(blank, BASE)

    validate_resource(ae)
    viewer = ae["agent"][1]
    assert viewer == {
        "type": viewer["type"],
        "who": {
            "reference": f"PractitionerRole/{blank.accessor.practitioner_role_id}",
            "type": "PractitionerRole",
        },
        "requestor": True,
    }
    assert "detail" not in ae["entity"][0]
    pr = r.practitioner_role(blank.accessor)
    validate_resource(pr)
    assert "practitioner" not in pr and "code" not in pr
