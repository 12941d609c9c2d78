"""The schema as `migrate` builds it (issue 10, item 2): one baseline migration of
tables, then every function from its own file, re-applied on every migrate.

``schema_catalogue.txt`` is what a migrated database holds, read from PostgreSQL's
catalogue: every table's columns in order with types, defaults and nullability, table
options, constraints, indexes, triggers, sequences and function signatures (function
bodies are their files). It was first written from a database built by the 19
development migrations the baseline replaced, with the two defaults the baseline drops
on purpose removed (``local_authority.repeat_window_hours``: the rule's default lives
in ``cpis.rules``; ``outbox.notification_id``: every writer names the id), and the
baseline matched it line for line. A change to the schema changes this file in the
same commit; rewrite it with ``CPIS_WRITE_SCHEMA_CATALOGUE=1 pytest
tests/integration/test_schema.py`` and read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from cpis.adapters.crypto import FieldVault
from cpis.adapters.postgres import PgDatabase, create_pool, migrate
from cpis.errors import StartupError

EXPECTED = Path(__file__).with_name("schema_catalogue.txt")

# NOT NULL constraints are left out of the constraints (PostgreSQL 18 lists them
# there, earlier versions do not): the columns' lines say which are not null.
CATALOGUE = """
SELECT line FROM (
  SELECT 1 AS k, c.relname::text AS o, a.attnum AS n,
    format('column %s.%s %s%s%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
      CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
      coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')) AS line
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
  WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
    AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 2, c.relname::text, 0, format('options %s %s', c.relname, c.reloptions)
  FROM pg_class c
  WHERE c.relnamespace = current_schema()::regnamespace AND c.reloptions IS NOT NULL
  UNION ALL
  SELECT 3, conrelid::regclass::text || ' ' || conname, 0,
    format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
  FROM pg_constraint
  WHERE connamespace = current_schema()::regnamespace AND contype <> 'n'
  UNION ALL
  SELECT 4, indexname::text, 0, format('index %s', indexdef)
  FROM pg_indexes WHERE schemaname = current_schema()
  UNION ALL
  SELECT 5, t.tgname::text, 0, format('trigger %s', pg_get_triggerdef(t.oid))
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
  UNION ALL
  SELECT 6, s.seqrelid::regclass::text, 0,
    format('sequence %s %s start %s increment %s cache %s owned by %s', s.seqrelid::regclass,
      format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqcache,
      (SELECT d.refobjid::regclass || '.' || a.attname FROM pg_depend d
       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
       WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.deptype = 'a'))
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
  WHERE c.relnamespace = current_schema()::regnamespace
  UNION ALL
  SELECT 7, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', 0,
    format('function %s(%s) returns %s language %s volatility %s config %s', p.proname,
      pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), l.lanname,
      p.provolatile, coalesce(p.proconfig::text, '{}'))
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
  WHERE p.pronamespace = current_schema()::regnamespace
) x ORDER BY k, o, n, line
"""


async def catalogue(conn: asyncpg.Connection) -> str:
    return "".join(f"{r['line']}\n" for r in await conn.fetch(CATALOGUE))


async def function_sources(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT p.oid::regprocedure::text AS f, pg_get_functiondef(p.oid) AS src FROM pg_proc p"
        " WHERE p.pronamespace = current_schema()::regnamespace"
    )
    return {r["f"]: r["src"] for r in rows}


async def test_a_migrated_database_is_the_recorded_catalogue(database_url: str) -> None:
    """A fresh database migrated is, object for object, the checked-in catalogue."""
    conn = await asyncpg.connect(database_url)
    try:
        found = await catalogue(conn)
    finally:
        await conn.close()
    if os.environ.get("CPIS_WRITE_SCHEMA_CATALOGUE"):
        EXPECTED.write_text(found)
    assert found == EXPECTED.read_text()


async def test_migrating_again_changes_nothing(database_url: str) -> None:
    """A second migrate applies no migration and leaves every table and function as it was,
    though it re-applies every function file."""
    pool = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=30_000)
    try:
        async with pool.acquire() as conn:
            before = (await catalogue(conn), await function_sources(conn))
        assert await migrate(pool) == []
        async with pool.acquire() as conn:
            after = (await catalogue(conn), await function_sources(conn))
    finally:
        await pool.close()
    assert after == before


async def test_a_function_whose_arguments_changed_keeps_only_its_files_signature(
    database_url: str,
) -> None:
    """A function of a file's name that the file no longer defines (the signature it had
    before its arguments changed) is dropped by the next migrate; one of another name is
    left alone."""
    pool = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=30_000)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "CREATE FUNCTION record_lookup(p_subject bytea) RETURNS text[]"
                " LANGUAGE sql AS 'SELECT NULL::text[]';"
                " CREATE FUNCTION not_ours() RETURNS int LANGUAGE sql AS 'SELECT 1'"
            )
            before = await function_sources(conn)
        await migrate(pool)
        async with pool.acquire() as conn:
            after = await function_sources(conn)
    finally:
        await pool.close()
    assert set(before) - set(after) == {"record_lookup(bytea)"}
    assert "not_ours()" in after
    assert sum(f.startswith("record_lookup(") for f in after) == 1


async def test_a_database_from_before_the_baseline_is_refused_untouched(
    database_url: str, vault: FieldVault
) -> None:
    """A development database made by the migrations the baseline replaced cannot be
    upgraded: migrate refuses in one line and changes nothing, and /readyz's check says
    the migrations are not current."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await conn.execute(
            "CREATE TABLE schema_migration (version text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now());"
            " INSERT INTO schema_migration (version)"
            " VALUES ('0001_core'), ('0019_staff_sealed_audit_signed')"
        )
    finally:
        await conn.close()
    pool = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=30_000)
    try:
        with pytest.raises(StartupError) as refused:
            await migrate(pool)
        assert not await PgDatabase(pool, vault).migrations_current()
        async with pool.acquire() as conn:
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_class"
                " WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'"
            )
            functions = await conn.fetchval(
                "SELECT count(*) FROM pg_proc WHERE pronamespace = current_schema()::regnamespace"
            )
    finally:
        await pool.close()
    message = str(refused.value)
    assert "\n" not in message
    assert "0001_core to 0019_staff_sealed_audit_signed" in message
    assert "cannot be upgraded" in message
    assert (tables, functions) == (1, 0)  # schema_migration alone


async def test_a_package_without_its_sql_files_is_refused_untouched(
    database_url: str, tmp_path: Path
) -> None:
    """A package built without its SQL files (an installed wheel once had none) makes
    migrate fail in one line before it touches the database, rather than create one
    bookkeeping table and report success (issue 13, item 1)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "README.md").write_text("not SQL")
    pool = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=30_000)
    try:
        with pytest.raises(StartupError) as refused:
            await migrate(pool, schema=tmp_path)
        async with pool.acquire() as conn:
            objects = await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
            )
    finally:
        await pool.close()
    message = str(refused.value)
    assert "\n" not in message
    assert "no SQL migrations found" in message
    assert objects == 0
