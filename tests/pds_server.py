"""A local server that answers like NHS England's PDS FHIR API, for tests.

Usage::

    from tests.pds_server import running_pds

    async with running_pds([IndexPerson("9990000018", "Testchild", "Alex", ...)]) as pds:
        index = PdsPersonIndex(pds.base_url, session=session)
        ...
        pds.fail_with = 503          # every request answers 503 from now on
        pds.fail_times = 1           # ... or only the next one
        pds.delay = 1.0              # answer slowly (for client timeouts)

It holds a list of :class:`~cpis.model.persons.IndexPerson` and answers, with the
shapes of PDS's specification:

- ``GET /Patient/{nhs}``: the Patient; for a number with ``superseded_by``,
  the *replacing* record (its ``id`` is the new number, as PDS does); for a
  sensitive one, ``meta.security`` code ``R`` and no address; for an inactive
  one with no replacement, 404 ``INVALIDATED_RESOURCE``; for an unknown
  number, 404 ``RESOURCE_NOT_FOUND``; for a malformed one, 400
  ``INVALID_RESOURCE_ID``.
- ``GET /Patient?family=&given=&birthdate=eqYYYY-MM-DD&gender=&address-postalcode=
  &_fuzzy-match=&_max-results=``: a searchset Bundle of the people in use that
  match (family and birth date exactly, given name by its first word; fuzzy
  also finds given and family swapped); restricted people are left out when a
  postcode is searched on, as PDS does.
- A request without ``X-Request-ID`` gets 400 ``MISSING_VALUE``; with ``token``
  set, one without that bearer token gets 401 ``ACCESS_DENIED``.

Everything asked is kept in ``requests`` (path, query, headers), and
``max_in_flight`` records the most requests it was answering at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cpis.matching.nhs_number import check
from cpis.model.persons import IndexPerson

BASE_PATH = "/personal-demographics/FHIR/R4"
_FHIR_JSON = "application/fhir+json"


@dataclass
class RecordedRequest:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class PdsServer:
    """A running fake PDS: its base URL, its people, and switches to misbehave."""

    people: dict[str, IndexPerson]
    base_url: str = ""
    token: str | None = None
    fail_with: int | None = None
    fail_times: int | None = None  # None: every request while fail_with is set
    retry_after: str | None = "0"
    delay: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)
    max_in_flight: int = 0
    _in_flight: int = 0

    def add(self, person: IndexPerson) -> None:
        self.people[person.nhs_number] = person

    # --- answers ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(
                request.path,
                {k: request.query.getall(k) for k in request.query},
                dict(request.headers),
            )
        )
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return self._answer(request)
        finally:
            self._in_flight -= 1

    def _answer(self, request: web.Request) -> web.Response:
        if self.fail_with is not None and (self.fail_times is None or self.fail_times > 0):
            if self.fail_times is not None:
                self.fail_times -= 1
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            code = "TOO_MANY_REQUESTS" if self.fail_with == 429 else "SERVICE_UNAVAILABLE"
            return _outcome(self.fail_with, code, "transient", headers=headers)
        if not request.headers.get("X-Request-ID"):
            return _outcome(400, "MISSING_VALUE", "required")
        if self.token is not None and request.headers.get("Authorization") != (
            f"Bearer {self.token}"
        ):
            return _outcome(401, "ACCESS_DENIED", "forbidden")
        nhs = request.match_info.get("nhs")
        if nhs is not None:
            return self._read(nhs)
        return self._search(request)

    def _read(self, nhs: str) -> web.Response:
        if not check(nhs).valid or len(nhs) != 10:
            return _outcome(400, "INVALID_RESOURCE_ID", "value")
        person = self.people.get(nhs)
        if person is None:
            return _outcome(404, "RESOURCE_NOT_FOUND", "not-found")
        if person.superseded_by is not None:
            replacement = self.people.get(person.superseded_by) or IndexPerson(
                person.superseded_by,
                person.family_name,
                person.given_names,
                person.birth_date,
                person.sex,
                person.postcode,
                person.sensitive,
            )
            return _json(200, patient(replacement))
        if not person.active:
            return _outcome(404, "INVALIDATED_RESOURCE", "not-found")
        return _json(200, patient(person))

    def _search(self, request: web.Request) -> web.Response:
        q = request.query
        family = q.get("family", "").casefold()
        birth = q.get("birthdate", "")
        if not family or not birth.startswith("eq"):
            return _outcome(400, "INVALID_SEARCH_DATA", "invalid")
        given = q.get("given", "").casefold()
        fuzzy = q.get("_fuzzy-match") == "true"
        postcode = q.get("address-postalcode")
        gender = q.get("gender")
        limit = int(q.get("_max-results", "50"))
        found = []
        for p in self.people.values():
            if not p.active or p.superseded_by is not None or p.birth_date is None:
                continue
            if p.birth_date.isoformat() != birth[2:]:
                continue
            if postcode is not None and (p.sensitive or p.postcode != postcode):
                continue
            if gender is not None and p.sex != gender:
                continue
            p_family = (p.family_name or "").casefold()
            p_given = ((p.given_names or "").split() or [""])[0].casefold()
            straight = p_family == family and (not given or p_given == given)
            swapped = fuzzy and p_family == given and p_given == family
            if straight or swapped:
                found.append(p)
        entries = [
            {
                "fullUrl": f"{self.base_url}/Patient/{p.nhs_number}",
                "search": {"score": 1},
                "resource": patient(p),
            }
            for p in found[:limit]
        ]
        return _json(
            200,
            {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
            | ({"entry": entries} if entries else {}),
        )


def patient(person: IndexPerson) -> dict[str, Any]:
    """The PDS Patient resource for ``person`` (restricted ones without an address)."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": person.nhs_number,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": person.nhs_number}],
        "meta": {
            "versionId": "2",
            "security": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                    "code": "R" if person.sensitive else "U",
                    "display": "restricted" if person.sensitive else "unrestricted",
                }
            ],
        },
        "name": [
            # A previous name first, as PDS histories often have: the reader
            # must pick the current usual one.
            {
                "use": "usual",
                "period": {"start": "2000-01-01", "end": "2001-01-01"},
                "family": "Formername",
                "given": ["Former"],
            },
            {
                "use": "usual",
                "period": {"start": "2001-01-01"},
                **({"family": person.family_name} if person.family_name else {}),
                **({"given": person.given_names.split()} if person.given_names else {}),
            },
        ],
    }
    if person.birth_date is not None:
        resource["birthDate"] = person.birth_date.isoformat()
    if person.sex is not None:
        resource["gender"] = person.sex
    if person.postcode is not None and not person.sensitive:
        resource["address"] = [
            {"use": "home", "period": {"start": "2001-01-01"}, "postalCode": person.postcode}
        ]
    return resource


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, content_type=_FHIR_JSON, headers=headers)


def _outcome(
    status: int, code: str, issue: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": issue,
                "details": {
                    "coding": [
                        {
                            "system": "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode",
                            "version": "1",
                            "code": code,
                        }
                    ]
                },
            }
        ],
    }
    return _json(status, body, headers)


@asynccontextmanager
async def running_pds(
    people: Iterable[IndexPerson] = (), *, token: str | None = None
) -> AsyncIterator[PdsServer]:
    """A fake PDS on 127.0.0.1 and a free port, for the ``async with`` block."""
    server = PdsServer({p.nhs_number: p for p in people}, token=token)
    app = web.Application()
    app.router.add_get(BASE_PATH + "/Patient/{nhs}", server.handle)
    app.router.add_get(BASE_PATH + "/Patient", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        server.base_url = f"http://127.0.0.1:{port}{BASE_PATH}"
        yield server
    finally:
        await runner.cleanup()
