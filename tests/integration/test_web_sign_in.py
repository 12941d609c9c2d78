"""Signing in to the web pages through the demo OpenID provider, and the sessions that
come of it (issue 12, item 2), without a browser: what is stored, the cookies, the
limits, sign-out at the provider, CSRF, the security headers and the audit."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

import asyncpg
import pytest
import structlog

from cpis.errors import SignInFailed
from cpis.model import LocalAuthority, PlanFields, PlanType, Principal, Role
from cpis.model.web import OrgKind, PendingSignIn, SignInConfig
from cpis.services import plans
from cpis.services.web_sign_in import SessionLimits
from tests.integration.conftest import FakeClock
from tests.oidc_provider import _only_form
from tests.ports import listening_socket, port_of
from tests.web_service import (
    CHILD_CPP,
    DEMO_ED,
    DEMO_LA,
    SIGNED_WEB_CLIENT,
    WebService,
    WebUser,
    running_web_service,
)


@pytest.fixture
async def service(tmp_path: Path, database_url: str, clock: FakeClock) -> AsyncIterator[WebService]:
    async with running_web_service(
        tmp_path,
        database_url,
        clock=clock,
        web_session_limits=SessionLimits(idle=timedelta(minutes=30), lifetime=timedelta(hours=12)),
    ) as svc:
        yield svc


async def test_a_clinician_signs_in_and_only_a_hash_of_the_session_id_is_stored(
    service: WebService, database_url: str
) -> None:
    """The callback sets an HttpOnly, SameSite=Lax session cookie (not Secure on plain
    HTTP localhost) and the database holds its SHA-256, never the id, nor her name."""
    async with WebUser(service) as user:
        landed = await user.sign_in("clinician")
        assert landed == service.url("/lookup")
        session_id = user.cookie("cpis-session")
        assert session_id and len(session_id) >= 43
        morsel = next(m for m in user.http.cookie_jar if m.key == "cpis-session")
        assert morsel["httponly"] and morsel["samesite"] == "Lax" and not morsel["secure"]
        status, body, _headers = await user.page("/lookup")
        assert status == 200 and "Casey Demonurse" in body
    db = await asyncpg.connect(database_url)
    try:
        rows = await db.fetch("SELECT key, role, org_ods, sealed_user FROM web_session")
    finally:
        await db.close()
    assert len(rows) == 1
    assert bytes(rows[0]["key"]) == hashlib.sha256(session_id.encode()).digest()
    assert (rows[0]["role"], rows[0]["org_ods"]) == ("clinician", DEMO_ED.ods_code)
    assert b"Casey" not in bytes(rows[0]["sealed_user"])


async def test_pages_carry_a_strict_content_security_policy_and_security_headers(
    service: WebService,
) -> None:
    async with WebUser(service) as user:
        status, _body, headers = await user.page("/")
    assert status == 200
    csp = headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


async def test_a_session_ends_after_its_idle_time_and_its_lifetime(
    service: WebService, clock: FakeClock
) -> None:
    """Idle 30 minutes: sent to sign in again. Used every 20 minutes, it still ends 12
    hours after sign-in."""
    async with WebUser(service) as user:
        await user.sign_in("clinician")
        clock.advance(minutes=29)
        assert (await user.page("/lookup"))[0] == 200
        clock.advance(minutes=31)
        status, _body, headers = await user.page("/lookup")
        assert status == 303 and unquote(headers["Location"]) == "/sign-in?next=/lookup"
    async with WebUser(service) as user:
        await user.sign_in("clinician")
        for _ in range(40):  # 13 h 20 min at most
            clock.advance(minutes=20)
            if (await user.page("/lookup"))[0] != 200:
                break
        else:
            pytest.fail("the session outlived its 12 hours")


async def test_sign_out_ends_the_session_and_sends_the_browser_to_the_provider(
    service: WebService, database_url: str
) -> None:
    async with WebUser(service) as user:
        await user.sign_in("caseworker")
        token = await user.csrf("/")
        status, _body, headers = await user.post("/sign-out", {"csrf_token": token})
        assert status == 303
        end_session = service.provider.discovery["end_session_endpoint"]
        assert headers["Location"].startswith(end_session + "?")
        assert "id_token_hint=" in headers["Location"]
        assert "post_logout_redirect_uri=" in headers["Location"]
        # The sign-out form's page names the provider in form-action (Chromium holds the
        # redirect of a form's answer to it).
        assert (await user.page("/"))[0] == 200
        assert (await user.page("/lookup"))[0] == 303
    db = await asyncpg.connect(database_url)
    try:
        assert await db.fetchval("SELECT count(*) FROM web_session") == 0
    finally:
        await db.close()


async def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    service: WebService, database_url: str
) -> None:
    async with WebUser(service) as user:
        await user.sign_in("clinician")
        for token in ("", "not-the-token"):
            status, body, _ = await user.post(
                "/lookup", {"csrf_token": token, "nhs_number": CHILD_CPP}
            )
            assert status == 403 and "This form has expired" in body
        status, _body, _ = await user.post("/sign-out", {"csrf_token": "wrong"})
        assert status == 403
        # The header a page's script may send instead is held to the same token.
        async with user.http.post(
            service.url("/sign-out"), headers={"X-CSRF-Token": "wrong"}, allow_redirects=False
        ) as resp:
            assert resp.status == 403
        assert (await user.page("/lookup"))[0] == 200  # still signed in
    db = await asyncpg.connect(database_url)
    try:
        assert await db.fetchval("SELECT count(*) FROM access_event") == 0
        refusals = await db.fetch(
            "SELECT action, role FROM audit_log WHERE outcome = 403 AND user_key IS NOT NULL"
        )
    finally:
        await db.close()
    # Each refusal is audited naming her.
    assert [(r["action"], r["role"]) for r in refusals] == [
        ("page_lookup_result", "clinician"),
        ("page_lookup_result", "clinician"),
        ("page_sign_out", "clinician"),
        ("page_sign_out", "clinician"),
    ]


async def test_a_caseworker_cannot_use_the_clinicians_lookup(service: WebService) -> None:
    async with WebUser(service) as user:
        landed = await user.sign_in("caseworker")
        assert landed == service.url("/inbox")  # an LA person's home: the inbox
        status, body, _ = await user.page("/lookup")
        assert status == 403 and "You cannot use this page" in body


async def test_a_callback_without_the_browsers_sign_in_or_with_another_state_is_refused(
    service: WebService,
) -> None:
    """A callback URL replayed in another browser, or with its state changed, signs no one in."""
    async with WebUser(service) as user:
        status, body, _ = await user.page("/auth/callback?code=x&state=y")
        assert status == 400 and "You could not be signed in" in body
        assert user.cookie("cpis-session") is None


async def test_an_id_token_for_another_nonce_is_not_accepted(service: WebService) -> None:
    """The adapter checks the ID token's nonce against the one the sign-in sent."""
    rt = service.runtime
    config = await rt.web_sessions.sign_in_config(DEMO_ED.ods_code)
    assert config is not None
    redirect = service.url("/auth/callback")
    started = await rt.identity_providers.begin(config, redirect_uri=redirect)

    # Drive the provider's form with the request the adapter made.
    pending = PendingSignIn(
        org_ods=config.org_ods,
        state=started.state,
        nonce="another-nonce",
        code_verifier=started.code_verifier,
        redirect_uri=redirect,
        return_to="",
        expires_at=rt.clock.now() + timedelta(minutes=5),
    )
    async with WebUser(service) as user:
        url = started.url
        account = service.account("clinician")
        for _ in range(12):
            if url.startswith(redirect):
                break
            async with user.http.get(url, allow_redirects=False) as resp:
                body = await resp.text()
                if resp.status in (302, 303):
                    url = urljoin(url, resp.headers["Location"])
                    continue
            form = _only_form(body, url)
            fields = {**form.fields, "username": account.login, "password": account.password}
            async with user.http.post(form.action, data=fields, allow_redirects=False) as resp:
                url = urljoin(form.action, resp.headers["Location"])
        params = dict(parse_qsl(urlsplit(url).query))
    with pytest.raises(SignInFailed):
        await rt.identity_providers.finish(config, pending, params)


async def test_a_provider_whose_discovery_names_another_issuer_is_refused(
    service: WebService,
) -> None:
    rt = service.runtime
    config = await rt.web_sessions.sign_in_config(DEMO_ED.ods_code)
    assert config is not None
    wrong = SignInConfig(
        org_ods="XED01",
        kind=OrgKind.HEALTH,
        issuer=config.issuer + "/..",  # discovery answers, naming the real issuer
        client_id=config.client_id,
    )
    with pytest.raises(SignInFailed):
        await rt.identity_providers.begin(wrong, redirect_uri=service.url("/auth/callback"))


async def test_expired_sessions_are_deleted_when_someone_signs_in(
    service: WebService, clock: FakeClock, database_url: str
) -> None:
    async with WebUser(service) as first:
        await first.sign_in("clinician")
    clock.advance(hours=1)
    async with WebUser(service) as second:
        await second.sign_in("caseworker")
    db = await asyncpg.connect(database_url)
    try:
        roles = [r["role"] for r in await db.fetch("SELECT role FROM web_session")]
        pending = await db.fetchval("SELECT count(*) FROM web_sign_in_pending")
    finally:
        await db.close()
    assert roles == ["caseworker"] and pending == 0


async def test_the_pages_work_under_a_base_url_with_a_path(
    tmp_path: Path, database_url: str
) -> None:
    """With CPIS_PUBLIC_BASE_URL ``…/cpis`` the pages, their links, assets, redirects and
    the provider's callback are all under it, and a lookup works."""
    async with (
        running_web_service(tmp_path, database_url, base_path="/cpis") as svc,
        WebUser(svc) as user,
    ):
        assert await user.sign_in("clinician") == svc.url("/lookup")
        status, body, _ = await user.page("/lookup")
        assert status == 200
        assert 'href="/cpis/assets/govuk/css/govuk-frontend.min.css"' in body
        assert 'action="/cpis/lookup"' in body and 'action="/cpis/sign-out"' in body
        css_status, _css, _ = await user.page("/assets/govuk/css/govuk-frontend.min.css")
        assert css_status == 200
        status, body, _ = await user.post(
            "/lookup", {"csrf_token": await user.csrf(), "nhs_number": CHILD_CPP}
        )
        assert status == 200 and "Known to children" in body
        status, _body, _headers = await user.page("/nowhere")
        assert status == 404


def _ring_now(body: str) -> list[str]:
    return re.findall(r'class="govuk-body cpis-ring__number"><a [^>]*>([^<]+)</a>', body)


async def test_the_number_to_ring_is_the_office_by_day_and_the_emergency_duty_team_at_night(
    service: WebService, clock: FakeClock
) -> None:
    """Monday 1 June 2026 at 10:00 in England (09:00 UTC): the office; at 03:00, the
    emergency duty team. Both numbers are on the page either way."""
    async with WebUser(service) as user:
        await user.sign_in("clinician")
        status, body, _ = await user.post(
            "/lookup", {"csrf_token": await user.csrf(), "nhs_number": CHILD_CPP}
        )
        assert status == 200 and _ring_now(body) == [DEMO_LA.office_phone]
        assert DEMO_LA.edt_phone in body
        clock.advance(hours=17)  # 03:00 BST on Tuesday: her session has long gone
        await user.sign_in("clinician")
        status, body, _ = await user.post(
            "/lookup", {"csrf_token": await user.csrf(), "nhs_number": CHILD_CPP}
        )
        assert status == 200 and _ring_now(body) == [DEMO_LA.edt_phone]
        assert DEMO_LA.office_phone in body


async def test_a_child_with_plans_from_two_las_shows_both_numbers_to_ring(
    service: WebService,
) -> None:
    """A child moving area keeps the old LA's plan until the new LA's conference (SPEC §3):
    each LA gets its own box, and each is notified."""
    rt = service.runtime
    other = LocalAuthority(
        ods_code="XDM02",
        name="Otherford Borough Council",
        office_phone="01632 960222",
        edt_phone="01632 960223",
        repeat_window_hours=24,
    )
    await rt.db.upsert_la(other)
    await plans.put_plan(
        rt.db,
        rt.clock,
        principal=Principal(client_id="t", role=Role.LA, ods_codes=(other.ods_code,)),
        la_ods=other.ods_code,
        la_plan_id="OTHER-1",
        fields=PlanFields(CHILD_CPP, PlanType.LAC, date(2026, 2, 1)),
        if_match=None,
    )
    async with WebUser(service) as user:
        await user.sign_in("clinician")
        status, body, _ = await user.post(
            "/lookup", {"csrf_token": await user.csrf(), "nhs_number": CHILD_CPP}
        )
    assert status == 200
    assert sorted(_ring_now(body)) == sorted([DEMO_LA.office_phone, other.office_phone])
    assert f"Ring {DEMO_LA.name} now" in body and f"Ring {other.name} now" in body


async def test_a_provider_that_cannot_be_reached_is_a_503_page_to_retry(
    service: WebService,
) -> None:
    """Signing in with an organisation whose provider is down: an HTML page saying to
    try again (with Retry-After), never a 500."""
    rt = service.runtime
    sock = listening_socket()
    closed = f"http://127.0.0.1:{port_of(sock)}"
    sock.close()
    await rt.web_sessions.put_sign_in_config(
        SignInConfig(
            org_ods=DEMO_ED.ods_code,
            kind=OrgKind.HEALTH,
            issuer=closed,
            client_id="cpis-test-web",
        )
    )
    async with WebUser(service) as user:
        status, body, headers = await user.page(f"/sign-in/{DEMO_ED.ods_code}")
    assert status == 503 and "Try again in a few minutes" in body
    assert headers["Content-Type"].startswith("text/html") and int(headers["Retry-After"]) > 0


async def test_an_error_a_browser_writes_into_the_callback_is_not_logged_as_written(
    service: WebService,
) -> None:
    """The callback's query is the browser's to write: an ``error`` that is not one of
    OAuth's codes is logged as ``other``, so nothing typed there reaches the log."""
    async with WebUser(service) as user:
        status, _body, headers = await user.page(f"/sign-in/{DEMO_ED.ods_code}")
        assert status == 303
        state = dict(parse_qsl(urlsplit(headers["Location"]).query))["state"]
        with structlog.testing.capture_logs() as logs:
            status, body, _ = await user.page(f"/auth/callback?error=9990000018&state={state}")
    assert status == 400 and "You could not be signed in" in body
    refused = [e for e in logs if e["event"] == "sign_in_refused_by_provider"]
    assert refused and refused[0]["error"] == "other"
    assert "9990000018" not in repr(logs)


async def test_an_organisation_may_take_a_jwt_signed_with_the_services_key(
    service: WebService,
) -> None:
    """``private_key_jwt``: the service signs its token request with its own key (the one
    its JWKS publishes), and the provider, holding that public key, lets it in."""
    rt = service.runtime
    config = await rt.web_sessions.sign_in_config(DEMO_LA.ods_code)
    assert config is not None
    await rt.web_sessions.put_sign_in_config(
        dataclasses.replace(config, client_id=SIGNED_WEB_CLIENT, private_key_jwt=True)
    )
    async with WebUser(service) as user:
        assert await user.sign_in("caseworker") == service.url("/inbox")
        status, body, _ = await user.page("/")
    assert status == 200 and "Sam Demoworker" in body
