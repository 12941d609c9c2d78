"""Small parts of the LA pages: the bell that wakes open inbox streams, the order a
stream sends children in, and NHS numbers and settings as people read them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from cpis.model.la import InboxCursor
from cpis.web.pages._la import setting_name, spaced
from cpis.web.pages.inbox import Bell, _newer
from tests.polling import wait_until


def _waiting(bell: Bell, streams: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bell.waiting == streams

    return check


async def test_the_bell_wakes_every_waiting_stream_at_once() -> None:
    bell = Bell()
    started = time.monotonic()
    waiting = [asyncio.create_task(bell.wait(10)) for _ in range(3)]
    await wait_until(_waiting(bell, 3), limit=2, what="three streams waiting")
    bell.ring()
    await asyncio.wait_for(asyncio.gather(*waiting), 2)
    assert time.monotonic() - started < 2


async def test_a_quiet_bell_lets_a_stream_look_again_after_its_timeout() -> None:
    bell = Bell()
    started = time.monotonic()
    await bell.wait(0.05)
    assert time.monotonic() - started >= 0.05


async def test_closing_the_bell_at_shutdown_wakes_and_ends_the_streams() -> None:
    """Otherwise the server's shutdown would wait for each open inbox's timeout."""
    bell = Bell()
    waiting = asyncio.create_task(bell.wait(10))
    await wait_until(_waiting(bell, 1), limit=2, what="the stream waiting")
    await bell.close(web.Application())
    await asyncio.wait_for(waiting, 2)
    assert bell.closed


def test_a_child_is_newer_by_its_newest_attendance_then_its_id() -> None:
    at = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    low, high = sorted((uuid.uuid4(), uuid.uuid4()), key=lambda u: u.bytes)
    seen = InboxCursor(at, low)
    assert _newer(InboxCursor(at + timedelta(seconds=1), low), seen)
    assert _newer(InboxCursor(at, high), seen)
    assert not _newer(seen, seen)
    assert not _newer(InboxCursor(at - timedelta(seconds=1), high), seen)
    assert _newer(seen, None)  # an empty inbox: every child is new to it


def test_numbers_and_settings_as_people_read_them() -> None:
    assert spaced("9990000018") == "999 000 0018"
    assert setting_name("ED") == "emergency department"
    assert setting_name("MIU") == "minor injuries unit"
    assert setting_name("something new") == "something new"
