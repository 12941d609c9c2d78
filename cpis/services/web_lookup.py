"""The clinician's lookup page (issue 12, item 4): one NHS number, whether the child
is known, which LA, which number to ring now, the plans and the 25 visits.

It is the FHIR lookup (:func:`cpis.services.lookup.lookup`) with the person
signed in to the page as the viewer: the access event records them, their
CIS2 role and organisation exactly as a user-restricted token's lookup does
(``user_verified``), so LAs are notified and the 25 visits show it alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from cpis import rules
from cpis.model import (
    AccessEvent,
    Accessor,
    AuditEntry,
    LocalAuthority,
    Principal,
    Role,
    VisiblePlan,
)
from cpis.model.web import WebUser
from cpis.ports.clock import Clock
from cpis.ports.database import Database
from cpis.services import lookup
from cpis.services.web_sign_in import WEB_CLIENT_ID, audit_entry


@dataclass(frozen=True, slots=True)
class NumberToRing:
    la: LocalAuthority
    office_hours: bool  # True: ring the office line now; False: the emergency duty team

    @property
    def now(self) -> str:
        return self.la.office_phone if self.office_hours else self.la.edt_phone


@dataclass(frozen=True, slots=True)
class LookupPage:
    plans: tuple[VisiblePlan, ...]
    visits: tuple[AccessEvent, ...]
    ring: tuple[NumberToRing, ...]  # one per owning LA, in the order its plans came
    at: datetime
    notified: tuple[str, ...]


async def clinician_lookup(
    db: Database, clock: Clock, *, user: WebUser, nhs_number: str, trace_id: str, action: str
) -> LookupPage:
    """Look ``nhs_number`` up as ``user``: an unscheduled lookup (recorded, notifying)."""
    org = await lookup.organisation(db, ods_code=user.org_ods)
    accessor = Accessor(
        client_id=WEB_CLIENT_ID,
        org_ods=user.org_ods,
        org_name=org.name if org.name != user.org_ods else user.org_name,
        setting_type=org.setting_type,
        user_id=user.user_id,
        user_name=user.name,
        user_role=user.job_role,
        trace_id=trace_id,
        role_code=user.role_code,
        role_profile_id=user.role_profile_id,
        user_verified=True,
    )
    entry = audit_entry(user, action)
    result = await lookup.lookup(
        db,
        clock,
        nhs_number=nhs_number,
        accessor=accessor,
        unscheduled=True,
        audit=_with(entry, nhs_number, trace_id),
    )
    visits: list[AccessEvent] = []
    if result.plans:
        principal = Principal(client_id=WEB_CLIENT_ID, role=Role.HEALTH, ods_codes=(user.org_ods,))
        visits = await lookup.history(
            db,
            clock,
            nhs_number=nhs_number,
            principal=principal,
            audit=_with(audit_entry(user, f"{action}_visits"), nhs_number, trace_id),
        )
    now = clock.now()
    office = rules.in_office_hours(now)
    ring: dict[str, NumberToRing] = {}
    for vp in result.plans:
        ring.setdefault(vp.la.ods_code, NumberToRing(vp.la, office))
    return LookupPage(
        plans=result.plans,
        visits=tuple(visits),
        ring=tuple(ring.values()),
        at=now,
        notified=result.notified_las,
    )


def _with(entry: AuditEntry, nhs_number: str, trace_id: str) -> AuditEntry:
    return dataclasses.replace(entry, subject=nhs_number, trace_id=trace_id)
