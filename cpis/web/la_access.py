"""What the LA routes share: who is acting for which LA, and their query parameters.

An LA's client system acts for the one LA its token (or, for a client registered
for several, its ``NHSD-End-User-Organisation-ODS`` header) names, as a
:class:`~cpis.model.la.LaActor` of kind ``system``; the services then answer for
that LA only. The web pages make a ``person`` actor from the signed-in session.
"""

from __future__ import annotations

from aiohttp import web

from cpis.errors import InvalidRequest
from cpis.matching import nhs_number
from cpis.model import AuditEntry, Principal, Role
from cpis.model.la import LaActor
from cpis.web.auth import acting_org, authenticate
from cpis.web.context import info


def la_actor(request: web.Request, principal: Principal | None = None) -> LaActor:
    """The LA client calling (``principal``, when already authenticated), as the actor the
    services take; 401/403 as :func:`~cpis.web.auth.authenticate`."""
    if principal is None:
        principal = authenticate(request, Role.LA)
    return LaActor.system(acting_org(request, principal), principal.client_id)


def nhs_number_param(raw: str | None, name: str = "nhs_number") -> str:
    """A valid NHS number, or 400 naming ``name`` and why (never repeating the value)."""
    if raw is None:
        raise InvalidRequest(f"{name} is required", expression=name, status=400)
    checked = nhs_number.check(raw)
    if checked.value is None:
        raise InvalidRequest(f"{name} {checked.reason}", expression=name, status=400)
    return checked.value


def audit_entry(request: web.Request, actor: LaActor) -> AuditEntry:
    """The audit line of an LA request a service writes itself (with the child read);
    the route marks the request audited once the service has answered."""
    ri = info(request)
    resource = request.match_info.route.resource
    return AuditEntry(
        action=ri.action,
        outcome=200,
        client_id=actor.id if actor.kind == "system" else None,
        user_id=actor.id if actor.kind == "person" else None,
        role=Role.LA.value,
        org_ods=actor.la_ods,
        resource=resource.canonical if resource else None,
        trace_id=ri.trace_id,
    )


def int_param(
    request: web.Request, name: str, *, default: int | None, low: int, high: int
) -> int | None:
    """Query parameter ``name`` as an integer from ``low`` to ``high``, or 400 naming it."""
    raw = request.query.getall(name, [])
    if not raw:
        return default
    # ASCII digits: str.isdigit() is true of "²", which int() refuses (a 500, issue 9).
    text = raw[0]
    if (
        len(raw) > 1
        or len(text) > 19  # int() of thousands of digits is refused, and slow before that
        or not (text.isascii() and text.isdigit())
        or not low <= int(text) <= high
    ):
        raise InvalidRequest(
            f"{name} must be a number from {low} to {high}", expression=name, status=400
        )
    return int(text)


def one_param(request: web.Request, name: str) -> str | None:
    """Query parameter ``name`` given at most once, or 400."""
    raw = request.query.getall(name, [])
    if len(raw) > 1:
        raise InvalidRequest(f"{name} may be given once", expression=name, status=400)
    return raw[0] if raw else None
