"""Real `cpis serve` processes, a real PostgreSQL and a real LA endpoint.

Each reliability test drives the service the way production does: registration
through the CLI, tokens from ``cpis token``, plans over the LA API, lookups over
HTTP, and notifications POSTed to a receiving server on 127.0.0.1. Processes
are started and killed for real (SIGKILL included); every wait is a poll with a
deadline.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.polling import wait_until
from tests.ports import listening_socket, port_of, served_port

CPIS = [sys.executable, "-m", "cpis"]
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
LA_ODS = "XLA01"
ED_ODS = "XED01"


def base_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """A `cpis` environment on its own data directory. Its port is 0 until a
    :class:`Server` started with it has bound one (tests/ports.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPIS_")}
    return env | {
        "CPIS_DATABASE_URL": database_url,
        "CPIS_DATA_DIR": str(data_dir),
        "CPIS_PORT": "0",
        "CPIS_PUBLIC_BASE_URL": "http://127.0.0.1:0",
        "CPIS_RATE_LIMIT_PER_SECOND": "100000",
        "CPIS_RATE_LIMIT_BURST": "100000",
        "CPIS_SOURCE_RATE_LIMIT_PER_SECOND": "100000",
        "CPIS_SOURCE_RATE_LIMIT_BURST": "100000",
        "CPIS_LOG_FORMAT": "json",
        # The tests' rest-hook receivers listen on loopback.
        "CPIS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    }


async def cpis(env: dict[str, str], *args: str, command: list[str] = CPIS) -> str:
    """Run one CLI command to completion; its stdout (failing the test on a non-zero exit).
    ``command`` is how `cpis` is run: this checkout's, unless a test installed another."""
    proc = await asyncio.create_subprocess_exec(
        *command, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, (args, err.decode())
    return out.decode()


class Server:
    """One `cpis serve` process; ``start`` waits for /readyz, ``kill`` is SIGKILL.

    Started with ``CPIS_PORT=0``, it binds a port the system picks; ``start`` reads
    it back and writes it into ``env`` (the same dict the test holds), so later
    commands and a restart with that ``env`` use the same address, as the tokens'
    audience requires. ``command`` is how `cpis` is run (as for :func:`cpis`)."""

    def __init__(self, env: dict[str, str], *, command: list[str] = CPIS) -> None:
        self.env = env
        self.command = command
        self.out = Path(env["CPIS_DATA_DIR"]) / "serve.out"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return self.env["CPIS_PUBLIC_BASE_URL"]

    async def start(self) -> None:
        Path(self.env["CPIS_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        offset = self.out.stat().st_size if self.out.exists() else 0
        with self.out.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command, "serve", env=self.env, stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        proc = self.proc

        async def bound() -> bool:
            printed = self.out.read_bytes()[offset:].decode(errors="replace")
            assert proc.returncode is None, printed
            port = served_port(printed)
            if port is not None and self.env["CPIS_PORT"] == "0":
                self.env["CPIS_PORT"] = str(port)
                self.env["CPIS_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
            return port is not None

        await wait_until(bound, limit=60, what="cpis serve to listen")

        async def ready() -> bool:
            assert proc.returncode is None, self.out.read_text(errors="replace")
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{self.base}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(ready, limit=60, what="cpis serve to be ready")

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), timeout=30)

    def log(self) -> str:
        return self.out.read_text(errors="replace")


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    """Servers a test starts go here, so each is killed however the test ends."""
    started: list[Server] = []
    try:
        yield started
    finally:
        for s in started:
            await s.kill()


@dataclass
class Arrival:
    id: str
    event_number: int
    at: float


def event_number(bundle: dict[str, Any]) -> int:
    params = bundle["entry"][0]["resource"]["parameter"]
    event = next(p for p in params if p["name"] == "notification-event")
    return int(next(x["valueString"] for x in event["part"] if x["name"] == "event-number"))


def is_event(bundle: dict[str, Any]) -> bool:
    params = bundle["entry"][0]["resource"]["parameter"]
    types = [p["valueCode"] for p in params if p["name"] == "type"]
    return types == ["event-notification"]


@dataclass
class Receiver:
    """An LA's rest-hook endpoint on 127.0.0.1.

    ``mode`` "ok" records and answers 200, "error" answers 500 without recording;
    ``stop()`` closes the socket so connections are refused, ``start()`` reopens it
    on the same port. ``overlaps`` lists notification ids seen in two requests at
    once (``hold`` seconds of simulated processing widens the window).
    """

    port: int = 0  # 0 until the first start binds one; a restart reuses it
    mode: str = "ok"
    hold: float = 0.0
    posts: int = 0
    events: list[Arrival] = field(default_factory=list)
    controls: list[dict[str, Any]] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    overlaps: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.mode == "error":
            return web.Response(status=500)
        bundle = orjson.loads(await request.read())
        if not is_event(bundle):
            self.controls.append(bundle)
            return web.Response(status=200)
        nid = bundle["id"]
        self.in_flight[nid] = self.in_flight.get(nid, 0) + 1
        if self.in_flight[nid] > 1:
            self.overlaps.append(nid)
        try:
            if self.hold:
                await asyncio.sleep(self.hold)  # an endpoint that takes time to process
            self.events.append(Arrival(nid, event_number(bundle), time.monotonic()))
        finally:
            self.in_flight[nid] -= 1
        return web.Response(status=200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site: web.BaseSite
        if self.port == 0:
            sock = listening_socket()
            self.port = port_of(sock)
            site = web.SockSite(self._runner, sock)
        else:
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def unique(self) -> list[Arrival]:
        """Event notifications in order of first arrival, one per notification id."""
        seen: dict[str, Arrival] = {}
        for a in self.events:
            seen.setdefault(a.id, a)
        return list(seen.values())


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    try:
        yield rec
    finally:
        await rec.stop()


@pytest.fixture
def shared_keys(tmp_path: Path) -> dict[str, str]:
    """The CPIS_KEYS_* every replica of a test is given, so each can open the others' data."""
    where = tmp_path / "keys"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    where.mkdir(parents=True, exist_ok=True)
    signing = where / "signing.pem"
    signing.write_bytes(pem)
    signing.chmod(0o600)
    audit = where / "audit.pem"
    audit.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    audit.chmod(0o600)
    return {
        "CPIS_KEYS_DATA": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "CPIS_KEYS_HASH": base64.b64encode(secrets.token_bytes(32)).decode(),
        "CPIS_KEYS_SIGNING": str(signing),
        "CPIS_KEYS_AUDIT": str(audit),
    }


@dataclass
class World:
    """What a test registered: the key files and the tokens it got."""

    ed_key: Path
    la_key: Path
    ed_token: str = ""
    la_token: str = ""


async def register(env: dict[str, str], *, command: list[str] = CPIS) -> World:
    """An LA, an ED client and the LA's client, through the CLI as an operator does it."""
    keys = Path(env["CPIS_DATA_DIR"]) / "clients"
    world = World(ed_key=keys / "ed.pem", la_key=keys / "la.pem")
    # migrate sets up the database and keys; admin commands only use them
    await cpis(env, "migrate", command=command)
    await cpis(
        env, "la", "add", "--ods", LA_ODS, "--name", "Northshire",
        "--office-phone", "01632 960001", "--edt-phone", "01632 960101", command=command,
    )  # fmt: skip
    await cpis(
        env, "client", "add", "--id", "ed", "--role", "health", "--ods", ED_ODS,
        "--new-key", str(world.ed_key), "--alg", "ES256", "--setting-type", "ED",
        "--org-name", "Northshire General ED", command=command,
    )  # fmt: skip
    await cpis(
        env, "client", "add", "--id", "la", "--role", "la", "--ods", LA_ODS,
        "--new-key", str(world.la_key), "--alg", "ES256", command=command,
    )  # fmt: skip
    return world


async def tokens(
    env: dict[str, str], world: World, *, command: list[str] = CPIS
) -> tuple[str, str]:
    """(ED token, LA token) from the server at ``env``'s public base URL."""
    ed = await cpis(env, "token", "--client", "ed", "--key", str(world.ed_key), command=command)
    la = await cpis(env, "token", "--client", "la", "--key", str(world.la_key), command=command)
    return ed.strip(), la.strip()


async def put_plans(http: aiohttp.ClientSession, base: str, la_token: str, nhs: list[str]) -> None:
    start = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    for i, number in enumerate(nhs):
        body = {"nhs_number": number, "plan_type": "CPP", "start_date": start}
        async with http.put(
            f"{base}/la/v1/plans/P-{i}",
            json=body,
            headers={"Authorization": f"Bearer {la_token}"},
        ) as resp:
            assert resp.status in (200, 201), await resp.text()


async def subscribe(database_url: str, endpoint: str) -> uuid.UUID:
    """A rest-hook subscription row, then wait for the dispatcher's handshake to activate it."""
    sub_id = uuid.uuid4()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO subscription (id, la_ods, client_id, status, topic, endpoint,"
            " payload, timeout_seconds, created_at, updated_at)"
            " VALUES ($1, $2, 'la', 'requested', 'topic', $3, 'id-only', 5, now(), now())",
            sub_id,
            LA_ODS,
            endpoint,
        )

        async def active() -> bool:
            status = await conn.fetchval("SELECT status FROM subscription WHERE id = $1", sub_id)
            assert status in ("requested", "active"), status
            return bool(status == "active")

        await wait_until(active, limit=30, what="the subscription handshake")
    finally:
        await conn.close()
    return sub_id


async def lookup(
    http: aiohttp.ClientSession, base: str, token: str, nhs: str, *, trace_id: str, user: str
) -> int:
    """One unscheduled CareTeam lookup by an ED user; the HTTP status."""
    headers = {
        "Authorization": f"Bearer {token}",
        "TraceID": trace_id,
        "NHSD-End-User-Organisation-ODS": ED_ODS,
        "NHSD-End-User-Id": user,
        "NHSD-End-User-Name": f"Nurse {user}",
        "NHSD-End-User-Role": "Staff Nurse",
    }
    async with http.get(
        f"{base}/FHIR/R4/CareTeam",
        params=[("patient:identifier", f"{NHS_SYSTEM}|{nhs}")],
        headers=headers,
    ) as resp:
        await resp.read()
        return resp.status


async def delivered_everything(database_url: str, receiver: Receiver) -> bool:
    """No outbox row waits for fan-out, no delivery waits, and every outbox row arrived."""
    conn = await asyncpg.connect(database_url)
    try:
        pending = await conn.fetchval(
            "SELECT (SELECT count(*) FROM outbox WHERE state = 'pending')"
            " + (SELECT count(*) FROM delivery WHERE state <> 'delivered')"
        )
        ids = {str(r[0]) for r in await conn.fetch("SELECT notification_id FROM outbox")}
    finally:
        await conn.close()
    return pending == 0 and ids <= {a.id for a in receiver.events}
