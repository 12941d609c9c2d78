"""The ``pds`` person index: NHS England's Personal Demographics Service FHIR R4 API.

Reads are ``GET {base}/Patient/{nhs_number}`` with a fresh ``X-Request-ID``
(PDS refuses a request without one) and, where the deployment needs one, a
bearer token. What the answers mean, from the API's specification:

200 Patient
    ``id`` is the number in use. If it differs from the number asked for, the
    asked-for number was superseded (records merged) and PDS answered with the
    record that replaced it: ``superseded_by`` = ``id``. ``meta.security`` code
    ``R`` (restricted) or ``V`` (very restricted) marks a sensitive record;
    PDS removes its address.
404 RESOURCE_NOT_FOUND, 400 INVALID_RESOURCE_ID
    PDS does not know the number: absent from the answer (CPR01).
404 INVALIDATED_RESOURCE
    the number existed but was invalidated with no replacement:
    ``IndexPerson(active=False)``.
408, 429, 503
    busy: retried a few times, honouring ``Retry-After`` up to a bound, then
    :class:`~cpis.errors.PersonIndexUnavailable`.
anything else, timeouts, connection errors
    :class:`~cpis.errors.PersonIndexUnavailable` (an upload gets CPF05 and
    changes nothing; it is resent later).

Searches (``cpis trace``) are ``GET {base}/Patient?family=…&given=…&birthdate=eq…``
with ``_fuzzy-match=true`` when the query has the given name, family name and
birth date PDS requires for a fuzzy search. Exception texts name statuses and
error codes only: never a URL (it carries the NHS number) nor a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import aiohttp
import orjson

from cpis.errors import PersonIndexUnavailable
from cpis.matching.nhs_number import check
from cpis.model.persons import IndexPerson, PersonQuery

_RESTRICTED = frozenset({"R", "V", "REDACTED"})
_BUSY = frozenset({408, 429, 503})
_GENDERS = frozenset({"male", "female", "other", "unknown"})
_MAX_RESULTS = 50  # PDS's own ceiling for _max-results
# Spine error codes that may be named in an exception text: a fixed list, so a
# stray value in an error body can never reach a log line.
_KNOWN_CODES = frozenset(
    {
        "ACCESS_DENIED",
        "INVALIDATED_RESOURCE",
        "INVALID_RESOURCE_ID",
        "INVALID_SEARCH_DATA",
        "INVALID_VALUE",
        "MISSING_VALUE",
        "RESOURCE_NOT_FOUND",
        "SERVICE_UNAVAILABLE",
        "TOO_MANY_MATCHES",
        "TOO_MANY_REQUESTS",
        "UNABLE_TO_CALL_SERVICE",
        "UNSUPPORTED_SERVICE",
    }
)


class PdsPersonIndex:
    """The :class:`~cpis.ports.person_index.PersonIndex` over the PDS FHIR API."""

    name = "pds"

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession,
        timeout_seconds: float = 10,
        concurrency: int = 8,
        token: str | None = None,
        retries: int = 2,
        max_retry_wait: float = 2.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._concurrency = max(1, concurrency)
        self._token = token
        self._retries = max(0, retries)
        self._max_retry_wait = max_retry_wait

    # --- the port --------------------------------------------------------------------

    async def get_many(self, nhs_numbers: Sequence[str]) -> Mapping[str, IndexPerson]:
        """Up to ``concurrency`` reads at once; the first failure cancels the rest."""
        # A number that fails its check digit cannot be in PDS, and is never
        # put into a URL. Each distinct number is read once.
        wanted: dict[str, list[str]] = {}
        for raw in nhs_numbers:
            value = check(raw).value
            if value is not None:
                wanted.setdefault(value, []).append(raw)
        found: dict[str, IndexPerson] = {}
        pending = iter(wanted)

        async def worker() -> None:
            for number in pending:  # one shared iterator: each number is taken once
                person = await self._read(number)
                if person is not None:
                    for raw in wanted[number]:
                        found[raw] = person

        workers = [
            asyncio.create_task(worker()) for _ in range(min(self._concurrency, len(wanted)))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return found

    async def search(self, query: PersonQuery, *, limit: int = 10) -> Sequence[IndexPerson]:
        params = _search_params(query, limit)
        if params is None:
            return ()
        status, body = await self._get(f"{self._base}/Patient", params)
        if status != 200:
            if status in (400, 404):
                return ()  # PDS cannot search on what this query has
            raise PersonIndexUnavailable(f"person index answered {status}{_code(body)}")
        bundle = _json(body)
        if bundle is None or bundle.get("resourceType") != "Bundle":
            raise PersonIndexUnavailable("person index gave an unexpected answer")
        out: list[IndexPerson] = []
        for entry in bundle.get("entry") or ():
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
                continue
            number = check(str(resource.get("id", ""))).value
            if number is not None:
                out.append(patient_to_person(resource, number))
        return tuple(out[:limit])

    # --- HTTP ------------------------------------------------------------------------

    async def _read(self, number: str) -> IndexPerson | None:
        status, body = await self._get(f"{self._base}/Patient/{number}", None)
        if status == 200:
            patient = _json(body)
            if patient is None or patient.get("resourceType") != "Patient":
                raise PersonIndexUnavailable("person index gave an unexpected answer")
            return patient_to_person(patient, number)
        code = _error_code(body)
        if status == 404 and code == "INVALIDATED_RESOURCE":
            return IndexPerson(nhs_number=number, active=False)
        if (status == 404 and code in (None, "RESOURCE_NOT_FOUND")) or (
            status == 400 and code == "INVALID_RESOURCE_ID"
        ):
            return None
        raise PersonIndexUnavailable(f"person index answered {status}{_code(body)}")

    async def _get(self, url: str, params: Mapping[str, str] | None) -> tuple[int, bytes]:
        """One GET, retried while PDS says it is busy; (status, body) otherwise."""
        attempt = 0
        while True:
            headers = {"X-Request-ID": str(uuid.uuid4()), "Accept": "application/fhir+json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            try:
                async with self._session.get(
                    url,
                    params=params,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as resp:
                    body = await resp.read()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
            except TimeoutError:
                raise PersonIndexUnavailable("person index timed out") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise PersonIndexUnavailable(
                    f"person index unreachable ({type(exc).__name__})"
                ) from None
            if status not in _BUSY:
                return status, body
            if attempt >= self._retries:
                raise PersonIndexUnavailable(
                    f"person index busy (answered {status}{_code(body)})", retry_after=30
                )
            attempt += 1
            await asyncio.sleep(self._retry_wait(retry_after, attempt))

    def _retry_wait(self, retry_after: str | None, attempt: int) -> float:
        wait = 0.2 * 2.0 ** (attempt - 1)
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                wait = float(retry_after.strip())
        return max(0.0, min(wait, self._max_retry_wait))


# --- FHIR shapes ---------------------------------------------------------------------------


def _search_params(query: PersonQuery, limit: int) -> dict[str, str] | None:
    """PDS's search parameters for ``query``, or None when PDS cannot search on it.

    A fuzzy search needs given name, family name and birth date; without the
    given name a non-fuzzy search needs family name and birth date.
    """
    given = (query.given_names or "").split()
    family = (query.family_name or "").strip()
    if not family or query.birth_date is None or limit < 1:
        return None
    params = {
        "family": family,
        "birthdate": f"eq{query.birth_date.isoformat()}",
        "_max-results": str(min(limit, _MAX_RESULTS)),
    }
    if given:
        params["given"] = given[0]
        params["_fuzzy-match"] = "true"
    if query.sex in _GENDERS:
        params["gender"] = query.sex
    if query.postcode:
        params["address-postalcode"] = query.postcode
    return params


def patient_to_person(patient: Mapping[str, Any], requested: str) -> IndexPerson:
    """A PDS Patient as an :class:`IndexPerson` for the number that was asked for."""
    in_use = check(str(patient.get("id", ""))).value
    superseded_by = in_use if in_use is not None and in_use != requested else None
    family, given = _name(patient.get("name"))
    gender = patient.get("gender")
    security = (patient.get("meta") or {}).get("security") or ()
    sensitive = any(isinstance(s, dict) and s.get("code") in _RESTRICTED for s in security)
    return IndexPerson(
        nhs_number=requested,
        family_name=family,
        given_names=given,
        birth_date=_birth_date(patient.get("birthDate")),
        sex=gender if gender in _GENDERS else None,
        postcode=None if sensitive else _postcode(patient.get("address")),
        sensitive=sensitive,
        superseded_by=superseded_by,
        active=superseded_by is None,
    )


def _current(items: Any, uses: Sequence[str]) -> dict[str, Any] | None:
    """The first current entry (no period end) of the most preferred ``use``."""
    if not isinstance(items, list):
        return None
    candidates = [i for i in items if isinstance(i, dict)]
    current = [i for i in candidates if not (i.get("period") or {}).get("end")] or candidates
    for use in uses:
        for item in current:
            if item.get("use") == use:
                return item
    return current[0] if current else None


def _name(names: Any) -> tuple[str | None, str | None]:
    name = _current(names, ("usual", "official"))
    if name is None:
        return None, None
    family = name.get("family")
    given = [g for g in name.get("given") or () if isinstance(g, str) and g.strip()]
    return (
        family if isinstance(family, str) and family.strip() else None,
        " ".join(given) or None,
    )


def _postcode(addresses: Any) -> str | None:
    address = _current(addresses, ("home",))
    postcode = None if address is None else address.get("postalCode")
    return postcode if isinstance(postcode, str) and postcode.strip() else None


def _birth_date(raw: Any) -> date | None:
    # FHIR allows a partial date (YYYY, YYYY-MM); only a full one compares.
    if not isinstance(raw, str) or len(raw) != 10:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _error_code(body: bytes) -> str | None:
    """The Spine error code of an OperationOutcome answer, if it is one."""
    outcome = _json(body)
    if outcome is None or outcome.get("resourceType") != "OperationOutcome":
        return None
    for issue in outcome.get("issue") or ():
        codings = ((issue or {}).get("details") or {}).get("coding") or ()
        for coding in codings:
            code = coding.get("code") if isinstance(coding, dict) else None
            if isinstance(code, str):
                return code
    return None


def _code(body: bytes) -> str:
    """ " CODE" for a known Spine error code in ``body``, else nothing."""
    code = _error_code(body)
    return f" {code}" if code in _KNOWN_CODES else ""
