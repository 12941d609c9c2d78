"""No input makes the service answer 500 or lose a request's audit line (SPEC §6).

Every route the application serves, as nobody, as an ED client and as an LA
client, is sent bodies that are not what it reads (bytes that are not UTF-8, a
charset no codec knows, JSON nested thousands deep, JSON that is not an object,
a form that does not decode) and queries that do not decode; then headers whose
values are not UTF-8, over a bare socket, since no client library sends those.
Every answer must be under 500, and nothing may be logged as an error: not an
unhandled exception, and not an audit line that could not be written.
"""

from __future__ import annotations

import itertools
import re

from structlog.testing import capture_logs

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import E2E, ED_CLIENT, LA_NORTH_CLIENT, user_headers
from tests.e2e.raw_http import connect

(CHILD,) = synthetic_numbers(1, start=991)
BODIES = (
    b"\xff\xfe\xfa",
    b"grant_type=\xff&client_assertion=%C0%AF",
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"null",
    b"1e999",
    b'"\\ud800"',
    b'{"nhs_number": "\\u0000"}',
)
CONTENT_TYPES = (
    "application/json",
    "application/fhir+json",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=no-such-charset",
    "text/csv",
    "multipart/form-data; boundary=x",
)
QUERIES = (
    "?patient:identifier=%ZZ",
    "?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|%ff%fe",
    "?_format=%00",
    "?" + "a=1&" * 1500,
)
HEADERS = (
    "Authorization: Bearer \xe9\xe9",
    "TraceID: \xe9\xe9",
    "NHSD-End-User-Organisation-ODS: " + "\xe9" * 40,
    "NHSD-End-User-Id: \xff",
    'If-Match: W/"\xff"',
    "Accept: \x7f\xe9",
    "Content-Type: application/json; charset=\xe9",
    "Content-Encoding: gzip",
)


def served_paths(e2e: E2E) -> list[tuple[str, str]]:
    """(method, path) for every route, with its path's variables filled in."""
    assert e2e.app is not None
    paths = set()
    for route in e2e.app.router.routes():
        if route.method in ("HEAD", "OPTIONS") or route.resource is None:
            continue
        info = route.resource.get_info()
        path = str(info.get("path") or info.get("formatter") or "")
        path = re.sub(r"\{[^}]*\}", "N-1", path.replace("{root_or_prefix}", ""))
        paths.add(("POST" if route.method == "*" else route.method, path))
    return sorted(paths)


async def test_no_body_or_query_answers_500(e2e: E2E) -> None:
    """Bodies and queries that do not decode, at every route, as each kind of caller."""
    await e2e.put_plan(
        LA_NORTH_CLIENT, "N-1", nhs_number=CHILD, plan_type="CPP", start_date="2025-03-03"
    )
    callers = {
        "nobody": {},
        "ed": {**await e2e.auth(ED_CLIENT), **user_headers()},
        "la": await e2e.auth(LA_NORTH_CLIENT),
    }
    answers = []
    with capture_logs() as events:
        for (method, path), (who, auth) in itertools.product(served_paths(e2e), callers.items()):
            if method in ("POST", "PUT"):
                for body, ctype in itertools.product(BODIES, CONTENT_TYPES):
                    headers = {**auth, "Content-Type": ctype}
                    reply = await e2e.request(method, path, headers=headers, data=body)
                    answers.append((method, path, who, ctype, body[:12], reply.status))
            for query in QUERIES:
                reply = await e2e.request(method, e2e.base + path + query, headers=auth)
                answers.append((method, path, who, query[:30], reply.status))
    assert len(answers) > 500
    assert [a for a in answers if a[-1] >= 500] == []
    assert [e for e in events if e.get("log_level") in ("error", "critical")] == []


async def test_no_header_answers_500_or_goes_unaudited(e2e: E2E) -> None:
    """Header values that are not UTF-8 (aiohttp keeps them as undecodable bytes), at
    every route: no 500, and every request that is audited gets its line written."""
    auth = {**await e2e.auth(ED_CLIENT), **user_headers()}
    answers = []
    with capture_logs() as events:
        for (method, path), header in itertools.product(served_paths(e2e), HEADERS):
            lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
            lines += [f"{k}: {v}" for k, v in auth.items() if not header.startswith(k + ":")]
            lines += [header, "Content-Length: 2", "Connection: close"]
            async with connect(e2e.base) as raw:
                await raw.send(("\r\n".join(lines) + "\r\n\r\n{}").encode("latin-1"))
                reply = await raw.reply()
            answers.append((method, path, header, reply.status))
    assert [a for a in answers if a[-1] >= 500] == []
    assert [e for e in events if e.get("log_level") in ("error", "critical")] == []
