"""`POST /la/v1/uploads`: a daily file applied in one transaction, with CPF/CPR codes,
safe to resend, refusing old sequence numbers and other LAs' files; the plans it
applies are what an ED lookup then sees."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import E2E, LA_NORTH_CLIENT, LA_SOUTH_CLIENT, MAX_BODY_BYTES, error_code

A, B, C = synthetic_numbers(3, start=600)
# Uploads may be four times any other body here (CPIS_MAX_UPLOAD_BYTES and
# CPIS_MAX_BODY_BYTES; in production 64 MiB and 1 MiB).
MAX_UPLOAD_BYTES = 4 * MAX_BODY_BYTES


@pytest.fixture
def e2e_overrides() -> dict[str, Any]:
    return {"max_upload_bytes": MAX_UPLOAD_BYTES}


def upload_body(sequence: int, records: list[dict[str, Any]], la: str = "XLA01") -> bytes:
    return json.dumps(
        {"la_ods": la, "sequence": sequence, "created": "2026-03-02T18:30:00Z",
         "records": records}
    ).encode()  # fmt: skip


def upsert(plan_id: str, nhs: str, **extra: Any) -> dict[str, Any]:
    return {"action": "upsert", "plan_id": plan_id, "nhs_number": nhs, "plan_type": "CPP",
            "start_date": "2025-03-03"} | extra  # fmt: skip


async def send(e2e: E2E, body: bytes, client: str = LA_NORTH_CLIENT,
               content_type: str = "application/json") -> tuple[int, dict[str, Any]]:  # fmt: skip
    reply = await e2e.request(
        "POST", "/la/v1/uploads",
        headers={**await e2e.auth(client), "Content-Type": content_type}, data=body,
    )  # fmt: skip
    return reply.status, reply.json()


async def test_a_file_is_applied_with_a_code_per_record(e2e: E2E) -> None:
    """Valid records are applied (CPR06), invalid ones say why (CPR04, CPR07) and the
    file is CPF03; the applied plans are then found by an ED lookup."""
    status, ack = await send(e2e, upload_body(1, [
        upsert("P-1", A),
        upsert("P-2", B[:9] + str((int(B[9]) + 1) % 10)),  # wrong check digit
        upsert("P-3", C, plan_type="XYZ"),
        {"action": "delete", "plan_id": "P-404"},
    ]))  # fmt: skip
    assert status == 200, ack
    assert ack["file_code"] == "CPF03"
    assert [(r["plan_id"], r["code"]) for r in ack["records"]] == [
        ("P-1", "CPR06"), ("P-2", "CPR04"), ("P-3", "CPR07"), ("P-404", "CPR07")
    ]  # fmt: skip
    assert all("reason" in r for r in ack["records"] if r["code"] != "CPR06")
    assert B not in json.dumps(ack)
    found = await e2e.search("CareTeam", A)
    assert found.status == 200 and found.json()["total"] == 1


async def test_resending_a_file_returns_the_same_acknowledgement(e2e: E2E) -> None:
    """The same sequence number again changes nothing and answers as the first time."""
    body = upload_body(5, [upsert("P-1", A)])
    first = await send(e2e, body)
    second = await send(e2e, upload_body(5, [upsert("P-1", A, plan_type="LAC")]))
    assert first == second
    plans = await e2e.fetch("SELECT version FROM plan")
    assert [r["version"] for r in plans] == [1]


async def test_a_lower_sequence_is_refused_and_changes_nothing(e2e: E2E) -> None:
    """An older file after a newer one is refused with CPF04 and applies nothing."""
    assert (await send(e2e, upload_body(10, [upsert("P-1", A)])))[0] == 200
    status, ack = await send(e2e, upload_body(9, [upsert("P-2", B)]))
    assert status == 409 and ack["file_code"] == "CPF04"
    assert await e2e.counts("plan") == {"plan": 1}


async def test_malformed_files_and_other_las_files_get_cpf01(e2e: E2E) -> None:
    """Truncated JSON, a CSV with wrong columns, bad encoding and a file for another LA
    are CPF01: nothing applied."""
    cases = [
        (upload_body(1, [upsert("P-1", A)])[:-20], "application/json"),
        (b"#la_ods,XLA01\n#sequence,1\n#created,2026-03-02T18:30:00Z\nfoo,bar\n", "text/csv"),
        (b'{"la_ods": "XLA01", "sequence": 1, "created": "\xff"}', "application/json"),
        (upload_body(1, [upsert("P-1", A)], la="XLA02"), "application/json"),
    ]
    for body, ctype in cases:
        status, ack = await send(e2e, body, content_type=ctype)
        assert (status, ack["file_code"]) == (400, "CPF01"), ack
        assert A not in json.dumps(ack)
    assert await e2e.counts("plan", "upload") == {"plan": 0, "upload": 0}


async def test_csv_files_are_accepted_too(e2e: E2E) -> None:
    """The CSV form applies like the JSON one; a health client may not upload."""
    csv = (
        "#la_ods,XLA02\n#sequence,1\n#created,2026-03-02T18:30:00Z\n"
        "action,plan_id,nhs_number,plan_type,start_date,end_date,delete_date,birth_date,"
        f"family_name,given_name\nupsert,S-1,{A},LAC,2025-01-01,,,,,\n"
    ).encode()
    status, ack = await send(e2e, csv, client=LA_SOUTH_CLIENT, content_type="text/csv")
    assert status == 200 and ack["file_code"] == "CPF02", ack
    reply = await e2e.request(
        "POST", "/la/v1/uploads", headers={**await e2e.auth("ed-system"),
                                           "Content-Type": "text/csv"}, data=csv,
    )  # fmt: skip
    assert reply.status == 403


def file_of_about(size: int, sequence: int) -> bytes:
    """An upload file of at least ``size`` bytes: plans for distinct synthetic children."""
    record = len(json.dumps(upsert("P-000000", A))) + 2
    numbers = synthetic_numbers(size // record + 1, start=10_000)
    body = upload_body(sequence, [upsert(f"P-{i:06d}", nhs) for i, nhs in enumerate(numbers)])
    assert len(body) >= size
    return body


async def chunks(body: bytes, size: int = 16_384) -> AsyncIterator[bytes]:
    """The body as a stream: aiohttp then sends it chunked, with no Content-Length."""
    for i in range(0, len(body), size):
        yield body[i : i + size]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_an_upload_over_the_body_limit_but_within_the_upload_limit_is_applied(
    e2e: E2E, framing: str
) -> None:
    """A file larger than any other body may be (CPIS_MAX_BODY_BYTES) but within
    CPIS_MAX_UPLOAD_BYTES is applied, whether it says its length or is sent chunked."""
    body = file_of_about(2 * MAX_BODY_BYTES, sequence=1)
    assert MAX_BODY_BYTES < len(body) < MAX_UPLOAD_BYTES
    data: Any = body if framing == "content-length" else chunks(body)
    reply = await e2e.request(
        "POST",
        "/la/v1/uploads",
        headers={**await e2e.auth(LA_NORTH_CLIENT), "Content-Type": "application/json"},
        data=data,
    )
    assert reply.status == 200, reply.text
    ack = reply.json()
    assert ack["file_code"] == "CPF02"
    assert (await e2e.counts("plan"))["plan"] == len(ack["records"])


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_an_upload_over_the_upload_limit_is_413_and_applies_nothing(
    e2e: E2E, framing: str
) -> None:
    """A file over CPIS_MAX_UPLOAD_BYTES is 413 VALIDATION_ERROR, told or chunked."""
    body = file_of_about(MAX_UPLOAD_BYTES + 1, sequence=1)
    data: Any = body if framing == "content-length" else chunks(body)
    reply = await e2e.request(
        "POST",
        "/la/v1/uploads",
        headers={**await e2e.auth(LA_NORTH_CLIENT), "Content-Type": "application/json"},
        data=data,
    )
    assert reply.status == 413, reply.text
    outcome = reply.fhir()
    assert error_code(outcome) == "VALIDATION_ERROR"
    assert outcome["issue"][0]["code"] == "too-long"
    assert await e2e.counts("plan", "upload") == {"plan": 0, "upload": 0}


async def test_every_other_route_keeps_the_body_limit_when_the_body_is_chunked(e2e: E2E) -> None:
    """A chunked body (no Content-Length to refuse up front) over CPIS_MAX_BODY_BYTES is
    413 on routes that read bodies: a plan PUT, a subscription POST, the token endpoint."""
    la = await e2e.auth(LA_NORTH_CLIENT)
    big = json.dumps({"nhs_number": A, "family_name": "x" * (2 * MAX_BODY_BYTES)}).encode()
    for path, method, headers in (
        ("/la/v1/plans/N-1", "PUT", {**la, "Content-Type": "application/json"}),
        ("/FHIR/R4/Subscription", "POST", {**la, "Content-Type": "application/fhir+json"}),
        ("/oauth2/token", "POST", {"Content-Type": "application/x-www-form-urlencoded"}),
    ):
        reply = await e2e.request(method, path, headers=headers, data=chunks(big))
        assert reply.status == 413, (path, reply.status, reply.text)
        assert error_code(reply.fhir()) == "VALIDATION_ERROR"
    assert await e2e.counts("plan", "subscription") == {"plan": 0, "subscription": 0}
