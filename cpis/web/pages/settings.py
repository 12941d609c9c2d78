"""The LA's settings (issue 12, item 3): the phone numbers clinicians ring, the repeat
window, the MESH mailbox and the FHIR Subscriptions, shown to all the LA's people and
changed by its managers only (a caseworker sees no form, and a POST of theirs is
refused by :func:`~cpis.web.pages._site.page` before anything is read).

It is :mod:`cpis.services.la_settings`, as ``GET/PATCH /la/v1/settings``. The form
carries the version it was made from, so two managers editing at once do not undo
each other silently; everything is checked before anything changes.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from cpis.errors import InvalidRequest, VersionMismatch
from cpis.model.la import LaDetailsChange, LaSettings, MeshMailbox
from cpis.services import la_settings
from cpis.web.pages._la import LA_ROLES, MANAGERS, actor
from cpis.web.pages._site import SESSION, PageRefused, page, render, see_other, url
from cpis.web.pages.nav import nav_for
from cpis.web.state import SERVICES
from cpis.web.subscriptions import SUBSCRIPTION_STORE

PATH = "/settings"
# The form's fields, by the name the service's errors give them.
_FIELD_IDS = {
    "office_phone": "office-phone",
    "edt_phone": "edt-phone",
    "repeat_window_hours": "repeat-window",
    "mesh_mailbox": "mesh-mailbox",
    "mesh_workflow_id": "mesh-mailbox",
}
_MAILBOX_MESSAGE = "Enter the MESH mailbox ID as 3 to 20 letters and numbers, or leave it empty"
_MESSAGES = {
    "office_phone": "Enter the office hours number as a UK phone number, like 01632 960000",
    "edt_phone": "Enter the emergency duty team number as a UK phone number, like 01632 960999",
    "repeat_window_hours": "Enter the repeat window as a whole number of hours from 0 to 672",
    "mesh_mailbox": _MAILBOX_MESSAGE,
    "mesh_workflow_id": _MAILBOX_MESSAGE,
}


def _form_values(found: LaSettings) -> dict[str, str]:
    la = found.la
    return {
        "office_phone": la.office_phone,
        "edt_phone": la.edt_phone,
        "repeat_window_hours": str(la.repeat_window_hours),
        "mesh_mailbox": found.mesh.mailbox if found.mesh else "",
        "version": str(la.version),
    }


async def _render(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    errors: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> web.Response:
    svc = request.app[SERVICES]
    found = await la_settings.read(svc.db, request.app[SUBSCRIPTION_STORE], actor=actor(request))
    context: dict[str, Any] = {
        "title": "Settings",
        "found": found,
        "may_change": request[SESSION].user.role in MANAGERS,
        "values": values or _form_values(found),
        "field_errors": dict(errors or []),
        "saved": "saved" in request.query,
        "removed": "removed" in request.query,
        **nav_for(request[SESSION], PATH),
    }
    if errors:
        context["errors"] = errors
    return render(request, "settings.html", context, status=status)


@page(roles=LA_ROLES)
async def show(request: web.Request) -> web.StreamResponse:
    return await _render(request)


def _text(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value.strip()[:64] if isinstance(value, str) else ""


def _problem(exc: InvalidRequest) -> tuple[str, str]:
    name = exc.expression or "office_phone"
    return _FIELD_IDS.get(name, "office-phone"), _MESSAGES.get(name, exc.message)


@page(roles=MANAGERS)
async def change(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    values = {
        name: _text(form, name)
        for name in ("office_phone", "edt_phone", "repeat_window_hours", "mesh_mailbox", "version")
    }
    who = actor(request)
    svc = request.app[SERVICES]
    # Everything checked before anything is changed: a bad mailbox changes no number.
    window = values["repeat_window_hours"]
    if not (window.isascii() and window.isdigit() and len(window) <= 4):
        err = ("repeat-window", _MESSAGES["repeat_window_hours"])
        return await _render(request, values=values, errors=[err], status=400)
    version = values["version"]
    if not (version.isascii() and version.isdigit() and len(version) <= 18):
        raise PageRefused(400, "This form has expired", "Reload the settings and try again.")
    current = await la_settings.read(svc.db, request.app[SUBSCRIPTION_STORE], actor=who)
    mesh: MeshMailbox | None = None
    try:
        if values["mesh_mailbox"]:
            workflow = current.mesh.workflow_id if current.mesh else None
            mesh = la_settings.checked_mesh(values["mesh_mailbox"], workflow)
        await la_settings.change_details(
            svc.db,
            actor=who,
            change=LaDetailsChange(
                office_phone=values["office_phone"],
                edt_phone=values["edt_phone"],
                repeat_window_hours=int(window),
            ),
            if_match=int(version),
        )
    except InvalidRequest as exc:
        return await _render(request, values=values, errors=[_problem(exc)], status=400)
    except VersionMismatch:
        problem = (
            "office-phone",
            "Someone else changed these settings while you were editing them: check them"
            " and make your change again",
        )
        return await _render(request, errors=[problem], status=409)
    if mesh != current.mesh:
        await la_settings.set_mesh(svc.db, actor=who, mesh=mesh)
    return see_other(url(request, f"{PATH}?saved"))


@page(roles=MANAGERS)
async def remove_subscription(request: web.Request) -> web.StreamResponse:
    try:
        subscription_id = uuid.UUID(request.match_info["subscription_id"])
        await la_settings.remove_subscription(
            request.app[SUBSCRIPTION_STORE], actor=actor(request), subscription_id=subscription_id
        )
    except ValueError:
        raise web.HTTPNotFound() from None
    return see_other(url(request, f"{PATH}?removed"))


def add_routes(app: web.Application, prefix: str) -> None:
    r = app.router
    r.add_get(prefix + PATH, show, name="page_settings")
    r.add_post(prefix + PATH, change, name="page_settings_change")
    r.add_post(
        prefix + PATH + "/subscriptions/{subscription_id}/remove",
        remove_subscription,
        name="page_subscription_remove",
    )
