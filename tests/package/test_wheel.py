"""The built wheel runs outside the repository (issue 13, item 1).

The wheel is built from a copy of the source (so no ``build/`` is left in the
checkout and nothing stale from an earlier build gets in), installed with its
dependencies from the package index into a new virtualenv in a temporary
directory, and run from there against the tests' PostgreSQL as an external
server: ``cpis migrate`` builds an empty database, ``cpis serve`` becomes ready,
and a child registered through the installed CLI is looked up. Then, with the
installed package's SQL files removed, ``cpis migrate`` of another empty
database fails in one line and creates nothing: what an installed ``migrate``
once did instead was report success.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from cpis.matching.nhs_number import synthetic_numbers
from tests.conftest import _with_database
from tests.reliability.conftest import (
    Server,
    base_env,
    lookup,
    put_plans,
    register,
    tokens,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
# What the wheel is built from: the package and the files pyproject.toml names.
SOURCES = ["cpis", "pyproject.toml", "README.md"]


async def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """One program to completion, outside the checkout: (exit status, stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *map(str, args),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def outside_env() -> dict[str, str]:
    """This environment without anything that would let the installed program find this
    checkout (or this test's virtualenv) instead of what was installed."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="module")
async def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv outside the repository with the built wheel installed; its bin/."""
    where = tmp_path_factory.mktemp("wheel")
    source = where / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPO / name, source / name)
    env = outside_env()
    status, out = await run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", where / "dist", source,
        cwd=where, env=env,
    )  # fmt: skip
    assert status == 0, out
    assert "deprecated" not in out, out  # e.g. setuptools on a license TOML table
    [wheel] = (where / "dist").glob("cpis-*.whl")
    status, out = await run(sys.executable, "-m", "venv", where / "venv", cwd=where, env=env)
    assert status == 0, out
    status, out = await run(
        where / "venv/bin/python", "-m", "pip", "install", "-q", wheel, cwd=where, env=env
    )
    assert status == 0, out
    return where / "venv/bin"


@pytest.fixture
async def empty_database(pg_server_url: str) -> AsyncIterator[str]:
    """A database with nothing in it on the tests' server, as an operator creates one."""
    name = f"cpis_w_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(pg_server_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def tables(database_url: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT relname FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
        )
    finally:
        await conn.close()
    return {r["relname"] for r in rows}


async def test_the_installed_wheel_migrates_serves_and_answers_a_lookup(
    installed: Path, empty_database: str, tmp_path: Path
) -> None:
    """Installed in a clean virtualenv and run from outside the repository, `cpis migrate`
    builds an empty external database, `cpis serve` is ready, serves its OpenAPI document
    and answers a lookup for a child whose plan was put over the LA API."""
    status, where = await run(
        installed / "python", "-c", "import cpis; print(cpis.__file__)",
        cwd=tmp_path, env=outside_env(),
    )  # fmt: skip
    assert status == 0, where
    assert Path(where.strip()).is_relative_to(installed.parent), where
    command = [str(installed / "cpis")]
    env = outside_env() | base_env(empty_database, tmp_path / "data")
    world = await register(env, command=command)
    assert {"schema_migration", "plan", "outbox"} <= await tables(empty_database)
    server = Server(env, command=command)
    try:
        await server.start()  # waits for /readyz: reachable, migrations current
        ed_token, la_token = await tokens(env, world, command=command)
        [child] = synthetic_numbers(1, start=970)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.base}/openapi.json") as resp:
                assert resp.status == 200
                assert (await resp.json())["openapi"].startswith("3.1")
            await put_plans(http, server.base, la_token, [child])
            status = await lookup(
                http, server.base, ed_token, child, trace_id=str(uuid.uuid4()), user="555000000001"
            )
    finally:
        await server.kill()
    assert status == 200
    assert '"unhandled_error"' not in server.log()


async def test_an_installed_package_without_its_sql_fails_loudly(
    installed: Path, empty_database: str, tmp_path: Path
) -> None:
    """With the installed package's SQL files gone, `cpis migrate` of an empty database
    exits non-zero with one line saying so, and the database is left with no tables."""
    copy = tmp_path / "venv"
    shutil.copytree(installed.parent, copy, symlinks=True)
    # The copy's scripts name their own interpreter; run the module with the copy's.
    [package] = (copy / "lib").glob("python3*/site-packages/cpis")
    shutil.rmtree(package / "schema")
    env = outside_env() | base_env(empty_database, tmp_path / "data")
    status, out = await run(copy / "bin/python", "-m", "cpis", "migrate", cwd=tmp_path, env=env)
    assert status != 0, out
    assert "no SQL migrations found" in out, out
    assert len(out.strip().splitlines()) == 1, out
    assert await tables(empty_database) == set()
