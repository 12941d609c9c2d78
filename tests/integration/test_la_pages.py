"""The local authority's pages without a browser (issue 12, item 3): the inbox and its
acknowledgement by the person, its live events, a child's page among the LA's own
children only, uploads, failed deliveries and settings, each for the roles it is for.
The same flows in Chromium, with axe-core and screenshots, are tests/browser/test_la_pages.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import Accessor, AuditEntry, PlanFields, PlanType, Principal, Role
from cpis.model.persons import IndexPerson
from cpis.services import lookup, plans
from cpis.services.person_index import notify_inactive
from tests.la_pages_world import (
    OTHER_CHILD,
    OTHER_LA,
    EdSystem,
    add_other_la,
    dead_delivery,
)
from tests.web_service import (
    CHILD_CPP,
    CHILD_LAC,
    DEMO_ED,
    DEMO_LA,
    UNKNOWN_CHILD,
    WebService,
    WebUser,
    running_web_service,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
_IDS = re.compile(r'name="ids" type="checkbox" value="([0-9a-f-]{36})"')


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[WebService]:
    async with running_web_service(tmp_path, database_url) as svc:
        await add_other_la(svc)
        yield svc


@pytest.fixture
async def ed(service: WebService) -> EdSystem:
    return await EdSystem(service).register()


async def _signed_in(service: WebService, role: str) -> WebUser:
    user = WebUser(service)
    await user.sign_in(role)
    return user


async def test_an_ed_lookup_is_in_the_inbox_and_acknowledging_it_records_the_person(
    service: WebService, ed: EdSystem, database_url: str
) -> None:
    """The child, its 28-day count, where, when and who looked; acknowledged by the
    social worker, it leaves the new list and shows her name under acknowledged."""
    assert await ed.look_up(CHILD_CPP) == 200
    async with await _signed_in(service, "caseworker") as user:
        status, body, _ = await user.page("/inbox")
        assert status == 200
        assert "999 000 0018" in body and "1 attendance in the last 28 days" in body
        assert "Robin Triage" in body and "Demoshire General Hospital" in body
        ids = _IDS.findall(body)
        assert len(ids) == 1
        token = await user.csrf("/inbox")
        status, _, headers = await user.post(
            "/inbox/acknowledge", {"csrf_token": token, "ids": ids[0]}
        )
        assert status == 303 and headers["Location"].endswith("/inbox?acknowledged=1")
        _, body, _ = await user.page("/inbox?acknowledged=1")
        assert "1 attendance acknowledged" in body and "There are no new attendances" in body
        _, body, _ = await user.page("/inbox?status=acknowledged")
        assert "999 000 0018" in body and "Sam Demoworker" in body
    db = await asyncpg.connect(database_url)
    try:
        acknowledged = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE acknowledged_at IS NOT NULL"
        )
        actions = await db.fetch("SELECT action, outcome FROM audit_log ORDER BY seq")
    finally:
        await db.close()
    assert acknowledged == 1
    assert ("page_inbox_acknowledge", 303) in [(r["action"], r["outcome"]) for r in actions]


async def test_acknowledging_nothing_is_a_clear_error_that_changes_nothing(
    service: WebService, ed: EdSystem
) -> None:
    await ed.look_up(CHILD_CPP)
    async with await _signed_in(service, "caseworker") as user:
        token = await user.csrf("/inbox")
        for ids in ({}, {"ids": "not-an-id"}):
            status, body, _ = await user.post("/inbox/acknowledge", {"csrf_token": token, **ids})
            assert status == 400
            assert "Select the attendances you have read" in body
            assert "<title>Error: Inbox - CP-IS</title>" in body
        _, body, _ = await user.page("/inbox")
        assert len(_IDS.findall(body)) == 1
        for query, heading in (
            ("status=everything", "There is a problem"),
            ("after=v1.nonsense", "This page of the inbox is out of date"),
        ):
            status, body, _ = await user.page(f"/inbox?{query}")
            assert status == 400 and heading in body


async def test_the_inbox_is_a_page_at_a_time_newest_child_first(
    service: WebService, ed: EdSystem
) -> None:
    await ed.look_up(CHILD_LAC)
    await ed.look_up(CHILD_CPP)
    async with await _signed_in(service, "caseworker") as user:
        _, body, _ = await user.page("/inbox")
        assert body.index("999 000 0018") < body.index("999 000 0026")
        assert "Next page" not in body


async def test_an_open_inbox_is_sent_a_new_attendance_as_it_happens(
    service: WebService, ed: EdSystem
) -> None:
    """The events stream sends the child's section, rendered as the page renders it,
    when a lookup is recorded; the event's id is the cursor a reconnect resumes from."""
    async with await _signed_in(service, "caseworker") as user:
        _, body, _ = await user.page("/inbox")
        found = re.search(r'data-inbox-events="([^"]+)"', body)
        assert found
        async with user.http.get(
            service.base + found.group(1).removeprefix(service.settings.path_prefix),
            timeout=aiohttp.ClientTimeout(total=20),
        ) as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            await ed.look_up(CHILD_CPP)
            lines: list[str] = []
            async with asyncio.timeout(15):
                while not any(line.startswith("data: <section") for line in lines):
                    lines.append((await stream.content.readline()).decode().rstrip("\n"))
                while lines[-1] != "":
                    lines.append((await stream.content.readline()).decode().rstrip("\n"))
    assert "event: child" in lines
    assert any(line.startswith("id: v1.") for line in lines)
    html = "\n".join(line.removeprefix("data: ") for line in lines if line.startswith("data: "))
    assert 'data-child="9990000018"' in html and "Robin Triage" in html


async def test_a_child_is_found_among_the_las_own_only_and_others_look_unknown(
    service: WebService, ed: EdSystem, database_url: str
) -> None:
    """Own child: this LA's plan only (not the other LA's plan for the same child), the
    visit, the notification. The other LA's child and an unknown number: the same page,
    word for word but the number, both 404."""
    await ed.look_up(CHILD_CPP)
    async with await _signed_in(service, "caseworker") as user:
        token = await user.csrf("/children")
        status, body, _ = await user.post(
            "/children", {"csrf_token": token, "nhs_number": "999 000 0018"}
        )
        assert status == 200
        assert "P-CPP-1" in body and "OT-2" not in body and OTHER_LA.name not in body
        assert "Robin Triage" in body and "Child protection plan" in body
        answers = []
        for nhs in (OTHER_CHILD, UNKNOWN_CHILD):
            status, body, _ = await user.post("/children", {"csrf_token": token, "nhs_number": nhs})
            assert status == 404
            spaced = f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
            answers.append(body.replace(spaced, "NUMBER"))
        assert answers[0] == answers[1]
        assert "No child found" in answers[0] and OTHER_LA.name not in answers[0]
        status, body, _ = await user.post("/children", {"csrf_token": token, "nhs_number": "12"})
        assert status == 400 and "An NHS number has 10 digits" in body
        # No page takes the number in its address.
        for path in (f"/children/{OTHER_CHILD}", f"/children?nhs_number={OTHER_CHILD}"):
            status, body, _ = await user.page(path)
            assert OTHER_CHILD not in body and "999 000 0034" not in body
    # The record opened is audited with the child (keyed, never the number) and the
    # person; the two not found, with neither child.
    db = await asyncpg.connect(database_url)
    try:
        lines = await db.fetch(
            "SELECT outcome, subject, user_key IS NOT NULL AS person, detail FROM audit_log"
            " WHERE action = 'page_child' ORDER BY seq"
        )
    finally:
        await db.close()
    assert [r["outcome"] for r in lines] == [200, 404, 404, 400]
    assert all(r["person"] for r in lines)
    assert lines[0]["subject"] and CHILD_CPP not in lines[0]["subject"]
    assert json.loads(lines[0]["detail"]) == {"plans": 1, "events": 1}
    assert [r["subject"] for r in lines[1:]] == [None, None, None]


async def test_a_manager_uploads_a_file_and_reads_its_acknowledgement(
    service: WebService,
) -> None:
    async with await _signed_in(service, "manager") as user:
        token = await user.csrf("/uploads")
        form = aiohttp.FormData()
        form.add_field("csrf_token", token)
        form.add_field(
            "file",
            (EXAMPLES / "upload-example.json").read_bytes(),
            filename="upload-example.json",
            content_type="application/json",
        )
        async with user.http.post(
            service.url("/uploads"), data=form, allow_redirects=False
        ) as resp:
            assert resp.status == 303, await resp.text()
            assert resp.headers["Location"].endswith("/uploads/42?sent")
        _, body, _ = await user.page("/uploads/42?sent")
        assert "File 42 received" in body and "CPR06" in body and "DEMO-CPP-0001" in body
        _, body, _ = await user.page("/uploads")
        assert 'href="/uploads/42"' in body and "CPF0" in body

        bad = aiohttp.FormData()
        bad.add_field("csrf_token", token)
        bad.add_field("file", b'{"la_ods": ', filename="bad.json", content_type="application/json")
        async with user.http.post(service.url("/uploads"), data=bad, allow_redirects=False) as resp:
            assert resp.status == 400
            assert "The file was not applied (CPF01)" in await resp.text()
        status, body, _ = await user.post("/uploads", {"csrf_token": token})
        assert status == 400 and "Choose the file to upload" in body


async def test_a_caseworker_reads_uploads_and_settings_but_changes_neither(
    service: WebService, database_url: str
) -> None:
    async with await _signed_in(service, "caseworker") as user:
        status, body, _ = await user.page("/uploads")
        assert status == 200 and "Upload a file" not in body
        status, body, _ = await user.page("/settings")
        assert status == 200 and DEMO_LA.office_phone in body
        assert "Save settings" not in body and "Only a manager can change" in body
        token = await user.csrf("/settings")
        status, _, _ = await user.post(
            "/settings",
            {
                "csrf_token": token,
                "office_phone": "01632 960123",
                "edt_phone": DEMO_LA.edt_phone,
                "repeat_window_hours": "24",
                "mesh_mailbox": "",
                "version": "1",
            },
        )
        assert status == 403
        status, _, _ = await user.post("/uploads", {"csrf_token": token})
        assert status == 403
        status, _, _ = await user.page("/deliveries")
        assert status == 403
    db = await asyncpg.connect(database_url)
    try:
        phone = await db.fetchval(
            "SELECT office_phone FROM local_authority WHERE ods_code = $1", DEMO_LA.ods_code
        )
    finally:
        await db.close()
    assert phone == DEMO_LA.office_phone


def _settings_form(body: str, token: str, **changes: str) -> dict[str, str]:
    version = re.search(r'name="version" value="(\d+)"', body)
    assert version
    return {
        "csrf_token": token,
        "office_phone": DEMO_LA.office_phone,
        "edt_phone": DEMO_LA.edt_phone,
        "repeat_window_hours": "24",
        "mesh_mailbox": "",
        "version": version.group(1),
        **changes,
    }


async def test_a_manager_changes_the_settings_and_bad_input_changes_nothing(
    service: WebService,
) -> None:
    async with await _signed_in(service, "manager") as user:
        _, body, _ = await user.page("/settings")
        token = await user.csrf("/settings")
        for changes, message in (
            ({"office_phone": "not a phone", "mesh_mailbox": "XDM01OT001"}, "office hours"),
            ({"repeat_window_hours": "a day"}, "repeat window"),
            ({"repeat_window_hours": "9999"}, "repeat window"),
            ({"mesh_mailbox": "no spaces allowed"}, "MESH mailbox"),
        ):
            status, answer, _ = await user.post("/settings", _settings_form(body, token, **changes))
            assert status == 400, changes
            assert message in answer and "There is a problem" in answer
        _, unchanged, _ = await user.page("/settings")
        assert "None: notifications are not sent by MESH" in unchanged
        status, _, headers = await user.post(
            "/settings",
            _settings_form(
                body, token, edt_phone="01632 960555", repeat_window_hours="12", mesh_mailbox="x1"
            ),
        )
        assert status == 400  # "x1" is too short
        status, _, headers = await user.post(
            "/settings",
            _settings_form(
                body,
                token,
                edt_phone="01632 960555",
                repeat_window_hours="12",
                mesh_mailbox="xdm01ot001",
            ),
        )
        assert status == 303 and headers["Location"].endswith("/settings?saved")
        _, saved, _ = await user.page("/settings?saved")
        assert "Settings saved" in saved and "01632 960555" in saved
        assert "12 hours" in saved and "XDM01OT001" in saved
        # The same form again, from the version before: refused, not silently applied.
        status, stale, _ = await user.post(
            "/settings", _settings_form(body, token, office_phone="01632 960777")
        )
        assert status == 409 and "Someone else changed these settings" in stale


async def test_a_manager_retries_a_failed_delivery_of_their_own_la_only(
    service: WebService, ed: EdSystem, database_url: str
) -> None:
    await ed.look_up(CHILD_CPP)
    await ed.look_up(OTHER_CHILD)
    ours = await dead_delivery(database_url, DEMO_LA.ods_code)
    theirs = await dead_delivery(database_url, OTHER_LA.ods_code)
    async with await _signed_in(service, "manager") as user:
        status, body, _ = await user.page("/deliveries")
        assert status == 200 and "HTTP 403" in body
        assert f"/deliveries/{ours}/retry" in body and f"/deliveries/{theirs}/retry" not in body
        token = await user.csrf("/deliveries")
        status, body, _ = await user.post(f"/deliveries/{theirs}/retry", {"csrf_token": token})
        assert status == 404 and "not waiting to be retried" in body
        status, _, headers = await user.post(f"/deliveries/{ours}/retry", {"csrf_token": token})
        assert status == 303 and headers["Location"].endswith(f"/deliveries?retried={ours}")
        _, body, _ = await user.page(f"/deliveries?retried={ours}")
        assert f"Delivery {ours} will be sent again now" in body
    db = await asyncpg.connect(database_url)
    try:
        states = dict(await db.fetch("SELECT id, state FROM delivery"))
    finally:
        await db.close()
    assert states == {ours: "pending", theirs: "dead"}


async def test_the_la_pages_are_refused_to_a_clinician_and_ask_others_to_sign_in(
    service: WebService,
) -> None:
    async with WebUser(service) as anonymous:
        for path in ("/inbox", "/children", "/uploads", "/deliveries", "/settings"):
            status, _, headers = await anonymous.page(path)
            assert status == 303 and "/sign-in?next=" in headers["Location"], path
    async with await _signed_in(service, "clinician") as clinician:
        for path in ("/inbox", "/children", "/uploads", "/settings"):
            status, _, _ = await clinician.page(path)
            assert status == 403, path


async def test_subscriptions_are_shown_to_all_and_removed_by_a_manager_only(
    service: WebService, database_url: str
) -> None:
    db = await asyncpg.connect(database_url)
    try:
        sub_id = await db.fetchval(
            "INSERT INTO subscription (id, la_ods, client_id, status, topic, endpoint, payload,"
            " error, created_at, updated_at)"
            " VALUES (gen_random_uuid(), $1, 'test-la', 'error', 't', 'https://cms.example/hook',"
            " 'id-only', 'handshake failed', now(), now()) RETURNING id",
            DEMO_LA.ods_code,
        )
    finally:
        await db.close()
    path = f"/settings/subscriptions/{sub_id}/remove"
    async with await _signed_in(service, "caseworker") as user:
        _, body, _ = await user.page("/settings")
        assert "https://cms.example/hook" in body and "handshake failed" in body
        assert path not in body
        status, _, _ = await user.post(path, {"csrf_token": await user.csrf("/settings")})
        assert status == 403
    async with await _signed_in(service, "manager") as user:
        _, body, _ = await user.page("/deliveries")
        assert "https://cms.example/hook" in body  # in error: listed with the failures
        _, body, _ = await user.page("/settings")
        assert path in body
        token = await user.csrf("/settings")
        status, _, headers = await user.post(path, {"csrf_token": token})
        assert status == 303 and headers["Location"].endswith("/settings?removed")
        _, body, _ = await user.page("/settings?removed")
        assert "Subscription removed" in body and "https://cms.example/hook" not in body
        status, _, _ = await user.post(path, {"csrf_token": token})
        assert status == 404
        status, _, _ = await user.post(
            "/settings/subscriptions/not-a-uuid/remove", {"csrf_token": token}
        )
        assert status == 404


async def test_the_la_pages_work_under_a_base_url_with_a_path(
    tmp_path: Path, database_url: str
) -> None:
    """With CPIS_PUBLIC_BASE_URL ``…/cpis`` every form, link, redirect and the inbox's
    events address are under it."""
    async with (
        running_web_service(tmp_path, database_url, base_path="/cpis") as svc,
        WebUser(svc) as user,
    ):
        ed = await EdSystem(svc).register()
        assert await ed.look_up(CHILD_CPP) == 200
        assert await user.sign_in("manager") == svc.url("/inbox")
        _, body, _ = await user.page("/inbox")
        assert 'action="/cpis/inbox/acknowledge"' in body
        assert 'formaction="/cpis/children"' in body
        assert 'data-inbox-events="/cpis/inbox/events?since=' in body
        for href in ("/cpis/children", "/cpis/uploads", "/cpis/deliveries", "/cpis/settings"):
            assert f'href="{href}"' in body
        token = await user.csrf("/inbox")
        [first] = _IDS.findall(body)
        status, _, headers = await user.post(
            "/inbox/acknowledge", {"csrf_token": token, "ids": first}
        )
        assert status == 303 and headers["Location"] == "/cpis/inbox?acknowledged=1"
        status, body, _ = await user.post(
            "/children", {"csrf_token": token, "nhs_number": CHILD_CPP}
        )
        assert status == 200 and "P-CPP-1" in body
        form = aiohttp.FormData()
        form.add_field("csrf_token", token)
        form.add_field("file", (EXAMPLES / "upload-example.csv").read_bytes(), filename="daily.csv")
        async with user.http.post(svc.url("/uploads"), data=form, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/cpis/uploads/42?sent"
        _, body, _ = await user.page("/settings")
        assert 'action="/cpis/settings"' in body


async def test_more_children_than_a_page_go_on_to_a_next_page_and_back(
    service: WebService,
) -> None:
    """27 children seen: 25 on the first page with a link to the next, 2 on the next
    with a link back to the first, none twice."""
    rt = service.runtime
    la = Principal(client_id="test-la", role=Role.LA, ods_codes=(DEMO_LA.ods_code,))
    kids = synthetic_numbers(27, start=100)
    for i, nhs in enumerate(kids):
        await plans.put_plan(
            rt.db,
            rt.clock,
            principal=la,
            la_ods=DEMO_LA.ods_code,
            la_plan_id=f"P-MANY-{i}",
            fields=PlanFields(nhs, PlanType.CPP, date(2026, 1, 5), birth_date=date(2015, 4, 1)),
            if_match=None,
        )
        accessor = Accessor(
            "test-ed", DEMO_ED.ods_code, DEMO_ED.name, DEMO_ED.setting_type, f"user-{i}",
            "Robin Triage", "Staff Nurse", f"trace-{i}",
        )  # fmt: skip
        await lookup.lookup(
            rt.db, rt.clock, nhs_number=nhs, accessor=accessor, unscheduled=True,
            audit=AuditEntry(action="plan_search", outcome=200, client_id="test-ed"),
        )  # fmt: skip
    async with await _signed_in(service, "caseworker") as user:
        _, body, _ = await user.page("/inbox")
        first = re.findall(r'data-child="(\d{10})"', body)
        assert len(first) == 25 and "First page" not in body
        found = re.search(r'href="(/inbox\?after=[^"]+)" rel="next"', body)
        assert found
        _, body, _ = await user.page(found.group(1).replace("&amp;", "&"))
        second = re.findall(r'data-child="(\d{10})"', body)
        assert len(second) == 2 and not set(first) & set(second)
        assert set(first) | set(second) == set(kids)
        assert "First page" in body and 'rel="next"' not in body
        assert "data-inbox-events" not in body  # only the first page of new ones is live


async def test_an_nhs_number_no_longer_in_use_is_listed_and_acknowledged(
    service: WebService,
) -> None:
    """The person index retired a number the LA holds a plan for (issue 4): the inbox's
    first page lists it with the LA's plan, and it is acknowledged like an attendance."""
    rt = service.runtime
    queued = await notify_inactive(
        rt.index_check,
        [IndexPerson(CHILD_LAC, active=False), IndexPerson(CHILD_CPP, superseded_by=UNKNOWN_CHILD)],
        now=rt.clock.now(),
    )
    assert queued == 3  # Otherton holds a plan for 999 000 0018 too: it is told itself
    async with await _signed_in(service, "caseworker") as user:
        _, body, _ = await user.page("/inbox")
        assert "NHS numbers no longer in use" in body and "OT-2" not in body
        assert "999 000 0026" in body and "None known" in body and "P-LAC-1" in body
        assert "999 000 0042" in body  # the number that replaced 999 000 0018
        ids = _IDS.findall(body)
        assert len(ids) == 2
        status, _, _ = await user.post(
            "/inbox/acknowledge", {"csrf_token": await user.csrf("/inbox"), "ids": ids}
        )
        assert status == 303
        _, body, _ = await user.page("/inbox")
        assert "NHS numbers no longer in use" not in body
        _, body, _ = await user.page("/inbox?status=acknowledged")
        assert "999 000 0026" in body and not _IDS.findall(body)
