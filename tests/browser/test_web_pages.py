"""The service's own web pages in Chromium (issue 12): signing in through the demo
OpenID provider as the clinician, looking a child up, signing out; a page without a
session; a form without its CSRF token; the lookup by keyboard alone; and every page
held to WCAG 2.2 AA with axe-core. Screenshots of each step are saved under
tests/screenshots/test_web_pages/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Page, expect

from cpis import rules
from cpis.model import AuditEntry, Principal, Role
from cpis.services import lookup
from tests.browser.conftest import Screenshots, assert_accessible
from tests.web_service import (
    CHILD_CPP,
    DEMO_ED,
    DEMO_LA,
    UNKNOWN_CHILD,
    WebService,
    running_web_service,
)


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[WebService]:
    async with running_web_service(tmp_path, database_url) as svc:
        yield svc


async def _sign_in_at_provider(page: Page, service: WebService, role: str) -> None:
    account = service.account(role)
    await page.get_by_label("Username").fill(account.login)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Sign in").click()


async def _sign_in_as_clinician(page: Page, service: WebService) -> None:
    await page.goto(service.url("/sign-in"))
    await page.get_by_role("link", name=re.compile(DEMO_ED.name)).click()
    await _sign_in_at_provider(page, service, "clinician")
    await expect(page.get_by_role("heading", name="Look up a child")).to_be_visible()


async def test_clinician_signs_in_looks_a_child_up_sees_the_number_to_ring_and_signs_out(
    page: Page, service: WebService, screenshots: Screenshots, database_url: str
) -> None:
    """From the start page through the provider to the lookup; a mistyped number gets
    the error summary; the right one shows the LA, the number to ring now and both
    numbers; the access event names her and the LA is notified; signing out ends the
    session here and at the provider."""
    await page.goto(service.url("/"))
    await expect(page).to_have_title("Child Protection - Information Sharing - CP-IS")
    await screenshots.take(page, "start page")
    await assert_accessible(page)

    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    await screenshots.take(page, "choose organisation")
    await assert_accessible(page)

    await page.get_by_role("link", name=re.compile(DEMO_ED.name)).click()
    await expect(page).to_have_title(re.compile(r"^Sign in"))
    await _sign_in_at_provider(page, service, "clinician")
    await expect(page.get_by_role("heading", name="Look up a child")).to_be_visible()
    await expect(page.get_by_text("Signed in as")).to_contain_text("Casey Demonurse")
    await screenshots.take(page, "lookup form")
    await assert_accessible(page)

    await page.get_by_label("NHS number").fill("999 000 0019")
    await page.get_by_role("button", name="Look up").click()
    await expect(page).to_have_title(re.compile(r"^Error: "))
    summary = page.locator(".govuk-error-summary")
    await expect(summary).to_contain_text("This is not a valid NHS number")
    await screenshots.take(page, "wrong check digit")
    await assert_accessible(page)
    # The summary's link takes the person to the field (GOV.UK Frontend's script, once
    # it has started: a module script runs after the page is shown).
    await expect(page.locator("body.govuk-frontend-supported")).to_have_count(1)
    await summary.get_by_role("link").click()
    await expect(page.get_by_label("NHS number")).to_be_focused()

    await page.get_by_label("NHS number").fill(
        CHILD_CPP[:3] + " " + CHILD_CPP[3:6] + " " + CHILD_CPP[6:]
    )
    await page.get_by_role("button", name="Look up").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Known to children's social care"
    )
    office = rules.in_office_hours(service.runtime.clock.now())
    ring = page.locator(f"#ring-{DEMO_LA.ods_code}")
    await expect(ring.get_by_role("heading")).to_have_text(f"Ring {DEMO_LA.name} now")
    now_number = DEMO_LA.office_phone if office else DEMO_LA.edt_phone
    await expect(ring.locator(".cpis-ring__number")).to_have_text(now_number)
    await expect(ring).to_contain_text(DEMO_LA.office_phone)
    await expect(ring).to_contain_text(DEMO_LA.edt_phone)
    await expect(page.get_by_role("table").first).to_contain_text("Child protection plan")
    await expect(page.get_by_text("The local authority has been told")).to_be_visible()
    await screenshots.take(page, "child known")
    await assert_accessible(page)

    # Recorded as the FHIR lookup records it: her, her CIS2 role, her organisation.
    la = Principal(client_id="test", role=Role.LA, ods_codes=(DEMO_LA.ods_code,))
    visits = await lookup.history(
        service.runtime.db,
        service.runtime.clock,
        nhs_number=CHILD_CPP,
        principal=la,
        audit=_audit_entry(),
    )
    assert len(visits) == 1
    viewer = visits[0].accessor
    assert (viewer.user_name, viewer.user_id, viewer.role_code, viewer.org_ods) == (
        "Casey Demonurse",
        service.account("clinician").sub,
        "R8001",
        DEMO_ED.ods_code,
    )
    assert viewer.user_verified and viewer.client_id == "cpis-web"
    assert visits[0].la_codes == (DEMO_LA.ods_code,)
    db = await asyncpg.connect(database_url)
    try:
        notified = await db.fetch("SELECT la_ods, org_ods FROM outbox")
        audited = await db.fetch(
            "SELECT action, client_id, role, org_ods, user_key IS NOT NULL AS person"
            " FROM audit_log WHERE client_id = 'cpis-web' ORDER BY seq"
        )
    finally:
        await db.close()
    assert [(r["la_ods"], r["org_ods"]) for r in notified] == [(DEMO_LA.ods_code, DEMO_ED.ods_code)]
    actions = [r["action"] for r in audited]
    assert actions[0] == "web_signed_in"
    assert "page_lookup" in actions and "page_lookup_result" in actions
    assert all(r["role"] == "clinician" and r["person"] for r in audited)

    # A child no LA has told CP-IS of.
    await page.get_by_label("NHS number").fill(UNKNOWN_CHILD)
    await page.get_by_role("button", name="Look up").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("No plan found")
    await screenshots.take(page, "child not known")
    await assert_accessible(page)

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign out")).to_be_visible()  # the provider
    await page.get_by_role("button", name="Yes, sign out").click()
    await expect(page.get_by_role("heading", name="You have signed out")).to_be_visible()
    await screenshots.take(page, "signed out")
    await assert_accessible(page)
    await page.goto(service.url("/lookup"))
    await expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()


def _audit_entry() -> AuditEntry:
    return AuditEntry(action="test_read", outcome=200)


async def test_a_page_without_a_session_sends_the_person_to_sign_in_and_back(
    page: Page, service: WebService, screenshots: Screenshots
) -> None:
    await page.goto(service.url("/lookup"))
    assert page.url.startswith(service.url("/sign-in?next="))
    await expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    await page.get_by_role("link", name=re.compile(DEMO_ED.name)).click()
    await _sign_in_at_provider(page, service, "clinician")
    await expect(page.get_by_role("heading", name="Look up a child")).to_be_visible()
    assert page.url == service.url("/lookup")


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    page: Page, service: WebService, screenshots: Screenshots, database_url: str
) -> None:
    await _sign_in_as_clinician(page, service)
    token = page.locator("#main-content input[name=csrf_token]")
    await token.evaluate("input => { input.value = 'forged'; }")
    await page.get_by_label("NHS number").fill(CHILD_CPP)
    await page.get_by_role("button", name="Look up").click()
    await expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    await screenshots.take(page, "csrf refused")
    await assert_accessible(page)
    db = await asyncpg.connect(database_url)
    try:
        assert await db.fetchval("SELECT count(*) FROM access_event") == 0
    finally:
        await db.close()


async def test_the_lookup_by_keyboard_alone(
    page: Page, service: WebService, screenshots: Screenshots
) -> None:
    """Skip link, the field, Enter: the number to ring, with no mouse."""
    await _sign_in_as_clinician(page, service)
    await page.goto(service.url("/lookup"))
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    await page.keyboard.press("Enter")
    for _ in range(6):
        await page.keyboard.press("Tab")
        if await page.get_by_label("NHS number").evaluate("el => el === document.activeElement"):
            break
    await expect(page.get_by_label("NHS number")).to_be_focused()
    await page.keyboard.type(CHILD_CPP)
    await page.keyboard.press("Enter")
    await expect(page.locator(".cpis-ring__number")).to_be_visible()
    await screenshots.take(page, "known by keyboard")


async def test_the_number_is_checked_as_it_is_typed(
    page: Page, service: WebService, screenshots: Screenshots
) -> None:
    """With JavaScript, a wrong check digit shows the error before the form is sent."""
    await _sign_in_as_clinician(page, service)
    field = page.get_by_label("NHS number")
    await field.press_sequentially("9990000019")
    await expect(page.locator("#nhs-number-error")).to_contain_text("not a valid NHS number")
    await screenshots.take(page, "checked as typed")
    await assert_accessible(page)
    await field.press("Backspace")
    await expect(page.locator("#nhs-number-error")).to_be_hidden()
    await field.press_sequentially("8")
    await expect(page.locator("#nhs-number-error")).to_be_hidden()


async def test_error_pages_are_html_for_browsers_and_pass_axe(
    page: Page, service: WebService, screenshots: Screenshots
) -> None:
    """A page that is not there is an HTML 404; an API path's stays an OperationOutcome;
    a caseworker is refused the clinician's page; the start page fits a phone."""
    response = await page.goto(service.url("/no-such-page"))
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    await screenshots.take(page, "not found")
    await assert_accessible(page)
    api = await page.request.get(service.url("/FHIR/R4/NoSuchType"))
    assert api.status == 404 and api.headers["content-type"].startswith("application/fhir+json")

    await page.goto(service.url("/sign-in"))
    await page.get_by_role("link", name=re.compile(DEMO_LA.name)).click()
    await _sign_in_at_provider(page, service, "caseworker")
    await expect(page.get_by_text("Signed in as")).to_contain_text("caseworker")
    response = await page.goto(service.url("/lookup"))
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading", name="You cannot use this page")).to_be_visible()
    await screenshots.take(page, "caseworker refused")
    await assert_accessible(page)

    await page.set_viewport_size({"width": 375, "height": 740})
    await page.goto(service.url("/"))
    await screenshots.take(page, "start page on a phone")
    await assert_accessible(page)
