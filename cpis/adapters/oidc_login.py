"""Signing people in to the web pages with their organisation's OpenID Connect
provider (:class:`~cpis.ports.web.IdentityProviders`; docs/sign-in.md).

The relying party is authlib's (its OAuth 2 client on httpx2, and its OpenID
Connect mixin): discovery, the authorization code flow with PKCE (S256),
``state`` and ``nonce``, the token request with the client's authentication,
the ID token's signature checked against the issuer's JWKS (fetched again once
when a token names a key not yet seen) and its claims by joserfc's registry:
``iss`` is the registered issuer, ``aud`` the client id (``azp`` when there are
several audiences), ``exp`` in the future (a minute's skew), ``nonce`` the one
sent. Checked here besides: the discovery document's ``issuer`` is the
registered one (OpenID Connect Discovery §4.3), and so is the ``iss`` in the
authorization response when the provider sends one (RFC 9207, which the demo
provider and Entra ID do). At the token endpoint the service authenticates as
the organisation set it up: a JWT signed with the service's own ES256 key
(``private_key_jwt``, RFC 7523; its public key is the service's JWKS), a client
secret (``client_secret_basic``), or none (a public client: PKCE alone).

What the verified claims mean is the organisation's kind:

- **an LA**: the ``roles_claim`` (Entra ID's app roles, ``roles``) holds values
  the operator mapped to ``caseworker`` or ``manager``; a person with both is a
  manager, with neither is refused;
- **health (NHS CIS2)**: the claims are CIS2's, read exactly as the token
  exchange reads them (:func:`cpis.adapters.cis2.viewer_from_claims`): an
  identity assurance level of at least 3, the selected role, its job role and
  organisation, which must be this one; CIS2 gives the RBAC claims from its
  userinfo endpoint, so that is read too and merged (its ``sub`` must be the ID
  token's, OpenID Connect Core §5.3.2). If the operator listed RBAC job role
  codes, the selected role must be one of them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import httpx2
import structlog
from authlib.integrations.base_client import BaseApp, OAuthError
from authlib.integrations.base_client.async_app import AsyncOAuth2Mixin
from authlib.integrations.base_client.async_openid import AsyncOpenIDMixin
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from cpis.adapters.cis2 import MIN_ASSURANCE, viewer_from_claims
from cpis.errors import InvalidGrant, SignInFailed, Unavailable
from cpis.model.web import (
    AuthorizationStart,
    OrgKind,
    PendingSignIn,
    SignedIn,
    SignInConfig,
    WebRole,
    WebUser,
)

log = structlog.get_logger("cpis.sign_in")

_TIMEOUT_SECONDS = 10.0
_ASSERTION_SECONDS = 300
_LEEWAY_SECONDS = 60
# Discovery documents and keys are kept this long, then read again.
_CACHE_SECONDS = 3600.0
# A person with several roles gets the one that may do most.
_RANK = {WebRole.CASEWORKER: 1, WebRole.MANAGER: 2}
# The authorization response's error codes (RFC 6749 §4.1.2.1, OpenID Connect Core §3.1.2.6).
_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "interaction_required",
        "login_required",
        "account_selection_required",
        "consent_required",
        "invalid_request_uri",
        "invalid_request_object",
        "request_not_supported",
        "request_uri_not_supported",
        "registration_not_supported",
    }
)


class _RelyingParty(AsyncOAuth2Mixin, AsyncOpenIDMixin, BaseApp):  # type: ignore[misc]
    """authlib's OpenID Connect client for one organisation's registration."""

    client_cls = AsyncOAuth2Client


def _fingerprint(config: SignInConfig) -> str:
    parts = (
        config.issuer,
        config.client_id,
        config.client_secret or "",
        config.scopes,
        config.token_auth,
    )
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class _SignedAssertion(PrivateKeyJWT):  # type: ignore[misc]
    """``private_key_jwt`` (RFC 7523 §2.2) with the service's signing key, named by its
    key id in the service's JWKS, and a short life: authlib's default is an hour, the
    NHS England API platform accepts at most five minutes."""

    name = "private_key_jwt"

    def __init__(self, key: ECKey) -> None:
        super().__init__(alg="ES256", headers={"kid": key.thumbprint()})
        self._key = key

    def sign(self, auth: Any, token_endpoint: str) -> bytes:
        return private_key_jwt_sign(  # type: ignore[no-any-return]
            self._key,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            header=dict(self.headers),
            alg=self.alg,
            expires_in=_ASSERTION_SECONDS,
        )


class OidcSignIn:
    """Each organisation's provider, its discovery document and keys cached for an hour.

    ``signing_key`` is the service's own (the one its JWKS publishes), for
    organisations set up to take ``private_key_jwt``.
    """

    def __init__(
        self, *, signing_key: ec.EllipticCurvePrivateKey | None = None, now: Any = time.time
    ) -> None:
        self._parties: dict[str, tuple[float, _RelyingParty]] = {}
        self._now = now
        self._assertion = (
            _SignedAssertion(ECKey.import_key(signing_key)) if signing_key is not None else None
        )

    def _party(self, config: SignInConfig) -> _RelyingParty:
        key = _fingerprint(config)
        hit = self._parties.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        signed = config.private_key_jwt
        if signed and self._assertion is None:
            raise SignInFailed("this service has no key to sign in to that organisation with")
        party = _RelyingParty(
            framework=None,
            name=config.org_ods,
            client_id=config.client_id,
            client_secret=None if signed else config.client_secret,
            server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
            client_kwargs={
                "scope": config.scopes,
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": config.token_auth,
                "timeout": _TIMEOUT_SECONDS,
            },
            client_auth_methods=[self._assertion] if signed else None,
        )
        if len(self._parties) > 1000:
            self._parties.clear()
        self._parties[key] = (time.monotonic() + _CACHE_SECONDS, party)
        return party

    async def _metadata(self, config: SignInConfig, party: _RelyingParty) -> dict[str, Any]:
        try:
            metadata: dict[str, Any] = await party.load_server_metadata()
        except (httpx2.HTTPError, ValueError) as exc:
            self._parties.pop(_fingerprint(config), None)
            log.warning(
                "sign_in_provider_unreachable", org=config.org_ods, error=type(exc).__name__
            )
            raise Unavailable(
                "the organisation's sign-in service cannot be reached", retry_after=30
            ) from None
        if metadata.get("issuer") != config.issuer:
            self._parties.pop(_fingerprint(config), None)
            log.warning("sign_in_issuer_mismatch", org=config.org_ods)
            raise SignInFailed("the organisation's sign-in service is not set up correctly")
        return metadata

    async def begin(self, config: SignInConfig, *, redirect_uri: str) -> AuthorizationStart:
        party = self._party(config)
        await self._metadata(config, party)
        extra: dict[str, str] = {}
        if config.kind is OrgKind.HEALTH:
            # CIS2's "Role selection": make a signed-in person choose their role again.
            extra["prompt"] = "login"
        started = await party.create_authorization_url(redirect_uri, **extra)
        return AuthorizationStart(
            url=started["url"],
            state=started["state"],
            nonce=started["nonce"],
            code_verifier=started["code_verifier"],
        )

    async def finish(
        self, config: SignInConfig, pending: PendingSignIn, params: Mapping[str, str]
    ) -> SignedIn:
        party = self._party(config)
        metadata = await self._metadata(config, party)
        if params.get("error"):
            # Logged only as one of OAuth's codes: the query is the browser's to write.
            error = params["error"] if params["error"] in _OAUTH_ERRORS else "other"
            log.info("sign_in_refused_by_provider", org=config.org_ods, error=error)
            raise SignInFailed("the sign-in was not completed at your organisation")
        if params.get("state") != pending.state:
            raise SignInFailed("this sign-in has expired or was started elsewhere")
        issued_by = params.get("iss")
        if issued_by is not None and issued_by != config.issuer:
            raise SignInFailed("this sign-in came back from another sign-in service")
        if metadata.get("authorization_response_iss_parameter_supported") and issued_by is None:
            raise SignInFailed("this sign-in came back without its issuer")
        code = params.get("code")
        if not code:
            raise SignInFailed("this sign-in came back without a code")
        try:
            token = await party.fetch_access_token(
                redirect_uri=pending.redirect_uri, code=code, code_verifier=pending.code_verifier
            )
            claims = await verified_claims(party, config, token, nonce=pending.nonce)
            if config.kind is OrgKind.HEALTH and metadata.get("userinfo_endpoint"):
                info = dict(await party.userinfo(token=token))
                if info.get("sub") != claims.get("sub"):
                    raise SignInFailed(
                        "your organisation's sign-in service answered inconsistently"
                    )
                claims = {**info, **claims}
        except (OAuthError, JoseError) as exc:
            log.info("sign_in_not_verified", org=config.org_ods, error=type(exc).__name__)
            raise SignInFailed("your sign-in could not be verified; please try again") from None
        except httpx2.HTTPError as exc:
            log.warning("sign_in_provider_failed", org=config.org_ods, error=type(exc).__name__)
            raise Unavailable(
                "the organisation's sign-in service cannot be reached", retry_after=30
            ) from None
        return SignedIn(user=person_from_claims(config, claims), id_token=token["id_token"])

    async def logout_url(
        self, config: SignInConfig, *, id_token_hint: str | None, post_logout_redirect_uri: str
    ) -> str | None:
        party = self._party(config)
        try:
            metadata = await self._metadata(config, party)
        except (Unavailable, SignInFailed):
            return None
        if not metadata.get("end_session_endpoint"):
            return None
        made = await party.create_logout_url(
            post_logout_redirect_uri=post_logout_redirect_uri,
            id_token_hint=id_token_hint,
            client_id=config.client_id,
        )
        url: str = made["url"]
        return url


async def verified_claims(
    party: _RelyingParty, config: SignInConfig, token: Mapping[str, Any], *, nonce: str
) -> dict[str, Any]:
    """The claims of the token response's ID token, once its signature (the issuer's
    keys), ``iss``, ``aud``, ``exp``, ``nonce`` (and ``azp``, ``at_hash`` where given)
    are what they must be; ``OAuthError`` or ``JoseError`` otherwise."""
    if not isinstance(token.get("id_token"), str):
        raise SignInFailed("your organisation's sign-in service sent no ID token")
    claims = await party.parse_id_token(
        dict(token),
        nonce=nonce,
        claims_options={
            "iss": {"essential": True, "value": config.issuer},
            "aud": {"essential": True, "value": config.client_id},
            "exp": {"essential": True},
            "sub": {"essential": True},
        },
        leeway=_LEEWAY_SECONDS,
    )
    return dict(claims)


def _text(value: object, limit: int = 200) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if value and len(value) <= limit and value.isprintable() else None


def _assurance(value: object) -> int:
    text = (
        str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    )
    return int(text) if text.isascii() and text.isdigit() and len(text) < 3 else 0


def person_from_claims(config: SignInConfig, claims: Mapping[str, Any]) -> WebUser:
    """The person and the role the service gives them, from verified claims (module
    docstring); :class:`SignInFailed` when the claims give them no role here."""
    if config.kind is OrgKind.HEALTH:
        return _clinician(config, claims)
    raw = claims.get(config.roles_claim)
    values = raw if isinstance(raw, list) else [raw]
    roles = {
        config.role_values[v] for v in values if isinstance(v, str) and v in config.role_values
    }
    roles &= set(_RANK)
    if not roles:
        raise SignInFailed(
            "your account has no role in this service: ask your organisation to give you one"
        )
    user_id = _text(claims.get("sub"))
    if user_id is None:
        raise SignInFailed("your sign-in did not say who you are")
    name = _text(claims.get("name")) or _text(claims.get("preferred_username")) or "Unnamed user"
    return WebUser(
        user_id=user_id,
        name=name,
        role=max(roles, key=_RANK.__getitem__),
        org_ods=config.org_ods,
        org_name=config.org_ods,
    )


def _clinician(config: SignInConfig, claims: Mapping[str, Any]) -> WebUser:
    levels = [claims.get("id_assurance_level")]
    if "authentication_assurance_level" in claims:
        levels.append(claims["authentication_assurance_level"])
    if any(_assurance(level) < MIN_ASSURANCE for level in levels):
        raise SignInFailed("this service needs a smartcard (assurance level 3) sign-in")
    try:
        viewer = viewer_from_claims(claims, client_ods=[config.org_ods])
    except InvalidGrant:
        raise SignInFailed(
            "your selected role is not at an organisation that uses this service"
        ) from None
    if config.role_values and viewer.role_code not in config.role_values:
        raise SignInFailed("your selected role may not look children up in this service")
    return WebUser(
        user_id=viewer.user_id,
        name=viewer.name or "Unnamed user",
        role=WebRole.CLINICIAN,
        org_ods=viewer.org_ods,
        org_name=viewer.org_name or viewer.org_ods,
        job_role=viewer.role_name or "",
        role_code=viewer.role_code,
        role_profile_id=viewer.role_profile_id,
    )
