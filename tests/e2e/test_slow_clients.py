"""A slow client costs bounded time: header and body deadlines (SPEC §6; cpis/web/server.py).

The service here allows a header one second from its first byte and a body one
second from its header. Many connections sending half a header are closed
within that bound while a well-behaved client is served; a body that stops
halfway is answered 408 and its connection closed, with the route's request
line logged (it finished) and nothing logged as an error; an idle keep-alive
connection is not mistaken for a slow header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import E2E, LA_NORTH_CLIENT, error_code
from tests.e2e.raw_http import Raw, connect, request_head
from tests.fhir_validation import validate_resource
from tests.polling import wait_until

HEADER_SECONDS = 1.0
BODY_SECONDS = 1.0
# Scheduling slack on a shared, loaded machine: a deadline is met if the connection
# closes before the deadline plus this.
SLACK = 3.0
HALF_HEADERS = 300
(CHILD,) = synthetic_numbers(1, start=961)


@pytest.fixture
def e2e_overrides() -> dict[str, Any]:
    return {"header_timeout_seconds": HEADER_SECONDS, "body_timeout_seconds": BODY_SECONDS}


@contextlib.asynccontextmanager
async def half_headers(e2e: E2E, n: int) -> AsyncIterator[list[Raw]]:
    """``n`` connections, each having sent half a request header."""
    async with contextlib.AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(connect(e2e.base)) for _ in range(n)]
        for raw in conns:
            await raw.send(b"GET /FHIR/R4/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wait: ")
        yield conns


async def test_half_headers_are_closed_within_the_header_deadline_while_others_are_served(
    e2e: E2E,
) -> None:
    """300 connections that each send half a header are all closed by the server within
    the header deadline; meanwhile an ordinary request is answered."""
    with capture_logs() as events:
        async with half_headers(e2e, HALF_HEADERS) as conns:
            sent = time.monotonic()
            served = await e2e.request("GET", "/FHIR/R4/metadata")
            assert served.status == 200
            assert time.monotonic() - sent < HEADER_SECONDS  # answered while they were held
            await asyncio.gather(*(raw.closed_within(HEADER_SECONDS + SLACK) for raw in conns))
    timeouts = [e for e in events if e.get("event") == "request_header_timeout"]
    assert len(timeouts) == HALF_HEADERS
    assert not [e for e in events if e.get("log_level") == "error"]


async def test_a_header_sent_a_byte_at_a_time_is_not_given_more_time(e2e: E2E) -> None:
    """Trickling a header keeps no connection open past the header deadline: the deadline
    runs from the request's first byte, not from the last."""
    async with connect(e2e.base) as raw:
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for byte in b"GET /FHIR/R4/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: abcdefgh":
                await raw.send(bytes([byte]))
                await asyncio.sleep(0.05)  # the client's pace, the behaviour under test
                if raw.reader.at_eof() or time.monotonic() - started > HEADER_SECONDS + SLACK:
                    break
        await raw.closed_within(HEADER_SECONDS + SLACK)
        assert time.monotonic() - started < HEADER_SECONDS + SLACK


async def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_deadline(e2e: E2E) -> None:
    """Between requests a connection waits under the keep-alive timeout, not the header
    deadline: a second request after more than the header deadline of quiet is served."""
    async with connect(e2e.base) as raw:
        await raw.send(request_head("GET", "/FHIR/R4/metadata"))
        assert (await raw.reply()).status == 200
        await asyncio.sleep(HEADER_SECONDS * 1.5)  # the quiet the test is about
        await raw.send(request_head("GET", "/FHIR/R4/metadata"))
        assert (await raw.reply()).status == 200


async def plan_put_head(e2e: E2E, **headers: str) -> bytes:
    return request_head(
        "PUT",
        "/la/v1/plans/N-1",
        {**await e2e.auth(LA_NORTH_CLIENT), "Content-Type": "application/json", **headers},
    )


def plan_body() -> bytes:
    return json.dumps(
        {"nhs_number": CHILD, "plan_type": "CPP", "start_date": "2025-03-03"}
    ).encode()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_that_stops_halfway_is_408_and_its_connection_closed(
    e2e: E2E, framing: str
) -> None:
    """A plan PUT whose body stops halfway (its Content-Length not reached, or no last
    chunk) is answered 408 FAILURE_TO_PROCESS_MESSAGE within the body deadline and the
    connection is closed; the route finished (its request line is logged with 408),
    nothing was stored, and nothing is logged as an error."""
    body = plan_body()
    if framing == "chunked":
        head = await plan_put_head(e2e, **{"Transfer-Encoding": "chunked"})
        partial = f"{len(body):x}\r\n".encode() + body + b"\r\n"  # and no last chunk
    else:
        head = await plan_put_head(e2e, **{"Content-Length": str(len(body))})
        partial = body[: len(body) // 2]
    with capture_logs() as events:
        async with connect(e2e.base) as raw:
            started = time.monotonic()
            await raw.send(head + partial)
            reply = await raw.reply(limit=BODY_SECONDS + SLACK)
            await raw.closed_within(SLACK)
            assert time.monotonic() - started < BODY_SECONDS + SLACK
    assert reply.status == 408, reply
    outcome = reply.json()
    validate_resource(outcome)
    assert error_code(outcome) == "FAILURE_TO_PROCESS_MESSAGE"
    assert outcome["issue"][0]["code"] == "timeout"
    lines = [(e["route"], e["status"]) for e in events if e.get("event") == "request"]
    assert lines == [("la_plan_put", 408)]
    assert not [e for e in events if e.get("log_level") == "error"], events
    assert await e2e.counts("plan") == {"plan": 0}


async def test_a_stalled_body_the_route_never_reads_still_closes_in_time(e2e: E2E) -> None:
    """A request refused before its body is read (no token) with a body that stalls: the
    401 is sent at once, and the connection is closed by the body deadline rather than
    held while aiohttp drains what is left."""
    with capture_logs() as events:
        async with connect(e2e.base) as raw:
            started = time.monotonic()
            await raw.send(
                request_head(
                    "PUT",
                    "/la/v1/plans/N-1",
                    {"Content-Type": "application/json", "Content-Length": "1000"},
                )
                + b'{"nhs_number": '
            )
            assert (await raw.reply(limit=SLACK)).status == 401
            await raw.closed_within(BODY_SECONDS + SLACK)
            assert time.monotonic() - started < BODY_SECONDS + SLACK
    assert not [e for e in events if e.get("log_level") == "error"], events


async def test_an_upload_that_stops_halfway_frees_its_route(e2e: E2E) -> None:
    """The same for a chunked batch upload: 408, and the route is not left waiting."""
    head = request_head(
        "POST",
        "/la/v1/uploads",
        {
            **await e2e.auth(LA_NORTH_CLIENT),
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
    )
    with capture_logs() as events:
        async with connect(e2e.base) as raw:
            await raw.send(head + b'10\r\n{"la_ods": "XLA0')
            reply = await raw.reply(limit=BODY_SECONDS + SLACK)
            await raw.closed_within(SLACK)
    assert reply.status == 408
    lines = [(e["route"], e["status"]) for e in events if e.get("event") == "request"]
    assert lines == [("la_upload", 408)]
    assert await e2e.counts("upload") == {"upload": 0}


async def test_a_client_that_goes_away_mid_body_is_logged_as_gone_not_as_a_500(
    e2e: E2E,
) -> None:
    """A client that closes its connection halfway through a body: the route's request
    line is logged with 499 (client closed), and nothing as an error."""
    body = plan_body()
    # "100 Continue" comes once the route is about to read: the close then finds it reading.
    head = await plan_put_head(e2e, **{"Content-Length": str(len(body)), "Expect": "100-continue"})
    with capture_logs() as events:
        async with connect(e2e.base) as raw:
            await raw.send(head)
            assert (await raw.reply()).status == 100
            await raw.send(body[:10])
        # The connection is closed here, a few bytes into the body.

        async def logged() -> bool:
            return any(e.get("event") == "request" for e in events)

        await wait_until(logged, limit=SLACK, what="the request line")
    lines = [(e["route"], e["status"]) for e in events if e.get("event") == "request"]
    assert lines == [("la_plan_put", 499)]
    assert not [e for e in events if e.get("log_level") == "error"], events
