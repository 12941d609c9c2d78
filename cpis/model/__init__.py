"""The domain's values: plain frozen dataclasses and enums, no I/O.

This package is the bottom layer: it imports only the standard library, and
every other layer (rules, matching, ports, services, the edges) speaks in its
values. The core is here: plans and their LAs, clients and principals, access
events, the security audit line and what a retention purge deleted. Each other
aggregate has a module:

- :mod:`cpis.model.persons`: what a person index holds (``IndexPerson``), a
  trace query, an NHS number it no longer uses, a person index file's rows,
  and what a load of the index or the daily index check did;
- :mod:`cpis.model.uploads`: a parsed upload file, its records' outcomes and
  its acknowledgement (CPF/CPR codes), a MESH message it arrived in;
- :mod:`cpis.model.notifications`: LA subscriptions, the outbox's deliveries
  and numbered events, and what an LA's inbox lists;
- :mod:`cpis.model.tracing`: a trace file's records and the review of them;
- :mod:`cpis.model.la`: who acts for an LA, and what its staff see of its inbox,
  children, uploads and settings.

Personal data (NHS numbers, names, dates of birth) lives only in these values
while a request is being served; adapters encrypt it at rest and the log
processors never see it.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeAlias

# A JSON value, for the few documents the domain carries as JSON (an audit
# line's detail, a client's JWKS): what orjson writes, and nothing else.
JsonValue: TypeAlias = (
    str | int | float | bool | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)


class PlanType(enum.StrEnum):
    CPP = "CPP"
    LAC = "LAC"
    UCPP = "UCPP"

    @property
    def snomed_code(self) -> str:
        return _SNOMED[self][0]

    @property
    def display(self) -> str:
        return _SNOMED[self][1]


_SNOMED: dict[PlanType, tuple[str, str]] = {
    PlanType.CPP: ("342191000000101", "Subject to child protection plan"),
    PlanType.LAC: ("764841000000100", "Looked after child"),
    PlanType.UCPP: ("818901000000100", "Unborn child subject to child protection plan"),
}


class Role(enum.StrEnum):
    HEALTH = "health"
    LA = "la"
    ADMIN = "admin"


class SettingType(enum.StrEnum):
    """Where an unscheduled-care lookup happened (SPEC §3)."""

    ED = "ED"
    UTC = "UTC"
    MIU = "MIU"
    WIC = "WIC"
    OOH = "OOH"
    AMBULANCE = "ambulance"
    MATERNITY = "maternity"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class LocalAuthority:
    ods_code: str
    name: str
    office_phone: str
    edt_phone: str
    # Repeat views of one child by one user at one setting within this many
    # hours make no second notification (alert fatigue, SPEC §3). No default
    # here: an LA registered without one gets cpis.rules.DEFAULT_NOTIFY_REPEAT_HOURS.
    repeat_window_hours: int
    version: int = 1
    updated_at: datetime | None = None

    @property
    def team_name(self) -> str:
        return f"{self.name} Children's Social Care"


@dataclass(frozen=True, slots=True)
class Organisation:
    """An unscheduled-care organisation that makes lookups."""

    ods_code: str
    name: str
    setting_type: SettingType = SettingType.OTHER


@dataclass(frozen=True, slots=True)
class PlanFields:
    """What an LA sends for one plan (SPEC §5 body fields), already validated."""

    nhs_number: str
    plan_type: PlanType
    start_date: date
    end_date: date | None = None
    delete_date: date | None = None
    birth_date: date | None = None
    family_name: str | None = None
    given_name: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """One stored version of an LA's plan for a subject."""

    id: uuid.UUID
    la_ods: str
    la_plan_id: str
    fields: PlanFields
    version: int
    updated_at: datetime

    @property
    def nhs_number(self) -> str:
        return self.fields.nhs_number

    @property
    def plan_type(self) -> PlanType:
        return self.fields.plan_type


@dataclass(frozen=True, slots=True)
class VisiblePlan:
    """A plan as health sees it: the plan, its owning LA and its effective end."""

    plan: Plan
    la: LocalAuthority
    effective_end: date | None
    active: bool


@dataclass(frozen=True, slots=True)
class Client:
    """A registered system (ED, LA or admin tool) and what it may do."""

    id: str
    role: Role
    ods_codes: tuple[str, ...]
    jwks: dict[str, object] = field(default_factory=dict, compare=False)
    # A client whose users only ever read without being at the bedside
    # (safeguarding reviews, audits): its lookups never notify.
    silent_only: bool = False
    active: bool = True
    # The client id its users' NHS CIS2 ID tokens are issued to (their ``aud``):
    # set for a health client whose users sign in with CIS2 and whose tokens it
    # exchanges for user-restricted access tokens.
    cis2_client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Why the operator's change to what is registered (an LA, a client) was not made:
    one line for the operator, never personal data."""

    reason: str


@dataclass(frozen=True, slots=True)
class Viewer:
    """A person whose identity provider vouched for them (an NHS CIS2 ID token).

    ``role_profile_id`` is the role they selected when signing in (CIS2's
    ``selected_roleid``: an SDS role profile id, tied to one organisation);
    ``role_code`` and ``role_name`` its national RBAC job role ("R8001",
    "Nurse Access Role") where the identity provider said; ``org_ods`` the
    organisation that role is held at.
    """

    user_id: str
    name: str
    org_ods: str
    org_name: str | None = None
    role_profile_id: str | None = None
    role_code: str | None = None
    role_name: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making this request, from a verified access token.

    ``viewer`` is set for a user-restricted token (the client exchanged a
    person's ID token for it): the person, role and organisation come from
    there and nowhere else. Without it the client is application-restricted
    and says who its user is in the ``NHSD-End-User-*`` headers.
    """

    client_id: str
    role: Role
    ods_codes: tuple[str, ...]
    silent_only: bool = False
    viewer: Viewer | None = None


@dataclass(frozen=True, slots=True)
class Accessor:
    """The person, place and system behind one lookup (SPEC §3 access event).

    ``user_role`` is the job role as words ("Staff Nurse"); ``role_code`` its
    national RBAC code and ``role_profile_id`` the SDS role profile, when a
    verified identity (``user_verified``, from a CIS2 ID token) supplied them.
    Header-asserted users have neither.

    ``practitioner_role_id`` names this person in this role at this place as
    a FHIR PractitionerRole: one id per person, role and organisation,
    whatever the client system or trace id. It is a keyed hash, so the storage
    adapter gives it when it records the access event and reads it back with
    the event; an accessor that has not been stored yet has none.
    """

    client_id: str
    org_ods: str
    org_name: str
    setting_type: SettingType
    user_id: str
    user_name: str
    user_role: str
    trace_id: str
    role_code: str | None = None
    role_profile_id: str | None = None
    user_verified: bool = False
    practitioner_role_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class AccessEvent:
    id: uuid.UUID
    nhs_number: str
    occurred_at: datetime
    accessor: Accessor
    la_codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LookupResult:
    plans: tuple[VisiblePlan, ...]
    access_event: AccessEvent | None
    notified_las: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredAccessEvent:
    """An access event as stored: ``repeat`` when the same user viewed the subject at
    the same setting within the repeat window (shown once in the 25 visits)."""

    event: AccessEvent
    repeat: bool


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the security audit log: who, what, when, outcome (SPEC §3, §6).

    ``subject`` is the NHS number looked up, if any: the adapter stores only
    its keyed hash, so the log can be joined to a subject without revealing one.
    ``detail`` is a small JSON object of counts and codes, never personal data.
    """

    action: str
    outcome: int
    client_id: str | None = None
    role: str | None = None
    org_ods: str | None = None
    user_id: str | None = None
    resource: str | None = None
    subject: str | None = None
    trace_id: str | None = None
    detail: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What one retention purge deleted for good (SPEC §3 retention)."""

    plans: int
    access_events: int
    notifications: int
