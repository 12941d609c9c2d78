"""What the web pages need (issue 12): people's sessions and sign-ins kept in the
database, and each organisation's OpenID Connect provider."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

from cpis.model.web import (
    AuthorizationStart,
    OrgKind,
    PendingSignIn,
    SignedIn,
    SignInConfig,
    WebSession,
)


class WebSessionStore(Protocol):
    """Sessions and unfinished sign-ins, found by keys the browser's cookies hash to
    (the cookies' values are never stored), and the organisations' sign-in set-up."""

    async def sign_in_config(self, org_ods: str) -> SignInConfig | None: ...

    async def sign_in_options(self) -> list[tuple[str, str, OrgKind]]:
        """(ODS code, name, kind) of every organisation people can sign in for."""

    async def put_sign_in_config(self, config: SignInConfig) -> None: ...

    async def put_pending(self, key: bytes, pending: PendingSignIn) -> None: ...

    async def take_pending(self, key: bytes, *, now: datetime) -> PendingSignIn | None:
        """The unfinished sign-in under ``key``, removed (one use); None if none or expired."""

    async def create_session(self, key: bytes, session: WebSession) -> None: ...

    async def session(self, key: bytes, *, now: datetime, idle: timedelta) -> WebSession | None:
        """The live session under ``key``, its last use moved to ``now``; None (and the
        session removed) when there is none, it has been idle longer than ``idle``,
        or it is past its absolute lifetime."""

    async def end_session(self, key: bytes) -> WebSession | None:
        """Remove the session under ``key``; what it was, if there was one."""

    async def purge(self, *, now: datetime, idle: timedelta) -> int:
        """Remove expired sessions and unfinished sign-ins; how many sessions went."""


class IdentityProviders(Protocol):
    """Each organisation's OpenID Connect provider, as a relying party sees it."""

    async def begin(self, config: SignInConfig, *, redirect_uri: str) -> AuthorizationStart:
        """The authorization request (code flow, PKCE S256, state and nonce)."""

    async def finish(
        self, config: SignInConfig, pending: PendingSignIn, params: Mapping[str, str]
    ) -> SignedIn:
        """Redeem the callback's code and verify the ID token; the person and their role.
        Raises :class:`~cpis.errors.SignInFailed` for anything not acceptable."""

    async def logout_url(
        self, config: SignInConfig, *, id_token_hint: str | None, post_logout_redirect_uri: str
    ) -> str | None:
        """Where to send the browser to sign out at the provider too (RP-initiated
        logout), or None when the provider offers no such endpoint."""
