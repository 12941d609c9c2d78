"""The LA's notifications (SPEC §5 web inbox; issue 3 alert fatigue).

``GET /la/v1/notifications`` lists the caller's attendance notifications,
grouped by child, newest child first: what a social worker scans to see that
a child was seen at five EDs in three weeks. ``?status=new`` (default),
``acknowledged`` or ``all``. ``POST /la/v1/notifications/acknowledge`` with
``{"ids": [...]}`` acknowledges one or many. ``GET /la/v1/notifications/failed``
lists deliveries that could not be made (the inbox always has them).

The same listing has, apart from the attendances, ``nhs_number_changes``: the
person index retired an NHS number the LA holds plans for (kind
``nhs-number-inactive``, issue 4), with the old number, the new one where known
and the LA's plan ids, so someone updates the plans. They are acknowledged the
same way, by notification id.

The routes parse and render; :mod:`cpis.services.notifications` does the rest,
with the inbox store ``app.py`` puts under :data:`INBOX`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import orjson
from aiohttp import web

from cpis.errors import InvalidRequest, UnsupportedMediaType
from cpis.model import JsonValue, Role
from cpis.model.notifications import (
    DeadDelivery,
    InboxAttendance,
    InboxNumberChange,
    InboxStatus,
)
from cpis.ports.notifications import InboxStore
from cpis.services import notifications
from cpis.web.auth import acting_org, authenticate
from cpis.web.render import json_response
from cpis.web.state import SERVICES

_MAX_ACK = 500
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


def _attendance(item: InboxAttendance) -> dict[str, JsonValue]:
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
        "acknowledged_at": _iso(item.acknowledged_at),
        "acknowledged_by": item.acknowledged_by,
        "deliveries": sorted(item.deliveries),
    }


def _grouped(items: Sequence[InboxAttendance]) -> list[dict[str, JsonValue]]:
    """Attendances by child, in the order each child's newest one comes."""
    children: dict[str, list[InboxAttendance]] = {}
    for item in items:
        children.setdefault(item.nhs_number, []).append(item)
    out: list[dict[str, JsonValue]] = []
    for nhs_number, seen in children.items():
        attendances = [_attendance(item) for item in seen]
        out.append(
            {
                "nhs_number": nhs_number,
                "plan_ids": sorted({p for item in seen for p in item.plan_ids}),
                "attendances": attendances,
                "count": len(attendances),
                "latest": attendances[0]["when"],
            }
        )
    return out


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
                "acknowledged_by": item.acknowledged_by,
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


async def list_notifications(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA)
    la_ods = acting_org(request, principal)
    status = next((s for s in _STATUSES if s == request.query.get("status", "new")), None)
    if status is None:
        raise InvalidRequest(
            "status must be new, acknowledged or all", expression="status", status=400
        )
    raw_limit = request.query.get("limit", "500")
    # ASCII digits: str.isdigit() is true of "²", which int() refuses (a 500, issue 9).
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= 5000:
        raise InvalidRequest("limit must be 1 to 5000", expression="limit", status=400)
    found = await notifications.inbox(
        request.app[INBOX], la_ods=la_ods, status=status, limit=int(raw_limit)
    )
    return json_response(
        {
            "la_ods": la_ods,
            "status": found.status,
            "children": _grouped(found.attendances),
            "nhs_number_changes": _number_changes(found.number_changes),
        }
    )


async def acknowledge(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA)
    la_ods = acting_org(request, principal)
    if request.content_type != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON", status=400) from None
    raw = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(raw, list) or not raw or len(raw) > _MAX_ACK:
        raise InvalidRequest(f"ids must be a list of 1 to {_MAX_ACK} ids", expression="ids")
    try:
        ids = [uuid.UUID(x) for x in raw]
    except (ValueError, TypeError, AttributeError):
        raise InvalidRequest("ids must be notification ids", expression="ids") from None
    n = await notifications.acknowledge(
        request.app[INBOX],
        request.app[SERVICES].clock,
        la_ods=la_ods,
        ids=ids,
        by=principal.viewer.user_id if principal.viewer else principal.client_id,
    )
    return json_response({"acknowledged": n})


async def failed(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA, Role.ADMIN)
    la_ods = None if principal.role is Role.ADMIN else acting_org(request, principal)
    rows = await notifications.failed_deliveries(request.app[INBOX], la_ods=la_ods)
    return json_response({"failed": [_dead(r) for r in rows]})


def add_routes(app: web.Application, *, prefix: str) -> None:
    r = app.router
    r.add_get(prefix + "/la/v1/notifications", list_notifications, name="la_notifications")
    r.add_post(
        prefix + "/la/v1/notifications/acknowledge", acknowledge, name="la_notifications_ack"
    )
    r.add_get(prefix + "/la/v1/notifications/failed", failed, name="la_notifications_failed")
