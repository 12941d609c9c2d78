"""An ED system's CP-IS client, written only from NHS England's CP-IS FHIR API consumer guide.

Nothing here knows this service: it imports nothing from ``cpis``. It does
what the guide (``Child-Protection---Information-Sharing--CP-IS--API-Consumer-Impl``
in ``NHSDigital/IOPS-FHIR-Simplifier-Backup``) tells a consumer to do:

- Authentication page: user-present access uses the NHS England API
  platform's "NHS CIS2 separate authentication and authorisation" pattern,
  so the system exchanges its signed-in user's CIS2 ID token, with its own
  signed JWT client assertion, for an access token (RFC 8693).
- Headers page and Interactions page: every call sends ``Authorization:
  Bearer``, ``TraceID`` (a UUID) and ``IsUnscheduledAccessEvent``, and
  nothing about the user; ``GET /CareTeam?patient:identifier=
  https://fhir.nhs.uk/Id/nhs-number|[nhs-number]`` and ``GET /AuditEvent?
  patient:identifier=...&_include=AuditEvent:entity-type=
  http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED``.
- Data mapping page: type of plan ``CareTeam.category``, start and end
  ``CareTeam.period``, responsible LA ``CareTeam.name``, emergency duty
  number ``CareTeam.telecom.value where use = "mobile"``, office hours
  number ``... where use = "work"``; previously viewed by: date and time
  ``AuditEvent.recorded``, viewer's name ``PractitionerRole.practitioner.display``,
  role ``PractitionerRole.code.coding.display``, organisation
  ``PractitionerRole.organization.display``.
- Error handling page: an unsuccessful call returns an OperationOutcome; the
  error is ``issue.details.coding.code`` (INVALID_SEARCH_DATA,
  PRECONDITION_FAILED, ACCESS_DENIED).

The AuditEvent's viewer is found as the example bundle does it: the ASSIGNED
agent's ``who.reference`` ("PractitionerRole/{id}") matched to the included
entry of that type and id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
VIEWER_INCLUDE = (
    "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED"
)


class CpisError(Exception):
    def __init__(self, status: int, code: str, issue_type: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.issue_type = issue_type


@dataclass(frozen=True)
class ChildProtectionPlan:
    plan_type: str
    start: str
    end: str | None
    local_authority: str
    office_hours_phone: str | None
    emergency_duty_phone: str | None


@dataclass(frozen=True)
class PreviousView:
    when: str
    viewer_name: str | None
    role: str | None
    organisation: str | None


class CpisConsumer:
    def __init__(self, http: aiohttp.ClientSession, fhir_base: str, token_url: str) -> None:
        self._http = http
        self._base = fhir_base.rstrip("/")
        self._token_url = token_url
        self._token: str | None = None

    async def sign_in(self, *, client_assertion: str, cis2_id_token: str) -> None:
        """Exchange the user's CIS2 ID token for a user-restricted access token."""
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "subject_token": cis2_id_token,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion,
        }
        async with self._http.post(self._token_url, data=form) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise CpisError(resp.status, body.get("error", "?"), "login")
        self._token = body["access_token"]

    def _headers(self, unscheduled: bool) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "TraceID": str(uuid.uuid4()),
            "IsUnscheduledAccessEvent": "true" if unscheduled else "false",
        }

    async def _search(self, path: str, params: dict[str, str], unscheduled: bool) -> Any:
        async with self._http.get(
            f"{self._base}/{path}", params=params, headers=self._headers(unscheduled)
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                issue = body["issue"][0]
                raise CpisError(resp.status, issue["details"]["coding"][0]["code"], issue["code"])
            return body

    async def child_protection(
        self, nhs_number: str, *, unscheduled: bool = True
    ) -> list[ChildProtectionPlan]:
        bundle = await self._search(
            "CareTeam",
            {"patient:identifier": f"{NHS_NUMBER_SYSTEM}|{nhs_number}"},
            unscheduled,
        )
        plans = []
        for entry in bundle.get("entry", []):
            team = entry["resource"]
            if team["resourceType"] != "CareTeam":
                continue
            phones = team.get("telecom", [])
            plans.append(
                ChildProtectionPlan(
                    plan_type=team["category"][0]["coding"][0]["display"],
                    start=team["period"]["start"],
                    end=team["period"].get("end"),
                    local_authority=team["name"],
                    office_hours_phone=_phone(phones, "work"),
                    emergency_duty_phone=_phone(phones, "mobile"),
                )
            )
        return plans

    async def previously_viewed_by(self, nhs_number: str) -> list[PreviousView]:
        bundle = await self._search(
            "AuditEvent",
            {
                "patient:identifier": f"{NHS_NUMBER_SYSTEM}|{nhs_number}",
                "_include": VIEWER_INCLUDE,
            },
            True,
        )
        included = {
            f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
            for e in bundle.get("entry", [])
            if e["search"]["mode"] == "include"
        }
        views = []
        for entry in bundle.get("entry", []):
            if entry["search"]["mode"] != "match":
                continue
            event = entry["resource"]
            viewer = None
            for agent in event["agent"]:
                codes = [c["code"] for c in agent["type"]["coding"]]
                if "ASSIGNED" in codes:
                    viewer = included.get(agent["who"].get("reference", ""))
            views.append(
                PreviousView(
                    when=event["recorded"],
                    viewer_name=(viewer or {}).get("practitioner", {}).get("display"),
                    role=_first_display(viewer),
                    organisation=(viewer or {}).get("organization", {}).get("display"),
                )
            )
        return views


def _phone(telecom: list[dict[str, Any]], use: str) -> str | None:
    values = [t["value"] for t in telecom if t.get("use") == use]
    return values[0] if values else None


def _first_display(role: dict[str, Any] | None) -> str | None:
    for concept in (role or {}).get("code", []):
        for coding in concept.get("coding", []):
            if coding.get("display"):
                return str(coding["display"])
    return None
