"""Requests aiohttp's parser refuses are answered as an OperationOutcome that echoes nothing.

A header line over 8 KB, a control character in a header, a request line that is
not HTTP, a chunked body whose chunk sizes are not hexadecimal: none of these
reaches the application's middleware, and aiohttp's own answer is ``text/plain``
quoting the offending bytes, which here carry an NHS number and a name. Each is
sent over a bare socket; the answer must be a 400 UK Core OperationOutcome
naming only the kind of fault, the connection must close, and neither the
answer nor the log may hold the personal data that was sent.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from structlog.testing import capture_logs

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import E2E, LA_NORTH_CLIENT, error_code
from tests.e2e.raw_http import connect, request_head
from tests.fhir_validation import validate_resource

(CHILD,) = synthetic_numbers(1, start=951)
NAME = "Quillfeather"
SECRET = f"{NAME} {CHILD}"


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


CASES = {
    "header line over 8 KB": head(
        "GET /FHIR/R4/metadata HTTP/1.1", "Host: 127.0.0.1", "X-Note: " + SECRET * 600
    ),
    "control character in a header": head(
        "GET /FHIR/R4/metadata HTTP/1.1", "Host: 127.0.0.1", f"X-Note: {NAME}\x01{CHILD}"
    ),
    "bad request line": head(f"GET /FHIR/R4/CareTeam?{SECRET} HTTP/1.1 {CHILD}", "Host: x"),
    "method that is not a token": head(f"G{CHILD}(T / HTTP/1.1", "Host: x"),
    "invalid chunked encoding": head(
        "PUT /la/v1/plans/N-1 HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"
    )
    + f"{CHILD}Z\r\n{NAME}\r\n0\r\n\r\n".encode(),
}


def assert_nothing_personal(text: str) -> None:
    assert CHILD not in text and NAME not in text, text


@pytest.mark.parametrize("sent", CASES.values(), ids=CASES.keys())
async def test_refused_by_the_parser_is_an_operation_outcome_that_echoes_nothing(
    e2e: E2E, sent: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """400, application/fhir+json, a valid OperationOutcome with INVALID_VALUE and a TraceID,
    then the connection closed; no NHS number or name in the answer or in anything logged."""
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:
        async with connect(e2e.base) as raw:
            await raw.send(sent)
            reply = await raw.reply()
            await raw.closed_within(5)
    assert reply.status == 400, reply
    assert reply.headers["Content-Type"].startswith("application/fhir+json")
    assert reply.headers["TraceID"]
    outcome = reply.json()
    validate_resource(outcome)
    assert outcome["resourceType"] == "OperationOutcome"
    assert error_code(outcome) == "INVALID_VALUE"
    assert outcome["issue"][0]["diagnostics"]
    assert_nothing_personal(reply.body.decode("latin-1"))
    assert_nothing_personal(repr(events))
    assert_nothing_personal(caplog.text)
    assert not [e for e in events if e.get("log_level") in ("error", "critical")], events


async def test_a_broken_chunk_after_the_header_fails_the_route_at_once(e2e: E2E) -> None:
    """A chunked body that turns invalid after its header was read (the route is already
    reading it) is a 400 OperationOutcome at once, not a route left waiting for a body
    that will never come (aiohttp's C parser drops it) and then a 500."""
    auth = await e2e.auth(LA_NORTH_CLIENT)
    with capture_logs() as events:
        async with connect(e2e.base) as raw:
            await raw.send(
                request_head(
                    "PUT",
                    "/la/v1/plans/N-1",
                    {
                        **auth,
                        "Content-Type": "application/json",
                        "Transfer-Encoding": "chunked",
                        # The server says "100 Continue" once it has the header and the
                        # route is about to read: the bad chunk then comes on its own.
                        "Expect": "100-continue",
                    },
                )
            )
            assert (await raw.reply()).status == 100
            await raw.send(b'5\r\n{"nhs\r\n' + f"{CHILD}Z\r\n{NAME}\r\n".encode())
            reply = await raw.reply(limit=5)  # well before the body timeout (60 s)
            await raw.closed_within(5)
    assert reply.status == 400, reply
    outcome: dict[str, Any] = reply.json()
    validate_resource(outcome)
    assert error_code(outcome) == "INVALID_VALUE"
    assert_nothing_personal(reply.body.decode())
    lines = [e for e in events if e.get("event") == "request"]
    assert [(e["route"], e["status"]) for e in lines] == [("la_plan_put", 400)], lines
    assert not [e for e in events if e.get("log_level") == "error"], events
    assert await e2e.counts("plan") == {"plan": 0}
