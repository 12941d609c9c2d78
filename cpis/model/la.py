"""What an LA's own staff and systems see and change (issue 12): who is acting, its
inbox a page at a time, a child's record, its uploads and its settings.

Everything here belongs to one LA; the services that hand these out
(:mod:`cpis.services.inbox`, :mod:`cpis.services.children`,
:mod:`cpis.services.upload_history`, :mod:`cpis.services.deliveries`,
:mod:`cpis.services.la_settings`) take the acting :class:`LaActor` and answer
only for its LA.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from cpis.model import AccessEvent, LocalAuthority, Plan
from cpis.model.notifications import (
    ActorKind,
    InboxAttendance,
    InboxNumberChange,
    InboxStatus,
    Subscription,
)


class LaRole(enum.StrEnum):
    """What an LA person may do (issue 12): a caseworker reads the inbox and children
    and acknowledges; a manager also changes the LA's settings."""

    CASEWORKER = "caseworker"
    MANAGER = "manager"


@dataclass(frozen=True, slots=True)
class LaActor:
    """Who is acting for LA ``la_ods``: a signed-in person (``id`` their identity
    provider's subject, with their ``name``), or one of the LA's registered client
    systems (``id`` the client id).

    A system acts as a manager does: the operator registered it for the LA, and
    it may already replace every plan the LA holds.
    """

    la_ods: str
    kind: ActorKind
    id: str
    role: LaRole
    name: str | None = None

    @classmethod
    def system(cls, la_ods: str, client_id: str) -> LaActor:
        return cls(la_ods, "system", client_id, LaRole.MANAGER)

    @classmethod
    def person(cls, la_ods: str, subject: str, *, name: str | None, role: LaRole) -> LaActor:
        return cls(la_ods, "person", subject, role, name)

    @property
    def may_manage(self) -> bool:
        return self.role is LaRole.MANAGER


@dataclass(frozen=True, slots=True)
class InboxCursor:
    """Where a page of the inbox starts: after the child whose newest attendance in
    the filter was notification ``notification_id`` at ``at``."""

    at: datetime
    notification_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class InboxChild:
    """One child in the inbox: its newest attendances in the filter (at most the
    page's per-child limit), how many it has in the filter, and how many visits
    this LA may see from the last 28 days, acknowledged or not (repeat views by
    one person within 24 hours count once, as in the 25 visits)."""

    nhs_number: str
    plan_ids: tuple[str, ...]
    attendances: tuple[InboxAttendance, ...]
    count: int
    recent_visits: int
    cursor: InboxCursor


@dataclass(frozen=True, slots=True)
class InboxPage:
    """A page of the LA's inbox, children newest first; ``next`` is None on the last page.
    NHS number changes are listed with the first page only."""

    status: InboxStatus
    children: tuple[InboxChild, ...]
    next: InboxCursor | None
    number_changes: tuple[InboxNumberChange, ...] = ()


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """A child the LA holds plans for, as its staff see it: the LA's own plans (visible
    to health or not yet deleted), the visits the LA may see (issue 9 item 1), and the
    notifications it was sent (newest first)."""

    nhs_number: str
    la: LocalAuthority
    plans: tuple[ChildPlan, ...]
    visits: tuple[AccessEvent, ...]
    notifications: tuple[InboxAttendance, ...]


@dataclass(frozen=True, slots=True)
class ChildPlan:
    """One of the LA's plans for the child, with what health sees of it today."""

    plan: Plan
    visible: bool
    active: bool
    ends: date | None = None
    """The end the service acts on: the LA's end date, or the child's 18th birthday
    when sooner or when the LA sent none (rules.effective_end); None while open."""


@dataclass(frozen=True, slots=True)
class UploadSummary:
    """One applied upload file: its sequence, when, its file code and how many records
    got each record code."""

    sequence: int
    received_at: datetime
    file_code: str
    records: int
    record_codes: dict[str, int]


@dataclass(frozen=True, slots=True)
class MeshMailbox:
    mailbox: str
    workflow_id: str


@dataclass(frozen=True, slots=True)
class LaSettings:
    """What an LA's settings page shows: its details (the phones clinicians ring, the
    repeat window), its MESH mailbox, and its Subscriptions."""

    la: LocalAuthority
    mesh: MeshMailbox | None
    subscriptions: tuple[Subscription, ...]


@dataclass(frozen=True, slots=True)
class LaDetailsChange:
    """The details a manager asked to change; None leaves a detail as it is. (The LA's
    name, which clinicians read, is the operator's to change: ``cpis la update``.)"""

    office_phone: str | None = None
    edt_phone: str | None = None
    repeat_window_hours: int | None = None
