"""The local authority's pages in Chromium (issue 12, items 3 and 6): the social worker
signs in through the demo OpenID provider, an ED lookup made through the FHIR API
arrives in her open inbox, she acknowledges it and opens the child; the manager
uploads a file and reads its acknowledgement, retries a failed delivery and changes
the settings; no page or typed address shows another LA's child; the main flows by
keyboard alone and without JavaScript; every page held to WCAG 2.2 AA with axe-core.
Screenshots of each step are saved under tests/screenshots/test_la_pages/."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, Route, expect

from cpis.model.persons import IndexPerson
from cpis.services.person_index import notify_inactive
from cpis.web.pages import inbox as inbox_page
from tests.browser.conftest import Screenshots, assert_accessible
from tests.la_pages_world import OTHER_CHILD, OTHER_LA, EdSystem, add_other_la, dead_delivery
from tests.web_service import (
    CHILD_CPP,
    CHILD_LAC,
    DEMO_LA,
    UNKNOWN_CHILD,
    WebService,
    running_web_service,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[WebService]:
    async with running_web_service(tmp_path, database_url) as svc:
        await add_other_la(svc)
        yield svc


@pytest.fixture
async def ed(service: WebService) -> EdSystem:
    return await EdSystem(service).register()


def _spaced(nhs: str) -> str:
    return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"


async def _sign_in(page: Page, service: WebService, role: str) -> None:
    await page.goto(service.url("/sign-in"))
    await page.get_by_role("link", name=re.compile(DEMO_LA.name)).click()
    account = service.account(role)
    await page.get_by_label("Username").fill(account.login)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()


async def _check(page: Page, screenshots: Screenshots, step: str) -> None:
    await screenshots.take(page, step)
    await assert_accessible(page)


async def test_the_social_worker_sees_an_ed_lookup_arrive_acknowledges_it_and_opens_the_child(
    page: Page, service: WebService, ed: EdSystem, screenshots: Screenshots
) -> None:
    await page.goto(service.url("/"))
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("link", name=re.compile(DEMO_LA.name)).click()
    account = service.account("caseworker")
    await page.get_by_label("Username").fill(account.login)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()
    await expect(page.get_by_text("Signed in as")).to_contain_text("Sam Demoworker")
    await expect(page.get_by_text("There are no new attendances")).to_be_visible()
    await expect(page.get_by_role("button", name="Acknowledge selected")).to_be_hidden()
    await expect(page.locator("[data-inbox-paused]")).to_be_hidden()
    await _check(page, screenshots, "empty inbox")

    # The other LA's child is looked up first: it must never reach this inbox.
    assert await ed.look_up(OTHER_CHILD) == 200
    assert await ed.look_up(CHILD_CPP) == 200
    child = page.locator(f'[data-child="{CHILD_CPP}"]')
    await expect(child).to_be_visible()  # arrived by server-sent events, no reload
    await expect(child).to_contain_text("1 attendance in the last 28 days")
    await expect(child).to_contain_text("Robin Triage")
    await expect(child).to_contain_text("Demoshire General Hospital Emergency Department")
    await expect(page.locator(f'[data-child="{OTHER_CHILD}"]')).to_have_count(0)
    await expect(page.get_by_text("There are no new attendances")).to_have_count(0)
    await expect(page.locator("[data-inbox-status]")).to_contain_text("New attendance")
    await expect(page.get_by_role("button", name="Acknowledge selected")).to_be_visible()
    await _check(page, screenshots, "attendance arrived live")

    # A second visit, and another child: after a reload both are listed, newest first.
    assert await ed.look_up(CHILD_LAC, user="Alex Paramedic") == 200
    await expect(page.locator(f'[data-child="{CHILD_LAC}"]')).to_be_visible()
    assert await ed.look_up(CHILD_CPP, user="Jo Doctor") == 200
    await page.reload()
    sections = page.locator("[data-child]")
    await expect(sections).to_have_count(2)
    await expect(sections.first).to_have_attribute("data-child", CHILD_CPP)
    await expect(child).to_contain_text("2 attendances in the last 28 days")
    await _check(page, screenshots, "inbox with two children")

    await page.get_by_role(
        "checkbox", name=re.compile(f"Acknowledge the attendance of {_spaced(CHILD_LAC)}")
    ).check()
    await page.get_by_role("button", name="Acknowledge selected").first.click()
    await expect(page.get_by_text("1 attendance acknowledged")).to_be_visible()
    await expect(page.locator(f'[data-child="{CHILD_LAC}"]')).to_have_count(0)
    await _check(page, screenshots, "acknowledged")

    await page.get_by_role("link", name="Acknowledged", exact=True).click()
    acknowledged = page.locator(f'[data-child="{CHILD_LAC}"]')
    await expect(acknowledged).to_contain_text("Sam Demoworker")
    await _check(page, screenshots, "acknowledged filter")

    await page.get_by_role("link", name="New", exact=True).click()
    await page.get_by_role(
        "button", name=f"View the child's record for NHS number {_spaced(CHILD_CPP)}"
    ).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(_spaced(CHILD_CPP))
    await expect(page.get_by_role("table").first).to_contain_text("P-CPP-1")
    await expect(page.get_by_role("table").first).not_to_contain_text("OT-2")
    await expect(page.locator("main")).to_contain_text("Jo Doctor")
    await expect(page.locator("main")).not_to_contain_text(OTHER_LA.name)
    await _check(page, screenshots, "child's record")

    await page.get_by_role("link", name="Find a child").click()
    await page.get_by_label("NHS number").fill(_spaced(OTHER_CHILD))
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("No child found")
    await _check(page, screenshots, "another la's child not found")
    await page.get_by_label("NHS number").fill("999 000 0019")
    await page.get_by_role("button", name="Find").click()
    await expect(page.locator(".govuk-error-summary")).to_contain_text("not a valid NHS number")
    await _check(page, screenshots, "child number mistyped")

    await page.get_by_role("link", name="Uploads").click()
    await expect(page.get_by_role("heading", name="Uploads", exact=True)).to_be_visible()
    await expect(page.get_by_label("Upload a file")).to_have_count(0)
    await _check(page, screenshots, "uploads for a caseworker")
    await page.get_by_role("link", name="Settings").click()
    await expect(page.get_by_text("Only a manager can change these settings")).to_be_visible()
    await _check(page, screenshots, "settings for a caseworker")

    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_role("button", name="Yes, sign out").click()
    await expect(page.get_by_role("heading", name="You have signed out")).to_be_visible()
    await page.goto(service.url("/inbox"))
    await expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()


async def test_the_manager_uploads_a_file_retries_a_delivery_and_changes_the_settings(
    page: Page,
    service: WebService,
    ed: EdSystem,
    screenshots: Screenshots,
    database_url: str,
) -> None:
    await ed.look_up(CHILD_CPP)
    delivery_id = await dead_delivery(database_url, DEMO_LA.ods_code)
    await _sign_in(page, service, "manager")
    await page.get_by_role("link", name="Uploads").click()
    await _check(page, screenshots, "uploads before")

    await page.get_by_label("Upload a file").set_input_files(str(EXAMPLES / "upload-example.json"))
    await page.get_by_role("button", name="Upload file").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("File 42")
    await expect(page.get_by_text("File 42 received")).to_be_visible()
    records = page.get_by_role("table")
    await expect(records).to_contain_text("DEMO-CPP-0001")
    await expect(records).to_contain_text("CPR06")
    await _check(page, screenshots, "upload acknowledgement")

    await page.get_by_role("link", name="Back to uploads").click()
    # the file's number opens it, by mouse (a hidden prefix once moved the link's
    # click point off its visible number)
    await page.get_by_role("link", name=re.compile(r"^42\W+the file's acknowledgement")).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("File 42")
    await page.get_by_role("link", name="Back to uploads").click()
    await page.get_by_label("Upload a file").set_input_files(
        str(EXAMPLES / "upload-bad-truncated.json")
    )
    await page.get_by_role("button", name="Upload file").click()
    await expect(page.locator(".govuk-error-summary")).to_contain_text("CPF01")
    await expect(page).to_have_title(re.compile(r"^Error: Uploads"))
    await _check(page, screenshots, "upload refused")

    await page.get_by_role("link", name="Failed deliveries").click()
    await expect(page.get_by_role("table")).to_contain_text("HTTP 403")
    await _check(page, screenshots, "failed deliveries")
    await page.get_by_role("button", name=f"Retry delivery {delivery_id}").click()
    await expect(page.get_by_text(f"Delivery {delivery_id} will be sent again now")).to_be_visible()
    await expect(page.get_by_text("None: every notification was delivered")).to_be_visible()
    await _check(page, screenshots, "delivery retried")

    await page.get_by_role("link", name="Settings").click()
    await _check(page, screenshots, "settings")
    await page.get_by_label("Emergency duty team number").fill("not a number")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator(".govuk-error-summary")).to_contain_text("emergency duty team")
    await _check(page, screenshots, "settings error")
    await page.get_by_label("Emergency duty team number").fill("01632 960555")
    await page.get_by_label("Repeat window").fill("12")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_text("Settings saved")).to_be_visible()
    await expect(page.locator(".govuk-summary-list")).to_contain_text("01632 960555")
    await _check(page, screenshots, "settings saved")


async def test_an_upload_shows_its_progress_bar_while_sent(
    page: Page, service: WebService, screenshots: Screenshots, tmp_path: Path
) -> None:
    """A file large enough to watch: the bar and its words appear, then the answer."""
    body = (EXAMPLES / "upload-example.json").read_text()
    big = tmp_path / "upload-big.json"
    # Padding after the JSON's last brace would be refused; a long "created" would too.
    # Whitespace inside the document is allowed anywhere, and makes the file ~3 MB.
    big.write_text(body.replace('"records": [', '"records": [' + " " * 3_000_000, 1))
    await _sign_in(page, service, "manager")
    await page.goto(service.url("/uploads"))
    # The answer is held until the bar has been seen and photographed: on localhost the
    # whole upload can be over before a screenshot is (and a navigation mid-screenshot
    # stalls it).
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        if route.request.method == "POST":
            await release.wait()
        await route.continue_()

    await page.route(re.compile(r".*/uploads$"), hold)
    await page.get_by_label("Upload a file").set_input_files(str(big))
    await page.get_by_role("button", name="Upload file").click()
    progress = page.locator("[data-upload-progress]")
    await expect(progress).to_be_visible()
    await expect(progress).to_contain_text(re.compile("Sending the file|File sent"))
    await expect(page.get_by_role("button", name="Upload file")).to_be_disabled()
    await screenshots.take(page, "progress bar")
    release.set()
    await expect(page.get_by_role("heading", level=1)).to_have_text("File 42")


async def test_no_page_or_typed_address_shows_another_las_child(
    page: Page, service: WebService, ed: EdSystem, screenshots: Screenshots
) -> None:
    """The other LA's child, looked up at the ED, is in no list, no stream and no typed
    address; searched for, it gets exactly the page an unknown number gets."""
    await ed.look_up(OTHER_CHILD)
    await _sign_in(page, service, "caseworker")
    for path in ("/inbox", "/inbox?status=all", "/inbox?status=acknowledged"):
        await page.goto(service.url(path))
        await expect(page.locator("main")).not_to_contain_text(_spaced(OTHER_CHILD))
    for path in (
        f"/children/{OTHER_CHILD}",
        f"/children?nhs_number={OTHER_CHILD}",
        f"/inbox/{OTHER_CHILD}",
        f"/la/v1/children/{OTHER_CHILD}",
        f"/la/v1/plans?nhs_number={OTHER_CHILD}",
        "/uploads/1",
        "/deliveries",
    ):
        response = await page.goto(service.url(path))
        assert response is not None
        assert response.status in (200, 401, 403, 404), path
        text = await page.content()
        assert OTHER_CHILD not in text and _spaced(OTHER_CHILD) not in text, path
        assert OTHER_LA.name not in text, path
    answers = []
    for nhs in (OTHER_CHILD, UNKNOWN_CHILD):
        await page.goto(service.url("/children"))
        await page.get_by_label("NHS number").fill(nhs)
        await page.get_by_role("button", name="Find").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("No child found")
        main = await page.locator("main").inner_text()
        answers.append(main.replace(_spaced(nhs), "NUMBER").replace(nhs, "NUMBER"))
    assert answers[0] == answers[1]
    await _check(page, screenshots, "unknown child")


async def test_the_inbox_and_a_child_by_keyboard_alone(
    page: Page, service: WebService, ed: EdSystem, screenshots: Screenshots
) -> None:
    """Skip link, Tab to the attendance's checkbox, Space, back to the button, Enter;
    then Tab to a child's record and Enter: no mouse."""
    await ed.look_up(CHILD_CPP)
    await ed.look_up(CHILD_LAC)
    await _sign_in(page, service, "caseworker")
    await page.goto(service.url("/inbox"))
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    await page.keyboard.press("Enter")
    box = page.get_by_role(
        "checkbox", name=re.compile(f"Acknowledge the attendance of {_spaced(CHILD_CPP)}")
    )
    await _tab_to(page, box)
    await page.keyboard.press("Space")
    await expect(box).to_be_checked()
    button = page.get_by_role("button", name="Acknowledge selected").first
    await _tab_to(page, button, back=True)
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("1 attendance acknowledged")).to_be_visible()
    await screenshots.take(page, "acknowledged by keyboard")

    record = page.get_by_role(
        "button", name=f"View the child's record for NHS number {_spaced(CHILD_LAC)}"
    )
    await _tab_to(page, record)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text(_spaced(CHILD_LAC))
    await screenshots.take(page, "child by keyboard")


async def _tab_to(page: Page, target: Locator, *, back: bool = False) -> None:
    for _ in range(40):
        if await target.evaluate("el => el === document.activeElement"):
            return
        await page.keyboard.press("Shift+Tab" if back else "Tab")
    await expect(target).to_be_focused()


async def test_the_pages_work_without_javascript(
    page: Page, service: WebService, ed: EdSystem, screenshots: Screenshots
) -> None:
    """With every script refused: the upload is a plain multipart form, acknowledging a
    plain form, and a new attendance is there on reload."""

    async def no_scripts(route: Route) -> None:
        await route.abort()

    await page.route(re.compile(r".*\.m?js(\?.*)?$"), no_scripts)
    await ed.look_up(CHILD_CPP)
    await _sign_in(page, service, "manager")
    await expect(page.locator("body.govuk-frontend-supported")).to_have_count(0)
    await page.get_by_role("checkbox").first.check()
    await page.get_by_role("button", name="Acknowledge selected").first.click()
    await expect(page.get_by_text("1 attendance acknowledged")).to_be_visible()
    await page.goto(service.url("/uploads"))
    await page.get_by_label("Upload a file").set_input_files(str(EXAMPLES / "upload-example.csv"))
    await page.get_by_role("button", name="Upload file").click()
    await expect(page.get_by_text(re.compile(r"File \d+ received"))).to_be_visible()
    await _check(page, screenshots, "upload without javascript")


async def test_the_inbox_on_a_phone(
    page: Page, service: WebService, ed: EdSystem, screenshots: Screenshots
) -> None:
    await ed.look_up(CHILD_CPP)
    await _sign_in(page, service, "caseworker")
    await page.set_viewport_size({"width": 375, "height": 740})
    await page.reload()
    await _check(page, screenshots, "inbox on a phone")


async def test_nhs_numbers_no_longer_in_use_are_listed_readably(
    page: Page, service: WebService, ed: EdSystem, screenshots: Screenshots
) -> None:
    rt = service.runtime
    await notify_inactive(
        rt.index_check,
        [IndexPerson(CHILD_LAC, active=False), IndexPerson(CHILD_CPP, superseded_by=UNKNOWN_CHILD)],
        now=rt.clock.now(),
    )
    await ed.look_up(CHILD_CPP)
    await _sign_in(page, service, "caseworker")
    await expect(page.get_by_role("heading", name="NHS numbers no longer in use")).to_be_visible()
    await _check(page, screenshots, "numbers no longer in use")
    await page.get_by_role(
        "checkbox", name=f"Acknowledge that {_spaced(CHILD_LAC)} is no longer in use"
    ).check()
    await page.get_by_role("button", name="Acknowledge selected number changes").click()
    await expect(page.get_by_text("1 NHS number change acknowledged")).to_be_visible()


async def test_an_inbox_left_alone_stops_its_live_updates_and_says_so(
    page: Page,
    service: WebService,
    ed: EdSystem,
    screenshots: Screenshots,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each reconnect of the events stream would keep the session alive: once the page has
    not been used for the idle time, the stream's end is not followed by a reconnect, and
    the page says new attendances are no longer added. (Here: streams of a second, idle
    at once.)"""
    monkeypatch.setattr(inbox_page, "STREAM_SECONDS", 1.0)
    monkeypatch.setattr(inbox_page, "LIVE_IDLE_SECONDS", 0)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/inbox/events" in r.url else None)
    await _sign_in(page, service, "caseworker")
    paused = page.locator("[data-inbox-paused]")
    await expect(paused).to_be_visible()
    await expect(paused).to_contain_text("Reload the inbox")
    await _check(page, screenshots, "live updates paused")
    # The note is shown as the stream is closed for good: one stream, no reconnect.
    assert len(streams) == 1
    await ed.look_up(CHILD_CPP)
    await page.get_by_role("link", name="Reload the inbox").click()
    await expect(page.locator(f'[data-child="{CHILD_CPP}"]')).to_be_visible()
