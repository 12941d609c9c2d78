"""PostgreSQL through asyncpg: the only module that sees ``asyncpg.Record``.

Personal data is hashed and sealed here, on its way in, through the
:class:`~cpis.ports.vault.Vault`; callers pass and receive plain domain values.
Connection failures are translated to :class:`cpis.errors.Unavailable` at this
edge, so the web layer answers 503 with Retry-After instead of 500.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import orjson
from asyncpg.pgproto.pgproto import UUID as PgUUID

from cpis import rules
from cpis.adapters.ids import uuid7
from cpis.errors import StartupError, Unavailable
from cpis.formats.acknowledgement import acknowledgement_json, parse_acknowledgement
from cpis.la_details import checked_la, checked_name, checked_phone, checked_window
from cpis.model import (
    AccessEvent,
    Accessor,
    AuditEntry,
    Client,
    LocalAuthority,
    Organisation,
    Plan,
    PlanFields,
    PlanType,
    Role,
    SettingType,
    StoredAccessEvent,
)
from cpis.model.uploads import Acknowledgement
from cpis.ports.vault import Vault

# A pooled connection is a proxy for a Connection; both offer the same calls.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# Migrations and functions (:func:`schema_files`); a later issue packages them.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
# Any constant will do; it only has to be the same in every replica.
_MIGRATION_LOCK = 7_201_843_551

# Errors that mean "the database cannot do this right now", not "the query is wrong":
# whole classes, by asyncpg's base classes and SQLSTATE classes, so that a member
# nobody listed (InternalClientError when a connection dies mid-statement, issue 9)
# is still a 503 with Retry-After rather than a 500.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or pool acquire timed out
    # Client side: the connection is closed or closing, the pool is closing, or the
    # protocol lost its state because the connection died under it.
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE 08: connection exceptions
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, restart, statement timeout
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.PostgresSystemError,  # 58: I/O errors
    # 40: serialization failure, deadlock; the same request again may well succeed.
    asyncpg.exceptions.TransactionRollbackError,
    # 25006: a standby, e.g. just after a failover, before the new primary is reached.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,  # 25P03
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


def schema_files(kind: str) -> list[tuple[str, Path]]:
    """The schema's SQL files of one kind, ``"migrations"`` or ``"functions"``, as
    (name without ``.sql``, path) in name order. The one place that knows where
    they are kept."""
    return sorted((p.stem, p) for p in (SCHEMA_DIR / kind).glob("*.sql"))


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply pending migrations, each in its own transaction, then every SQL
    function (:func:`apply_functions`); returns the migrations applied.

    A session advisory lock makes two replicas starting at once take turns:
    the second finds every migration applied and re-applies the functions,
    which changes nothing. A database whose recorded migrations do not start
    with this schema's first (one made by the migrations the baseline replaced,
    issue 10) is refused with a :class:`~cpis.errors.StartupError` before
    anything is applied: it cannot be upgraded, only recreated.
    """
    applied: list[str] = []
    migrations = schema_files("migrations")
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migration")}
            baseline = migrations[0][0]
            if done and baseline not in done:
                raise StartupError(
                    f"the database was set up by migrations {min(done)} to {max(done)}, from"
                    f" before the schema baseline ({baseline}), and cannot be upgraded:"
                    " drop it and run `cpis migrate` to create it anew (README: Decisions)"
                )
            for version, path in migrations:
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO schema_migration (version) VALUES ($1)", version
                    )
                applied.append(version)
            await apply_functions(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied


async def apply_functions(conn: Connection) -> None:
    """(Re)create every SQL function from its file, in one transaction.

    Each file ``schemas/functions/NAME.sql`` defines the function NAME with
    ``CREATE OR REPLACE`` (and binds any trigger that runs it), so applying it
    again changes nothing. A file whose arguments changed creates a second
    function of that name beside the old one: every function of a file's name
    that this transaction did not create or replace (its catalogue row is not
    this transaction's) is dropped, so the files are what the database has.
    ``CREATE OR REPLACE`` cannot change a function's result type or argument
    names; a migration that drops the old function does that once.
    """
    files = schema_files("functions")
    names = [name for name, _ in files]
    async with conn.transaction():
        # Functions call one another whatever their files' order; as pg_restore
        # does, bodies are checked when called rather than when created.
        await conn.execute("SET LOCAL check_function_bodies = off")
        for _name, path in files:
            await conn.execute(path.read_text())
        rows = await conn.fetch(
            "SELECT p.proname, p.oid::regprocedure::text AS signature,"
            " p.xmin = pg_current_xact_id()::xid AS current"
            " FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace"
            " AND p.proname = ANY($1::text[])",
            names,
        )
        undefined = set(names) - {r["proname"] for r in rows if r["current"]}
        if undefined:
            raise RuntimeError(
                f"schemas/functions: {sorted(undefined)} define no function so named"
            )
        for r in rows:
            if not r["current"]:
                await conn.execute(f"DROP FUNCTION {r['signature']}")


_PLAN_COLUMNS = """
    p.id, p.la_ods, p.la_plan_id, p.updated_at, v.version, v.nhs_sealed, v.plan_type,
    v.start_date, v.end_date, v.delete_date, v.birth_sealed, v.family_sealed, v.given_sealed,
    v.recorded_at,
    la.name AS la_name, la.office_phone, la.edt_phone, la.repeat_window_hours,
    la.version AS la_version, la.updated_at AS la_updated_at
"""

# An upload's upserts (PgTransaction.put_plans) do to plan what put_plan does
# once per call: a plan given k times in the file moves k versions on, and a
# new one starts at version k. The plan ids in the arrays are distinct. First
# the plans that exist (an UPDATE, HOT when the subject key is unchanged: see
# plan's fillfactor in schemas/migrations/0001_baseline.sql), returning each
# one's place in the arrays and new version; then the rest are created by a
# COPY, or, when a plan was created meanwhile through the plan API, by an
# INSERT that moves such a plan on instead.
_MOVE_ON_PLANS = """
    UPDATE plan AS p
    SET version = p.version + u.total, subject_key = u.subject_key, updated_at = $2
    FROM unnest($3::text[], $4::bytea[], $5::integer[])
        WITH ORDINALITY AS u (la_plan_id, subject_key, total, n)
    WHERE p.la_ods = $1 AND p.la_plan_id = u.la_plan_id
    RETURNING u.n, p.id, p.version
"""
_NEW_PLAN_COLUMNS = ("id", "la_ods", "la_plan_id", "subject_key", "version", "updated_at")
_CREATE_PLANS = """
    INSERT INTO plan AS p (id, la_ods, la_plan_id, subject_key, version, updated_at)
    SELECT u.id, $1, u.la_plan_id, u.subject_key, u.total, $2
    FROM unnest($3::text[], $4::bytea[], $5::integer[], $6::uuid[])
        AS u (la_plan_id, subject_key, total, id)
    ON CONFLICT (la_ods, la_plan_id) DO UPDATE
    SET version = p.version + EXCLUDED.version, subject_key = EXCLUDED.subject_key,
        updated_at = EXCLUDED.updated_at
    RETURNING p.id, p.la_plan_id, p.version
"""
_PLAN_VERSION_COLUMNS = (
    "plan_id", "version", "nhs_sealed", "plan_type", "start_date", "end_date", "delete_date",
    "birth_sealed", "family_sealed", "given_sealed", "recorded_at",
)  # fmt: skip
_PROGRESS_EVERY = 5_000
_SEAL_CHUNK = 1_000


class _BulkPlans(NamedTuple):
    """An upload's plans, once each: ids in first-seen order, subject keys, row counts."""

    ids: list[str]
    keys: list[bytes]
    totals: list[int]


def _time_ordered_ids(count: int) -> list[uuid.UUID]:
    """``count`` new UUIDv7 plan ids (see cpis.adapters.ids): the time, then random bits.

    The ids of one upload share their first 48 bits, so the new rows' entries
    in plan's and plan_version's keys land together at the right-hand edge
    instead of on a random page each. One ``os.urandom`` call for them all,
    and asyncpg's own UUID type, built from bytes: a uuid.UUID per id costs
    more than the rest of this.
    """
    prefix = (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")
    raw = os.urandom(10 * count)
    made: list[uuid.UUID] = []
    for i in range(0, 10 * count, 10):
        # The version (7) over the top 4 bits of byte 6, the variant (10) over byte 8's.
        made.append(
            PgUUID(
                prefix
                + bytes((0x70 | raw[i] & 0x0F, raw[i + 1], 0x80 | raw[i + 2] & 0x3F))
                + raw[i + 3 : i + 10]
            )
        )
    return made


_EVENT_COLUMNS = """
    id, nhs_sealed, occurred_at, client_id, org_ods, org_name, setting_type, viewer_sealed,
    user_verified, practitioner_role_id, trace_id, la_codes, is_repeat
"""


def seal_text(vault: Vault, purpose: str, value: str) -> str:
    """A sealed value that fits a text column (e.g. a text[] of secrets)."""
    return "sealed:" + base64.b64encode(vault.seal(purpose, value)).decode("ascii")


def open_text(vault: Vault, purpose: str, text: str) -> str:
    if not text.startswith("sealed:"):
        return text  # written before values were sealed
    return vault.open(purpose, base64.b64decode(text[len("sealed:") :]))


# --- staff at rest ------------------------------------------------------------
#
# A viewer's user id, name, job role, RBAC role code and SDS role profile id
# are staff personal data (issue 9): access_event keeps them as one sealed
# value, and the user id also as a keyed hash (user_key) where rows are
# compared by user (the repeat-view and repeat-notification windows, and the
# audit log). The audit log and the outbox keep nothing of the person but
# that hash and, in the audit log, the sealed user id.

_VIEWER_PURPOSE = "viewer"
_USER_ID_PURPOSE = "user_id"


class Viewer(NamedTuple):
    """The personal part of an access event's viewer, as it is sealed at rest."""

    user_id: str
    user_name: str
    user_role: str
    role_code: str | None
    role_profile_id: str | None


def seal_viewer(vault: Vault, accessor: Accessor) -> bytes:
    fields = (
        accessor.user_id,
        accessor.user_name,
        accessor.user_role,
        accessor.role_code,
        accessor.role_profile_id,
    )
    return vault.seal(_VIEWER_PURPOSE, orjson.dumps(fields).decode())


def open_viewer(vault: Vault, sealed: bytes) -> Viewer:
    return Viewer(*orjson.loads(vault.open(_VIEWER_PURPOSE, sealed)))


def user_key(vault: Vault, user_id: str) -> bytes:
    """The keyed hash rows are compared by user on (access_event, outbox, audit_log)."""
    return vault.blind(_USER_ID_PURPOSE, user_id)


def seal_user_id(vault: Vault, user_id: str) -> bytes:
    return vault.seal(_USER_ID_PURPOSE, user_id)


def open_user_id(vault: Vault, sealed: bytes) -> str:
    return vault.open(_USER_ID_PURPOSE, sealed)


def practitioner_role_id(vault: Vault, accessor: Accessor) -> uuid.UUID:
    """The id of this person-in-a-role-at-a-place as a FHIR PractitionerRole.

    The same person, role and organisation always get the same id, so the 25
    visits include one PractitionerRole per viewer, not one per visit; the
    client system and trace id are not part of it. It is a keyed hash
    (Vault.blind), not a uuid5: an unkeyed hash of a name, a role and an
    organisation could be confirmed from a database dump by guessing them.
    Stored with the access event, and read back from there, never recomputed.
    """
    # A JSON array, so no field can run into the next (names come from callers).
    key = orjson.dumps(
        (
            accessor.user_id,
            accessor.user_name,
            accessor.user_role,
            accessor.role_code,
            accessor.role_profile_id,
            accessor.org_ods,
            accessor.org_name,
            accessor.user_verified,
        )
    ).decode()
    raw = bytearray(vault.blind("practitioner_role", key)[:16])
    raw[6] = raw[6] & 0x0F | 0x80  # RFC 9562 version 8: a custom layout
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 9562 variant
    return uuid.UUID(bytes=bytes(raw))


def access_event_from_row(r: asyncpg.Record, vault: Vault, *, id_column: str = "id") -> AccessEvent:
    """An access event from a row with access_event's columns (shared by the stores)."""
    viewer = open_viewer(vault, r["viewer_sealed"])
    return AccessEvent(
        id=r[id_column],
        nhs_number=vault.open("nhs_number", r["nhs_sealed"]),
        occurred_at=r["occurred_at"],
        accessor=Accessor(
            client_id=r["client_id"],
            org_ods=r["org_ods"],
            org_name=r["org_name"],
            setting_type=SettingType(r["setting_type"]),
            user_id=viewer.user_id,
            user_name=viewer.user_name,
            user_role=viewer.user_role,
            trace_id=r["trace_id"],
            role_code=viewer.role_code,
            role_profile_id=viewer.role_profile_id,
            user_verified=r["user_verified"],
            practitioner_role_id=r["practitioner_role_id"],
        ),
        la_codes=tuple(r["la_codes"]),
    )


class PgTransaction:
    """The :class:`~cpis.ports.database.Transaction` port over one asyncpg connection."""

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
        # subject_plans() pins the plan to its indexes (schemas/functions/subject_plans.sql).
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
            uuid7(),  # time-ordered, as uploads make them
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
        """``put_plan`` for each of ``plans`` in order: plan in bulk, then one COPY of versions.

        In a savepoint, so that a failure leaves the caller's transaction as
        it was. The COPY that creates new plans fails when the plan API has
        created one of them since the UPDATE looked (it takes no upload lock);
        then the savepoint is rolled back and it all runs again, creating
        plans with an INSERT that cannot fail that way.
        """
        if not plans:
            return
        # Per plan id, in first-seen order: how many rows, and the NHS number of the last.
        total: dict[str, int] = {}
        last: dict[str, str] = {}
        for la_plan_id, f in plans:
            total[la_plan_id] = total.get(la_plan_id, 0) + 1
            last[la_plan_id] = f.nhs_number
        subject_key = self._vault.subject_key
        bulk = _BulkPlans(list(last), [subject_key(n) for n in last.values()], list(total.values()))
        try:
            async with self._conn.transaction():
                first = await self._move_on_plans(la_ods, at, bulk, copy=True)
                await self._copy_versions(plans, first, at, progress)
        except asyncpg.UniqueViolationError:
            async with self._conn.transaction():
                first = await self._move_on_plans(la_ods, at, bulk, copy=False)
                await self._copy_versions(plans, first, at, progress)

    async def _move_on_plans(
        self, la_ods: str, at: datetime, bulk: _BulkPlans, *, copy: bool
    ) -> dict[str, list[Any]]:
        """Each plan's id and the version its first row in the file becomes."""
        first: dict[str, list[Any]] = {}
        ids, keys, totals = bulk
        rows = await self._conn.fetch(_MOVE_ON_PLANS, la_ods, at, ids, keys, totals)
        for n, plan_id, version in rows:
            first[ids[n - 1]] = [plan_id, version - totals[n - 1] + 1]
        new = [i for i, la_plan_id in enumerate(ids) if la_plan_id not in first]
        if not new:
            return first
        new_ids = _time_ordered_ids(len(new))
        if copy:
            await self._conn.copy_records_to_table(
                "plan",
                records=[
                    (plan_id, la_ods, ids[i], keys[i], totals[i], at)
                    for plan_id, i in zip(new_ids, new, strict=True)
                ],
                columns=_NEW_PLAN_COLUMNS,
            )
            for plan_id, i in zip(new_ids, new, strict=True):
                first[ids[i]] = [plan_id, 1]
            return first
        rows = await self._conn.fetch(
            _CREATE_PLANS,
            la_ods,
            at,
            [ids[i] for i in new],
            [keys[i] for i in new],
            [totals[i] for i in new],
            new_ids,
        )
        count = {ids[i]: totals[i] for i in new}
        for plan_id, la_plan_id, version in rows:
            first[la_plan_id] = [plan_id, version - count[la_plan_id] + 1]
        return first

    async def _copy_versions(
        self,
        plans: Sequence[tuple[str, PlanFields]],
        first: dict[str, list[Any]],
        at: datetime,
        progress: Callable[[int], None] | None,
    ) -> None:
        await self._conn.copy_records_to_table(
            "plan_version",
            records=self._version_rows(plans, first, at, progress),
            columns=_PLAN_VERSION_COLUMNS,
        )

    def _version_rows(
        self,
        plans: Sequence[tuple[str, PlanFields]],
        first: dict[str, list[Any]],
        at: datetime,
        progress: Callable[[int], None] | None,
    ) -> Iterator[tuple[object, ...]]:
        """plan_version rows, sealed as ``put_plan`` seals; ``first`` is counted on in place.

        A generator, sealing a thousand rows at a time, so asyncpg streams the
        COPY while later rows are sealed and the server works on earlier ones
        (two cores, both busy).
        """
        vault = self._vault
        for start in range(0, len(plans), _SEAL_CHUNK):
            chunk = plans[start : start + _SEAL_CHUNK]
            nhs = vault.seal_many("nhs_number", [f.nhs_number for _, f in chunk])
            birth = vault.seal_many(
                "birth_date",
                [None if f.birth_date is None else f.birth_date.isoformat() for _, f in chunk],
            )
            family = vault.seal_many("family_name", [f.family_name for _, f in chunk])
            given = vault.seal_many("given_name", [f.given_name for _, f in chunk])
            for (la_plan_id, f), *sealed in zip(chunk, nhs, birth, family, given, strict=True):
                slot = first[la_plan_id]
                version = slot[1]
                slot[1] = version + 1
                yield (
                    slot[0],
                    version,
                    sealed[0],
                    f.plan_type.value,
                    f.start_date,
                    f.end_date,
                    f.delete_date,
                    *sealed[1:],
                    at,
                )
            done = start + len(chunk)
            if progress is not None and (done % _PROGRESS_EVERY == 0 or done == len(plans)):
                progress(done)

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
        vault = self._vault
        accessor = dataclasses.replace(
            accessor, practitioner_role_id=practitioner_role_id(vault, accessor)
        )
        queued = await self._conn.fetchval(
            "SELECT record_lookup($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
            " $15, $16, $17, $18, $19, $20, $21, $22, $23)",
            subject,
            event_id,
            vault.seal("nhs_number", nhs_number),
            at,
            accessor.client_id,
            accessor.org_ods,
            accessor.org_name,
            accessor.setting_type.value,
            user_key(vault, accessor.user_id),
            seal_viewer(vault, accessor),
            accessor.user_verified,
            accessor.practitioner_role_id,
            accessor.trace_id,
            list(la_codes),
            {k: list(v) for k, v in plan_ids.items()},
            audit.action,
            audit.role,
            audit.resource,
            subject.hex(),
            audit.detail,
            seal_user_id(vault, accessor.user_id),
            sorted(f"{p.id}:{p.version}" for p in based_on),
            rules.REPEAT_VIEW_WINDOW,
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

    async def access_history(
        self, nhs_number: str, limit: int, *, la_codes: Sequence[str] | None = None
    ) -> Sequence[StoredAccessEvent]:
        rows = await self._conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM access_event"  # noqa: S608
            " WHERE subject_key = $1 AND NOT is_repeat"
            " AND ($3::text[] IS NULL OR la_codes && $3)"
            " ORDER BY occurred_at DESC, id LIMIT $2",
            self._subject(nhs_number),
            limit,
            None if la_codes is None else list(la_codes),
        )
        return [self._event(r) for r in rows]

    async def get_access_event(self, event_id: uuid.UUID) -> StoredAccessEvent | None:
        r = await self._conn.fetchrow(
            f"SELECT {_EVENT_COLUMNS} FROM access_event WHERE id = $1",  # noqa: S608
            event_id,
        )
        return None if r is None else self._event(r)

    async def access_events_by_viewer(
        self, practitioner_role_id: uuid.UUID, limit: int
    ) -> Sequence[StoredAccessEvent]:
        rows = await self._conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM access_event"  # noqa: S608
            " WHERE practitioner_role_id = $1 ORDER BY occurred_at DESC LIMIT $2",
            practitioner_role_id,
            limit,
        )
        return [self._event(r) for r in rows]

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

    async def upload_acknowledgement(self, la_ods: str, sequence: int) -> Acknowledgement | None:
        ack = await self._conn.fetchval(
            "SELECT acknowledgement FROM upload WHERE la_ods = $1 AND sequence = $2",
            la_ods,
            sequence,
        )
        return None if ack is None else parse_acknowledgement(self._opened_ack(ack))

    async def last_upload_sequence(self, la_ods: str) -> int | None:
        value = await self._conn.fetchval(
            "SELECT max(sequence) FROM upload WHERE la_ods = $1", la_ods
        )
        return None if value is None else int(value)

    async def store_upload(
        self, la_ods: str, sequence: int, file_code: str, ack: Acknowledgement, at: datetime
    ) -> None:
        await self._conn.execute(
            "INSERT INTO upload (la_ods, sequence, received_at, file_code, acknowledgement)"
            " VALUES ($1, $2, $3, $4, $5)",
            la_ods,
            sequence,
            at,
            file_code,
            self._sealed_ack(acknowledgement_json(ack)),
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
    user = entry.user_id
    await conn.execute(
        "SELECT audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        at,
        entry.action,
        entry.outcome,
        entry.client_id,
        entry.role,
        entry.org_ods,
        None if user is None else user_key(vault, user),
        None if user is None else seal_user_id(vault, user),
        entry.resource,
        subject,
        entry.trace_id,
        entry.detail,
    )


class PgDatabase:
    """The :class:`~cpis.ports.database.Database` port over an asyncpg pool."""

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
        return {r["version"] for r in rows} >= {v for v, _ in schema_files("migrations")}

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
    ) -> LocalAuthority | None:
        """Change only the details given (each checked as :meth:`upsert_la` checks it);
        the LA's version goes up. None when no such LA is registered."""
        rows = await self._run(
            "UPDATE local_authority SET name = coalesce($2, name),"
            " office_phone = coalesce($3, office_phone), edt_phone = coalesce($4, edt_phone),"
            " repeat_window_hours = coalesce($5, repeat_window_hours),"
            " version = version + 1, updated_at = now()"
            " WHERE ods_code = $1"
            " RETURNING ods_code AS la_ods, name AS la_name, office_phone, edt_phone,"
            " repeat_window_hours, version AS la_version, updated_at AS la_updated_at",
            ods_code,
            None if name is None else checked_name(name),
            None if office_phone is None else checked_phone("office-hours phone", office_phone),
            None if edt_phone is None else checked_phone("emergency duty team phone", edt_phone),
            None if repeat_window_hours is None else checked_window(repeat_window_hours),
        )
        return PgTransaction._la(rows[0]) if rows else None

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
