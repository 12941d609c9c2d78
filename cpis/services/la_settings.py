"""An LA's settings (issue 12): the phone numbers clinicians ring, its repeat window,
its MESH mailbox and its Subscriptions. Any of the LA's people or systems reads
them; only a manager (or the LA's system, :class:`~cpis.model.la.LaActor`)
changes them, and only its own LA's.

The details are checked as the operator's ``cpis la update`` checks them
(:mod:`cpis.la_details`: UK phone numbers, a window of 0 to 672 hours), and a
change may name the version it was made from (``If-Match``), so two managers
editing at once do not silently undo each other. Subscriptions themselves are
made and changed through the FHIR Subscription API; a manager may remove one here.
"""

from __future__ import annotations

import re
import uuid

from cpis.errors import Forbidden, InvalidRequest, LaDetailsError, NotFound, VersionMismatch
from cpis.model import LocalAuthority
from cpis.model.la import LaActor, LaDetailsChange, LaSettings, MeshMailbox
from cpis.ports.database import Database
from cpis.ports.notifications import SubscriptionStore

DEFAULT_WORKFLOW_ID = "CPIS_NOTIFICATION"
# MESH mailbox ids are short upper-case letters and digits (NHS England's own are
# eight or nine, e.g. X26OT001); workflow ids upper-case words joined by "_".
_MAILBOX = re.compile(r"^[A-Z0-9]{3,20}$")
_WORKFLOW = re.compile(r"^[A-Z0-9_]{1,32}$")


def require_manager(actor: LaActor) -> None:
    """Forbidden unless ``actor`` may change the LA's settings."""
    if not actor.may_manage:
        raise Forbidden("only a manager may change the local authority's settings")


async def read(db: Database, subscriptions: SubscriptionStore, *, actor: LaActor) -> LaSettings:
    async with db.transaction() as tx:
        la = await tx.get_la(actor.la_ods)
    if la is None:
        raise NotFound("local authority is not registered")
    return LaSettings(
        la=la,
        mesh=await db.get_la_mesh(actor.la_ods),
        subscriptions=tuple(await subscriptions.search(actor.la_ods)),
    )


async def change_details(
    db: Database, *, actor: LaActor, change: LaDetailsChange, if_match: int | None = None
) -> LocalAuthority:
    """Change the details given; the LA as it now is. 412 if ``if_match`` is stale."""
    require_manager(actor)
    try:
        la = await db.update_la(
            actor.la_ods,
            office_phone=change.office_phone,
            edt_phone=change.edt_phone,
            repeat_window_hours=change.repeat_window_hours,
            expected_version=if_match,
        )
    except LaDetailsError as exc:
        raise InvalidRequest(str(exc), expression=_field(str(exc))) from None
    if la is None:
        async with db.transaction() as tx:
            exists = await tx.get_la(actor.la_ods) is not None
        if exists:
            raise VersionMismatch("the settings have changed since the version in If-Match")
        raise NotFound("local authority is not registered")
    return la


def _field(message: str) -> str | None:
    """The request field a :class:`LaDetailsError` message is about."""
    for prefix, name in (
        ("office-hours phone", "office_phone"),
        ("emergency duty team phone", "edt_phone"),
        ("repeat window", "repeat_window_hours"),
    ):
        if message.startswith(prefix):
            return name
    return None


def checked_mesh(mailbox: str, workflow_id: str | None = None) -> MeshMailbox:
    """A MESH mailbox as it would be kept, or InvalidRequest naming the field (check it
    before changing anything else, so a bad one changes nothing)."""
    mailbox = mailbox.strip().upper()
    if not _MAILBOX.fullmatch(mailbox):
        raise InvalidRequest(
            "mesh_mailbox must be 3 to 20 letters and digits", expression="mesh_mailbox"
        )
    workflow = (workflow_id or DEFAULT_WORKFLOW_ID).strip().upper()
    if not _WORKFLOW.fullmatch(workflow):
        raise InvalidRequest(
            "mesh_workflow_id must be 1 to 32 letters, digits and _",
            expression="mesh_workflow_id",
        )
    return MeshMailbox(mailbox, workflow)


async def set_mesh(db: Database, *, actor: LaActor, mesh: MeshMailbox | None) -> None:
    """Send the LA's notifications to MESH mailbox ``mesh`` too (from
    :func:`checked_mesh`), or (None) stop."""
    require_manager(actor)
    if mesh is None:
        await db.clear_la_mesh(actor.la_ods)
    else:
        checked = checked_mesh(mesh.mailbox, mesh.workflow_id)
        await db.set_la_mesh(actor.la_ods, checked.mailbox, checked.workflow_id)


async def remove_subscription(
    subscriptions: SubscriptionStore, *, actor: LaActor, subscription_id: uuid.UUID
) -> None:
    """Remove one of the LA's Subscriptions (its notifications stay in the inbox)."""
    require_manager(actor)
    if not await subscriptions.delete(actor.la_ods, subscription_id, if_match=None):
        raise NotFound("no such subscription")
