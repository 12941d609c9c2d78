"""Reference data: local authorities, organisations and client systems, with the
used-token ids (jti) that stop a client assertion being replayed."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from cpis.adapters.postgres._connection import Pooled, Session
from cpis.la_details import checked_la, checked_name, checked_phone, checked_window
from cpis.model import Client, LocalAuthority, Organisation, Role, SettingType
from cpis.model.la import MeshMailbox


def la_from_row(r: asyncpg.Record) -> LocalAuthority:
    """An LA from a row with its columns named as in a plan's (``la_ods``, ``la_name``...)."""
    return LocalAuthority(
        ods_code=r["la_ods"],
        name=r["la_name"],
        office_phone=r["office_phone"],
        edt_phone=r["edt_phone"],
        repeat_window_hours=r["repeat_window_hours"],
        version=r["la_version"],
        updated_at=r["la_updated_at"],
    )


class PgReference(Session):
    """LAs and organisations, read in a transaction (part of
    :class:`~cpis.ports.plans.PlanStore`)."""

    async def get_la(self, ods_code: str) -> LocalAuthority | None:
        r = await self._conn.fetchrow(
            "SELECT ods_code AS la_ods, name AS la_name, office_phone, edt_phone,"
            " repeat_window_hours, version AS la_version, updated_at AS la_updated_at"
            " FROM local_authority WHERE ods_code = $1",
            ods_code,
        )
        return None if r is None else la_from_row(r)

    async def get_organisation(self, ods_code: str) -> Organisation | None:
        r = await self._conn.fetchrow(
            "SELECT ods_code, name, setting_type FROM organisation WHERE ods_code = $1", ods_code
        )
        if r is None:
            return None
        return Organisation(r["ods_code"], r["name"], SettingType(r["setting_type"]))


class PgRegistry(Pooled):
    """Client systems and their used jti (:class:`~cpis.ports.tokens.ClientRegistry`),
    and the administration of all of it (the CLI), each statement committing alone."""

    async def get_client(self, client_id: str) -> Client | None:
        rows = await self._run(
            "SELECT id, role, ods_codes, jwks, silent_only, active, cis2_client_id"
            " FROM client WHERE id = $1",
            client_id,
        )
        if not rows:
            return None
        r = rows[0]
        return Client(
            id=r["id"],
            role=Role(r["role"]),
            ods_codes=tuple(r["ods_codes"]),
            jwks=r["jwks"],
            silent_only=r["silent_only"],
            active=r["active"],
            cis2_client_id=r["cis2_client_id"],
        )

    async def use_jti(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        rows = await self._run(
            "WITH gone AS (DELETE FROM used_jti WHERE expires_at < now() - interval '1 hour')"
            " INSERT INTO used_jti (client_id, jti, expires_at) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            client_id,
            jti,
            expires_at,
        )
        return bool(rows)

    # --- administration (CLI) ----------------------------------------------

    async def upsert_la(self, la: LocalAuthority) -> None:
        """Register or replace an LA; its details are checked first (:mod:`cpis.la_details`),
        so no caller can store a phone number a clinician could not ring."""
        la = checked_la(la)
        await self._run(
            "INSERT INTO local_authority (ods_code, name, office_phone, edt_phone,"
            " repeat_window_hours) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (ods_code) DO UPDATE SET name = EXCLUDED.name,"
            " office_phone = EXCLUDED.office_phone, edt_phone = EXCLUDED.edt_phone,"
            " repeat_window_hours = EXCLUDED.repeat_window_hours,"
            " version = local_authority.version + 1, updated_at = now()",
            la.ods_code,
            la.name,
            la.office_phone,
            la.edt_phone,
            la.repeat_window_hours,
        )

    async def update_la(
        self,
        ods_code: str,
        *,
        name: str | None = None,
        office_phone: str | None = None,
        edt_phone: str | None = None,
        repeat_window_hours: int | None = None,
        expected_version: int | None = None,
    ) -> LocalAuthority | None:
        """Change only the details given (each checked as :meth:`upsert_la` checks it);
        the LA's version goes up. None when no such LA is registered, or when
        ``expected_version`` is given and the LA's version is another (a lost update)."""
        rows = await self._run(
            "UPDATE local_authority SET name = coalesce($2, name),"
            " office_phone = coalesce($3, office_phone), edt_phone = coalesce($4, edt_phone),"
            " repeat_window_hours = coalesce($5, repeat_window_hours),"
            " version = version + 1, updated_at = now()"
            " WHERE ods_code = $1 AND ($6::integer IS NULL OR version = $6)"
            " RETURNING ods_code AS la_ods, name AS la_name, office_phone, edt_phone,"
            " repeat_window_hours, version AS la_version, updated_at AS la_updated_at",
            ods_code,
            None if name is None else checked_name(name),
            None if office_phone is None else checked_phone("office-hours phone", office_phone),
            None if edt_phone is None else checked_phone("emergency duty team phone", edt_phone),
            None if repeat_window_hours is None else checked_window(repeat_window_hours),
            expected_version,
        )
        return la_from_row(rows[0]) if rows else None

    async def set_client_active(self, client_id: str, *, active: bool) -> bool:
        """Whether such a client exists; from now on it can (or cannot) get tokens."""
        rows = await self._run(
            "UPDATE client SET active = $2 WHERE id = $1 RETURNING id", client_id, active
        )
        return bool(rows)

    async def set_la_mesh(self, la_ods: str, mailbox: str, workflow_id: str) -> None:
        await self._run(
            "INSERT INTO la_mesh (la_ods, mailbox, workflow_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (la_ods) DO UPDATE SET mailbox = EXCLUDED.mailbox,"
            " workflow_id = EXCLUDED.workflow_id",
            la_ods,
            mailbox,
            workflow_id,
        )

    async def get_la_mesh(self, la_ods: str) -> MeshMailbox | None:
        rows = await self._run("SELECT mailbox, workflow_id FROM la_mesh WHERE la_ods = $1", la_ods)
        return MeshMailbox(rows[0]["mailbox"], rows[0]["workflow_id"]) if rows else None

    async def clear_la_mesh(self, la_ods: str) -> bool:
        rows = await self._run("DELETE FROM la_mesh WHERE la_ods = $1 RETURNING 1", la_ods)
        return bool(rows)

    async def upsert_organisation(self, org: Organisation) -> None:
        await self._run(
            "INSERT INTO organisation (ods_code, name, setting_type) VALUES ($1, $2, $3)"
            " ON CONFLICT (ods_code) DO UPDATE SET name = EXCLUDED.name,"
            " setting_type = EXCLUDED.setting_type",
            org.ods_code,
            org.name,
            org.setting_type.value,
        )

    async def upsert_client(self, client: Client) -> None:
        await self._run(
            "INSERT INTO client (id, role, ods_codes, jwks, silent_only, active, cis2_client_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, ods_codes = EXCLUDED.ods_codes,"
            " jwks = EXCLUDED.jwks, silent_only = EXCLUDED.silent_only, active = EXCLUDED.active,"
            " cis2_client_id = EXCLUDED.cis2_client_id",
            client.id,
            client.role.value,
            list(client.ods_codes),
            client.jwks,
            client.silent_only,
            client.active,
            client.cis2_client_id,
        )
