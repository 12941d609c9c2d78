"""What the LA pages' tests add to :mod:`tests.web_service`'s world: a second LA holding
a plan for one of the demo LA's children and for a child of its own, an ED system
that looks children up through the FHIR API as a real one does, and a notification
delivery given up on.
"""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, date, datetime

import aiohttp
import asyncpg

from cpis.adapters.tokens import generate_client_key, make_client_assertion
from cpis.model import Client, LocalAuthority, PlanFields, PlanType, Principal, Role
from cpis.services import plans
from tests.web_service import CHILD_CPP, DEMO_ED, WebService

OTHER_LA = LocalAuthority(
    ods_code="XOT01",
    name="Otherton Borough Council",
    office_phone="01632 960100",
    edt_phone="01632 960199",
    repeat_window_hours=24,
)
# A child only the other LA holds a plan for (a valid, synthetic number).
OTHER_CHILD = "9990000034"
ED_CLIENT = "test-ed-system"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


async def add_other_la(service: WebService) -> None:
    """Otherton: a plan for OTHER_CHILD, and one for the demo LA's CHILD_CPP too."""
    rt = service.runtime
    await rt.db.upsert_la(OTHER_LA)
    other = Principal(client_id="test-other-la", role=Role.LA, ods_codes=(OTHER_LA.ods_code,))
    for nhs, plan_id in ((OTHER_CHILD, "OT-1"), (CHILD_CPP, "OT-2")):
        await plans.put_plan(
            rt.db,
            rt.clock,
            principal=other,
            la_ods=OTHER_LA.ods_code,
            la_plan_id=plan_id,
            fields=PlanFields(nhs, PlanType.LAC, date(2026, 2, 1), birth_date=date(2014, 6, 1)),
            if_match=None,
        )


class EdSystem:
    """An ED system registered for the demo ED, looking children up by the FHIR API
    with an application-restricted token and the user in NHSD-End-User-* headers."""

    def __init__(self, service: WebService) -> None:
        self.service = service
        self.kid = f"{ED_CLIENT}-key"
        self.pem, self.jwks = generate_client_key("ES256", kid=self.kid)

    async def register(self) -> EdSystem:
        await self.service.runtime.db.upsert_client(
            Client(id=ED_CLIENT, role=Role.HEALTH, ods_codes=(DEMO_ED.ods_code,), jwks=self.jwks)
        )
        return self

    async def _token(self, http: aiohttp.ClientSession) -> str:
        settings = self.service.settings
        assertion = make_client_assertion(
            self.pem, client_id=ED_CLIENT, token_url=settings.token_url, kid=self.kid, alg="ES256"
        )
        async with http.post(
            settings.token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        ) as resp:
            assert resp.status == 200, await resp.text()
            return str((await resp.json())["access_token"])

    async def look_up(self, nhs_number: str, *, user: str = "Robin Triage") -> int:
        """An unscheduled lookup of the child's CareTeam by a nurse; the HTTP status."""
        async with aiohttp.ClientSession() as http:
            token = await self._token(http)
            async with http.get(
                f"{self.service.settings.fhir_base_url}/CareTeam",
                params={"patient:identifier": f"{NHS_SYSTEM}|{nhs_number}"},
                headers={
                    "Authorization": f"Bearer {token}",
                    "TraceID": str(uuid.uuid4()),
                    "NHSD-End-User-Organisation-ODS": DEMO_ED.ods_code,
                    # One id per name: the same person at the same ED within the LA's
                    # repeat window would not notify again.
                    "NHSD-End-User-Id": f"555{zlib.crc32(user.encode()):09d}",
                    "NHSD-End-User-Name": user,
                    "NHSD-End-User-Role": "Staff Nurse",
                },
            ) as resp:
                await resp.read()
                return resp.status


async def dead_delivery(database_url: str, la_ods: str) -> int:
    """The LA's newest notification's MESH delivery, given up on (as
    ``tests/e2e/test_la_views.py`` makes one)."""
    db = await asyncpg.connect(database_url)
    try:
        notification_id = await db.fetchval(
            "SELECT notification_id FROM outbox WHERE la_ods = $1 ORDER BY created_at DESC LIMIT 1",
            la_ods,
        )
        assert notification_id is not None
        delivery_id: int = await db.fetchval(
            "INSERT INTO delivery (notification_id, la_ods, channel, target, state, attempts,"
            " next_attempt_at, created_at, last_error)"
            " VALUES ($1, $2, 'mesh', 'XDM01OT001', 'dead', 7, $3, $3, 'HTTP 403')"
            " RETURNING id",
            notification_id,
            la_ods,
            datetime.now(UTC),
        )
        return delivery_id
    finally:
        await db.close()
