"""A child's page (issue 12, item 3): found by NHS number among the LA's own children
only, with the LA's plans, the 25 visits it may see and the notifications it was sent.

It is :func:`cpis.services.children.child`, the service of ``GET
/la/v1/children/{nhs_number}``, with the signed-in person as the actor. A child
another LA holds and a number no one knows get the same "not found" page, word for
word and status for status, so no LA learns whether another knows a child.

The number is sent by POST (the search form, or the inbox's "View the child's
record" button), never in a URL, so it is in no address bar, history or proxy log,
as on the clinician's lookup page. Opening a record is audited with the child by
the service, in the transaction that reads it.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from cpis.errors import NotFound
from cpis.matching import nhs_number
from cpis.services import children, web_sign_in
from cpis.web.context import info
from cpis.web.notifications import INBOX
from cpis.web.pages._la import LA_ROLES, actor, setting_name, spaced
from cpis.web.pages._site import SESSION, page, render
from cpis.web.pages.lookup import PLAN_NAMES, entered_nhs_number, nhs_number_problem
from cpis.web.pages.nav import nav_for
from cpis.web.state import SERVICES

PATH = "/children"


def _context(request: web.Request, **values: object) -> dict[str, object]:
    return {
        "title": "Find a child",
        "record": None,
        "not_found": None,
        "entered": "",
        "plan_names": PLAN_NAMES,
        "spaced": spaced,
        "setting_name": setting_name,
        **nav_for(request[SESSION], PATH),
        **values,
    }


@page(roles=LA_ROLES)
async def form(request: web.Request) -> web.StreamResponse:
    return render(request, "child.html", _context(request))


@page(roles=LA_ROLES)
async def show(request: web.Request) -> web.StreamResponse:
    entered = entered_nhs_number(await request.post())
    checked = nhs_number.check(entered)
    if checked.value is None:
        problem = nhs_number_problem(entered, when_empty="Enter the child's NHS number")
        return render(
            request,
            "child.html",
            _context(request, entered=entered, errors=[("nhs-number", problem)]),
            status=400,
        )
    svc = request.app[SERVICES]
    ri = info(request)
    resource = request.match_info.route.resource
    audit = dataclasses.replace(
        web_sign_in.audit_entry(request[SESSION].user, ri.action, method=request.method),
        resource=resource.canonical if resource else None,
        trace_id=ri.trace_id,
    )
    try:
        record = await children.child(
            svc.db,
            request.app[INBOX],
            svc.clock,
            actor=actor(request),
            nhs_number=checked.value,
            audit=audit,
        )
    except NotFound:
        # Audited by page() as any refused request, without the child.
        return render(
            request,
            "child.html",
            _context(request, title="No child found", not_found=spaced(checked.value)),
            status=404,
        )
    ri.audited = True
    return render(
        request,
        "child.html",
        _context(request, title="A child's record", record=record),
    )


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(prefix + PATH, form, name="page_children")
    app.router.add_post(prefix + PATH, show, name="page_child")
