"""FHIR Subscriptions for LA clients (SPEC §5; Subscriptions R5 Backport IG 1.1.0, R4).

``POST/GET/PUT/DELETE /FHIR/R4/Subscription[/{id}]``, ``$status`` and
``$events``, for LA clients only, every one scoped to the caller's own ODS
code (:func:`cpis.web.auth.acting_org`): another LA's subscription answers
404 exactly like one that never existed.

The two operations are the IG's OperationDefinitions. ``$status`` works on
one subscription (``Subscription/{id}/$status``, where its ``id`` and
``status`` parameters are ignored, as the definition says) and on the type
(``Subscription/$status``): every subscription of the caller's LA, narrowed
by ``id`` and ``status``, each repeatable with values joined by OR. Neither
operation changes anything (``affectsState`` false), so both answer GET with
query parameters and POST with a ``Parameters`` body.

What the routes store is the request; the dispatcher (``cpis.workers``) does
the rest: the handshake that moves ``requested`` to ``active`` (or ``error``),
heartbeats, numbering and delivery. ``DELETE`` removes the subscription (not
``status = off``): a client that wants to pause sets ``status: off`` with
``PUT``; after ``DELETE`` a read is 404, as FHIR's delete says.

The routes parse the request and render the answer; :mod:`cpis.services.subscriptions`
does the rest, with the :class:`~cpis.ports.notifications.SubscriptionStore` that
``app.py`` passes to :func:`add_routes` (``cpis.web`` may not import adapters).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime

import orjson
from aiohttp import web

from cpis.errors import (
    InvalidRequest,
    InvalidSearch,
    NotFound,
    UnsupportedMediaType,
)
from cpis.fhir import notifications as fn
from cpis.fhir import resources as fr
from cpis.fhir import subscription_request as fsr
from cpis.fhir import subscriptions as fs
from cpis.fhir.search import echoable_name
from cpis.model import Role
from cpis.model.notifications import (
    Payload,
    Status,
    Subscription,
)
from cpis.ports.notifications import SubscriptionStore
from cpis.services import subscriptions
from cpis.web.auth import acting_org, authenticate
from cpis.web.render import check_acceptable, fhir_response, if_match
from cpis.web.state import SERVICES

_SEARCH_PARAMS = {"status", "url", "_format"}
_STATUS_PARAMS = {"id", "status"}
_EVENTS_PARAMS = {"eventsSinceNumber", "eventsUntilNumber", "content"}
# FHIR's id datatype.
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


SUBSCRIPTION_STORE = web.AppKey("subscription_store", SubscriptionStore)


def _base(request: web.Request) -> str:
    return request.app[SERVICES].settings.fhir_base_url


def _now(request: web.Request) -> datetime:
    return request.app[SERVICES].clock.now()


def _id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise NotFound("no such subscription") from None


async def _body(request: web.Request) -> object:
    ctype = request.content_type.lower()
    if ctype not in ("application/json", "application/fhir+json"):
        raise UnsupportedMediaType("the body must be application/fhir+json")
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON", status=400) from None


def _resource_response(
    request: web.Request, sub: Subscription, *, status: int = 200
) -> web.Response:
    base = _base(request)
    headers = {
        "ETag": f'W/"{sub.version}"',
        "Last-Modified": format_datetime(sub.updated_at, usegmt=True),
    }
    if status == 201:
        headers["Location"] = f"{base}/Subscription/{sub.id}/_history/{sub.version}"
    return fhir_response(fs.subscription_resource(sub, base), status=status, headers=headers)


def _single(request: web.Request, name: str) -> str | None:
    return _at_most_one(request.query.getall(name, []), name)


def _at_most_one(values: Sequence[str], name: str) -> str | None:
    if len(values) > 1:
        raise InvalidSearch(f"{name} may be given at most once", expression=name)
    return values[0] if values else None


def _unknown(name: str) -> InvalidSearch:
    # A name is the caller's free text (it could be an NHS number): named back only when
    # it looks like a parameter name (issue 9: found by the schemathesis run).
    shown = echoable_name(name)
    if shown is None:
        return InvalidSearch("unknown parameter")
    return InvalidSearch(f"unknown parameter: {shown}", expression=shown)


def _check_params(request: web.Request, allowed: set[str]) -> None:
    for name in request.query:
        if name not in allowed:
            raise _unknown(name)


def _primitive(parameter: object) -> tuple[str, str]:
    """``(name, value)`` of one ``Parameters.parameter`` holding a primitive value[x]."""
    if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
        raise InvalidRequest(
            "each parameter needs a name", expression="Parameters.parameter", status=400
        )
    name = parameter["name"]
    values = [v for k, v in parameter.items() if k.startswith("value") and isinstance(v, str)]
    if len(values) != 1:
        shown = echoable_name(name)
        if shown is None:
            raise InvalidRequest(
                "each parameter needs one primitive value",
                expression="Parameters.parameter",
                status=400,
            )
        raise InvalidRequest(
            f"parameter {shown} needs one primitive value", expression=shown, status=400
        )
    return name, values[0]


async def _operation_input(request: web.Request, allowed: set[str]) -> dict[str, list[str]]:
    """An operation's input parameters, by name: from the query string on GET, from a
    ``Parameters`` body on POST (FHIR's two ways to invoke an operation)."""
    _check_params(request, allowed | {"_format"})
    if request.method == "GET":
        return {name: request.query.getall(name) for name in allowed if name in request.query}
    if not request.can_read_body:
        return {}
    body = await _body(request)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest(
            "the body must be a Parameters resource", expression="resourceType", status=400
        )
    raw = body.get("parameter", [])
    if not isinstance(raw, list):
        raise InvalidRequest(
            "parameter must be a list", expression="Parameters.parameter", status=400
        )
    given: dict[str, list[str]] = {}
    for parameter in raw:
        name, value = _primitive(parameter)
        if name not in allowed:
            raise _unknown(name)
        given.setdefault(name, []).append(value)
    return given


def _or_values(given: dict[str, list[str]], name: str) -> list[str]:
    """Every value of a repeatable parameter; a comma also separates values (as in search)."""
    return [v.strip() for raw in given.get(name, []) for v in raw.split(",") if v.strip()]


async def _owned(request: web.Request) -> tuple[str, Subscription]:
    principal = authenticate(request, Role.LA)
    la = acting_org(request, principal)
    sub = await subscriptions.read(
        request.app[SUBSCRIPTION_STORE], la_ods=la, subscription_id=_id(request)
    )
    return la, sub


async def create(request: web.Request) -> web.Response:
    """Store a new subscription as ``requested``; the dispatcher makes the handshake."""
    check_acceptable(request)
    principal = authenticate(request, Role.LA)
    la = acting_org(request, principal)
    base = _base(request)
    now = _now(request)
    wanted = fsr.parse_subscription(await _body(request), base=base, la_ods=la, now=now)
    sub = await subscriptions.create(
        request.app[SUBSCRIPTION_STORE],
        la_ods=la,
        client_id=principal.client_id,
        topic=fs.topic_url(base),
        request=wanted,
        at=now,
    )
    return _resource_response(request, sub, status=201)


async def read(request: web.Request) -> web.Response:
    check_acceptable(request)
    _, sub = await _owned(request)
    return _resource_response(request, sub)


async def search(request: web.Request) -> web.Response:
    """The caller's own LA's subscriptions, optionally by ``status`` and ``url`` (the
    channel endpoint, exactly: the two the IG's R4 server CapabilityStatement names)."""
    check_acceptable(request)
    principal = authenticate(request, Role.LA)
    la = acting_org(request, principal)
    _check_params(request, _SEARCH_PARAMS)
    raw_status = _single(request, "status")
    status: Status | None = None
    if raw_status is not None:
        status = next((s for s in fs.STATUSES if s == raw_status), None)
        if status is None:
            raise InvalidSearch(
                "status must be requested, active, error or off", expression="status"
            )
    subs = await subscriptions.search(
        request.app[SUBSCRIPTION_STORE], la_ods=la, status=status, endpoint=_single(request, "url")
    )
    base = _base(request)
    query = request.rel_url.raw_query_string
    self_url = f"{base}/Subscription" + (f"?{query}" if query else "")
    entries = [(fs.subscription_resource(s, base), "match") for s in subs]
    return fhir_response(fr.bundle_searchset(entries, len(entries), self_url, base))


async def update(request: web.Request) -> web.Response:
    """Replace a subscription (``If-Match`` honoured); it goes back to ``requested``."""
    check_acceptable(request)
    principal = authenticate(request, Role.LA)
    la = acting_org(request, principal)
    sub_id = _id(request)
    version = if_match(request)
    body = await _body(request)
    if not isinstance(body, dict) or body.get("id") != str(sub_id):
        raise InvalidRequest(
            "the body's id must match the id in the URL", expression="Subscription.id", status=400
        )
    base = _base(request)
    now = _now(request)
    wanted = fsr.parse_subscription(body, base=base, la_ods=la, now=now)
    # FHIR allows update-as-create; ids here are the server's to assign (a 404).
    sub = await subscriptions.update(
        request.app[SUBSCRIPTION_STORE],
        la_ods=la,
        subscription_id=sub_id,
        request=wanted,
        if_match=version,
        at=now,
    )
    return _resource_response(request, sub)


async def delete(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA)
    la = acting_org(request, principal)
    sub_id = _id(request)
    await subscriptions.delete(
        request.app[SUBSCRIPTION_STORE],
        la_ods=la,
        subscription_id=sub_id,
        if_match=if_match(request),
    )
    return web.Response(status=204)


async def status(request: web.Request) -> web.Response:
    """Instance ``$status``: a searchset Bundle holding one ``query-status`` Parameters.
    The operation's ``id`` and ``status`` are ignored here, as its definition says."""
    check_acceptable(request)
    _, sub = await _owned(request)
    await _operation_input(request, _STATUS_PARAMS)
    base = _base(request)
    self_url = f"{base}/Subscription/{sub.id}/$status"
    return fhir_response(fs.status_bundle([sub], base=base, self_url=self_url))


async def status_all(request: web.Request) -> web.Response:
    """Type ``$status``: the status of each of the caller's LA's subscriptions, narrowed by
    ``id`` and ``status`` (values OR-ed); none given means all of them."""
    check_acceptable(request)
    principal = authenticate(request, Role.LA)
    la = acting_org(request, principal)
    given = await _operation_input(request, _STATUS_PARAMS)
    ids: set[uuid.UUID | None] = set()
    for value in _or_values(given, "id"):
        if not _FHIR_ID.match(value):
            raise InvalidSearch("id must be a FHIR id", expression="id")
        try:
            ids.add(uuid.UUID(value))
        except ValueError:
            ids.add(None)  # a well-formed id no subscription here can have
    statuses: set[Status] = set()
    for value in _or_values(given, "status"):
        found = next((s for s in fs.STATUSES if s == value), None)
        if found is None:
            raise InvalidSearch(
                "status must be requested, active, error or off", expression="status"
            )
        statuses.add(found)
    subs = await subscriptions.statuses(
        request.app[SUBSCRIPTION_STORE], la_ods=la, ids=ids, status=statuses
    )
    base = _base(request)
    query = request.rel_url.raw_query_string
    self_url = f"{base}/Subscription/$status" + (f"?{query}" if query else "")
    return fhir_response(fs.status_bundle(subs, base=base, self_url=self_url))


def _event_number(given: dict[str, list[str]], name: str) -> int | None:
    raw = _at_most_one(given.get(name, []), name)
    if raw is None:
        return None
    # ASCII digits: str.isdigit() is true of "²", which int() refuses (a 500, issue 9).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) < 1:
        raise InvalidSearch(f"{name} must be a positive whole number", expression=name)
    return int(raw)


async def events(request: web.Request) -> web.Response:
    """``$events``: replay numbered events from the delivery log as a ``query-event`` Bundle."""
    check_acceptable(request)
    la, sub = await _owned(request)
    given = await _operation_input(request, _EVENTS_PARAMS)
    since = _event_number(given, "eventsSinceNumber") or 1
    until = _event_number(given, "eventsUntilNumber")
    if until is not None and until < since:
        raise InvalidSearch(
            "eventsUntilNumber is before eventsSinceNumber", expression="eventsUntilNumber"
        )
    raw_content = _at_most_one(given.get("content", []), "content")
    content: Payload | None = None
    if raw_content is not None:
        content = next((p for p in fs.PAYLOADS if p == raw_content), None)
        if content is None:
            raise InvalidSearch(
                "content must be empty, id-only or full-resource", expression="content"
            )
    found = await subscriptions.events(
        request.app[SUBSCRIPTION_STORE], la_ods=la, subscription_id=sub.id, since=since, until=until
    )
    body = fn.notification_bundle(
        "query-event", sub, found, base=_base(request), now=_now(request), payload=content
    )
    return fhir_response(body)


def add_routes(app: web.Application, *, prefix: str, store: SubscriptionStore) -> None:
    """Register the routes; call before ``cpis.web.fhir.add_routes``, whose
    ``/FHIR/R4/{type}/{id}`` read would otherwise answer for Subscription."""
    app[SUBSCRIPTION_STORE] = store
    r = app.router
    r.add_post(prefix + "/FHIR/R4/Subscription", create, name="subscription_create")
    r.add_get(prefix + "/FHIR/R4/Subscription", search, name="subscription_search")
    # The type-level operation first: "$status" is not a subscription id.
    r.add_get(prefix + "/FHIR/R4/Subscription/$status", status_all, name="subscription_status_all")
    r.add_post(
        prefix + "/FHIR/R4/Subscription/$status", status_all, name="subscription_status_all_post"
    )
    r.add_get(prefix + "/FHIR/R4/Subscription/{id}/$status", status, name="subscription_status")
    r.add_post(
        prefix + "/FHIR/R4/Subscription/{id}/$status", status, name="subscription_status_post"
    )
    r.add_get(prefix + "/FHIR/R4/Subscription/{id}/$events", events, name="subscription_events")
    r.add_post(
        prefix + "/FHIR/R4/Subscription/{id}/$events", events, name="subscription_events_post"
    )
    r.add_get(prefix + "/FHIR/R4/Subscription/{id}", read, name="subscription_read")
    r.add_put(prefix + "/FHIR/R4/Subscription/{id}", update, name="subscription_update")
    r.add_delete(prefix + "/FHIR/R4/Subscription/{id}", delete, name="subscription_delete")
