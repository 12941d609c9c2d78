"""The schema: migrations, each applied once, and every SQL function, re-applied
on each migrate (schemas/functions/README.md)."""

from __future__ import annotations

from pathlib import Path

from cpis.adapters.postgres._connection import Connection, Pool
from cpis.errors import StartupError

# Migrations and functions (:func:`schema_files`); a later issue packages them.
SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"
# Any constant will do; it only has to be the same in every replica.
_MIGRATION_LOCK = 7_201_843_551


def schema_files(kind: str) -> list[tuple[str, Path]]:
    """The schema's SQL files of one kind, ``"migrations"`` or ``"functions"``, as
    (name without ``.sql``, path) in name order. The one place that knows where
    they are kept."""
    return sorted((p.stem, p) for p in (SCHEMA_DIR / kind).glob("*.sql"))


async def migrate(pool: Pool) -> list[str]:
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
