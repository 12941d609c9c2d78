"""``POST /oauth2/token``: the two grants of the NHS England API platform.

- ``client_credentials`` with a signed JWT client assertion (RFC 7523):
  application-restricted.
- ``urn:ietf:params:oauth:grant-type:token-exchange`` (RFC 8693) with the
  user's NHS CIS2 ID token as ``subject_token``
  (``subject_token_type=urn:ietf:params:oauth:token-type:id_token``) and the
  same client assertion: user-restricted, the platform's "separate
  authentication and authorisation" pattern. The answer says
  ``issued_token_type`` (RFC 8693 §2.2.1).

Errors follow RFC 6749 §5.2 (``{"error": ..., "error_description": ...}``)
because OAuth client libraries expect that shape, not an OperationOutcome:
``invalid_client`` (401) for the assertion, ``invalid_grant`` (400) for the
ID token, ``unauthorized_client`` (400) for a client that may not exchange.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from aiohttp import web

from cpis.errors import Forbidden, InvalidGrant, PayloadTooLarge, Unauthenticated, Unavailable
from cpis.services import tokens
from cpis.web.render import json_response
from cpis.web.state import SERVICES

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a name)
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
GRANT_TYPES = ("client_credentials", TOKEN_EXCHANGE)
# Room for an assertion and an ID token carrying a user's roles, no more.
_MAX_FORM = 40_960


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
    try:
        form = await request.post()
    except (UnicodeDecodeError, LookupError):
        # Bytes that are not UTF-8, or a charset parameter naming none Python knows: aiohttp
        # decodes the form as it reads it, and these were 500s (issue 9).
        return _oauth_error(400, "invalid_request", "the form is not in UTF-8")
    grant_type = form.get("grant_type")
    if grant_type not in GRANT_TYPES:
        return _oauth_error(
            400,
            "unsupported_grant_type",
            f"grant_type must be client_credentials or {TOKEN_EXCHANGE}",
        )
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        return _oauth_error(
            400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}"
        )
    assertion = form.get("client_assertion")
    if not isinstance(assertion, str) or not assertion:
        return _oauth_error(400, "invalid_request", "client_assertion is required")
    id_token: str | None = None
    if grant_type == TOKEN_EXCHANGE:
        subject_token = form.get("subject_token")
        if not isinstance(subject_token, str) or not subject_token:
            return _oauth_error(400, "invalid_request", "subject_token is required")
        if form.get("subject_token_type") != ID_TOKEN_TYPE:
            return _oauth_error(
                400, "invalid_request", f"subject_token_type must be {ID_TOKEN_TYPE}"
            )
        if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
            return _oauth_error(
                400, "invalid_request", f"requested_token_type can only be {ACCESS_TOKEN_TYPE}"
            )
        if "actor_token" in form:
            return _oauth_error(400, "invalid_request", "actor_token is not supported")
        id_token = subject_token
    client_id = _unverified_issuer(assertion)
    if client_id is None:
        return _oauth_error(400, "invalid_request", "client_assertion is not a JWT with an iss")
    svc = request.app[SERVICES]
    try:
        access = await tokens.issue(
            svc.db,
            svc.tokens,
            client_id=client_id,
            assertion=assertion,
            token_url=svc.settings.token_url,
            id_token=id_token,
        )
    except Unavailable:
        raise
    except Unauthenticated as err:
        return _oauth_error(401, "invalid_client", err.message)
    except InvalidGrant as err:
        return _oauth_error(400, "invalid_grant", err.message)
    except Forbidden as err:
        return _oauth_error(400, "unauthorized_client", err.message)
    answer: dict[str, Any] = {
        "access_token": access,
        "token_type": "bearer",
        "expires_in": svc.settings.access_token_ttl,
    }
    if id_token is not None:
        answer["issued_token_type"] = ACCESS_TOKEN_TYPE
    return json_response(answer, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application, *, prefix: str) -> None:
    app.router.add_post(prefix + "/oauth2/token", token, name="oauth_token")
