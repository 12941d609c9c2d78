"""``POST /oauth2/token``: client_credentials with a signed JWT client assertion.

As on the NHS England API platform (RFC 7523). Errors follow RFC 6749 §5.2
(``{"error": ..., "error_description": ...}``) because OAuth client libraries
expect that shape, not an OperationOutcome.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from aiohttp import web

from cpis.errors import PayloadTooLarge, Unauthenticated, Unavailable
from cpis.web.render import json_response
from cpis.web.state import SERVICES

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_MAX_FORM = 16_384


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return json_response(
        {"error": error, "error_description": description},
        status=status,
        headers={"Cache-Control": "no-store"},
    )


def _unverified_issuer(assertion: str) -> str | None:
    """The client id the assertion claims; only used to find the key that must verify it."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims: Any = orjson.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    iss = claims.get("iss") if isinstance(claims, dict) else None
    return iss if isinstance(iss, str) and 0 < len(iss) <= 128 else None


async def token(request: web.Request) -> web.Response:
    if request.content_type != "application/x-www-form-urlencoded":
        return _oauth_error(
            400, "invalid_request", "the body must be application/x-www-form-urlencoded"
        )
    if request.content_length is not None and request.content_length > _MAX_FORM:
        raise PayloadTooLarge("request body too large")
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        return _oauth_error(
            400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}"
        )
    assertion = form.get("client_assertion")
    if not isinstance(assertion, str) or not assertion:
        return _oauth_error(400, "invalid_request", "client_assertion is required")
    client_id = _unverified_issuer(assertion)
    if client_id is None:
        return _oauth_error(400, "invalid_request", "client_assertion is not a JWT with an iss")
    svc = request.app[SERVICES]
    client = await svc.db.get_client(client_id)
    if client is None or not client.active:
        return _oauth_error(401, "invalid_client", "client is not registered or not active")
    try:
        access = await svc.tokens.exchange(
            assertion, client=client, token_url=svc.settings.token_url
        )
    except Unavailable:
        raise
    except Unauthenticated as err:
        return _oauth_error(401, "invalid_client", err.message)
    return json_response(
        {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": svc.settings.access_token_ttl,
        },
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application, *, prefix: str) -> None:
    app.router.add_post(prefix + "/oauth2/token", token, name="oauth_token")
