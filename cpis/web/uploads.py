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

``GET /la/v1/uploads`` lists the caller's applied files, highest sequence first
(``limit``, default 50; ``before`` a sequence to page on from), each with when
it came, its file code and how many records got each record code; ``GET
/la/v1/uploads/{sequence}`` is one file's acknowledgement as it was sent, every
record with its CPR code and reason (:mod:`cpis.services.upload_history`).
"""

from __future__ import annotations

from aiohttp import web

from cpis.errors import NotFound
from cpis.formats.acknowledgement import acknowledgement_json
from cpis.model import JsonValue, Role
from cpis.model.la import UploadSummary
from cpis.model.uploads import UploadFile
from cpis.services import upload_history, uploads
from cpis.web.auth import authenticate
from cpis.web.la_access import int_param, la_actor
from cpis.web.render import json_response
from cpis.web.state import SERVICES

# Sequence numbers are a bigint (cpis/schema/migrations/0001_baseline.sql).
_MAX_SEQUENCE = 2**63 - 1


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


def _summary(u: UploadSummary) -> dict[str, JsonValue]:
    return {
        "sequence": u.sequence,
        "received_at": u.received_at.isoformat(),
        "file_code": u.file_code,
        "records": u.records,
        "summary": dict(sorted(u.record_codes.items())),
    }


async def list_uploads(request: web.Request) -> web.Response:
    actor = la_actor(request)
    limit = int_param(request, "limit", default=50, low=1, high=upload_history.MAX_PAGE)
    before = int_param(request, "before", default=None, low=0, high=_MAX_SEQUENCE)
    assert limit is not None
    found = await upload_history.uploads(
        request.app[SERVICES].db, actor=actor, before=before, limit=limit
    )
    return json_response(
        {
            "la_ods": actor.la_ods,
            "uploads": [_summary(u) for u in found],
            # The next page: files below the lowest sequence of a full page.
            "next_before": found[-1].sequence if len(found) == limit else None,
        }
    )


async def get_upload(request: web.Request) -> web.Response:
    actor = la_actor(request)
    raw = request.match_info["sequence"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > _MAX_SEQUENCE:
        raise NotFound("no upload with that sequence number")
    ack = await upload_history.upload(request.app[SERVICES].db, actor=actor, sequence=int(raw))
    return json_response(acknowledgement_json(ack))


def add_routes(app: web.Application, *, prefix: str) -> None:
    app.router.add_post(prefix + "/la/v1/uploads", upload, name="la_upload")
    app.router.add_get(prefix + "/la/v1/uploads", list_uploads, name="la_uploads")
    app.router.add_get(prefix + "/la/v1/uploads/{sequence}", get_upload, name="la_upload_get")
