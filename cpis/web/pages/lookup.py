"""The clinician's lookup page (issue 12, item 4): an NHS number in, whether the child
is known, which LA, the number to ring now, the plans and the 25 visits.

The number is sent by POST (with the CSRF token), never in a URL, so it is in
no address bar, history, proxy log or Referer. Looking a child up records an
unscheduled access event and notifies the LA (:mod:`cpis.services.web_lookup`),
which writes its own audit line with the person.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from cpis.matching import nhs_number
from cpis.model import PlanType
from cpis.model.web import WebRole
from cpis.services import web_lookup
from cpis.web.context import info
from cpis.web.pages._la import setting_name
from cpis.web.pages._site import SESSION, page, render
from cpis.web.pages.nav import nav_for
from cpis.web.state import NOTIFICATIONS_QUEUED, SERVICES

PATH = "/lookup"
PLAN_NAMES = {
    PlanType.CPP.value: "Child protection plan",
    PlanType.LAC.value: "Looked after child",
    PlanType.UCPP.value: "Unborn child protection plan",
}
_MAX_ENTERED = 40


def _context(request: web.Request, **values: object) -> dict[str, object]:
    return {
        "title": "Look up a child",
        "result": None,
        "entered": "",
        "plan_names": PLAN_NAMES,
        "setting_name": setting_name,
        **nav_for(request[SESSION], PATH),
        **values,
    }


@page(roles=[WebRole.CLINICIAN])
async def form(request: web.Request) -> web.StreamResponse:
    return render(request, "lookup.html", _context(request))


def entered_nhs_number(form: Mapping[str, object]) -> str:
    """The form's ``nhs_number`` as typed, trimmed and cut to a length no NHS number
    needs (it is shown back in the field when refused)."""
    raw = form.get("nhs_number")
    return raw.strip()[:_MAX_ENTERED] if isinstance(raw, str) else ""


def nhs_number_problem(entered: str, *, when_empty: str) -> str:
    """What is wrong with ``entered``, which :func:`nhs_number.check` refused."""
    digits = entered.replace(" ", "").replace("-", "")
    if not digits:
        return when_empty
    if not (digits.isascii() and digits.isdigit()):
        return "An NHS number has only digits"
    if len(digits) != 10:
        return "An NHS number has 10 digits"
    return "This is not a valid NHS number: check each digit"


@page(roles=[WebRole.CLINICIAN])
async def look_up(request: web.Request) -> web.StreamResponse:
    entered = entered_nhs_number(await request.post())
    checked = nhs_number.check(entered)
    if checked.value is None:
        problem = nhs_number_problem(entered, when_empty="Enter the NHS number")
        return render(
            request,
            "lookup.html",
            _context(request, entered=entered, errors=[("nhs-number", problem)]),
            status=400,
        )
    svc = request.app[SERVICES]
    ri = info(request)
    result = await web_lookup.clinician_lookup(
        svc.db,
        svc.clock,
        user=request[SESSION].user,
        nhs_number=checked.value,
        trace_id=ri.trace_id,
        action=ri.action,
    )
    ri.audited = True
    svc.metrics.lookups.labels("web", "hit" if result.plans else "miss").inc()
    if result.notified:
        svc.metrics.notifications_queued.inc(len(result.notified))
        request.app[NOTIFICATIONS_QUEUED]()
    n = checked.value
    title = "Known to children's social care" if result.plans else "No plan found"
    return render(
        request,
        "lookup.html",
        _context(request, title=title, result=result, shown_number=f"{n[:3]} {n[3:6]} {n[6:]}"),
    )
