"""The schema: migrations, each applied once, and every SQL function, re-applied
on each migrate (cpis/schema/functions/README.md).

The SQL files are package data (``cpis/schema/``), read through
:mod:`importlib.resources`, so an installed wheel migrates as a checkout does
(issue 13, item 1).
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from cpis.adapters.postgres._connection import LONG_SECONDS, Connection, Pool, borrow
from cpis.errors import StartupError

# Where the SQL files are kept, inside the package.
SCHEMA_DIR: Traversable = files("cpis") / "schema"
# Any constant will do; it only has to be the same in every replica.
_MIGRATION_LOCK = 7_201_843_551


def schema_files(kind: str, where: Traversable = SCHEMA_DIR) -> list[tuple[str, Traversable]]:
    """The schema's SQL files of one kind, ``"migrations"`` or ``"functions"``, as
    (name without ``.sql``, file) in name order. The one place that knows where
    they are kept.

    None at all means the package was built or installed without its SQL files (an
    installed ``migrate`` once found none, made one bookkeeping table and said it
    had succeeded): a :class:`~cpis.errors.StartupError`, before anything is done.
    """
    folder = where / kind
    sql = [f for f in folder.iterdir() if f.name.endswith(".sql")] if folder.is_dir() else []
    found = sorted((f.name.removesuffix(".sql"), f) for f in sql)
    if not found:
        raise StartupError(
            f"no SQL {kind} found in the cpis package (cpis/schema/{kind}/): it was built"
            " without them, so nothing can be migrated; reinstall it from a complete wheel"
        )
    return found


async def migrate(pool: Pool, *, schema: Traversable = SCHEMA_DIR) -> list[str]:
    """Apply pending migrations, each in its own transaction, then every SQL
    function (:func:`apply_functions`); returns the migrations applied.

    A session advisory lock makes two replicas starting at once take turns:
    the second finds every migration applied and re-applies the functions,
    which changes nothing. A database whose recorded migrations do not start
    with this schema's first (one made by the migrations the baseline replaced,
    issue 10) is refused with a :class:`~cpis.errors.StartupError` before
    anything is applied: it cannot be upgraded, only recreated. So is a package
    with no SQL files (:func:`schema_files`). ``schema`` is where the files are:
    the package's own, but for tests.
    """
    applied: list[str] = []
    migrations = schema_files("migrations", schema)
    schema_files("functions", schema)  # refuses a package without them before any change
    async with borrow(pool, within=LONG_SECONDS) as conn:
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
                    await conn.execute(path.read_text(encoding="utf-8"))
                    await conn.execute(
                        "INSERT INTO schema_migration (version) VALUES ($1)", version
                    )
                applied.append(version)
            await apply_functions(conn, schema=schema)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied


async def apply_functions(conn: Connection, *, schema: Traversable = SCHEMA_DIR) -> None:
    """(Re)create every SQL function from its file, in one transaction.

    Each file ``cpis/schema/functions/NAME.sql`` defines the function NAME with
    ``CREATE OR REPLACE`` (and binds any trigger that runs it), so applying it
    again changes nothing. A file whose arguments changed creates a second
    function of that name beside the old one: every function of a file's name
    that this transaction did not create or replace (its catalogue row is not
    this transaction's) is dropped, so the files are what the database has.
    ``CREATE OR REPLACE`` cannot change a function's result type or argument
    names; a migration that drops the old function does that once.
    """
    files = schema_files("functions", schema)
    names = [name for name, _ in files]
    async with conn.transaction():
        # Functions call one another whatever their files' order; as pg_restore
        # does, bodies are checked when called rather than when created.
        await conn.execute("SET LOCAL check_function_bodies = off")
        for _name, path in files:
            await conn.execute(path.read_text(encoding="utf-8"))
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
                f"cpis/schema/functions: {sorted(undefined)} define no function so named"
            )
        for r in rows:
            if not r["current"]:
                await conn.execute(f"DROP FUNCTION {r['signature']}")
