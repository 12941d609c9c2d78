"""PostgreSQL through asyncpg: the only module that sees ``asyncpg.Record``.

Personal data is hashed and sealed here, on its way in, through the
:class:`~cpis.ports.Vault`; callers pass and receive plain domain values.
Connection failures are translated to :class:`cpis.errors.Unavailable` at this
edge, so the web layer answers 503 with Retry-After instead of 500.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from cpis.adapters.ids import uuid7
from cpis.errors import Unavailable
from cpis.model import (
    AccessEvent,
    Accessor,
    Client,
    LocalAuthority,
    Organisation,
    Plan,
    PlanFields,
    PlanType,
    Role,
    SettingType,
)
from cpis.ports import AuditEntry, StoredAccessEvent, Vault

# A pooled connection is a proxy for a Connection; both offer the same calls.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "migrations"
# Any constant will do; it only has to be the same in every replica.
_MIGRATION_LOCK = 7_201_843_551

# Errors that mean "the database is not there right now", not "the query is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.ConnectionFailureError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release RESET ALL round trip: nothing here leaves session
    state behind (locks are transaction-scoped; the migration lock is released
    explicitly), and an open transaction is still rolled back by asyncpg itself."""


async def create_pool(
    dsn: str, *, min_size: int, max_size: int, statement_timeout_ms: int
) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            server_settings={"statement_timeout": str(statement_timeout_ms)},
            reset=_no_session_state,
            timeout=10,
        )
    except UNAVAILABLE as exc:
        raise Unavailable("database unreachable") from exc
    assert pool is not None
    return pool


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, Path]]:
    return sorted((p.stem, p) for p in directory.glob("*.sql"))


async def migrate(pool: asyncpg.Pool, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations, each in its own transaction; returns what was applied.

    A session advisory lock makes two replicas starting at once take turns:
    the second finds everything applied and does nothing.
    """
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migration")}
            for version, path in migration_files(directory):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO schema_migration (version) VALUES ($1)", version
                    )
                applied.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied


_PLAN_COLUMNS = """
    p.id, p.la_ods, p.la_plan_id, p.updated_at, v.version, v.nhs_sealed, v.plan_type,
    v.start_date, v.end_date, v.delete_date, v.birth_sealed, v.family_sealed, v.given_sealed,
    v.recorded_at,
    la.name AS la_name, la.office_phone, la.edt_phone, la.repeat_window_hours,
    la.version AS la_version, la.updated_at AS la_updated_at
"""

# An upload's upserts, sealed, on their way to plan and plan_version
# (PgTransaction.put_plans). ``nth`` numbers a plan id's rows in file order
# and ``total`` counts them, so one statement can give each row its version.
_UPLOAD_PLAN_TABLE = """
    CREATE TEMPORARY TABLE upload_plan (
        la_plan_id text NOT NULL, nth integer NOT NULL, total integer NOT NULL,
        subject_key bytea NOT NULL, nhs_sealed bytea NOT NULL, plan_type text NOT NULL,
        start_date date NOT NULL, end_date date, delete_date date,
        birth_sealed bytea, family_sealed bytea, given_sealed bytea
    ) ON COMMIT DROP
"""
_UPLOAD_PLAN_COLUMNS = (
    "la_plan_id", "nth", "total", "subject_key", "nhs_sealed", "plan_type", "start_date",
    "end_date", "delete_date", "birth_sealed", "family_sealed", "given_sealed",
)  # fmt: skip
# What put_plan does once per call, once per plan: a plan given k times moves
# k versions on, its last row becomes the current one, and each row becomes
# the version it would have been had the calls been made one by one.
_UPSERT_UPLOAD_PLANS = """
    WITH up AS (
        INSERT INTO plan AS p (id, la_ods, la_plan_id, subject_key, version, updated_at)
        SELECT gen_random_uuid(), $1, la_plan_id, subject_key, total, $2
        FROM upload_plan WHERE nth = total
        ON CONFLICT (la_ods, la_plan_id) DO UPDATE
        SET version = p.version + EXCLUDED.version, subject_key = EXCLUDED.subject_key,
            updated_at = EXCLUDED.updated_at
        RETURNING p.id, p.la_plan_id, p.version
    )
    INSERT INTO plan_version (plan_id, version, nhs_sealed, plan_type, start_date, end_date,
        delete_date, birth_sealed, family_sealed, given_sealed, recorded_at)
    SELECT up.id, up.version - u.total + u.nth, u.nhs_sealed, u.plan_type, u.start_date,
        u.end_date, u.delete_date, u.birth_sealed, u.family_sealed, u.given_sealed, $2
    FROM upload_plan u JOIN up ON up.la_plan_id = u.la_plan_id
"""
_PROGRESS_EVERY = 5_000

_EVENT_COLUMNS = """
    id, nhs_sealed, occurred_at, client_id, org_ods, org_name, setting_type, user_id,
    user_name, user_role, trace_id, la_codes, is_repeat
"""


def seal_text(vault: Vault, purpose: str, value: str) -> str:
    """A sealed value that fits a text column (e.g. a text[] of secrets)."""
    return "sealed:" + base64.b64encode(vault.seal(purpose, value)).decode("ascii")


def open_text(vault: Vault, purpose: str, text: str) -> str:
    if not text.startswith("sealed:"):
        return text  # written before values were sealed
    return vault.open(purpose, base64.b64decode(text[len("sealed:") :]))


def access_event_from_row(r: asyncpg.Record, vault: Vault, *, id_column: str = "id") -> AccessEvent:
    """An access event from a row with access_event's columns (shared by the stores)."""
    return AccessEvent(
        id=r[id_column],
        nhs_number=vault.open("nhs_number", r["nhs_sealed"]),
        occurred_at=r["occurred_at"],
        accessor=Accessor(
            client_id=r["client_id"],
            org_ods=r["org_ods"],
            org_name=r["org_name"],
            setting_type=SettingType(r["setting_type"]),
            user_id=r["user_id"],
            user_name=r["user_name"],
            user_role=r["user_role"],
            trace_id=r["trace_id"],
        ),
        la_codes=tuple(r["la_codes"]),
    )


class PgTransaction:
    """The :class:`~cpis.ports.Transaction` port over one asyncpg connection."""

    def __init__(self, conn: Connection, vault: Vault) -> None:
        self._conn = conn
        self._vault = vault
        self._subjects: dict[str, bytes] = {}

    # --- plans -----------------------------------------------------------

    def _open_opt(self, purpose: str, sealed: bytes | None) -> str | None:
        return None if sealed is None else self._vault.open(purpose, sealed)

    def _plan(self, r: asyncpg.Record) -> Plan:
        birth = self._open_opt("birth_date", r["birth_sealed"])
        fields = PlanFields(
            nhs_number=self._vault.open("nhs_number", r["nhs_sealed"]),
            plan_type=PlanType(r["plan_type"]),
            start_date=r["start_date"],
            end_date=r["end_date"],
            delete_date=r["delete_date"],
            birth_date=None if birth is None else date.fromisoformat(birth),
            family_name=self._open_opt("family_name", r["family_sealed"]),
            given_name=self._open_opt("given_name", r["given_sealed"]),
        )
        return Plan(
            id=r["id"],
            la_ods=r["la_ods"],
            la_plan_id=r["la_plan_id"],
            fields=fields,
            version=r["version"],
            updated_at=r["recorded_at"],
        )

    @staticmethod
    def _la(r: asyncpg.Record) -> LocalAuthority:
        return LocalAuthority(
            ods_code=r["la_ods"],
            name=r["la_name"],
            office_phone=r["office_phone"],
            edt_phone=r["edt_phone"],
            repeat_window_hours=r["repeat_window_hours"],
            version=r["la_version"],
            updated_at=r["la_updated_at"],
        )

    def _subject(self, nhs_number: str) -> bytes:
        # The keyed hash is asked for several times per lookup; compute it once.
        key = self._subjects.get(nhs_number)
        if key is None:
            key = self._subjects[nhs_number] = self._vault.subject_key(nhs_number)
        return key

    async def visible_plan_rows(self, nhs_number: str) -> Sequence[tuple[Plan, LocalAuthority]]:
        # subject_plans() pins the plan to its indexes (migration 0006).
        rows = await self._conn.fetch("SELECT * FROM subject_plans($1)", self._subject(nhs_number))
        return [(self._plan(r), self._la(r)) for r in rows]

    async def get_plan(self, la_ods: str, la_plan_id: str) -> Plan | None:
        r = await self._conn.fetchrow(
            f"SELECT {_PLAN_COLUMNS} FROM plan p"  # noqa: S608
            " JOIN plan_version v ON v.plan_id = p.id AND v.version = p.version"
            " JOIN local_authority la ON la.ods_code = p.la_ods"
            " WHERE p.la_ods = $1 AND p.la_plan_id = $2",
            la_ods,
            la_plan_id,
        )
        return None if r is None else self._plan(r)

    async def get_plan_by_id(
        self, plan_id: uuid.UUID, version: int | None = None
    ) -> tuple[Plan, LocalAuthority] | None:
        r = await self._conn.fetchrow(
            f"SELECT {_PLAN_COLUMNS} FROM plan p"  # noqa: S608
            " JOIN plan_version v ON v.plan_id = p.id AND v.version = coalesce($2, p.version)"
            " JOIN local_authority la ON la.ods_code = p.la_ods"
            " WHERE p.id = $1",
            plan_id,
            version,
        )
        return None if r is None else (self._plan(r), self._la(r))

    async def put_plan(
        self, la_ods: str, la_plan_id: str, fields: PlanFields, at: datetime
    ) -> tuple[Plan, bool]:
        key = self._subject(fields.nhs_number)
        row = await self._conn.fetchrow(
            "INSERT INTO plan (id, la_ods, la_plan_id, subject_key, version, updated_at)"
            " VALUES ($1, $2, $3, $4, 1, $5)"
            " ON CONFLICT (la_ods, la_plan_id) DO UPDATE"
            " SET version = plan.version + 1, subject_key = EXCLUDED.subject_key,"
            "     updated_at = EXCLUDED.updated_at"
            " RETURNING id, version, (xmax = 0) AS created",
            uuid.uuid4(),
            la_ods,
            la_plan_id,
            key,
            at,
        )
        assert row is not None
        seal = self._vault.seal
        await self._conn.execute(
            "INSERT INTO plan_version (plan_id, version, nhs_sealed, plan_type, start_date,"
            " end_date, delete_date, birth_sealed, family_sealed, given_sealed, recorded_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            row["id"],
            row["version"],
            seal("nhs_number", fields.nhs_number),
            fields.plan_type.value,
            fields.start_date,
            fields.end_date,
            fields.delete_date,
            None
            if fields.birth_date is None
            else seal("birth_date", fields.birth_date.isoformat()),
            None if fields.family_name is None else seal("family_name", fields.family_name),
            None if fields.given_name is None else seal("given_name", fields.given_name),
            at,
        )
        plan = Plan(
            id=row["id"],
            la_ods=la_ods,
            la_plan_id=la_plan_id,
            fields=fields,
            version=row["version"],
            updated_at=at,
        )
        return plan, bool(row["created"])

    async def delete_plan(self, la_ods: str, la_plan_id: str) -> bool:
        result = await self._conn.execute(
            "DELETE FROM plan WHERE la_ods = $1 AND la_plan_id = $2", la_ods, la_plan_id
        )
        return bool(result.endswith(" 1"))

    # --- plans in bulk (uploads) ---------------------------------------------

    async def delete_plans(self, la_ods: str, la_plan_ids: Sequence[str]) -> frozenset[str]:
        if not la_plan_ids:
            return frozenset()
        rows = await self._conn.fetch(
            "DELETE FROM plan WHERE la_ods = $1 AND la_plan_id = ANY($2::text[])"
            " RETURNING la_plan_id",
            la_ods,
            list(la_plan_ids),
        )
        return frozenset(r["la_plan_id"] for r in rows)

    async def put_plans(
        self,
        la_ods: str,
        plans: Sequence[tuple[str, PlanFields]],
        at: datetime,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """``put_plan`` for each of ``plans`` in order, in a COPY and one statement.

        In a savepoint, so that a failure leaves the caller's transaction as
        it was; the temporary table is dropped before it ends, so the method
        can be called again in the same transaction.
        """
        if not plans:
            return
        async with self._conn.transaction():
            await self._conn.execute(_UPLOAD_PLAN_TABLE)
            await self._conn.copy_records_to_table(
                "upload_plan",
                records=self._sealed_plans(plans, progress),
                columns=_UPLOAD_PLAN_COLUMNS,
            )
            await self._conn.execute(_UPSERT_UPLOAD_PLANS, la_ods, at)
            await self._conn.execute("DROP TABLE upload_plan")

    def _sealed_plans(
        self, plans: Sequence[tuple[str, PlanFields]], progress: Callable[[int], None] | None
    ) -> Iterator[tuple[object, ...]]:
        """Rows for ``upload_plan``: sealed as ``put_plan`` seals, numbered within each plan.

        A generator, so asyncpg streams the COPY while later rows are sealed
        and the server works on earlier ones.
        """
        total = Counter(la_plan_id for la_plan_id, _ in plans)
        seen: dict[str, int] = {}
        seal = self._vault.seal
        subject_key = self._vault.subject_key
        for done, (la_plan_id, f) in enumerate(plans, start=1):
            nth = seen[la_plan_id] = seen.get(la_plan_id, 0) + 1
            birth = f.birth_date
            yield (
                la_plan_id,
                nth,
                total[la_plan_id],
                subject_key(f.nhs_number),
                seal("nhs_number", f.nhs_number),
                f.plan_type.value,
                f.start_date,
                f.end_date,
                f.delete_date,
                None if birth is None else seal("birth_date", birth.isoformat()),
                None if f.family_name is None else seal("family_name", f.family_name),
                None if f.given_name is None else seal("given_name", f.given_name),
            )
            if progress is not None and done % _PROGRESS_EVERY == 0:
                progress(done)
        if progress is not None:
            progress(len(plans))

    # --- access events -----------------------------------------------------

    async def record_access(
        self,
        nhs_number: str,
        accessor: Accessor,
        la_codes: Sequence[str],
        at: datetime,
        plan_ids: Mapping[str, Sequence[str]],
        audit: AuditEntry,
        based_on: Sequence[Plan],
    ) -> tuple[AccessEvent, tuple[str, ...]] | None:
        event_id = uuid7()
        subject = self._subject(nhs_number)
        queued = await self._conn.fetchval(
            "SELECT record_lookup($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
            " $15, $16, $17, $18, $19, $20)",
            subject,
            event_id,
            self._vault.seal("nhs_number", nhs_number),
            at,
            accessor.client_id,
            accessor.org_ods,
            accessor.org_name,
            accessor.setting_type.value,
            accessor.user_id,
            accessor.user_name,
            accessor.user_role,
            accessor.trace_id,
            list(la_codes),
            {k: list(v) for k, v in plan_ids.items()},
            audit.action,
            audit.role,
            audit.resource,
            subject.hex(),
            audit.detail,
            sorted(f"{p.id}:{p.version}" for p in based_on),
        )
        if queued is None:
            return None
        event = AccessEvent(
            id=event_id,
            nhs_number=nhs_number,
            occurred_at=at,
            accessor=accessor,
            la_codes=tuple(la_codes),
        )
        return event, tuple(queued)

    def _event(self, r: asyncpg.Record) -> StoredAccessEvent:
        return StoredAccessEvent(event=access_event_from_row(r, self._vault), repeat=r["is_repeat"])

    async def access_history(self, nhs_number: str, limit: int) -> Sequence[StoredAccessEvent]:
        rows = await self._conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM access_event"  # noqa: S608
            " WHERE subject_key = $1 AND NOT is_repeat ORDER BY occurred_at DESC, id LIMIT $2",
            self._subject(nhs_number),
            limit,
        )
        return [self._event(r) for r in rows]

    async def get_access_event(self, event_id: uuid.UUID) -> StoredAccessEvent | None:
        r = await self._conn.fetchrow(
            f"SELECT {_EVENT_COLUMNS} FROM access_event WHERE id = $1",  # noqa: S608
            event_id,
        )
        return None if r is None else self._event(r)

    # --- reference data ---------------------------------------------------

    async def get_la(self, ods_code: str) -> LocalAuthority | None:
        r = await self._conn.fetchrow(
            "SELECT ods_code AS la_ods, name AS la_name, office_phone, edt_phone,"
            " repeat_window_hours, version AS la_version, updated_at AS la_updated_at"
            " FROM local_authority WHERE ods_code = $1",
            ods_code,
        )
        return None if r is None else self._la(r)

    async def lock_uploads(self, la_ods: str) -> None:
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('upload:' || $1, 0))", la_ods
        )

    async def upload_acknowledgement(self, la_ods: str, sequence: int) -> dict[str, Any] | None:
        ack = await self._conn.fetchval(
            "SELECT acknowledgement FROM upload WHERE la_ods = $1 AND sequence = $2",
            la_ods,
            sequence,
        )
        return None if ack is None else self._opened_ack(ack)

    async def last_upload_sequence(self, la_ods: str) -> int | None:
        value = await self._conn.fetchval(
            "SELECT max(sequence) FROM upload WHERE la_ods = $1", la_ods
        )
        return None if value is None else int(value)

    async def store_upload(
        self, la_ods: str, sequence: int, file_code: str, ack: dict[str, Any], at: datetime
    ) -> None:
        await self._conn.execute(
            "INSERT INTO upload (la_ods, sequence, received_at, file_code, acknowledgement)"
            " VALUES ($1, $2, $3, $4, $5)",
            la_ods,
            sequence,
            at,
            file_code,
            self._sealed_ack(ack),
        )

    # An acknowledgement is stored as jsonb, and a database dump must not give
    # away an NHS number (SPEC §6): the new number a CPR05 record carries is
    # kept sealed, as new_nhs_number_sealed, and opened when it is read back.

    def _sealed_ack(self, ack: dict[str, Any]) -> dict[str, Any]:
        records = ack.get("records")
        if not records or not any("new_nhs_number" in r for r in records):
            return ack
        sealed = []
        for record in records:
            if "new_nhs_number" in record:
                record = dict(record)
                value = self._vault.seal("nhs_number", record.pop("new_nhs_number"))
                record["new_nhs_number_sealed"] = base64.b64encode(value).decode("ascii")
            sealed.append(record)
        return ack | {"records": sealed}

    def _opened_ack(self, ack: dict[str, Any]) -> dict[str, Any]:
        records = ack.get("records")
        if not records or not any("new_nhs_number_sealed" in r for r in records):
            return dict(ack)
        opened = []
        for record in records:
            if "new_nhs_number_sealed" in record:
                record = dict(record)
                value = base64.b64decode(record.pop("new_nhs_number_sealed"))
                record["new_nhs_number"] = self._vault.open("nhs_number", value)
            opened.append(record)
        return ack | {"records": opened}

    async def get_organisation(self, ods_code: str) -> Organisation | None:
        r = await self._conn.fetchrow(
            "SELECT ods_code, name, setting_type FROM organisation WHERE ods_code = $1", ods_code
        )
        if r is None:
            return None
        return Organisation(r["ods_code"], r["name"], SettingType(r["setting_type"]))

    async def append_audit(self, entry: AuditEntry, at: datetime) -> None:
        await _append_audit(self._conn, self._vault, entry, at, self._subjects)


async def _append_audit(
    conn: Connection,
    vault: Vault,
    entry: AuditEntry,
    at: datetime,
    known: Mapping[str, bytes] | None = None,
) -> None:
    subject = None
    if entry.subject is not None:
        key = (known or {}).get(entry.subject) or vault.subject_key(entry.subject)
        subject = key.hex()
    await conn.execute(
        "SELECT audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        at,
        entry.action,
        entry.outcome,
        entry.client_id,
        entry.role,
        entry.org_ods,
        entry.user_id,
        entry.resource,
        subject,
        entry.trace_id,
        entry.detail,
    )


class PgDatabase:
    """The :class:`~cpis.ports.Database` port over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, vault: Vault) -> None:
        self.pool = pool
        self._vault = vault

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTransaction]:
        try:
            async with self.pool.acquire(timeout=5) as conn, conn.transaction():
                yield PgTransaction(conn, self._vault)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PgTransaction]:
        """Like :meth:`transaction`, but each statement commits on its own."""
        try:
            async with self.pool.acquire(timeout=5) as conn:
                yield PgTransaction(conn, self._vault)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    async def _run(self, query: str, *args: Any) -> Any:
        try:
            async with self.pool.acquire(timeout=5) as conn:
                return await conn.fetch(query, *args)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    async def append_audit(self, entry: AuditEntry, at: datetime) -> None:
        try:
            async with self.pool.acquire(timeout=5) as conn:
                await _append_audit(conn, self._vault, entry, at)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc

    async def get_client(self, client_id: str) -> Client | None:
        rows = await self._run(
            "SELECT id, role, ods_codes, jwks, silent_only, active FROM client WHERE id = $1",
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

    async def ping(self) -> bool:
        try:
            await self._run("SELECT 1")
        except Unavailable:
            return False
        return True

    async def migrations_current(self) -> bool:
        try:
            rows = await self._run("SELECT version FROM schema_migration")
        except (Unavailable, asyncpg.exceptions.UndefinedTableError):
            return False
        return {r["version"] for r in rows} >= {v for v, _ in migration_files()}

    # --- administration (CLI) ----------------------------------------------

    async def upsert_la(self, la: LocalAuthority) -> None:
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

    async def set_la_mesh(self, la_ods: str, mailbox: str, workflow_id: str) -> None:
        await self._run(
            "INSERT INTO la_mesh (la_ods, mailbox, workflow_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (la_ods) DO UPDATE SET mailbox = EXCLUDED.mailbox,"
            " workflow_id = EXCLUDED.workflow_id",
            la_ods,
            mailbox,
            workflow_id,
        )

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
            "INSERT INTO client (id, role, ods_codes, jwks, silent_only, active)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, ods_codes = EXCLUDED.ods_codes,"
            " jwks = EXCLUDED.jwks, silent_only = EXCLUDED.silent_only, active = EXCLUDED.active",
            client.id,
            client.role.value,
            list(client.ods_codes),
            client.jwks,
            client.silent_only,
            client.active,
        )

    async def chain_audit(self) -> int:
        """Seal the audit rows that have become final; how many rows were sealed."""
        rows = await self._run("SELECT audit_seal() AS n")
        return int(rows[0]["n"])

    async def verify_audit_chain(self) -> int | None:
        """Seal what is pending, then recompute every seal in order.

        Returns None when intact, else the first seq of the first batch whose
        rows no longer match their seal (a row edited, deleted or slipped in),
        or that no longer chains to the seal before it.
        """
        await self.chain_audit()
        seals = await self._run("SELECT * FROM audit_seal ORDER BY batch")
        previous = b"\x00"
        bound: object = None
        for number, seal in enumerate(seals, start=1):
            if seal["batch"] != number or seal["prev_hash"] != previous:
                return int(seal["first_seq"] or 0)
            if bound is not None and seal["xid_lo"] != bound:
                return int(seal["first_seq"] or 0)
            got = await self._run(
                "SELECT * FROM audit_batch_hash($1, $2, $3)",
                seal["xid_lo"],
                seal["xid_hi"],
                seal["prev_hash"],
            )
            if got[0]["hash"] != seal["hash"]:
                return int(seal["first_seq"] or 0)
            previous, bound = seal["hash"], seal["xid_hi"]
        return None
