"""A child as its LA's staff and systems see it (issue 12): found by NHS number among
the LA's own children only, with the LA's plans, the visits it may see, and the
notifications it was sent.

"Its own" means the LA holds a plan for that NHS number (visible to health or
not, until retention deletes it). For any other number the answer is the same
as for a number no one knows: :func:`child` raises
:class:`~cpis.errors.NotFound` and :func:`plans` finds nothing, so no LA learns
whether another LA knows a child.

The visits are the 25 visits limited as issue 9 item 1 says: only those
recorded while this LA held a visible plan for the child (those it was told of,
or would have been but for its repeat window). A plan added today, or one that
starts in the future, shows nothing from before.
"""

from __future__ import annotations

import dataclasses

from cpis import rules
from cpis.errors import NotFound
from cpis.model import AuditEntry
from cpis.model.la import ChildPlan, ChildRecord, LaActor
from cpis.ports.clock import Clock
from cpis.ports.database import Database, Transaction
from cpis.ports.notifications import InboxStore

NOTIFICATIONS_SHOWN = 100
"""A child's page lists at most this many of the notifications sent about it, newest
first (a child seen every week for two years has about a hundred)."""


async def _own_plans(
    tx: Transaction, clock: Clock, la_ods: str, nhs_number: str
) -> list[ChildPlan]:
    today = clock.today()
    return [
        ChildPlan(
            plan=p,
            visible=rules.is_visible(p.fields, today),
            active=rules.is_active(p.fields, today),
            ends=rules.effective_end(p.fields),
        )
        for p, _la in await tx.visible_plan_rows(nhs_number)
        if p.la_ods == la_ods
    ]


async def plans(db: Database, clock: Clock, *, actor: LaActor, nhs_number: str) -> list[ChildPlan]:
    """The actor's LA's plans for ``nhs_number`` (none for a child it does not hold)."""
    async with db.transaction() as tx:
        return await _own_plans(tx, clock, actor.la_ods, nhs_number)


async def child(
    db: Database,
    inbox: InboxStore,
    clock: Clock,
    *,
    actor: LaActor,
    nhs_number: str,
    audit: AuditEntry | None = None,
) -> ChildRecord:
    """The child's record for the actor's LA, or NotFound when the LA holds no plan for it.

    ``audit``, when given, is written in the same transaction as the read of a child
    that is found, with the child (as its keyed hash) and what was shown, so the
    security log says whose record was opened, not only that one was.
    """
    async with db.transaction() as tx:
        own = await _own_plans(tx, clock, actor.la_ods, nhs_number)
        la = await tx.get_la(actor.la_ods)
        visits = []
        if own and la is not None:
            visits = list(
                await tx.access_history(nhs_number, rules.HISTORY_SIZE, la_codes=[actor.la_ods])
            )
        if audit is not None and own and la is not None:
            # A child not found is audited by the caller as any refused request is
            # (without the child: nothing was read of it).
            detail = {"plans": len(own), "events": len(visits)}
            await tx.append_audit(
                dataclasses.replace(audit, subject=nhs_number, detail=detail), clock.now()
            )
    if not own or la is None:
        raise NotFound("no child with that NHS number among this local authority's")
    sent = await inbox.child_notifications(actor.la_ods, nhs_number, limit=NOTIFICATIONS_SHOWN)
    return ChildRecord(
        nhs_number=nhs_number,
        la=la,
        plans=tuple(own),
        visits=tuple(v.event for v in visits),
        notifications=tuple(sent),
    )
