"""The LA's uploads (issue 12, item 3): every applied file with its sequence, when it
came, its CPF code and counts; one file's acknowledgement, record by record with each
CPR code and reason; and a file sent from the browser.

The list and the acknowledgements are shown to all the LA's people (the demo's
social worker reads the example upload's acknowledgement; nothing in one is more
than a plan reference and a code); sending a file is a manager's. A file sent here
goes to :func:`cpis.services.uploads.receive`, as one sent to ``POST
/la/v1/uploads``, by MESH or by ``cpis upload``, for the person's own LA only.

The form is plain multipart and works without JavaScript; ``uploads.mjs`` sends the
same form with a progress bar (and the CSRF token as ``X-CSRF-Token``). An applied
file is answered with a redirect to its acknowledgement (so reloading it does not
send the file again); a file refused whole comes back to the form with the reason.
"""

from __future__ import annotations

from aiohttp import web

from cpis.model.uploads import Acknowledgement, UploadFile
from cpis.services import upload_history, uploads
from cpis.web.pages._la import LA_ROLES, MANAGERS
from cpis.web.pages._la import actor as la_actor
from cpis.web.pages._site import SESSION, page, render, see_other, url
from cpis.web.pages.nav import nav_for
from cpis.web.state import SERVICES

PATH = "/uploads"
PER_PAGE = 50
_MAX_SEQUENCE = 2**63 - 1

FILE_CODES = {
    "CPF01": "Not read: nothing applied",
    "CPF02": "All records applied",
    "CPF03": "Some records applied",
    "CPF04": "No records applied",
    "CPF05": "Not checked: send the same file again later",
}
RECORD_CODES = {
    "CPR01": "NHS number not known",
    "CPR02": "Sensitive record",
    "CPR03": "Name or birth date do not match",
    "CPR04": "NHS number not valid",
    "CPR05": "NHS number replaced",
    "CPR06": "Applied",
    "CPR07": "Field not valid",
}


def _sequence(raw: str | None) -> int | None:
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return None
    value = int(raw)
    return value if value <= _MAX_SEQUENCE else None


def _context(request: web.Request, **values: object) -> dict[str, object]:
    return {
        "title": "Uploads",
        "file_codes": FILE_CODES,
        "record_codes": RECORD_CODES,
        "may_upload": request[SESSION].user.role in MANAGERS,
        "max_bytes": request.app[SERVICES].settings.max_upload_bytes,
        **nav_for(request[SESSION], PATH),
        **values,
    }


async def _listing(request: web.Request, before: int | None) -> dict[str, object]:
    found = await upload_history.uploads(
        request.app[SERVICES].db, actor=la_actor(request), before=before, limit=PER_PAGE
    )
    older = found[-1].sequence if len(found) == PER_PAGE else None
    return {
        "uploads": found,
        "older_link": None if older is None else f"{PATH}?before={older}",
        "first": before is None,
    }


@page(roles=LA_ROLES)
async def listing(request: web.Request) -> web.StreamResponse:
    raw = request.query.get("before")
    before = _sequence(raw)
    if raw is not None and before is None:
        raise web.HTTPNotFound()
    return render(request, "uploads.html", _context(request, **await _listing(request, before)))


@page(roles=LA_ROLES)
async def acknowledgement(request: web.Request) -> web.StreamResponse:
    sequence = _sequence(request.match_info["sequence"])
    if sequence is None:
        raise web.HTTPNotFound()
    ack = await upload_history.upload(
        request.app[SERVICES].db, actor=la_actor(request), sequence=sequence
    )
    return render(
        request,
        "upload.html",
        _context(request, title=f"Upload {sequence}", ack=ack, sent="sent" in request.query),
    )


def _stored(ack: Acknowledgement) -> bool:
    """Whether the file was applied and its acknowledgement kept (issue 12: CPF02-04)."""
    return ack.received_at is not None and ack.sequence is not None


@page(roles=MANAGERS)
async def send(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    field = form.get("file")
    # aiohttp keeps each file sent in a temporary file of its own: closed here, read or not.
    data = b""
    for value in form.values():
        if isinstance(value, web.FileField):
            with value.file:
                if value is field:
                    data = value.file.read()
    if not isinstance(field, web.FileField) or not field.filename:
        return await _refused(request, "Choose the file to upload")
    if not data:
        return await _refused(request, "The file you chose is empty")
    svc = request.app[SERVICES]
    user = request[SESSION].user
    ack = await uploads.receive(
        svc.db,
        svc.clock,
        UploadFile(
            data,
            content_type=field.content_type,
            filename=field.filename,
            may_upload_for=(user.org_ods,),
        ),
        index=svc.person_index,
    )
    if _stored(ack):
        return see_other(url(request, f"{PATH}/{ack.sequence}?sent"))
    reason = ack.reason or "it could not be applied"
    message = f"The file was not applied ({ack.file_code}): {reason}"
    return await _refused(request, message, status=503 if ack.file_code == "CPF05" else 400)


async def _refused(request: web.Request, message: str, *, status: int = 400) -> web.Response:
    return render(
        request,
        "uploads.html",
        _context(request, errors=[("file", message)], **await _listing(request, None)),
        status=status,
    )


def add_routes(app: web.Application, prefix: str) -> None:
    r = app.router
    r.add_get(prefix + PATH, listing, name="page_uploads")
    r.add_post(prefix + PATH, send, name="page_upload")
    r.add_get(prefix + PATH + "/{sequence}", acknowledgement, name="page_upload_acknowledgement")
