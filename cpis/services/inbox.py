"""An LA's inbox (SPEC §5 web inbox; issue 12): new attendances grouped by child, a
page at a time, and their acknowledgement by the person (or system) who read them.

Children are listed by their newest attendance in the filter (``new``,
``acknowledged`` or ``all``), newest first, each with its newest attendances,
how many it has in the filter, and how many visits the LA may see from the last
:data:`RECENT_DAYS` days: the fifth ED in three weeks is what a social worker
must not miss. Pages follow a cursor (the last child's newest attendance), not
an offset, so the hundredth page costs what the first does (``bench/inbox``).
As with any cursor, the pages are of a list that moves: a child seen again
while someone pages goes to the top of page one (not shown again further on),
and a child whose newest attendance was acknowledged meanwhile may come again
further on, by its next one.

Every call is for the acting :class:`~cpis.model.la.LaActor`'s LA, and the
store's queries are scoped by it, so another LA's notification is
indistinguishable from one that does not exist. NHS number changes
(``nhs-number-inactive``, issue 4) come with the first page, and are
acknowledged like attendances, by notification id.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cpis.errors import InvalidRequest
from cpis.model.la import InboxCursor, InboxPage, LaActor
from cpis.model.notifications import Acknowledger, InboxNumberChange, InboxStatus
from cpis.ports.clock import Clock
from cpis.ports.notifications import InboxStore

RECENT_DAYS = 28
"""The window of the count beside each child (issue 12: "the number of attendances
in the last 28 days")."""

MAX_CHILDREN = 100
MAX_PER_CHILD = 50
MAX_ACKNOWLEDGE = 500
# NHS number changes are few (the person index retires a number rarely): the first
# page lists up to this many, as the inbox always did.
_NUMBER_CHANGES = 500


async def page(
    store: InboxStore,
    clock: Clock,
    *,
    actor: LaActor,
    status: InboxStatus = "new",
    after: InboxCursor | None = None,
    children: int = 25,
    per_child: int = 10,
) -> InboxPage:
    """One page of the actor's LA's inbox: at most ``children`` children, each with its
    newest ``per_child`` attendances in ``status``; ``next`` is where the next page
    starts (None on the last)."""
    if not 1 <= children <= MAX_CHILDREN:
        raise InvalidRequest(f"limit must be 1 to {MAX_CHILDREN}", expression="limit", status=400)
    if not 1 <= per_child <= MAX_PER_CHILD:
        raise InvalidRequest(
            f"per_child must be 1 to {MAX_PER_CHILD}", expression="per_child", status=400
        )
    found = list(
        await store.inbox_page(
            actor.la_ods,
            status=status,
            after=after,
            children=children + 1,  # one more tells whether there is a next page
            per_child=per_child,
            recent_since=clock.now() - timedelta(days=RECENT_DAYS),
        )
    )
    shown = found[:children]
    changes: tuple[InboxNumberChange, ...] = ()
    if after is None:
        include_acknowledged = status != "new"
        listed = await store.nhs_number_changes(
            actor.la_ods, include_acknowledged=include_acknowledged, limit=_NUMBER_CHANGES
        )
        if status == "acknowledged":
            listed = [c for c in listed if c.acknowledged_at is not None]
        changes = tuple(listed)
    return InboxPage(
        status=status,
        children=tuple(shown),
        next=shown[-1].cursor if len(found) > children else None,
        number_changes=changes,
    )


async def acknowledge(
    store: InboxStore, clock: Clock, *, actor: LaActor, ids: Sequence[uuid.UUID]
) -> int:
    """Mark the LA's notifications ``ids`` acknowledged by ``actor`` (kept sealed: who it
    was, their name and role); how many were not acknowledged before. Ids of another
    LA's notifications change nothing."""
    if not 1 <= len(ids) <= MAX_ACKNOWLEDGE:
        raise InvalidRequest(f"ids must be a list of 1 to {MAX_ACKNOWLEDGE} ids", expression="ids")
    by = Acknowledger(actor.kind, actor.id, actor.name, actor.role.value)
    return await store.acknowledge(actor.la_ods, ids, by=by, now=clock.now())


# --- the cursor, as text a link or a client carries ----------------------------------
#
# "v1." then base64url of the time in microseconds since the epoch and the
# notification id: nothing personal, and opaque enough that no one builds one
# by hand. One that does not parse is a 400 naming the parameter.


def cursor_text(cursor: InboxCursor) -> str:
    micros = round(cursor.at.timestamp() * 1_000_000)
    raw = micros.to_bytes(8, "big", signed=True) + cursor.notification_id.bytes
    return "v1." + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def parse_cursor(text: str) -> InboxCursor:
    bad = InvalidRequest(
        "after must be a cursor from a previous page", expression="after", status=400
    )
    if not text.startswith("v1.") or len(text) > 40 or not text.isascii():
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text[3:] + "=" * (-len(text[3:]) % 4))
    except (binascii.Error, ValueError):
        raise bad from None
    if len(raw) != 24:
        raise bad
    micros = int.from_bytes(raw[:8], "big", signed=True)
    try:
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    except OverflowError:
        raise bad from None
    return InboxCursor(at, uuid.UUID(bytes=raw[8:]))
