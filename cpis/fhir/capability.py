"""The CapabilityStatement at ``GET /metadata``: exactly what this server serves (SPEC §4).

It lists the health-facing searches and reads (:mod:`cpis.fhir.resources`,
:mod:`cpis.fhir.search`) and the LA-facing Subscription resource with its
topic (:mod:`cpis.fhir.subscriptions`), so it is built here, above all three,
rather than in any one of them.
"""

from __future__ import annotations

from cpis.fhir.resources import Resource
from cpis.fhir.search import AUDIT_VIEWER_INCLUDES
from cpis.fhir.subscriptions import BACKPORT, capability_resource

OAUTH_URIS_EXTENSION = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
FHIR_VERSION = "4.0.1"


def _search_param(name: str, type_: str, definition: str | None, doc: str) -> Resource:
    param: Resource = {"name": name, "type": type_, "documentation": doc}
    if definition is not None:
        param["definition"] = definition
    return param


_PATIENT_DOC = (
    "Required, exactly once, as patient:identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs number}"
    " (NHS England's consumer guide) or patient=https://fhir.nhs.uk/Id/nhs-number|{nhs number}"
    " (its producer CapabilityStatement's token form); any other value is refused"
)


def capability_statement(base: str, *, software_version: str, now: str) -> Resource:
    """What this server serves, and nothing it does not (SPEC §4)."""
    patient_clinical = _search_param(
        "patient",
        "reference",
        "http://hl7.org/fhir/SearchParameter/clinical-patient",
        _PATIENT_DOC,
    )

    def readable(type_: str) -> Resource:
        return {
            "type": type_,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{type_}",
            "interaction": [{"code": "read"}, {"code": "vread"}],
            "versioning": "versioned",
            "readHistory": False,
        }

    def searchable(type_: str, params: list[Resource]) -> Resource:
        resource = readable(type_)
        resource["interaction"].append({"code": "search-type"})
        resource["searchParam"] = params
        return resource

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
    audit_resource = searchable(
        "AuditEvent",
        [
            _search_param(
                "patient",
                "reference",
                "http://hl7.org/fhir/SearchParameter/clinical-patient",
                _PATIENT_DOC + "; returns the 25 most recent unscheduled accesses, newest first",
            )
        ],
    )
    # Each viewer's PractitionerRole, with NHS's include value or FHIR's own.
    audit_resource["searchInclude"] = list(AUDIT_VIEWER_INCLUDES)

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
        # The Subscriptions Backport IG asks a server to say it is one of its R4 servers.
        "instantiates": [f"{BACKPORT}/CapabilityStatement/backport-subscription-server-r4"],
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
                        "Bearer access tokens from the token endpoint. User-restricted: "
                        "token exchange (RFC 8693) of the user's NHS CIS2 ID token with the "
                        "client's signed JWT assertion, as NHS England's API platform's "
                        "separate authentication and authorisation pattern; the token "
                        "carries the user, their selected role and its organisation. "
                        "Application-restricted: client_credentials with a signed JWT "
                        "client assertion (RFC 7523), the user named in NHSD-End-User-* "
                        "headers."
                    ),
                },
                "resource": [
                    searchable("CareTeam", [dict(patient_clinical)]),
                    flag_resource,
                    audit_resource,
                    readable("PractitionerRole"),
                    readable("Organization"),
                    capability_resource(base),
                ],
            }
        ],
    }
