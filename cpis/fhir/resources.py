"""FHIR R4 resources as plain dicts, shaped like NHS England's CP-IS FHIR API.

Why dicts: these run on every lookup and are serialised with orjson, so building
pydantic models here would cost more than the database round trip. The unit
tests validate every shape against ``fhir.resources`` (R4B) and the official
FHIR R4 JSON schema instead, and ``tests/conformance`` compares them with NHS
England's published examples.

Sources followed (NHSDigital/IOPS-FHIR-Simplifier-Backup, folder
``NHSEnglandProgrammeImplementationGuides/backup/``, commit 53121b8): the
consumer guide's data mapping page (what an ED system reads where), the
producer guide's data mapping and error handling pages, and the examples
``cpis-careteam-bundle-01.json``, ``cpis-auditevent-bundle-01.json``,
``cpis-empty-bundle-01.json`` and ``cpis-opoutcome-01.json``. Where they
disagree the choice is written below and in ``docs/conformance.md``.

Shape decisions (SPEC §4):

- CareTeam is the CP-IS resource: ``category`` carries the plan type SNOMED CT
  code (value set England-ChildProtectionPlan), ``name`` the LA team,
  ``managingOrganization`` the LA, ``subject`` the NHS number as an identifier
  (there is no Patient resource to point at).
- The LA's phones are as NHS sends them and as the consumer data mapping
  reads them: office hours ``use: work`` first, then the emergency duty team
  ``use: mobile`` (the mapping finds the EDT number by ``use = "mobile"``,
  whatever kind of line it is). ``rank`` 1 and 2 say the same order, and a
  CareTeam ``note`` spells both out for a reader who sees only text.
- ``subject.display`` is where NHS's example puts the child's name; this
  service never shows a child's name or birth date to health (SPEC §3), so it
  says only "NHS number 999 123 4567": the element is there for a client that
  shows it, and it tells nothing the identifier does not.
- AuditEvent is NHS's: the iso-21089 access/view lifecycle ``type``, a PAT
  agent (the NHS number), an ASSIGNED agent and ``source.observer`` pointing at
  the viewer's PractitionerRole, which carries the name, job role and
  organisation (included in the search when asked). References to it are
  relative (``PractitionerRole/{id}``), as in NHS's example, so a client that
  matches them to the included entries' ``resourceType/id`` finds them; FHIR
  resolves them against the entry's ``fullUrl`` base either way.
- Flag is the Patient-Flags-style view of the same plan: ``category`` safety,
  ``code`` the plan type, ``author`` the LA Organization.
- Errors are UK Core OperationOutcomes: ``details.coding`` from
  ``UKCore-SpineErrorOrWarningCode`` (NHS's example still shows the older
  ``England-SpineErrorOrWarningCode`` system; the producer guide's profile is
  UK Core's, and the issue asks for it, so UK Core it is).
- Nothing that identifies the child beyond the NHS number is ever rendered:
  no name and no date of birth, whatever the LA supplied.
- Every ``fullUrl`` and link is absolute, built from ``base``
  (``{CPIS_PUBLIC_BASE_URL}/FHIR/R4``), as is every reference except the
  AuditEvent's references to its PractitionerRole (above).

Callers own the returned dicts; nothing is shared between calls, so mutating
one response cannot leak into another.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from cpis.errors import CpisError
from cpis.model import (
    AccessEvent,
    Accessor,
    LocalAuthority,
    PlanType,
    SettingType,
    VisiblePlan,
)

Resource = dict[str, Any]

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED_SYSTEM = "http://snomed.info/sct"
ERROR_CODE_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SpineErrorOrWarningCode"
SDS_ROLE_PROFILE_SYSTEM = "https://fhir.nhs.uk/Id/sds-role-profile-id"
SDS_USER_SYSTEM = "https://fhir.nhs.uk/Id/sds-user-id"
# NHS England's current system for national RBAC job role codes (R8001 ...); it
# replaces UK Core's retired UKCore-SDSJobRoleName.
JOB_ROLE_SYSTEM = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"
ROLE_CLASS_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
LIFECYCLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
PLAN_TYPE_VALUE_SET = "https://fhir.nhs.uk/England/ValueSet/England-ChildProtectionPlan"
FLAG_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-category"

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


def nhs_number_display(nhs_number: str) -> str:
    """The NHS number as people write it (3-3-4), for a ``display`` that is never a name."""
    return f"NHS number {nhs_number[:3]} {nhs_number[3:6]} {nhs_number[6:]}"


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


def _phone(value: str, rank: int, use: str) -> Resource:
    return {"system": "phone", "value": value, "use": use, "rank": rank}


def la_telecom(la: LocalAuthority) -> list[Resource]:
    """Office hours (``use: work``, rank 1), then the emergency duty team (``use: mobile``,
    rank 2): the ``use`` values NHS England's consumer data mapping reads them by.

    A number the LA has not given is left out rather than sent empty (FHIR
    strings may not be empty).
    """
    phones = []
    if la.office_phone:
        phones.append(_phone(la.office_phone, 1, "work"))
    if la.edt_phone:
        phones.append(_phone(la.edt_phone, 2, "mobile"))
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
        "subject": {**_subject(plan.nhs_number), "display": nhs_number_display(plan.nhs_number)},
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


def practitioner_role_id(acc: Accessor) -> str:
    """The viewer's PractitionerRole id, which a stored access event always carries."""
    if acc.practitioner_role_id is None:
        raise ValueError("an accessor has a PractitionerRole id once its access event is stored")
    return str(acc.practitioner_role_id)


def practitioner_role_reference(acc: Accessor) -> Resource:
    """The relative reference NHS's AuditEvent example makes to the viewer's PractitionerRole."""
    ref: Resource = {
        "reference": f"PractitionerRole/{practitioner_role_id(acc)}",
        "type": "PractitionerRole",
    }
    if acc.user_name:
        ref["display"] = acc.user_name
    return ref


def job_role_concept(acc: Accessor) -> Resource | None:
    """The viewer's job role: NHS's national RBAC code where a CIS2 sign-in gave it, else
    the role as words only (what the ED system said in ``NHSD-End-User-Role``).

    The consumer data mapping shows ``PractitionerRole.code.coding.display`` as
    the role, so the words are always in a coding's ``display``.
    """
    if not acc.user_role and not acc.role_code:
        return None
    coding: Resource = {}
    if acc.role_code:
        coding.update(system=JOB_ROLE_SYSTEM, code=acc.role_code)
    if acc.user_role:
        coding["display"] = acc.user_role
    concept: Resource = {"coding": [coding]}
    if acc.user_role:
        concept["text"] = acc.user_role
    return concept


def organisation_display(ods: str, name: str) -> str:
    """ "NAME (ODS)", as NHS's example shows the viewer's organisation."""
    return f"{name} ({ods})" if name and name != ods else ods


def practitioner_role(acc: Accessor) -> Resource:
    """The viewer of an access event: who, in which job role, at which organisation.

    As NHS England's example and consumer data mapping have it:
    ``identifier`` the SDS role profile id where known,
    ``practitioner.display`` the name, ``organization.display`` the
    organisation's name with its ODS code, ``code`` the job role. The
    practitioner also carries the user id (an SDS user id when CIS2 vouched for
    it) and the organisation its ODS code, so a system can match them.
    """
    practitioner: Resource = {}
    if acc.user_verified:
        practitioner["identifier"] = {"system": SDS_USER_SYSTEM, "value": acc.user_id}
    elif acc.user_id:
        practitioner["identifier"] = {"value": acc.user_id}
    if acc.user_name:
        practitioner["display"] = acc.user_name
    resource: Resource = {
        "resourceType": "PractitionerRole",
        "id": practitioner_role_id(acc),
        # A PractitionerRole is derived from what the access events recorded and
        # never changes: a different name, role or place is a different id.
        "meta": {"versionId": "1"},
    }
    if acc.role_profile_id:
        resource["identifier"] = [{"system": SDS_ROLE_PROFILE_SYSTEM, "value": acc.role_profile_id}]
    resource["active"] = True
    if practitioner:
        resource["practitioner"] = practitioner
    resource["organization"] = {
        "identifier": _ods_identifier(acc.org_ods),
        "display": organisation_display(acc.org_ods, acc.org_name),
    }
    role = job_role_concept(acc)
    if role is not None:
        resource["code"] = [role]
    return resource


def audit_event(ev: AccessEvent, base: str) -> Resource:
    """One unscheduled-care access, as NHS England's CP-IS AuditEvent example shapes it.

    ``type`` is the iso-21089 access/view lifecycle event (NHS's example gives
    only the system and display; the code ``access`` is added, as the code
    system defines it). Agents, in NHS's order: the patient (PAT, the NHS
    number) and the viewer (ASSIGNED, the requestor, a reference to their
    PractitionerRole, which ``source.observer`` also names). Then two agents
    NHS does not send, harmless to a client that reads agents by type: the
    setting (PROV: ODS code, name and setting type) and the client system
    (DICOM "Application"). The NHS number is also the ``entity``, whose detail
    carries the request's TraceID so an LA can quote it back to the setting.
    """
    acc = ev.accessor
    recorded = instant(ev.occurred_at)
    setting_display = SETTING_TYPE_DISPLAY[acc.setting_type]
    viewer = practitioner_role_reference(acc)
    # User details come from token claims or headers and may be blank; FHIR
    # forbids empty strings, so blanks are pruned rather than rendered.
    return _pruned(
        {
            "resourceType": "AuditEvent",
            "id": str(ev.id),
            # Access events are never changed once recorded.
            "meta": {"versionId": "1", "lastUpdated": recorded},
            "type": {
                "system": LIFECYCLE_SYSTEM,
                "code": "access",
                "display": "Access/View Record Lifecycle Event",
            },
            "action": "R",
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
                            {"system": ROLE_CLASS_SYSTEM, "code": "PAT", "display": "patient"}
                        ]
                    },
                    "who": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": ev.nhs_number}},
                    "requestor": False,
                },
                {
                    "type": {
                        "coding": [
                            {
                                "system": ROLE_CLASS_SYSTEM,
                                "code": "ASSIGNED",
                                "display": "assigned entity",
                            }
                        ]
                    },
                    "role": [job_role_concept(acc) or {}],
                    "who": viewer,
                    "name": acc.user_name,
                    "requestor": True,
                },
                {
                    "type": {
                        "coding": [
                            {
                                "system": ROLE_CLASS_SYSTEM,
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
                "observer": dict(viewer),
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
    """An error as NHS England's CP-IS API returns it: a UK Core OperationOutcome.

    ``details.coding`` is from ``UKCore-SpineErrorOrWarningCode`` with that
    code system's display. ``status`` is the HTTP status the caller will send;
    an OperationOutcome has no element for it, so it is taken only to keep one
    signature for every error description and is not rendered.
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
    return {"resourceType": "OperationOutcome", "id": str(uuid.uuid4()), "issue": [issue]}


def operation_outcome_from(err: CpisError) -> Resource:
    return operation_outcome(
        err.status, err.code, err.display, err.issue_code, err.message, err.expression
    )
