"""The LA's notifications (SPEC §5 web inbox; issue 3 alert fatigue; issue 12).

``GET /la/v1/notifications`` lists the caller's attendance notifications,
grouped by child, the child with the newest attendance first: what a social
worker scans to see that a child was seen at five EDs in three weeks. Each child
has its newest attendances (``per_child``, default 10), how many it has in the
filter (``count``), and how many visits the LA may see from the last 28 days
(``recent_visits``). ``?status=new`` (default), ``acknowledged`` or ``all``;
``limit`` children a page (default 25, at most 100); the answer's ``next`` is
the cursor to pass as ``after`` for the next page (null on the last).

``POST /la/v1/notifications/acknowledge`` with ``{"ids": [...]}`` acknowledges
one or many; who acknowledged (this client, or the person signed in to the web
pages) is kept, sealed, and shown as ``acknowledged_by``.

``GET /la/v1/notifications/failed`` lists deliveries that could not be made, and
the LA's Subscriptions in error (the inbox always has the notifications);
``POST /la/v1/notifications/failed/{delivery_id}/retry`` puts one back in the queue.

The same listing has, apart from the attendances, ``nhs_number_changes`` (first
page only): the person index retired an NHS number the LA holds plans for (kind
``nhs-number-inactive``, issue 4), with the old number, the new one where known
and the LA's plan ids, so someone updates the plans. They are acknowledged the
same way, by notification id.

The routes parse and render; :mod:`cpis.services.inbox` and
:mod:`cpis.services.deliveries` do the rest, with the inbox store ``app.py``
puts under :data:`INBOX`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import orjson
from aiohttp import web

from cpis.errors import InvalidRequest, NotFound, UnsupportedMediaType
from cpis.model import JsonValue, Role
from cpis.model.la import InboxChild
from cpis.model.notifications import (
    Acknowledger,
    DeadDelivery,
    InboxAttendance,
    InboxNumberChange,
    InboxStatus,
    Subscription,
)
from cpis.ports.notifications import InboxStore
from cpis.services import deliveries, inbox
from cpis.web.auth import authenticate
from cpis.web.la_access import int_param, la_actor, one_param
from cpis.web.render import json_response
from cpis.web.state import SERVICES
from cpis.web.subscriptions import SUBSCRIPTION_STORE

_STATUSES: tuple[InboxStatus, ...] = ("new", "acknowledged", "all")


INBOX = web.AppKey("inbox_store", InboxStore)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _viewer(item: InboxAttendance) -> dict[str, JsonValue]:
    """Who looked, as the ED's PractitionerRole describes them (issue 8): name, job role
    (and its national RBAC code and SDS role profile id when a CIS2 sign-in gave them),
    and whether their identity provider vouched for them or their ED system said so."""
    return {
        "name": item.user_name,
        "role": item.user_role,
        "role_code": item.role_code,
        "role_profile_id": item.role_profile_id,
        "verified": item.user_verified,
    }


def acknowledger_json(who: Acknowledger | None) -> dict[str, JsonValue] | None:
    if who is None:
        return None
    return {"kind": who.kind, "id": who.id, "name": who.name, "role": who.role}


def attendance_json(item: InboxAttendance) -> dict[str, JsonValue]:
    return {
        "notification_id": str(item.notification_id),
        "access_event_id": str(item.access_event_id),
        "when": _iso(item.occurred_at),
        "setting": {
            "ods_code": item.org_ods,
            "name": item.org_name,
            "type": item.setting_type.value,
        },
        "user": _viewer(item),
        "plan_ids": list(item.plan_ids),
        "acknowledged_at": _iso(item.acknowledged_at),
        "acknowledged_by": acknowledger_json(item.acknowledged_by),
        "deliveries": sorted(item.deliveries),
    }


def _child(child: InboxChild) -> dict[str, JsonValue]:
    attendances = [attendance_json(a) for a in child.attendances]
    return {
        "nhs_number": child.nhs_number,
        "plan_ids": list(child.plan_ids),
        "attendances": attendances,
        "count": child.count,
        "recent_visits": child.recent_visits,
        "latest": attendances[0]["when"],
    }


def _number_changes(items: Sequence[InboxNumberChange]) -> list[dict[str, JsonValue]]:
    out: list[dict[str, JsonValue]] = []
    for item in items:
        new = item.change.new_nhs_number
        out.append(
            {
                "notification_id": str(item.notification_id),
                "kind": item.kind,
                "nhs_number": item.change.old_nhs_number,
                "status": "inactive" if new is None else "superseded",
                "new_nhs_number": new,
                "plan_ids": sorted(item.plan_ids),
                "noted_at": _iso(item.noted_at),
                "acknowledged_at": _iso(item.acknowledged_at),
                "acknowledged_by": acknowledger_json(item.acknowledged_by),
                "deliveries": sorted(item.deliveries),
            }
        )
    return out


def _dead(row: DeadDelivery) -> dict[str, JsonValue]:
    return {
        "id": row.id,
        "notification_id": str(row.notification_id),
        "la_ods": row.la_ods,
        "channel": row.channel,
        "target": row.target,
        "attempts": row.attempts,
        "created_at": _iso(row.created_at),
        "last_error": row.last_error,
    }


def _failing(sub: Subscription) -> dict[str, JsonValue]:
    return {
        "id": str(sub.id),
        "endpoint": sub.endpoint,
        "status": sub.status,
        "error": sub.error,
        "updated_at": _iso(sub.updated_at),
    }


async def list_notifications(request: web.Request) -> web.Response:
    actor = la_actor(request)
    raw_status = one_param(request, "status") or "new"
    status = next((s for s in _STATUSES if s == raw_status), None)
    if status is None:
        raise InvalidRequest(
            "status must be new, acknowledged or all", expression="status", status=400
        )
    limit = int_param(request, "limit", default=25, low=1, high=inbox.MAX_CHILDREN)
    per_child = int_param(request, "per_child", default=10, low=1, high=inbox.MAX_PER_CHILD)
    raw_after = one_param(request, "after")
    assert limit is not None and per_child is not None
    svc = request.app[SERVICES]
    page = await inbox.page(
        request.app[INBOX],
        svc.clock,
        actor=actor,
        status=status,
        after=None if raw_after is None else inbox.parse_cursor(raw_after),
        children=limit,
        per_child=per_child,
    )
    return json_response(
        {
            "la_ods": actor.la_ods,
            "status": page.status,
            "children": [_child(c) for c in page.children],
            "next": None if page.next is None else inbox.cursor_text(page.next),
            "nhs_number_changes": _number_changes(page.number_changes),
        }
    )


async def acknowledge(request: web.Request) -> web.Response:
    actor = la_actor(request)
    if request.content_type != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON", status=400) from None
    raw = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(raw, list) or not raw or len(raw) > inbox.MAX_ACKNOWLEDGE:
        raise InvalidRequest(
            f"ids must be a list of 1 to {inbox.MAX_ACKNOWLEDGE} ids", expression="ids"
        )
    try:
        ids = [uuid.UUID(x) for x in raw]
    except (ValueError, TypeError, AttributeError):
        raise InvalidRequest("ids must be notification ids", expression="ids") from None
    n = await inbox.acknowledge(
        request.app[INBOX], request.app[SERVICES].clock, actor=actor, ids=ids
    )
    return json_response({"acknowledged": n})


async def failed(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA, Role.ADMIN)
    if principal.role is Role.ADMIN:
        rows = await deliveries.failed(request.app[INBOX], la_ods=None)
        return json_response({"failed": [_dead(r) for r in rows], "failing_subscriptions": []})
    actor = la_actor(request, principal)
    rows = await deliveries.failed(request.app[INBOX], la_ods=actor.la_ods)
    subs = await deliveries.failing_subscriptions(request.app[SUBSCRIPTION_STORE], actor=actor)
    return json_response(
        {"failed": [_dead(r) for r in rows], "failing_subscriptions": [_failing(s) for s in subs]}
    )


async def retry(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA, Role.ADMIN)
    raw = request.match_info["delivery_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound("no such failed delivery")
    actor = None if principal.role is Role.ADMIN else la_actor(request, principal)
    if not await deliveries.retry(
        request.app[INBOX], request.app[SERVICES].clock, delivery_id=int(raw), actor=actor
    ):
        raise NotFound("no such failed delivery")
    return json_response({"retried": int(raw)})


def add_routes(app: web.Application, *, prefix: str) -> None:
    r = app.router
    r.add_get(prefix + "/la/v1/notifications", list_notifications, name="la_notifications")
    r.add_post(
        prefix + "/la/v1/notifications/acknowledge", acknowledge, name="la_notifications_ack"
    )
    r.add_get(prefix + "/la/v1/notifications/failed", failed, name="la_notifications_failed")
    r.add_post(
        prefix + "/la/v1/notifications/failed/{delivery_id}/retry",
        retry,
        name="la_notifications_retry",
    )
