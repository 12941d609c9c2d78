"""``POST /la/v1/uploads``: an LA's daily file over HTTP (SPEC §5).

The body is the file itself, JSON (``application/json``) or CSV
(``text/csv``), as documented in ``schemas/uploads.md``. The answer is the
acknowledgement: 200 with CPF02/CPF03/CPF04 and a code per record; 400 with
CPF01 for a malformed file (nothing applied); 409 with CPF04 for a sequence
number lower than the last applied; 503 with CPF05 when the person index
cannot answer (nothing applied: send the same file again later). Sending a
file again returns the acknowledgement it got the first time.

A file may be up to ``CPIS_MAX_UPLOAD_BYTES``, with a Content-Length or chunked:
the middleware gives this route that limit instead of ``CPIS_MAX_BODY_BYTES``
and answers 413 over it.

The route reads the file and who sent it, and hands both to
:func:`cpis.services.uploads.receive`, as the MESH worker and ``cpis upload`` do.
"""

from __future__ import annotations

from aiohttp import web

from cpis.formats.acknowledgement import acknowledgement_json
from cpis.model import Role
from cpis.model.uploads import UploadFile
from cpis.services import uploads
from cpis.web.auth import authenticate
from cpis.web.render import json_response
from cpis.web.state import SERVICES


async def upload(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA)
    svc = request.app[SERVICES]
    file = UploadFile(
        await request.read(),
        content_type=request.headers.get("Content-Type"),
        may_upload_for=principal.ods_codes,
    )
    ack = await uploads.receive(svc.db, svc.clock, file, index=svc.person_index)
    body = acknowledgement_json(ack)
    if ack.file_code == "CPF01":
        return json_response(body, status=400)
    if ack.file_code == "CPF05":
        # Nothing was applied or stored: the same file may be sent again shortly.
        response = json_response(body, status=503)
        response.headers["Retry-After"] = "60"
        return response
    status = 409 if ack.file_code == "CPF04" and not ack.records else 200
    return json_response(body, status=status)


def add_routes(app: web.Application, *, prefix: str) -> None:
    app.router.add_post(prefix + "/la/v1/uploads", upload, name="la_upload")
