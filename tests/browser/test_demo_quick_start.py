"""The quick start as a person at a browser follows it (issue 12, "done means").

`make run` starts the demo OpenID provider (``demo/oidc``) and ``cpis serve --demo``
and prints the sign-ins. Here the same two run as that pair (the provider on a port
of its own, the service told of it by ``CPIS_DEMO_OIDC_ISSUER``, as the Makefile
does); then, as printed: the ED's user-restricted lookup and the example upload from
a terminal, and in Chromium the demo social worker signs in, sees that attendance,
opens the child, acknowledges it and sees the upload's acknowledgement; the demo
clinician looks the child up and is told which number to ring now. Screenshots
under tests/screenshots/test_demo_quick_start/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from playwright.async_api import Page, expect

from cpis import rules
from tests.browser.conftest import Screenshots, assert_accessible
from tests.e2e.demo_process import cpis, running_demo
from tests.e2e.test_cli_demo import follow_user_restricted_lines
from tests.oidc_provider import OidcClient, running_oidc_provider
from tests.ports import free_port

CHILD = "9990000018"
OFFICE, EDT = "01632 960000", "01632 960999"


class Demo:
    def __init__(self, env: dict[str, str], printed: str, root: str) -> None:
        self.env, self.printed, self.root = env, printed, root

    def person(self, role: str) -> tuple[str, str]:
        """The login and password the demo printed for ``role`` (its description)."""
        password = re.search(r"password (\S+)\)", self.printed)
        login = re.search(rf"^\s+(\S+)\s+an? [^\n]*\({role}\)", self.printed, re.M)
        assert password and login, self.printed
        return login.group(1), password.group(1)


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    port = free_port()  # the provider must know the service's address before it starts
    web = OidcClient.public(
        "cpis-demo-web",
        redirect_uri=f"http://127.0.0.1:{port}/auth/callback",
        post_logout_redirect_uris=(f"http://127.0.0.1:{port}/signed-out",),
        client_name="CP-IS demo",
    )
    async with running_oidc_provider([web]) as provider:
        settings = {
            "CPIS_PORT": str(port),
            "CPIS_DEMO_OIDC_ISSUER": provider.issuer,
            "CPIS_PERSON_INDEX": "local",  # as `make run`
        }
        async with running_demo(settings) as (env, printed, root):
            assert f"sign in at the demo provider, {provider.issuer}" in printed
            yield Demo(env, printed, root)


async def _run_printed_upload(demo: Demo) -> None:
    """The printed `cpis upload schemas/examples/upload-example.json`, with the settings
    the printed line gives it."""
    line = next(ln for ln in demo.printed.splitlines() if "upload-example.json" in ln)
    bare = {k: v for k, v in demo.env.items() if not k.startswith("CPIS_")}
    bare |= dict(re.findall(r"(CPIS_[A-Z_]+)=(\S+)", line))
    bare["CPIS_DATA_DIR"] = demo.env["CPIS_DATA_DIR"]  # the test's, not `.cpis`
    code, out, err = await cpis(bare, "upload", "schemas/examples/upload-example.json")
    assert code == 0, err
    assert "CPF03" in out, out


async def _sign_in(page: Page, demo: Demo, organisation: str, role: str) -> None:
    await page.goto(f"{demo.root}/")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("link", name=re.compile(organisation)).click()
    login, password = demo.person(role)
    await page.get_by_label("Username").fill(login)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_the_demo_as_printed_for_the_social_worker_and_the_clinician(
    page: Page, demo: Demo, screenshots: Screenshots
) -> None:
    await follow_user_restricted_lines(demo.env, demo.printed)  # the nurse's lookup
    await _run_printed_upload(demo)

    await _sign_in(page, demo, "Demoshire County Council", "caseworker")
    await expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()
    await expect(page.get_by_text("999 000 0018").first).to_be_visible()
    await expect(page.get_by_text("Casey Demonurse").first).to_be_visible()
    await screenshots.take(page, "inbox with the printed lookup")
    await assert_accessible(page)

    await page.get_by_role("button", name=re.compile("View the child's record")).first.click()
    await expect(page.get_by_text("DEMO-CPP-0001")).to_be_visible()
    await expect(page.get_by_text("Child protection plan").first).to_be_visible()
    await screenshots.take(page, "the child")

    await page.get_by_role("link", name="Inbox").click()
    await page.get_by_role("checkbox").first.check()
    await page.get_by_role("button", name="Acknowledge selected").click()
    await expect(page.get_by_text("1 attendance acknowledged")).to_be_visible()
    await expect(page.get_by_text("There are no new attendances")).to_be_visible()
    await screenshots.take(page, "acknowledged")

    await page.get_by_role("link", name="Uploads").click()
    await expect(page.get_by_text("CPF03").first).to_be_visible()
    await page.get_by_role("link", name=re.compile(r"the file.s acknowledgement")).first.click()
    await expect(page.get_by_text("CPR06").first).to_be_visible()
    await expect(page.get_by_text("no such plan to delete")).to_be_visible()
    await screenshots.take(page, "the upload's acknowledgement")
    await assert_accessible(page)
    await page.get_by_role("button", name="Sign out").click()

    await _sign_in(page, demo, "Demoshire General Hospital", "clinician")
    await page.get_by_label("NHS number").fill(CHILD)
    await page.get_by_role("button", name="Look up").click()
    await expect(page.get_by_text("Ring Demoshire County Council now")).to_be_visible()
    now = OFFICE if rules.in_office_hours(datetime.now(UTC)) else EDT
    ring = page.get_by_role("link", name=now).first
    await expect(ring).to_be_visible()
    assert await ring.get_attribute("href") == f"tel:{now.replace(' ', '')}"
    await expect(page.get_by_text(OFFICE).first).to_be_visible()
    await expect(page.get_by_text(EDT).first).to_be_visible()
    await screenshots.take(page, "the clinician's lookup")
    await assert_accessible(page)
