"""The health-facing FHIR R4 API (SPEC §4): metadata, searches, reads and vreads."""

from __future__ import annotations

import uuid
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from cpis import __version__
from cpis.errors import NotFound
from cpis.fhir import resources as fr
from cpis.fhir.capability import capability_statement
from cpis.fhir.search import parse_search
from cpis.model import AccessEvent, AuditEntry, Principal, Role, VisiblePlan
from cpis.services import lookup
from cpis.web.auth import (
    accessor_for,
    asserted_user,
    authenticate,
    is_unscheduled,
    require_trace_id,
    verified_org,
)
from cpis.web.context import info
from cpis.web.render import check_acceptable, fhir_response
from cpis.web.state import NOTIFICATIONS_QUEUED, SERVICES

PLAN_TYPES = {"CareTeam": fr.care_team, "Flag": fr.flag}
READABLE = ("CareTeam", "Flag", "Organization", "AuditEvent", "PractitionerRole")


def _base(request: web.Request) -> str:
    return request.app[SERVICES].settings.fhir_base_url


def _self_url(request: web.Request, resource_type: str) -> str:
    query = request.rel_url.raw_query_string
    return f"{_base(request)}/{resource_type}" + (f"?{query}" if query else "")


def _prefers_lenient(request: web.Request) -> bool:
    prefer = request.headers.get("Prefer", "")
    return any(p.strip().lower() == "handling=lenient" for p in prefer.split(","))


async def metadata(request: web.Request) -> web.Response:
    check_acceptable(request)
    clock = request.app[SERVICES].clock
    body = capability_statement(
        _base(request), software_version=__version__, now=clock.now().isoformat()
    )
    return fhir_response(body)


def _audit_entry(request: web.Request, principal: Principal, nhs: str | None) -> AuditEntry:
    ri = info(request)
    return AuditEntry(
        action=ri.action,
        outcome=200,
        client_id=principal.client_id,
        role=principal.role.value,
        org_ods=verified_org(request, principal),
        user_id=asserted_user(request, principal),
        resource=request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else None,
        subject=nhs,
        trace_id=ri.trace_id,
    )


async def search_plans(request: web.Request) -> web.Response:
    """CareTeam or Flag search by NHS number: the lookup an ED makes."""
    resource_type = request.match_info["type"]
    check_acceptable(request)
    principal = authenticate(request, Role.HEALTH)
    require_trace_id(request)
    params = parse_search(
        resource_type, list(request.query.items()), lenient=_prefers_lenient(request)
    )
    unscheduled = is_unscheduled(request, principal)
    accessor = await accessor_for(request, principal, unscheduled=unscheduled)
    svc = request.app[SERVICES]
    result = await lookup.lookup(
        svc.db,
        svc.clock,
        nhs_number=params.nhs_number,
        accessor=accessor,
        unscheduled=unscheduled,
        audit=_audit_entry(request, principal, params.nhs_number),
    )
    info(request).audited = True
    svc.metrics.lookups.labels(
        resource_type,
        "silent" if not unscheduled else ("hit" if result.plans else "miss"),
    ).inc()
    if result.access_event is not None:
        svc.metrics.access_events.inc()
        svc.metrics.notifications_queued.inc(len(result.notified_las))
    if result.notified_las:
        request.app[NOTIFICATIONS_QUEUED]()
    base = _base(request)
    plans = list(result.plans)
    if params.status is not None:
        wanted = params.status == "active"
        plans = [vp for vp in plans if vp.active == wanted]
    build = PLAN_TYPES[resource_type]
    entries: list[tuple[dict[str, Any], str]] = [(build(vp, base), "match") for vp in plans]
    if params.include_author:
        seen: set[str] = set()
        for vp in plans:
            if vp.la.ods_code not in seen:
                seen.add(vp.la.ods_code)
                entries.append((fr.organization(vp.la, base), "include"))
    body = fr.bundle_searchset(entries, len(plans), _self_url(request, resource_type), base)
    return fhir_response(body)


async def search_audit_events(request: web.Request) -> web.Response:
    """The subject's 25 most recent unscheduled visits, newest first."""
    check_acceptable(request)
    principal = authenticate(request, Role.HEALTH, Role.LA)
    require_trace_id(request)
    params = parse_search(
        "AuditEvent", list(request.query.items()), lenient=_prefers_lenient(request)
    )
    svc = request.app[SERVICES]
    events = await lookup.history(
        svc.db,
        svc.clock,
        nhs_number=params.nhs_number,
        principal=principal,
        audit=_audit_entry(request, principal, params.nhs_number),
    )
    info(request).audited = True
    base = _base(request)
    entries = [(fr.audit_event(ev, base), "match") for ev in events]
    if params.include_viewers:
        viewers = {ev.accessor.practitioner_role_id: ev.accessor for ev in events}
        entries.extend((fr.practitioner_role(acc), "include") for acc in viewers.values())
    body = fr.bundle_searchset(entries, len(events), _self_url(request, "AuditEvent"), base)
    return fhir_response(body)


def _versioned(body: dict[str, Any], version: int, when: Any) -> web.Response:
    headers = {"ETag": f'W/"{version}"'}
    if when is not None:
        headers["Last-Modified"] = format_datetime(when, usegmt=True)
    return fhir_response(body, headers=headers)


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("no such resource") from None


def _version(raw: str | None) -> int | None:
    if raw is None:
        return None
    # ASCII digits: str.isdigit() is true of "²", which int() refuses (a 500, issue 9).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) < 1:
        raise NotFound("no such version")
    return int(raw)


async def read(request: web.Request) -> web.Response:
    """Read or vread one resource the caller may see."""
    resource_type = request.match_info["type"]
    raw_id = request.match_info["id"]
    version = _version(request.match_info.get("vid"))
    check_acceptable(request)
    principal = authenticate(request, Role.HEALTH, Role.LA)
    if resource_type not in READABLE:
        raise NotFound("resource type not served")
    svc = request.app[SERVICES]
    base = _base(request)
    if resource_type in PLAN_TYPES:
        vp: VisiblePlan = await lookup.read_plan(
            svc.db, svc.clock, plan_id=_uuid(raw_id), version=version, principal=principal
        )
        body = PLAN_TYPES[resource_type](vp, base)
        return _versioned(body, vp.plan.version, vp.plan.updated_at)
    if resource_type == "Organization":
        la = await lookup.read_la(svc.db, ods_code=raw_id.upper())
        if version is not None and version != la.version:
            raise NotFound("no such version")
        return _versioned(fr.organization(la, base), la.version, la.updated_at)
    if version is not None and version != 1:
        raise NotFound("no such version")
    if resource_type == "PractitionerRole":
        viewer = await lookup.read_viewer(
            svc.db, svc.clock, practitioner_role_id=_uuid(raw_id), principal=principal
        )
        return _versioned(fr.practitioner_role(viewer), 1, None)
    event: AccessEvent = await lookup.read_access_event(
        svc.db, svc.clock, event_id=_uuid(raw_id), principal=principal
    )
    return _versioned(fr.audit_event(event, base), 1, event.occurred_at)


async def unknown_type(request: web.Request) -> web.Response:
    check_acceptable(request)
    raise NotFound("resource type not served")


def add_routes(app: web.Application, *, prefix: str) -> None:
    r = app.router
    r.add_get(prefix + "/FHIR/R4/metadata", metadata, name="metadata")
    r.add_get(prefix + "/FHIR/R4/{type:CareTeam|Flag}", search_plans, name="plan_search")
    r.add_get(prefix + "/FHIR/R4/AuditEvent", search_audit_events, name="audit_event_search")
    r.add_get(prefix + "/FHIR/R4/{type:[A-Za-z]+}/{id}", read, name="read")
    r.add_get(prefix + "/FHIR/R4/{type:[A-Za-z]+}/{id}/_history/{vid}", read, name="vread")
    r.add_get(prefix + "/FHIR/R4/{type:[A-Za-z]+}", unknown_type, name="unknown_type")
