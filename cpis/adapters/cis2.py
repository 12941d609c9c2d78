"""NHS CIS2 ID tokens, verified against the identity providers the operator trusts.

The NHS England API platform's "user-restricted RESTful APIs - NHS CIS2
separate authentication and authorisation" pattern, which the CP-IS consumer
guide requires for user-present access: the ED system signs its user in with
NHS Care Identity Service 2 (OpenID Connect), then exchanges the user's ID
token, with its own signed client assertion, for an access token (RFC 8693
token exchange, ``subject_token_type=urn:ietf:params:oauth:token-type:id_token``).
This module checks that ID token; :mod:`cpis.adapters.tokens` issues the token.

What is checked (OpenID Connect Core §3.1.3.7, Discovery §4):

- the ``iss`` is exactly one of ``CPIS_CIS2_ISSUERS``; its keys come from the
  ``jwks_uri`` of ``{iss}/.well-known/openid-configuration``, whose ``issuer``
  must be that same URL; both are cached, and fetched again (at most once a
  minute) when a token names a key id not seen yet, so key rotation at the
  provider needs nothing here;
- the signature, with an asymmetric algorithm the provider advertises
  (never ``none`` or HMAC);
- ``aud`` is the client's registered CIS2 client id (``cpis client add
  --cis2-client-id``), and ``azp``, if there are several audiences;
- ``exp`` is not past and ``iat``/``nbf`` not in the future (30 s of skew);
- ``id_assurance_level`` is at least 3 (CIS2's level for a person whose
  identity was checked in person, as a smartcard holder's is), and
  ``authentication_assurance_level``, where given, at least 3.

What is read. Sources: NHS England's CIS2 Authentication developer guidance,
"Scopes and claims" and "Role selection" (digital.nhs.uk, services/
care-identity-service/.../cis2-authentication: the ``profile``,
``nationalrbacaccess``, ``associatedorgs`` and ``selectedrole`` scopes, and
"we'll return [the role] in the selected_roleid claim of the ID token"); the
API platform's "User-restricted RESTful APIs - NHS CIS2 separate
authentication and authorisation" page (token exchange, step 9 "determine the
healthcare worker's role"); and the API platform's own tests of this exchange
(``NHSDigital`` repositories: the ``cis2_subject_token_claims`` fixture of an
ID token, and the user role service tests that read ``selected_roleid`` and
``nhsid_nrbac_roles``). Read:

- the user: ``nhsid_useruid`` (the user's UUID, the SDS user id), else
  ``sub`` (the same value in CIS2's ID tokens); ``name``, else
  ``given_name`` and ``family_name``;
- the selected role: ``selected_roleid``, the SDS role profile id the user
  chose when signing in (CIS2's ``selectedrole`` scope), or the one role when
  ``nhsid_nrbac_roles`` lists exactly one;
- that role's details, from its entry in ``nhsid_nrbac_roles`` (the
  ``nationalrbacaccess`` scope: ``person_roleid``, ``org_code``,
  ``role_code`` such as ``S8000:G8000:R8001``, ``role_name`` such as
  ``"Clinical":"Clinical Provision":"Nurse Access Role"``): the
  organisation, the job role code (the ``R…`` part) and its name (the last
  quoted part); the organisation's name from ``nhsid_user_orgs``.

CIS2 puts ``nhsid_nrbac_roles``, ``nhsid_user_orgs`` and the name in its
userinfo response, and only ``sub``, the assurance levels and
``selected_roleid`` in the ID token itself; a service that receives only the
ID token cannot call userinfo (NHS's own platform cannot either: its user
role service answers "unable to retrieve user info" in this pattern). So the
role's organisation must be known another way: from ``nhsid_nrbac_roles``
when the provider puts it in the ID token, else the client's one registered
organisation. A client registered for several organisations whose users'
ID tokens do not say which one is refused, rather than guessed. A role at an
organisation the client is not registered for is always refused: a
user-restricted token can never act for another organisation.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry

from cpis.adapters.tokens import (
    CLOCK_SKEW,
    ID_TOKEN_ALGORITHMS,
    claim_number,
    public_jwk,
    registry_for,
)
from cpis.errors import InvalidGrant, Unavailable
from cpis.model import Client, Viewer

MIN_ASSURANCE = 3
_MAX_ID_TOKEN_CHARS = 16_384
_MAX_DOCUMENT_BYTES = 256 * 1024
_CACHE_SECONDS = 3600.0
_REFETCH_SECONDS = 60.0
_MAX_TEXT = 256
_LAST_QUOTED = re.compile(r'"([^"]*)"\s*$')


def issuer_url_ok(url: str) -> bool:
    """An issuer (or a URL it publishes) must be https, or http only on this machine."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class _Keys:
    jwks: list[dict[str, Any]]
    algorithms: frozenset[str]
    fetched_at: float


class Cis2Issuers:
    """The ID token verifier: the trusted issuers, their keys cached, fetched over HTTP.

    ``now`` gives wall-clock seconds (for ``exp``); key caching uses the
    monotonic clock.
    """

    def __init__(
        self,
        issuers: Sequence[str],
        *,
        now: Callable[[], float] = time.time,
        timeout_seconds: float = 5.0,
        refetch_seconds: float = _REFETCH_SECONDS,
    ) -> None:
        self._issuers = tuple(i.rstrip("/") for i in issuers)
        self._now = now
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._refetch = refetch_seconds
        self._session: aiohttp.ClientSession | None = None
        self._keys: dict[str, _Keys] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def issuers(self) -> tuple[str, ...]:
        return self._issuers

    async def viewer(self, id_token: str, client: Client) -> Viewer:
        """The person ``client``'s user is, from their ID token (the token authority's
        ``verify_id_token``)."""
        if not client.cis2_client_id:
            raise InvalidGrant("this client has no registered CIS2 client id")
        claims = await self.verify(id_token, audience=client.cis2_client_id)
        return viewer_from_claims(claims, client_ods=client.ods_codes)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify(self, id_token: str, *, audience: str) -> dict[str, Any]:
        """The ID token's claims, once everything in the module docstring holds.

        Raises :class:`InvalidGrant` for a token that is not acceptable and
        :class:`Unavailable` when its issuer's keys cannot be fetched.
        """
        if not isinstance(id_token, str) or len(id_token) > _MAX_ID_TOKEN_CHARS:
            raise InvalidGrant("the ID token is malformed")
        try:
            obj = jws.extract_compact(id_token.encode("ascii"))
            header = dict(obj.headers())
            claims = json.loads(obj.payload)
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise InvalidGrant("the ID token is malformed") from None
        if not isinstance(claims, dict):
            raise InvalidGrant("the ID token is malformed")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer.rstrip("/") not in self._issuers:
            raise InvalidGrant("the ID token's issuer is not trusted here")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ID_TOKEN_ALGORITHMS:
            raise InvalidGrant("the ID token's signing algorithm is not accepted")
        kid = header.get("kid")
        keys = await self._keys_for(issuer.rstrip("/"), kid if isinstance(kid, str) else None)
        if keys.algorithms and alg not in keys.algorithms:
            raise InvalidGrant("the ID token's signing algorithm is not one its issuer uses")
        jwk = _pick_key(keys.jwks, kid if isinstance(kid, str) else None)
        if jwk is None:
            raise InvalidGrant("the ID token is signed with a key its issuer does not publish")
        try:
            key = JWKRegistry.import_key(public_jwk(jwk))
            valid = jws.validate_compact(obj, key, registry=registry_for(alg))
        except (JoseError, ValueError, TypeError):
            raise InvalidGrant("the ID token's signature is invalid") from None
        if not valid:
            raise InvalidGrant("the ID token's signature is invalid")
        _check_claims(claims, audience=audience, now=float(self._now()))
        return claims

    async def _keys_for(self, issuer: str, kid: str | None) -> _Keys:
        lock = self._locks.setdefault(issuer, asyncio.Lock())
        async with lock:
            keys = self._keys.get(issuer)
            age = time.monotonic() - keys.fetched_at if keys else None
            stale = age is None or age > _CACHE_SECONDS
            unknown_kid = (
                keys is not None
                and kid is not None
                and _pick_key(keys.jwks, kid) is None
                and age is not None
                and age >= self._refetch
            )
            if stale or unknown_kid:
                keys = await self._fetch(issuer)
                self._keys[issuer] = keys
            assert keys is not None
            return keys

    async def _fetch(self, issuer: str) -> _Keys:
        config = await self._get_json(f"{issuer}/.well-known/openid-configuration")
        if config.get("issuer", "").rstrip("/") != issuer:
            raise Unavailable("the identity provider's discovery document names another issuer")
        jwks_uri = config.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not issuer_url_ok(jwks_uri):
            raise Unavailable("the identity provider publishes no usable jwks_uri")
        jwks = await self._get_json(jwks_uri)
        keys = jwks.get("keys")
        if not isinstance(keys, list):
            raise Unavailable("the identity provider's key set is malformed")
        advertised = config.get("id_token_signing_alg_values_supported")
        algorithms = frozenset(
            a for a in advertised or () if isinstance(a, str) and a in ID_TOKEN_ALGORITHMS
        )
        return _Keys(
            jwks=[k for k in keys if isinstance(k, dict)],
            algorithms=algorithms,
            fetched_at=time.monotonic(),
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url, allow_redirects=False) as resp:
                body = await resp.content.read(_MAX_DOCUMENT_BYTES + 1)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            raise Unavailable("the identity provider cannot be reached", retry_after=5) from None
        if status != 200 or len(body) > _MAX_DOCUMENT_BYTES:
            raise Unavailable("the identity provider did not answer usably", retry_after=5)
        try:
            doc = json.loads(body)
        except ValueError:
            raise Unavailable("the identity provider did not answer usably") from None
        if not isinstance(doc, dict):
            raise Unavailable("the identity provider did not answer usably")
        return doc


def _pick_key(keys: Sequence[Mapping[str, Any]], kid: str | None) -> Mapping[str, Any] | None:
    signing = [k for k in keys if k.get("use") in (None, "sig")]
    if kid is not None:
        return next((k for k in signing if k.get("kid") == kid), None)
    return signing[0] if len(signing) == 1 else None


def _check_claims(claims: Mapping[str, Any], *, audience: str, now: float) -> None:
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise InvalidGrant("the ID token was not issued to this client's CIS2 client id")
    if len(audiences) > 1 and claims.get("azp", audience) != audience:
        raise InvalidGrant("the ID token was issued to another party (azp)")
    skew = CLOCK_SKEW.total_seconds()
    exp = claim_number(claims, "exp")
    if exp is None:
        raise InvalidGrant("the ID token has no usable exp")
    if exp + skew < now:
        raise InvalidGrant("the ID token has expired")
    for name in ("iat", "nbf"):
        if name in claims:
            value = claim_number(claims, name)
            if value is None or value > now + skew:
                raise InvalidGrant(f"the ID token's {name} is not a usable time")
    if _level(claims.get("id_assurance_level")) < MIN_ASSURANCE:
        raise InvalidGrant("the ID token's identity assurance level is below 3")
    if "authentication_assurance_level" in claims and (
        _level(claims["authentication_assurance_level"]) < MIN_ASSURANCE
    ):
        raise InvalidGrant("the ID token's authentication assurance level is below 3")


def _level(value: object) -> int:
    """CIS2 sends assurance levels as "3" (or 3); anything else counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    # ASCII digits: str.isdigit() is true of "²", which int() refuses.
    if text.isascii() and text.isdigit() and len(text) < 3:
        return int(text)
    return 0


def _text(value: object) -> str | None:
    """A short printable claim value, or None."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > _MAX_TEXT or not value.isprintable():
        return None
    return value


def _role_name(raw: str | None) -> str | None:
    """'"Clinical":"Clinical Provision":"Nurse Access Role"' -> 'Nurse Access Role'."""
    if raw is None:
        return None
    m = _LAST_QUOTED.search(raw)
    return _text(m.group(1)) if m else raw


def _job_role_code(raw: str | None) -> str | None:
    """'S8000:G8000:R8001' -> 'R8001' (the job role; the rest are its area and group)."""
    if raw is None:
        return None
    for part in reversed(raw.split(":")):
        if part.startswith("R") and part[1:].isdigit():
            return part
    return None


def viewer_from_claims(claims: Mapping[str, Any], *, client_ods: Sequence[str]) -> Viewer:
    """The person, their selected role and its organisation, from verified ID token claims.

    Raises :class:`InvalidGrant` when the claims do not say enough (module
    docstring) or name an organisation the client is not registered for.
    """
    user_id = _text(claims.get("nhsid_useruid")) or _text(claims.get("sub"))
    if user_id is None:
        raise InvalidGrant("the ID token names no user (sub)")
    name = _text(claims.get("name"))
    if name is None:
        parts = [_text(claims.get(k)) for k in ("given_name", "family_name")]
        name = " ".join(p for p in parts if p) or ""
    roles = [r for r in claims.get("nhsid_nrbac_roles") or () if isinstance(r, dict)]
    selected = _text(claims.get("selected_roleid"))
    role: Mapping[str, Any] | None = None
    if selected is not None:
        role = next((r for r in roles if _text(r.get("person_roleid")) == selected), None)
        if roles and role is None:
            raise InvalidGrant("the ID token's selected role is not one of the user's roles")
    elif len(roles) == 1:
        role = roles[0]
        selected = _text(role.get("person_roleid"))
    if selected is None:
        raise InvalidGrant(
            "the ID token names no selected role (ask CIS2 for the selectedrole scope)"
        )
    org = _text(role.get("org_code")) if role is not None else None
    if org is None:
        if len(client_ods) != 1:
            raise InvalidGrant(
                "the ID token does not say which organisation the user's role is at, and "
                "this client is registered for several"
            )
        org = client_ods[0]
    org = org.upper()
    if org not in client_ods:
        raise InvalidGrant(
            "the user's selected role is at an organisation this client is not registered for"
        )
    org_name = None
    for entry in claims.get("nhsid_user_orgs") or ():
        if isinstance(entry, dict) and (_text(entry.get("org_code")) or "").upper() == org:
            org_name = _text(entry.get("org_name"))
    return Viewer(
        user_id=user_id,
        name=name,
        org_ods=org,
        org_name=org_name,
        role_profile_id=selected,
        role_code=_job_role_code(_text(role.get("role_code")) if role else None),
        role_name=_role_name(_text(role.get("role_name")) if role else None),
    )
