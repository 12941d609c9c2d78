"""The running service over real HTTP, on a real PostgreSQL.

Each test that asks for ``e2e`` gets its own freshly migrated database (the
``database_url`` fixture), a runtime opened with :func:`cpis.app.build`
exactly as ``cpis serve`` opens it, and the aiohttp application served on
127.0.0.1 at a free port. ``public_base_url`` is that server's real address (plus
the path it serves under, when a module overrides ``e2e_base_path``), so every
absolute link the service renders can be followed.

Registered in every test's database (all synthetic):

========================  ======  ==========  ==========  ======================
client                    role    ODS         key         notes
========================  ======  ==========  ==========  ======================
``ed-system``             health  XED01       RS512       an ED clinical system
``ed-silent``             health  XED01       EdDSA       silent reads only
``trust-system``          health  XED01 XUT01 ES256       one trust, two settings
``la-north``              la      XLA01       ES256       Northshire's CMS
``la-south``              la      XLA02       EdDSA       Southborough's CMS
========================  ======  ==========  ==========  ======================
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from multidict import CIMultiDict

from cpis.adapters.tokens import ClientAlg, generate_client_key, make_client_assertion
from cpis.adapters.webhook import LOOPBACK_NETWORKS
from cpis.app import Runtime, Start, build, create_app
from cpis.model import Client, LocalAuthority, Organisation, Role, SettingType
from cpis.settings import Secret, Settings
from cpis.web.server import serving
from tests.cis2_issuer import LocalCis2, running_cis2
from tests.fhir_validation import validate_resource
from tests.ports import listening_socket, port_of

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ERROR_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SpineErrorOrWarningCode"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_BODY_BYTES = 64 * 1024

LA_NORTH = LocalAuthority(
    ods_code="XLA01",
    name="Northshire County Council",
    office_phone="01632 960001",
    edt_phone="01632 960101",
    repeat_window_hours=24,
)
LA_SOUTH = LocalAuthority(
    ods_code="XLA02",
    name="Southborough Borough Council",
    office_phone="01632 960002",
    edt_phone="01632 960102",
    repeat_window_hours=24,
)
ED = Organisation("XED01", "Northshire General Hospital Emergency Department", SettingType.ED)
UTC = Organisation("XUT01", "Northshire Urgent Treatment Centre", SettingType.UTC)

ED_CLIENT = "ed-system"
SILENT_CLIENT = "ed-silent"
TRUST_CLIENT = "trust-system"
LA_NORTH_CLIENT = "la-north"
LA_SOUTH_CLIENT = "la-south"


@dataclass(frozen=True)
class ClientSpec:
    id: str
    role: Role
    ods: tuple[str, ...]
    alg: ClientAlg
    silent_only: bool = False
    # the client id its users' CIS2 ID tokens are issued to (their aud)
    cis2_client_id: str | None = None


CLIENTS = {
    c.id: c
    for c in (
        ClientSpec(
            ED_CLIENT, Role.HEALTH, (ED.ods_code,), "RS512", cis2_client_id=f"{ED_CLIENT}.cis2"
        ),
        ClientSpec(SILENT_CLIENT, Role.HEALTH, (ED.ods_code,), "EdDSA", silent_only=True),
        ClientSpec(
            TRUST_CLIENT,
            Role.HEALTH,
            (ED.ods_code, UTC.ods_code),
            "ES256",
            cis2_client_id=f"{TRUST_CLIENT}.cis2",
        ),
        ClientSpec(LA_NORTH_CLIENT, Role.LA, (LA_NORTH.ods_code,), "ES256"),
        ClientSpec(LA_SOUTH_CLIENT, Role.LA, (LA_SOUTH.ods_code,), "EdDSA"),
    )
}


@dataclass(frozen=True)
class ClientKey:
    pem: bytes
    jwks: dict[str, Any]
    kid: str
    alg: ClientAlg


@pytest.fixture(scope="session")
def client_keys() -> dict[str, ClientKey]:
    """One key pair per registered client, made once (RSA 4096 takes a while)."""
    keys = {}
    for spec in CLIENTS.values():
        kid = f"{spec.id}-key-1"
        pem, jwks = generate_client_key(spec.alg, kid=kid)
        keys[spec.id] = ClientKey(pem, jwks, kid, spec.alg)
    return keys


def user_headers(
    user_id: str = "555000000001",
    *,
    name: str = "Casey Nurse",
    role: str = "Staff Nurse",
    org: str = ED.ods_code,
    trace_id: str | None = None,
) -> dict[str, str]:
    """The headers an ED system sends with an unscheduled lookup (SPEC §4)."""
    return {
        "TraceID": trace_id or str(uuid.uuid4()),
        "NHSD-End-User-Organisation-ODS": org,
        "NHSD-End-User-Id": user_id,
        "NHSD-End-User-Name": name,
        "NHSD-End-User-Role": role,
    }


def identifier(nhs: str) -> str:
    return f"{NHS_SYSTEM}|{nhs}"


def plain(obj: Any) -> Any:
    """A JSON round trip: plain dicts and lists from fhirpy's resource objects."""
    return json.loads(json.dumps(obj))


def error_code(outcome: Mapping[str, Any]) -> str:
    coding = outcome["issue"][0]["details"]["coding"][0]
    assert coding["system"] == ERROR_SYSTEM
    return str(coding["code"])


@dataclass
class Reply:
    """One HTTP answer, read in full."""

    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    def fhir(self) -> dict[str, Any]:
        """The body as a FHIR resource, checked to be valid R4 JSON."""
        assert self.headers.get("Content-Type", "").startswith("application/fhir+json"), (
            self.headers.get("Content-Type")
        )
        body = self.json()
        validate_resource(body)
        return dict(body)


@dataclass
class E2E:
    """The service under test, and helpers to drive it like its real callers do."""

    runtime: Runtime
    settings: Settings
    http: aiohttp.ClientSession
    db: asyncpg.Connection
    keys: dict[str, ClientKey]
    app: web.Application | None = None  # the application being served, when the fixture has it
    replies: list[Reply] = field(default_factory=list)
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.settings.public_base_url

    @property
    def root(self) -> str:
        """The server's own address: the base URL without the path it serves under."""
        return self.base.removesuffix(self.settings.path_prefix)

    @property
    def fhir_base(self) -> str:
        return self.settings.fhir_base_url

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        **kwargs: Any,
    ) -> Reply:
        """Any request; ``path`` is relative to the public base URL or absolute."""
        url = path if path.startswith("http") else f"{self.base}{path}"
        async with self.http.request(
            method, url, headers=dict(headers or {}), params=params, **kwargs
        ) as resp:
            reply = Reply(resp.status, CIMultiDict(resp.headers), await resp.text())
        self.replies.append(reply)
        return reply

    # --- tokens -------------------------------------------------------------

    def assertion(self, client_id: str, **overrides: Any) -> str:
        key = self.keys[client_id]
        kwargs: dict[str, Any] = {
            "client_id": client_id,
            "token_url": self.settings.token_url,
            "kid": key.kid,
            "alg": key.alg,
        }
        kwargs.update(overrides)
        return make_client_assertion(key.pem, **kwargs)

    async def token_request(self, assertion: str) -> Reply:
        return await self.request(
            "POST",
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )

    async def exchange_request(self, assertion: str, id_token: str) -> Reply:
        """RFC 8693 token exchange of a CIS2 ID token, as NHS England's API platform takes it."""
        return await self.request(
            "POST",
            self.settings.token_url,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
                "subject_token": id_token,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )

    async def user_token(self, client_id: str, id_token: str) -> str:
        """A user-restricted access token for ``client_id``'s user (not cached)."""
        reply = await self.exchange_request(self.assertion(client_id), id_token)
        assert reply.status == 200, reply.text
        return str(reply.json()["access_token"])

    async def token(self, client_id: str) -> str:
        """A real access token from POST /oauth2/token (cached per client for the test)."""
        if client_id not in self._tokens:
            reply = await self.token_request(self.assertion(client_id))
            assert reply.status == 200, reply.text
            body = reply.json()
            assert body["token_type"] == "bearer"
            self._tokens[client_id] = body["access_token"]
        return self._tokens[client_id]

    async def auth(self, client_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(client_id)}"}

    # --- the LA plan API ------------------------------------------------------

    async def put_plan(
        self,
        client_id: str,
        plan_id: str,
        *,
        expect: int | tuple[int, ...] = (200, 201),
        headers: Mapping[str, str] | None = None,
        **body: Any,
    ) -> Reply:
        """PUT /la/v1/plans/{plan_id} as an LA client; the body is the keyword arguments."""
        reply = await self.request(
            "PUT",
            f"/la/v1/plans/{plan_id}",
            headers={**await self.auth(client_id), **(headers or {})},
            json=body,
        )
        wanted = expect if isinstance(expect, tuple) else (expect,)
        assert reply.status in wanted, (reply.status, reply.text)
        return reply

    # --- health searches ------------------------------------------------------

    async def search(
        self,
        resource_type: str,
        nhs: str | None = None,
        *,
        client_id: str = ED_CLIENT,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
    ) -> Reply:
        query = params if params is not None else [("patient:identifier", identifier(str(nhs)))]
        return await self.request(
            "GET",
            f"/FHIR/R4/{resource_type}",
            headers={
                **await self.auth(client_id),
                # by default, an ED user at the client's (first) organisation
                **(user_headers(org=CLIENTS[client_id].ods[0]) if headers is None else headers),
            },
            params=query,
        )

    # --- the database, directly (its own connection, not the service's pool) ---

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self.db.fetch(query, *args))

    async def counts(self, *tables: str) -> dict[str, int]:
        return {t: int(await self.db.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}


async def register_world(runtime: Runtime, keys: Mapping[str, ClientKey]) -> None:
    """Two LAs, an ED and a UTC, and the clients, through the same calls the CLI makes."""
    db = runtime.db
    await db.upsert_la(LA_NORTH)
    await db.upsert_la(LA_SOUTH)
    await db.upsert_organisation(ED)
    await db.upsert_organisation(UTC)
    for spec in CLIENTS.values():
        await db.upsert_client(
            Client(
                id=spec.id,
                role=spec.role,
                ods_codes=spec.ods,
                jwks=keys[spec.id].jwks,
                silent_only=spec.silent_only,
                cis2_client_id=spec.cis2_client_id,
            )
        )


def e2e_settings(tmp_path: Path, database_url: str, port: int, *, base_path: str = "") -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=Secret(database_url),
        host="127.0.0.1",
        port=port,
        public_base_url=f"http://127.0.0.1:{port}{base_path}",
        rate_limit_per_second=100_000,
        rate_limit_burst=100_000,
        source_rate_limit_per_second=100_000,
        source_rate_limit_burst=100_000,
        max_body_bytes=MAX_BODY_BYTES,
        db_pool_min=1,
        db_pool_max=4,
        # The tests' rest-hook receivers listen on loopback.
        webhook_allowed_networks=LOOPBACK_NETWORKS,
    )


@pytest.fixture
async def cis2() -> AsyncIterator[LocalCis2]:
    """A local OpenID provider issuing ID tokens as NHS CIS2 does (trust it with
    ``e2e_overrides`` returning ``{"cis2_issuers": (cis2.issuer,)}``)."""
    async with running_cis2() as issuer:
        yield issuer


@pytest.fixture
def e2e_overrides() -> dict[str, Any]:
    """Settings a test module changes for its service (override this fixture)."""
    return {}


@pytest.fixture
def e2e_base_path() -> str:
    """The path of the service's public base URL, e.g. ``/cpis`` (override this fixture)."""
    return ""


@pytest.fixture
async def e2e(
    tmp_path: Path,
    database_url: str,
    client_keys: dict[str, ClientKey],
    e2e_overrides: dict[str, Any],
    e2e_base_path: str,
) -> AsyncIterator[E2E]:
    """The app served over real HTTP on a free port, with the world registered."""
    sock = listening_socket()
    settings = dataclasses.replace(
        e2e_settings(tmp_path, database_url, port_of(sock), base_path=e2e_base_path),
        **e2e_overrides,
    )
    async with build(settings, start=Start.SERVE) as runtime:
        await register_world(runtime, client_keys)
        app = create_app(runtime)
        # Served as `cpis serve` serves it (timeouts, parser errors, no access log),
        # on the socket bound above, whose port the public base URL names.
        async with serving(app, settings, sock=sock):
            db = await asyncpg.connect(database_url)
            try:
                async with aiohttp.ClientSession() as http:
                    yield E2E(runtime, settings, http, db, client_keys, app=app)
            finally:
                await db.close()
