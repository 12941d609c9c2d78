"""The security audit log, seen from outside: one line per request, append-only, chained.

SPEC §3, §6: every request of any kind, silent and failed ones included, goes
to the audit log (who, what, when, outcome); the log is append-only and
sealed in signed batches, so an edit made behind the service's back is
detectable by ``verify()`` (cpis.adapters.audit_log; the signature and anchor
checks are pinned in tests/integration/test_audit_log.py). Operational
endpoints (``/healthz``, ``/readyz``, ``/metrics``, ``/.well-known/jwks.json``)
carry no data and are not audited (a decision recorded in
``cpis/web/middleware.py``).
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from cpis.adapters.audit_log import ANCHOR_FILE, Anchor, AuditReport
from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import (
    E2E,
    ED_CLIENT,
    LA_NORTH_CLIENT,
    LA_SOUTH_CLIENT,
    SILENT_CLIENT,
    identifier,
    user_headers,
)
from tests.polling import wait_until

CHILD, OTHER = synthetic_numbers(2, start=401)


async def audit_count(e2e: E2E) -> int:
    return (await e2e.counts("audit_log"))["audit_log"]


async def seed(e2e: E2E) -> None:
    for client_id, plan_id in ((LA_NORTH_CLIENT, "N-1"), (LA_SOUTH_CLIENT, "S-1")):
        await e2e.put_plan(
            client_id, plan_id, nhs_number=CHILD, plan_type="CPP", start_date="2025-03-03"
        )


async def test_every_request_adds_one_audit_line_silent_and_failed_included(e2e: E2E) -> None:
    """Each request (lookups, silent reads, history, reads, LA calls, token requests, and
    requests refused with 400, 401, 403, 404, 405 or 406) adds exactly one audit line,
    in order, carrying its TraceID, action and HTTP outcome; lookups record the subject
    only as a keyed hash. Health checks add none. The chain verifies."""
    await seed(e2e)
    end_user = {k: v for k, v in user_headers().items() if k != "TraceID"}
    ed = {**await e2e.auth(ED_CLIENT), **end_user}
    silent = {**await e2e.auth(SILENT_CLIENT), **end_user}
    la = await e2e.auth(LA_NORTH_CLIENT)
    ident = [("patient:identifier", identifier(CHILD))]
    assertion = e2e.assertion(LA_SOUTH_CLIENT)

    # (method, path, headers, params, kwargs, expected status)
    requests = [
        ("GET", "/FHIR/R4/CareTeam", ed, ident, {}, 200),
        ("GET", "/FHIR/R4/Flag", {**ed, "IsUnscheduledAccessEvent": "false"}, ident, {}, 200),
        ("GET", "/FHIR/R4/CareTeam", silent, ident, {}, 200),
        ("GET", "/FHIR/R4/AuditEvent", ed, ident, {}, 200),
        ("GET", "/FHIR/R4/CareTeam", ed, [("patient:identifier", identifier(OTHER))], {}, 200),
        ("GET", "/FHIR/R4/metadata", {}, None, {}, 200),
        ("GET", "/la/v1/plans/N-1", la, None, {}, 200),
        ("GET", "/FHIR/R4/CareTeam", ed, [("patient:identifier", CHILD)], {}, 400),
        ("GET", "/FHIR/R4/CareTeam", {}, ident, {}, 401),
        ("GET", "/FHIR/R4/CareTeam", la, ident, {}, 403),
        ("GET", f"/FHIR/R4/CareTeam/{uuid.uuid4()}", ed, None, {}, 404),
        ("GET", "/no/such/route", {}, None, {}, 404),
        ("POST", "/FHIR/R4/CareTeam", ed, None, {}, 405),
        ("GET", "/FHIR/R4/metadata", {"Accept": "application/fhir+xml"}, None, {}, 406),
        ("PUT", "/la/v1/plans/N-1", la, None, {"json": {"nhs_number": "1"}}, 422),
        (
            "POST",
            "/oauth2/token",
            {},
            None,
            {
                "data": {
                    "grant_type": "client_credentials",
                    "client_assertion_type": (
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                    ),
                    "client_assertion": assertion,
                }
            },
            200,
        ),
    ]
    start = await audit_count(e2e)
    (last_seq,) = [r["seq"] for r in await e2e.fetch("SELECT max(seq) AS seq FROM audit_log")]
    traces = []
    for method, path, auth, params, kwargs, status in requests:
        trace = f"audit-{uuid.uuid4()}"
        traces.append(trace)
        headers = {**auth, "TraceID": trace}
        reply = await e2e.request(method, path, headers=headers, params=params, **kwargs)
        assert reply.status == status, (method, path, reply.status, reply.text)
        assert reply.headers["TraceID"] == trace
    for path in ("/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"):
        assert (await e2e.request("GET", path)).status == 200

    assert await audit_count(e2e) == start + len(requests)
    rows = await e2e.fetch(
        "SELECT seq, trace_id, outcome, action, client_id, subject FROM audit_log"
        " WHERE seq > $1 ORDER BY seq",
        last_seq,
    )
    assert [r["trace_id"] for r in rows] == traces
    assert [r["outcome"] for r in rows] == [status for *_, status in requests]
    assert [r["seq"] for r in rows] == list(range(last_seq + 1, last_seq + 1 + len(requests)))
    assert rows[0]["action"] == "plan_search"
    assert rows[0]["client_id"] == ED_CLIENT
    assert rows[2]["client_id"] == SILENT_CLIENT
    assert rows[8]["client_id"] is None  # no token, no client
    subject = rows[0]["subject"]
    assert subject and CHILD not in subject and len(subject) == 64
    assert rows[1]["subject"] == subject == rows[2]["subject"] == rows[3]["subject"]
    assert rows[4]["subject"] not in (None, subject)
    assert (await verify(e2e)).intact


async def test_concurrent_requests_keep_one_unbroken_chain(e2e: E2E) -> None:
    """Twenty lookups at once from two clients each add one line, and the chain still
    verifies: the rows chain in one order however the requests interleave."""
    await seed(e2e)
    await e2e.token(ED_CLIENT)
    await e2e.token(SILENT_CLIENT)
    start = await audit_count(e2e)
    users = [f"5550000001{i:02d}" for i in range(10)]
    replies = await asyncio.gather(
        *(
            e2e.search("CareTeam", CHILD, client_id=client, headers=user_headers(user))
            for user in users
            for client in (ED_CLIENT, SILENT_CLIENT)
        )
    )
    assert [r.status for r in replies] == [200] * 20
    assert await audit_count(e2e) == start + 20
    assert (await verify(e2e)).intact
    # Ten distinct users at one ED: ten visits, two LAs notified for each.
    assert await e2e.counts("access_event", "outbox") == {"access_event": 10, "outbox": 20}


async def test_audit_log_is_append_only_and_tampering_is_detected(e2e: E2E) -> None:
    """UPDATE, DELETE and TRUNCATE on audit_log raise; with the triggers disabled behind
    the service's back, an edited row makes ``verify()`` name the sealed batch that holds
    it and its first seq."""
    await seed(e2e)
    for _ in range(3):
        assert (await e2e.search("CareTeam", CHILD)).status == 200
    assert (await verify(e2e)).intact
    rows = await e2e.fetch("SELECT seq FROM audit_log ORDER BY seq")
    assert len(rows) >= 6
    target = rows[len(rows) // 2]["seq"]

    for statement in (
        f"UPDATE audit_log SET outcome = 500 WHERE seq = {target}",
        f"DELETE FROM audit_log WHERE seq = {target}",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await e2e.db.execute(statement)
    assert (await verify(e2e)).intact

    await e2e.db.execute("ALTER TABLE audit_log DISABLE TRIGGER ALL")
    try:
        await e2e.db.execute("UPDATE audit_log SET outcome = 299 WHERE seq = $1", target)
    finally:
        await e2e.db.execute("ALTER TABLE audit_log ENABLE TRIGGER ALL")
    report = await verify(e2e)
    assert (report.broken_batch, report.broken_seq) == await batch_of(e2e, target)
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await e2e.db.execute(f"UPDATE audit_log SET outcome = 200 WHERE seq = {target}")


async def test_deleted_audit_line_is_detected(e2e: E2E) -> None:
    """Removing a sealed line (triggers disabled) breaks its batch's seal.

    Lines are sealed by `cpis serve` within about a second of commit; the test
    seals them at once rather than wait.
    """
    await seed(e2e)
    for _ in range(3):
        assert (await e2e.search("Flag", CHILD)).status == 200
    await e2e.runtime.audit.seal_pending()
    rows = await e2e.fetch("SELECT seq FROM audit_log ORDER BY seq")
    target = rows[2]["seq"]
    await e2e.db.execute("ALTER TABLE audit_log DISABLE TRIGGER ALL")
    try:
        where = await batch_of(e2e, target)
        await e2e.db.execute("DELETE FROM audit_log WHERE seq = $1", target)
    finally:
        await e2e.db.execute("ALTER TABLE audit_log ENABLE TRIGGER ALL")
    report = await verify(e2e)
    assert (report.broken_batch, report.broken_seq) == where


async def batch_of(e2e: E2E, seq: int) -> tuple[int, int]:
    """The sealed batch holding ``seq``, and its first seq."""
    rows = await e2e.fetch(
        "SELECT batch, first_seq FROM audit_seal WHERE $1 BETWEEN first_seq AND last_seq", seq
    )
    assert rows, "that line is not sealed"
    return int(rows[0]["batch"]), int(rows[0]["first_seq"])


async def verify(e2e: E2E) -> AuditReport:
    return await e2e.runtime.audit.verify()


async def test_the_running_service_chains_new_lines_by_itself(e2e: E2E) -> None:
    """The app's background sealer seals committed lines within seconds, with no help,
    signs them with the service's audit key, writes the newest seal's anchor to its data
    directory, and a seal cannot be altered."""
    await seed(e2e)
    assert (await e2e.search("Flag", CHILD)).status == 200
    newest = (await e2e.fetch("SELECT max(seq) AS s FROM audit_log"))[0]["s"]

    async def sealed() -> bool:
        return bool(await e2e.fetch("SELECT 1 FROM audit_seal WHERE last_seq >= $1", newest))

    await wait_until(sealed, what="the audit lines to be sealed")
    (row,) = await e2e.fetch("SELECT batch, key_id FROM audit_seal WHERE last_seq >= $1", newest)
    assert row["key_id"] in e2e.runtime.keys.audit_public_keys
    anchor_file = e2e.settings.data_dir / ANCHOR_FILE

    async def anchored() -> bool:
        return anchor_file.exists() and (Anchor.from_file(anchor_file).batch or 0) >= row["batch"]

    await wait_until(anchored, what="the anchor file")
    report = await e2e.runtime.audit.verify(anchor=Anchor.from_file(anchor_file))
    assert report.intact and report.anchor_found
    with pytest.raises(asyncpg.exceptions.RaiseError):
        await e2e.db.execute("UPDATE audit_seal SET hash = '\\x00'")


async def test_only_checked_organisations_are_recorded_on_every_route(e2e: E2E) -> None:
    """A header naming an organisation the client is not registered for is refused (403) on
    every authenticated route — AuditEvent search and read, Organization read, uploads,
    the LA API — as the CareTeam search always did, and the audit log never records the
    organisation merely asserted; a request with no valid token records none at all."""
    await seed(e2e)
    ident = [("patient:identifier", identifier(CHILD))]
    foreign = {"NHSD-End-User-Organisation-ODS": "XROGUE"}
    ed = {**await e2e.auth(ED_CLIENT), "TraceID": "org-check", **foreign}
    la = {**await e2e.auth(LA_NORTH_CLIENT), **foreign}
    attempts = [
        ("GET", "/FHIR/R4/AuditEvent", ed, ident, {}),
        ("GET", "/FHIR/R4/Organization/XLA01", ed, None, {}),
        ("GET", f"/FHIR/R4/AuditEvent/{uuid.uuid4()}", ed, None, {}),
        ("GET", "/la/v1/plans/N-1", la, None, {}),
        (
            "POST",
            "/la/v1/uploads",
            {**la, "Content-Type": "application/json"},
            None,
            {"data": b'{"la_ods": "XLA01", "sequence": 1, "records": []}'},
        ),
    ]
    for method, path, headers, params, kwargs in attempts:
        reply = await e2e.request(method, path, headers=headers, params=params, **kwargs)
        assert reply.status == 403, (path, reply.status, reply.text)
    no_token = await e2e.request(
        "GET", "/FHIR/R4/AuditEvent", headers={"TraceID": "t", **foreign}, params=ident
    )
    assert no_token.status == 401
    recorded = [r["org_ods"] for r in await e2e.fetch("SELECT org_ods FROM audit_log")]
    assert "XROGUE" not in recorded

    named = {**await e2e.auth(ED_CLIENT), "TraceID": "org-ok"}
    ok = await e2e.request(
        "GET",
        "/FHIR/R4/AuditEvent",
        headers={**named, "NHSD-End-User-Organisation-ODS": "xed01"},
        params=ident,
    )
    assert ok.status == 200
    (row,) = await e2e.fetch("SELECT org_ods FROM audit_log WHERE trace_id = 'org-ok'")
    assert row["org_ods"] == "XED01"
