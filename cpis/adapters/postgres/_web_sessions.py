"""People's web sessions, unfinished sign-ins and each organisation's sign-in set-up
(:class:`~cpis.ports.web.WebSessionStore`, migration 0003).

Rows are found by keys the service derives from the browser's cookies (a hash of
each), so a database dump holds no value a browser could present. Who a person
is, the ID token kept for RP-initiated logout, and what a sign-in's callback
must check are sealed; role and organisation are kept plain, as the audit log
keeps them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from cpis.adapters.postgres._connection import Pooled
from cpis.model.web import OrgKind, PendingSignIn, SignInConfig, WebRole, WebSession, WebUser

_USER = "web_user"
_PENDING = "web_sign_in"
_CLIENT_SECRET = "web_client_secret"  # noqa: S105 (a vault purpose, not a secret)


class PgWebSessions(Pooled):
    async def sign_in_config(self, org_ods: str) -> SignInConfig | None:
        rows = await self._run(
            "SELECT org_ods, kind, issuer, client_id, client_secret, roles_claim, role_values,"
            " scope, private_key_jwt FROM web_sign_in_config WHERE org_ods = $1",
            org_ods,
        )
        return self._config(rows[0]) if rows else None

    def _config(self, r: asyncpg.Record) -> SignInConfig:
        secret = r["client_secret"]
        return SignInConfig(
            org_ods=r["org_ods"],
            kind=OrgKind(r["kind"]),
            issuer=r["issuer"],
            client_id=r["client_id"],
            client_secret=None if secret is None else self._vault.open(_CLIENT_SECRET, secret),
            roles_claim=r["roles_claim"],
            role_values={k: WebRole(v) for k, v in orjson.loads(r["role_values"]).items()},
            scope=r["scope"],
            private_key_jwt=r["private_key_jwt"],
        )

    async def sign_in_options(self) -> list[tuple[str, str, OrgKind]]:
        rows = await self._run(
            "SELECT c.org_ods, c.kind, coalesce(la.name, o.name, c.org_ods) AS name"
            " FROM web_sign_in_config c"
            " LEFT JOIN local_authority la ON la.ods_code = c.org_ods"
            " LEFT JOIN organisation o ON o.ods_code = c.org_ods"
            " ORDER BY name"
        )
        return [(r["org_ods"], r["name"], OrgKind(r["kind"])) for r in rows]

    async def put_sign_in_config(self, config: SignInConfig) -> None:
        secret = (
            None
            if config.client_secret is None
            else self._vault.seal(_CLIENT_SECRET, config.client_secret)
        )
        await self._run(
            "INSERT INTO web_sign_in_config (org_ods, kind, issuer, client_id, client_secret,"
            " roles_claim, role_values, scope, private_key_jwt)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)"
            " ON CONFLICT (org_ods) DO UPDATE SET kind = EXCLUDED.kind,"
            " issuer = EXCLUDED.issuer, client_id = EXCLUDED.client_id,"
            " client_secret = EXCLUDED.client_secret, roles_claim = EXCLUDED.roles_claim,"
            " role_values = EXCLUDED.role_values, scope = EXCLUDED.scope,"
            " private_key_jwt = EXCLUDED.private_key_jwt, updated_at = now()",
            config.org_ods,
            config.kind.value,
            config.issuer,
            config.client_id,
            secret,
            config.roles_claim,
            orjson.dumps({k: v.value for k, v in config.role_values.items()}).decode(),
            config.scope,
            config.private_key_jwt,
        )

    async def put_pending(self, key: bytes, pending: PendingSignIn) -> None:
        fields = [
            pending.state,
            pending.nonce,
            pending.code_verifier,
            pending.redirect_uri,
            pending.return_to,
        ]
        await self._run(
            "INSERT INTO web_sign_in_pending (key, org_ods, sealed, expires_at)"
            " VALUES ($1, $2, $3, $4)",
            key,
            pending.org_ods,
            self._vault.seal(_PENDING, orjson.dumps(fields).decode()),
            pending.expires_at,
        )

    async def take_pending(self, key: bytes, *, now: datetime) -> PendingSignIn | None:
        rows = await self._run(
            "DELETE FROM web_sign_in_pending WHERE key = $1 RETURNING org_ods, sealed, expires_at",
            key,
        )
        if not rows or rows[0]["expires_at"] <= now:
            return None
        r = rows[0]
        state, nonce, verifier, redirect_uri, return_to = orjson.loads(
            self._vault.open(_PENDING, r["sealed"])
        )
        return PendingSignIn(
            org_ods=r["org_ods"],
            state=state,
            nonce=nonce,
            code_verifier=verifier,
            redirect_uri=redirect_uri,
            return_to=return_to,
            expires_at=r["expires_at"],
        )

    async def create_session(self, key: bytes, session: WebSession) -> None:
        u = session.user
        person = [u.user_id, u.name, u.org_name, u.job_role, u.role_code, u.role_profile_id]
        sealed = self._vault.seal(_USER, orjson.dumps([person, session.id_token]).decode())
        await self._run(
            "INSERT INTO web_session (key, org_ods, role, sealed_user, created_at,"
            " last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            key,
            u.org_ods,
            u.role.value,
            sealed,
            session.created_at,
            session.last_seen_at,
            session.expires_at,
        )

    def _session(self, r: asyncpg.Record) -> WebSession:
        person, id_token = orjson.loads(self._vault.open(_USER, r["sealed_user"]))
        user_id, name, org_name, job_role, role_code, role_profile_id = person
        return WebSession(
            user=WebUser(
                user_id=user_id,
                name=name,
                role=WebRole(r["role"]),
                org_ods=r["org_ods"],
                org_name=org_name,
                job_role=job_role,
                role_code=role_code,
                role_profile_id=role_profile_id,
            ),
            created_at=r["created_at"],
            last_seen_at=r["last_seen_at"],
            expires_at=r["expires_at"],
            id_token=id_token,
        )

    async def session(self, key: bytes, *, now: datetime, idle: timedelta) -> WebSession | None:
        # One statement: a live session has its last use moved on (at most once a
        # minute, to spare a write per page), an expired one is deleted.
        rows: list[Any] = await self._run(
            "WITH found AS (SELECT * FROM web_session WHERE key = $1),"
            " gone AS (DELETE FROM web_session s USING found f WHERE s.key = f.key"
            "  AND (f.expires_at <= $2 OR f.last_seen_at <= $2 - $3::interval) RETURNING s.key),"
            " touched AS (UPDATE web_session s SET last_seen_at = $2 FROM found f"
            "  WHERE s.key = f.key AND f.expires_at > $2 AND f.last_seen_at > $2 - $3::interval"
            "  AND f.last_seen_at < $2 - interval '1 minute' RETURNING s.key)"
            " SELECT f.*, NOT EXISTS (SELECT 1 FROM gone) AS live FROM found f",
            key,
            now,
            idle,
        )
        if not rows or not rows[0]["live"]:
            return None
        return self._session(rows[0])

    async def end_session(self, key: bytes) -> WebSession | None:
        rows = await self._run("DELETE FROM web_session WHERE key = $1 RETURNING *", key)
        return self._session(rows[0]) if rows else None

    async def purge(self, *, now: datetime, idle: timedelta) -> int:
        rows = await self._run(
            "WITH s AS (DELETE FROM web_session WHERE expires_at <= $1"
            "  OR last_seen_at <= $1 - $2::interval RETURNING 1),"
            " p AS (DELETE FROM web_sign_in_pending WHERE expires_at <= $1 RETURNING 1)"
            " SELECT (SELECT count(*) FROM s) AS sessions",
            now,
            idle,
        )
        return int(rows[0]["sessions"])
