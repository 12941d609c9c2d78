"""Signing in through the demo OpenID provider's own pages, in Chromium.

The provider's sign-in, sign-out, error and landing pages are what a person
sees of the demo, so each is held to WCAG 2.2 AA with axe-core, and each step
is saved as a screenshot under tests/screenshots/test_demo_sign_in/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Screenshots, assert_accessible
from tests.browser.relying_party import RelyingParty, running_relying_party
from tests.oidc_provider import LocalOidcProvider, running_oidc_provider


@pytest.fixture(scope="module")
async def rp() -> AsyncIterator[RelyingParty]:
    async with (
        running_relying_party() as party,
        running_oidc_provider([party.client]) as provider,
    ):
        party.provider = provider
        yield party


@pytest.fixture
def op(rp: RelyingParty) -> LocalOidcProvider:
    assert rp.provider is not None
    return rp.provider


async def test_social_worker_signs_in_and_out_through_the_provider_pages(
    page: Page, rp: RelyingParty, op: LocalOidcProvider, screenshots: Screenshots
) -> None:
    """From the relying party to the sign-in form, a wrong password, the right one,
    back with her claims, then signed out at the provider and back again."""
    worker = op.account("caseworker")
    await page.goto(rp.url("/start"))
    await expect(page).to_have_title(re.compile(r"^Sign in"))
    await expect(page.get_by_text("the test relying party", exact=True)).to_be_visible()
    await screenshots.take(page, "sign-in form")
    await assert_accessible(page)

    await page.get_by_label("Username").fill(worker.login)
    await page.get_by_label("Password").fill("not-her-password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("There is a problem")
    await expect(page).to_have_title(re.compile(r"^Error: Sign in"))
    await expect(page.get_by_label("Username")).to_have_value(worker.login)
    await screenshots.take(page, "wrong password")
    await assert_accessible(page)

    await page.get_by_label("Password").fill(worker.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Signed in")).to_be_visible()
    assert page.url.startswith(rp.url("/callback"))
    claims = rp.signed_in[-1].id_token_claims
    assert (claims["sub"], claims["roles"], claims["org_code"]) == (
        worker.sub,
        ["caseworker"],
        "XDM01",
    )
    await expect(page.get_by_role("row", name=re.compile("roles"))).to_contain_text("caseworker")
    await screenshots.take(page, "signed in at the relying party")

    await page.get_by_role("link", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign out")).to_be_visible()
    await screenshots.take(page, "sign out at the provider")
    await assert_accessible(page)
    await page.get_by_role("button", name="Yes, sign out").click()
    await expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
    await screenshots.take(page, "signed out")

    # Signed out at the provider too: the next sign-in asks for the password again.
    await page.get_by_role("link", name="Sign in").click()
    await expect(page.get_by_label("Password")).to_be_visible()


async def test_the_other_provider_pages_pass_axe(
    page: Page, op: LocalOidcProvider, screenshots: Screenshots
) -> None:
    """The landing page, an error (an unknown client), a page that is not there, and
    the landing page on a phone-sized screen."""
    await page.goto(op.issuer)
    await expect(page.get_by_role("heading", name="Demo identity provider")).to_be_visible()
    await screenshots.take(page, "landing page")
    await assert_accessible(page)

    await page.goto(f"{op.discovery['authorization_endpoint']}?client_id=nobody&response_type=code")
    await expect(page).to_have_title(re.compile(r"^Error:"))
    await screenshots.take(page, "error page")
    await assert_accessible(page)

    response = await page.goto(f"{op.issuer}/no-such-page")
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    await assert_accessible(page)

    await page.set_viewport_size({"width": 320, "height": 640})
    await page.goto(op.issuer)
    await screenshots.take(page, "landing page at 320px")
    await assert_accessible(page)
