"""Serialising answers: orjson for plain dicts, FHIR content negotiation (SPEC §4)."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from cpis.errors import NotAcceptable, PreconditionFailed

FHIR_JSON = "application/fhir+json"
_ACCEPTED_MEDIA = {"application/fhir+json", "application/json", "application/*", "*/*"}
_ACCEPTED_FORMATS = {"json", "application/json", "application/fhir+json"}


def check_acceptable(request: web.Request) -> None:
    """406 unless the client can take JSON (from ``_format`` or the Accept header)."""
    fmt = request.query.getall("_format", [])
    if fmt:
        if len(fmt) > 1 or fmt[0].split(";")[0].strip().lower() not in _ACCEPTED_FORMATS:
            raise NotAcceptable("only JSON is served (_format=json)")
        return
    accept = request.headers.get("Accept", "")
    if not accept.strip():
        return
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() not in _ACCEPTED_MEDIA:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            return
    raise NotAcceptable("only application/fhir+json or application/json is served")


# ASCII digits: ``\d`` also takes other scripts' digits (Arabic-Indic one is not version 1).
_ETAG = re.compile(r'^(?:W/)?"([0-9]{1,9})"$')


def if_match(request: web.Request) -> int | None:
    """The version an ``If-Match: W/"n"`` header names, or None without one."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    m = _ETAG.match(raw.strip())
    if m is None:
        raise PreconditionFailed('If-Match must be an ETag such as W/"3"', expression="If-Match")
    return int(m.group(1))


def fhir_response(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type=FHIR_JSON,
        charset="utf-8",
        headers=headers,
    )


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )
