"""People signing in to the web pages, their sessions and signing out (issue 12).

A sign-in is begun for one organisation: the person's browser gets a random
flow id in a cookie and is sent to the organisation's provider; the state,
nonce and PKCE verifier wait in the database under the flow id's hash, for one
use within ten minutes. At the callback the provider's answer is verified
(:class:`~cpis.ports.web.IdentityProviders`) and a session made: a random id
(256 bits) for the browser's cookie, only its SHA-256 stored, so the database
holds nothing a browser could present. A session ends after
``idle`` without use or ``lifetime`` after sign-in, whichever comes first, and
at sign-out, which also signs the person out at their provider where it offers
RP-initiated logout. Expired sessions and sign-ins are deleted whenever a sign-in
begins.

Each form's CSRF token is derived from the session id (an HMAC keyed by it),
so it needs no storage, differs per session, and cannot be worked out from the
database. Sign-ins and sign-outs go to the audit log with the person.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from cpis.errors import SignInFailed
from cpis.model import AuditEntry, Organisation, Refused
from cpis.model.web import (
    OrgKind,
    PendingSignIn,
    SignInConfig,
    WebRole,
    WebSession,
    WebUser,
)
from cpis.ports.clock import Clock
from cpis.ports.database import Database
from cpis.ports.web import IdentityProviders, WebSessionStore
from cpis.services import lookup

# Who the audit log names as the client system for whatever people do in the pages.
WEB_CLIENT_ID = "cpis-web"
_PENDING_FOR = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class SessionLimits:
    idle: timedelta = timedelta(minutes=30)
    lifetime: timedelta = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class SignInServices:
    """What the sign-in use cases work with (built by ``app.create_app``)."""

    db: Database
    clock: Clock
    store: WebSessionStore
    providers: IdentityProviders
    limits: SessionLimits


def key_of(cookie_value: str) -> bytes:
    """The database key for a cookie's value (a session id or a sign-in flow id)."""
    return hashlib.sha256(cookie_value.encode("ascii", "replace")).digest()


def csrf_token(session_id: str) -> str:
    mac = hmac.new(session_id.encode("ascii", "replace"), b"cpis-csrf", hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def csrf_ok(session_id: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(csrf_token(session_id), given)


def audit_entry(user: WebUser, action: str, *, outcome: int = 200, **detail: str) -> AuditEntry:
    """An audit line naming the signed-in person (their id is sealed by the audit log)."""
    return AuditEntry(
        action=action,
        outcome=outcome,
        client_id=WEB_CLIENT_ID,
        role=user.role.value,
        org_ods=user.org_ods,
        user_id=user.user_id,
        detail=dict(detail),
    )


async def begin(
    svc: SignInServices, *, org_ods: str, redirect_uri: str, return_to: str
) -> tuple[str, str]:
    """Start signing in for ``org_ods``: (the flow id for the browser's cookie, the
    provider's URL to send the browser to)."""
    config = await svc.store.sign_in_config(org_ods)
    if config is None:
        raise SignInFailed("that organisation does not sign in to this service")
    # Expired sessions and abandoned sign-ins go as new ones begin: no worker needed,
    # and the table never holds more than a day's sign-ins.
    await svc.store.purge(now=svc.clock.now(), idle=svc.limits.idle)
    started = await svc.providers.begin(config, redirect_uri=redirect_uri)
    flow = secrets.token_urlsafe(32)
    await svc.store.put_pending(
        key_of(flow),
        PendingSignIn(
            org_ods=org_ods,
            state=started.state,
            nonce=started.nonce,
            code_verifier=started.code_verifier,
            redirect_uri=redirect_uri,
            return_to=return_to,
            expires_at=svc.clock.now() + _PENDING_FOR,
        ),
    )
    return flow, started.url


async def finish(
    svc: SignInServices, *, flow: str | None, params: Mapping[str, str]
) -> tuple[str, WebSession, str]:
    """Finish the sign-in this browser began: (the new session's id, the session, the
    page to return to)."""
    now = svc.clock.now()
    pending = await svc.store.take_pending(key_of(flow), now=now) if flow else None
    if pending is None:
        raise SignInFailed("this sign-in has expired or was started in another browser")
    config = await svc.store.sign_in_config(pending.org_ods)
    if config is None:
        raise SignInFailed("that organisation does not sign in to this service")
    signed = await svc.providers.finish(config, pending, params)
    user = dataclasses.replace(signed.user, org_name=await _org_name(svc.db, config))
    session = WebSession(
        user=user,
        created_at=now,
        last_seen_at=now,
        expires_at=now + svc.limits.lifetime,
        id_token=signed.id_token,
    )
    session_id = secrets.token_urlsafe(32)
    await svc.store.create_session(key_of(session_id), session)
    await svc.db.append_audit(audit_entry(user, "web_signed_in"), now)
    return session_id, session, pending.return_to


async def _org_name(db: Database, config: SignInConfig) -> str:
    if config.kind is OrgKind.LA:
        async with db.transaction() as tx:
            la = await tx.get_la(config.org_ods)
        return la.name if la is not None else config.org_ods
    return (await lookup.organisation(db, ods_code=config.org_ods)).name


async def current(svc: SignInServices, session_id: str | None) -> WebSession | None:
    """The live session with this id, or None."""
    if not session_id or len(session_id) > 128:
        return None
    return await svc.store.session(key_of(session_id), now=svc.clock.now(), idle=svc.limits.idle)


async def sign_out(
    svc: SignInServices, session_id: str, *, post_logout_redirect_uri: str
) -> str | None:
    """End the session; where to send the browser to sign out at the provider too."""
    session = await svc.store.end_session(key_of(session_id))
    if session is None:
        return None
    await svc.db.append_audit(audit_entry(session.user, "web_signed_out"), svc.clock.now())
    config = await svc.store.sign_in_config(session.user.org_ods)
    if config is None:
        return None
    return await svc.providers.logout_url(
        config,
        id_token_hint=session.id_token,
        post_logout_redirect_uri=post_logout_redirect_uri,
    )


async def options(svc: SignInServices) -> list[tuple[str, str, OrgKind]]:
    """The organisations people can sign in for: (ODS code, name, kind)."""
    return await svc.store.sign_in_options()


def _issuer_problem(issuer: str) -> str | None:
    parts = urlsplit(issuer)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        return "the issuer must be an https URL (http only on this machine, for a demo)"
    if parts.query or parts.fragment or parts.username or parts.password or issuer.endswith("/"):
        return "the issuer must be exactly as its ID tokens' iss gives it: no query, no trailing /"
    return None


async def register_sign_in(
    db: Database,
    store: WebSessionStore,
    config: SignInConfig,
    *,
    organisation: Organisation | None = None,
) -> SignInConfig | Refused:
    """Set up (or change) how an organisation's people sign in (``cpis la sign-in``,
    ``cpis org sign-in``); refused, changing nothing, unless the organisation is
    registered as that kind (a health ``organisation`` given is registered with it)
    and the set-up can work."""
    problem = _issuer_problem(config.issuer)
    if problem is not None:
        return Refused(problem)
    if not config.client_id.strip():
        return Refused("a client id is needed")
    if config.kind is OrgKind.LA:
        async with db.transaction() as tx:
            known = await tx.get_la(config.org_ods) is not None
        if not known:
            return Refused(f"local authority {config.org_ods} is not registered (cpis la add)")
        wanted = {WebRole.CASEWORKER, WebRole.MANAGER}
        if not config.role_values or not set(config.role_values.values()) <= wanted:
            return Refused("an LA's role values must map to caseworker or manager")
    else:
        async with db.transaction() as tx:
            known = await tx.get_organisation(config.org_ods) is not None
        if not known and organisation is None:
            return Refused(
                f"health organisation {config.org_ods} is not registered: give --name"
                " (and --setting-type) to register it"
            )
        if set(config.role_values.values()) - {WebRole.CLINICIAN}:
            return Refused("a health organisation's people can only be clinicians")
        if organisation is not None:
            await db.upsert_organisation(organisation)
    await store.put_sign_in_config(config)
    return config
