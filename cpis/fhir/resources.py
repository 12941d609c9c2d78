"""FHIR R4 resources as plain dicts, shaped like NHS England's CP-IS FHIR API.

Why dicts: these run on every lookup and are serialised with orjson, so building
pydantic models here would cost more than the database round trip. The unit
tests validate every shape against ``fhir.resources`` (R4B) and the official
FHIR R4 JSON schema instead.

Shape decisions (SPEC §4; NHS England CP-IS consumer/producer guides):

- CareTeam is the CP-IS resource: ``category`` carries the plan type SNOMED CT
  code (value set England-ChildProtectionPlan), ``name`` the LA team,
  ``managingOrganization`` the LA, ``subject`` the NHS number as an identifier
  (there is no Patient resource to point at).
- The LA's two phone numbers are two ``ContactPoint``s, both ``use: work``:
  rank 1 is office hours, rank 2 the out-of-hours emergency duty team (EDT).
  Each carries the HL7 ``contactpoint-purpose`` extension with a plain-text
  label, and a CareTeam ``note`` says the same in words, so a clinician can
  tell them apart even on a system that ignores extensions.
- Flag is the Patient-Flags-style view of the same plan: ``category`` safety,
  ``code`` the plan type, ``author`` the LA Organization.
- Nothing that identifies the child beyond the NHS number is ever rendered:
  no name and no date of birth, whatever the LA supplied.
- Every reference and ``fullUrl`` is absolute, built from ``base``
  (``{CPIS_PUBLIC_BASE_URL}/FHIR/R4``).

Callers own the returned dicts; nothing is shared between calls, so mutating
one response cannot leak into another.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from cpis.errors import CpisError
from cpis.model import AccessEvent, LocalAuthority, PlanType, SettingType, VisiblePlan

Resource = dict[str, Any]

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED_SYSTEM = "http://snomed.info/sct"
ERROR_CODE_SYSTEM = "https://fhir.nhs.uk/CodeSystem/NHSD-API-ErrorOrWarningCode"
PLAN_TYPE_VALUE_SET = "https://fhir.nhs.uk/England/ValueSet/England-ChildProtectionPlan"
FLAG_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-category"
CONTACT_PURPOSE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/contactpoint-purpose"
OAUTH_URIS_EXTENSION = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
FHIR_VERSION = "4.0.1"

OFFICE_HOURS_LABEL = "Office hours"
EDT_LABEL = "Out of hours (emergency duty team)"

SETTING_TYPE_DISPLAY: dict[SettingType, str] = {
    SettingType.ED: "Emergency department",
    SettingType.UTC: "Urgent treatment centre",
    SettingType.MIU: "Minor injuries unit",
    SettingType.WIC: "Walk-in centre",
    SettingType.OOH: "Out-of-hours service",
    SettingType.AMBULANCE: "Ambulance service",
    SettingType.MATERNITY: "Maternity unit",
    SettingType.OTHER: "Other unscheduled care setting",
}


# --- small shared pieces ------------------------------------------------------


def instant(dt: datetime) -> str:
    """A FHIR ``instant``: UTC, millisecond precision, ``Z`` suffix.

    A naive datetime is taken to be UTC already (the clock port hands out aware
    UTC times; this only guards against a test or adapter that forgot).
    """
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _period(start: date, end: date | None) -> Resource:
    period: Resource = {"start": start.isoformat()}
    if end is not None:
        period["end"] = end.isoformat()
    return period


def _meta(version: int, updated: datetime | None) -> Resource:
    meta: Resource = {"versionId": str(version)}
    if updated is not None:
        meta["lastUpdated"] = instant(updated)
    return meta


def _plan_type_concept(plan_type: PlanType) -> Resource:
    return {
        "coding": [
            {"system": SNOMED_SYSTEM, "code": plan_type.snomed_code, "display": plan_type.display}
        ],
        "text": plan_type.display,
    }


def _subject(nhs_number: str) -> Resource:
    # By identifier only: this service holds no Patient resource to reference.
    return {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs_number}}


def _ods_identifier(ods: str) -> Resource:
    return {"system": ODS_SYSTEM, "value": ods}


def organization_reference(la: LocalAuthority, base: str) -> Resource:
    """An absolute reference to the LA's Organization, with its ODS code and name."""
    return {
        "reference": f"{base}/Organization/{la.ods_code}",
        "type": "Organization",
        "identifier": _ods_identifier(la.ods_code),
        "display": la.name,
    }


def plan_identifier_system(base: str, la_ods: str) -> str:
    """The identifier system for one LA's own plan ids (unique only within that LA)."""
    return f"{base}/la/{la_ods}/plan-id"


def _phone(value: str, rank: int, label: str) -> Resource:
    return {
        "extension": [{"url": CONTACT_PURPOSE_EXTENSION, "valueCodeableConcept": {"text": label}}],
        "system": "phone",
        "value": value,
        "use": "work",
        "rank": rank,
    }


def la_telecom(la: LocalAuthority) -> list[Resource]:
    """Office hours first (rank 1), then the emergency duty team (rank 2).

    A number the LA has not given is left out rather than sent empty (FHIR
    strings may not be empty).
    """
    phones = []
    if la.office_phone:
        phones.append(_phone(la.office_phone, 1, OFFICE_HOURS_LABEL))
    if la.edt_phone:
        phones.append(_phone(la.edt_phone, 2, EDT_LABEL))
    return phones


def _phone_note(la: LocalAuthority) -> str:
    parts = []
    if la.office_phone:
        parts.append(f"{OFFICE_HOURS_LABEL}: {la.office_phone}.")
    if la.edt_phone:
        parts.append(f"{EDT_LABEL}: {la.edt_phone}.")
    return " ".join(parts)


# --- resources ----------------------------------------------------------------


def care_team(vp: VisiblePlan, base: str) -> Resource:
    """One CareTeam per visible plan, as the CP-IS FHIR API returns it."""
    plan, la = vp.plan, vp.la
    resource: Resource = {
        "resourceType": "CareTeam",
        "id": str(plan.id),
        "meta": _meta(plan.version, plan.updated_at),
        "identifier": [
            {"system": plan_identifier_system(base, plan.la_ods), "value": plan.la_plan_id}
        ],
        "status": "active" if vp.active else "inactive",
        "category": [_plan_type_concept(plan.plan_type)],
        "name": la.team_name,
        "subject": _subject(plan.nhs_number),
        "period": _period(plan.fields.start_date, vp.effective_end),
        "managingOrganization": [organization_reference(la, base)],
    }
    telecom = la_telecom(la)
    if telecom:
        resource["telecom"] = telecom
        resource["note"] = [{"text": _phone_note(la)}]
    return resource


def flag(vp: VisiblePlan, base: str) -> Resource:
    """One safety Flag per visible plan; ``author`` is the owning LA."""
    plan, la = vp.plan, vp.la
    return {
        "resourceType": "Flag",
        "id": str(plan.id),
        "meta": _meta(plan.version, plan.updated_at),
        "identifier": [
            {"system": plan_identifier_system(base, plan.la_ods), "value": plan.la_plan_id}
        ],
        "status": "active" if vp.active else "inactive",
        "category": [
            {"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": "safety", "display": "Safety"}]}
        ],
        "code": _plan_type_concept(plan.plan_type),
        "subject": _subject(plan.nhs_number),
        "period": _period(plan.fields.start_date, vp.effective_end),
        "author": organization_reference(la, base),
    }


def organization(la: LocalAuthority, base: str) -> Resource:
    """The LA as an Organization; its id is its ODS code."""
    resource: Resource = {
        "resourceType": "Organization",
        "id": la.ods_code,
        "meta": _meta(la.version, la.updated_at),
        "identifier": [_ods_identifier(la.ods_code)],
        "active": True,
        "type": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                        "code": "govt",
                        "display": "Government",
                    }
                ]
            }
        ],
        "name": la.name,
        "alias": [la.team_name],
    }
    telecom = la_telecom(la)
    if telecom:
        resource["telecom"] = telecom
    return resource


def setting_type_system(base: str) -> str:
    """Where this service's setting-type codes (SPEC §3) are defined."""
    return f"{base}/CodeSystem/setting-type"


def client_id_system(base: str) -> str:
    """Client ids are issued by this service, so they are namespaced under it."""
    return f"{base}/Id/client-id"


def _setting_reference(ods: str, name: str) -> Resource:
    return {"identifier": _ods_identifier(ods), "display": name}


def audit_event(ev: AccessEvent, base: str) -> Resource:
    """One unscheduled-care access: who looked, where, when, at whom.

    Agents: the user (requestor, with their role as text), the organisation
    (ODS code and name; its setting type as the agent role), and the client
    system. The subject is the NHS number in ``entity.what.identifier``; the
    request's trace id travels in that entity's ``detail`` so an LA can quote it
    back to the setting.
    """
    acc = ev.accessor
    recorded = instant(ev.occurred_at)
    setting_display = SETTING_TYPE_DISPLAY[acc.setting_type]
    # User details come from token claims or headers and may be blank; FHIR
    # forbids empty strings, so blanks are pruned rather than rendered.
    return _pruned(
        {
            "resourceType": "AuditEvent",
            "id": str(ev.id),
            # Access events are never changed once recorded.
            "meta": {"versionId": "1", "lastUpdated": recorded},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "code": "rest",
                "display": "RESTful Operation",
            },
            "subtype": [
                {
                    "system": "http://hl7.org/fhir/restful-interaction",
                    "code": "search-type",
                    "display": "search type",
                }
            ],
            # FHIR's AuditEvent guidance records a search as Execute.
            "action": "E",
            "recorded": recorded,
            "outcome": "0",
            "purposeOfEvent": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                            "code": "TREAT",
                            "display": "treatment",
                        }
                    ]
                }
            ],
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                                "code": "humanuser",
                                "display": "human user",
                            }
                        ]
                    },
                    "role": [{"text": acc.user_role}],
                    "who": {"identifier": {"value": acc.user_id}, "display": acc.user_name},
                    "name": acc.user_name,
                    "requestor": True,
                },
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                                "code": "PROV",
                                "display": "healthcare provider",
                            }
                        ]
                    },
                    "role": [
                        {
                            "coding": [
                                {
                                    "system": setting_type_system(base),
                                    "code": acc.setting_type.value,
                                    "display": setting_display,
                                }
                            ],
                            "text": setting_display,
                        }
                    ],
                    "who": _setting_reference(acc.org_ods, acc.org_name),
                    "name": acc.org_name,
                    "requestor": False,
                },
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://dicom.nema.org/resources/ontology/DCM",
                                "code": "110150",
                                "display": "Application",
                            }
                        ]
                    },
                    "who": {
                        "identifier": {"system": client_id_system(base), "value": acc.client_id}
                    },
                    "requestor": False,
                },
            ],
            "source": {
                "site": acc.org_name,
                "observer": _setting_reference(acc.org_ods, acc.org_name),
            },
            "entity": [
                {
                    "what": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": ev.nhs_number}},
                    "type": {
                        "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                        "code": "1",
                        "display": "Person",
                    },
                    "role": {
                        "system": "http://terminology.hl7.org/CodeSystem/object-role",
                        "code": "1",
                        "display": "Patient",
                    },
                    # A detail needs a value, so no trace id means no detail at all.
                    "detail": (
                        [{"type": "TraceID", "valueString": acc.trace_id}] if acc.trace_id else []
                    ),
                }
            ],
        }
    )


def _pruned(node: Resource) -> Resource:
    """``node`` without empty strings, objects or arrays (FHIR JSON allows none of them)."""
    out: Resource = {}
    for key, value in node.items():
        if isinstance(value, dict):
            value = _pruned(value)
        elif isinstance(value, list):
            value = [_pruned(v) if isinstance(v, dict) else v for v in value]
            value = [v for v in value if v != {} and v != ""]
        if value != "" and value != {} and value != []:
            out[key] = value
    return out


def bundle_searchset(
    entries: list[tuple[Resource, str]], total: int, self_url: str, base: str
) -> Resource:
    """A searchset Bundle; each entry is ``(resource, "match" | "include")``.

    ``total`` counts matches only (includes are extra), as FHIR search says.
    ``self_url`` must already be absolute.
    """
    bundle: Resource = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(datetime.now(UTC))},
        "type": "searchset",
        "total": total,
        "link": [{"relation": "self", "url": self_url}],
    }
    if entries:
        bundle["entry"] = [
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": mode},
            }
            for resource, mode in entries
        ]
    return bundle


def operation_outcome(
    status: int,
    code: str,
    display: str,
    issue_code: str,
    diagnostics: str,
    expression: str | None = None,
) -> Resource:
    """An error as NHS England APIs return it.

    ``status`` is the HTTP status the caller will send; an OperationOutcome has
    no element for it, so it is taken only to keep one signature for every
    error description and is not rendered.
    """
    del status
    issue: Resource = {
        "severity": "error",
        "code": issue_code,
        "details": {"coding": [{"system": ERROR_CODE_SYSTEM, "code": code, "display": display}]},
        "diagnostics": diagnostics,
    }
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def operation_outcome_from(err: CpisError) -> Resource:
    return operation_outcome(
        err.status, err.code, err.display, err.issue_code, err.message, err.expression
    )


def _search_param(name: str, type_: str, definition: str | None, doc: str) -> Resource:
    param: Resource = {"name": name, "type": type_, "documentation": doc}
    if definition is not None:
        param["definition"] = definition
    return param


_PATIENT_DOC = (
    "Required, exactly once, as patient:identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs number}"
)


def capability_statement(base: str, *, software_version: str, now: str) -> Resource:
    """What this server serves, and nothing it does not (SPEC §4)."""
    # Imported here: cpis.fhir.subscriptions builds on this module's helpers.
    from cpis.fhir.subscriptions import capability_resource

    patient_clinical = _search_param(
        "patient",
        "reference",
        "http://hl7.org/fhir/SearchParameter/clinical-patient",
        _PATIENT_DOC,
    )
    read_interactions = [{"code": "read"}, {"code": "vread"}]
    search_interactions = [*read_interactions, {"code": "search-type"}]

    def searchable(type_: str, params: list[Resource]) -> Resource:
        return {
            "type": type_,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{type_}",
            "interaction": [dict(i) for i in search_interactions],
            "versioning": "versioned",
            "readHistory": False,
            "searchParam": params,
        }

    flag_resource = searchable(
        "Flag",
        [
            dict(patient_clinical),
            _search_param(
                "status",
                "token",
                None,
                "active | inactive | entered-in-error; at most once. Without it every "
                "visible flag is returned, active or not.",
            ),
        ],
    )
    flag_resource["searchInclude"] = ["Flag:author"]

    root = base.removesuffix("/FHIR/R4")
    return {
        "resourceType": "CapabilityStatement",
        "url": f"{base}/metadata",
        "version": software_version,
        "name": "CPIS",
        "title": "CP-IS child protection alert exchange",
        "status": "active",
        "experimental": False,
        "date": now,
        "publisher": "CP-IS open-source service",
        "description": (
            "Child protection and looked-after-child plans for unscheduled care, "
            "searched by NHS number, with the access history shown to health and to "
            "the owning local authorities."
        ),
        "kind": "instance",
        "software": {"name": "cpis", "version": software_version},
        "implementation": {"description": "CP-IS FHIR R4 API", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "extension": [
                        {
                            "url": OAUTH_URIS_EXTENSION,
                            "extension": [{"url": "token", "valueUri": f"{root}/oauth2/token"}],
                        }
                    ],
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "OAuth",
                                    "display": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": (
                        "Bearer access tokens from the token endpoint, obtained with "
                        "client_credentials and a signed JWT client assertion (RFC 7523)."
                    ),
                },
                "resource": [
                    searchable("CareTeam", [dict(patient_clinical)]),
                    flag_resource,
                    searchable(
                        "AuditEvent",
                        [
                            _search_param(
                                "patient",
                                "reference",
                                "http://hl7.org/fhir/SearchParameter/AuditEvent-patient",
                                _PATIENT_DOC
                                + "; returns the 25 most recent unscheduled accesses, newest first",
                            )
                        ],
                    ),
                    {
                        "type": "Organization",
                        "profile": "http://hl7.org/fhir/StructureDefinition/Organization",
                        "interaction": [dict(i) for i in read_interactions],
                        "versioning": "versioned",
                        "readHistory": False,
                    },
                    capability_resource(base),
                ],
            }
        ],
    }
