"""The LA plan API (SPEC §5): real-time feeds from case management systems.

``PUT/GET/DELETE /la/v1/plans/{plan_id}`` for an LA client, scoped to its own
ODS code. Bodies are validated field by field; an error names the field and
never echoes its value (it may be an NHS number or a name).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import orjson
from aiohttp import web

from cpis import services
from cpis.errors import InvalidRequest, UnsupportedMediaType
from cpis.matching import nhs_number
from cpis.model import Plan, PlanFields, PlanType, Role
from cpis.web.auth import acting_org, authenticate
from cpis.web.render import if_match, json_response
from cpis.web.state import SERVICES

_PLAN_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_FIELDS = {
    "nhs_number",
    "plan_type",
    "start_date",
    "end_date",
    "delete_date",
    "birth_date",
    "family_name",
    "given_name",
}
_MAX_NAME = 100
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _plan_id(request: web.Request) -> str:
    raw = request.match_info["plan_id"]
    if not _PLAN_ID.match(raw):
        raise InvalidRequest(
            "plan_id must be 1-64 letters, digits, '.', '_' or '-'",
            expression="plan_id",
            status=400,
        )
    return raw


def _date(body: dict[str, Any], name: str, *, required: bool = False) -> date | None:
    raw = body.get(name)
    if raw is None:
        if required:
            raise InvalidRequest(f"{name} is required", expression=name)
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise InvalidRequest(f"{name} must be a date as YYYY-MM-DD", expression=name)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"{name} is not a real date", expression=name) from None


def _name(body: dict[str, Any], name: str) -> str | None:
    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip() or len(raw) > _MAX_NAME:
        raise InvalidRequest(
            f"{name} must be a non-empty string of at most {_MAX_NAME} characters",
            expression=name,
        )
    if not raw.isprintable():
        raise InvalidRequest(f"{name} has characters that are not allowed", expression=name)
    return raw.strip()


def parse_plan_body(body: Any) -> PlanFields:
    """Validate a plan body into domain values, or raise naming the first bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", status=400)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        # A badly built body may key its JSON by an NHS number or a name: only
        # name the field back when it looks like a field name.
        name = unknown[0]
        if _FIELD_NAME.fullmatch(name) and not re.search(r"\d{3}", name):
            raise InvalidRequest(f"unknown field: {name}", expression=name)
        raise InvalidRequest("the body has a field that is not a plan field")
    raw_nhs = body.get("nhs_number")
    if raw_nhs is None:
        raise InvalidRequest("nhs_number is required", expression="nhs_number")
    checked = nhs_number.check(raw_nhs) if isinstance(raw_nhs, str) else None
    if checked is None or checked.value is None:
        reason = checked.reason if checked else "must be a string of 10 digits"
        raise InvalidRequest(f"nhs_number {reason}", expression="nhs_number")
    raw_type = body.get("plan_type")
    if raw_type not in {t.value for t in PlanType}:
        raise InvalidRequest("plan_type must be CPP, LAC or UCPP", expression="plan_type")
    start = _date(body, "start_date", required=True)
    assert start is not None
    end = _date(body, "end_date")
    if end is not None and end < start:
        raise InvalidRequest("end_date is before start_date", expression="end_date")
    birth = _date(body, "birth_date")
    if birth is not None and birth > start and raw_type != PlanType.UCPP:
        raise InvalidRequest("birth_date is after start_date", expression="birth_date")
    return PlanFields(
        nhs_number=checked.value,
        plan_type=PlanType(raw_type),
        start_date=start,
        end_date=end,
        delete_date=_date(body, "delete_date"),
        birth_date=birth,
        family_name=_name(body, "family_name"),
        given_name=_name(body, "given_name"),
    )


def plan_json(plan: Plan) -> dict[str, Any]:
    f = plan.fields

    def iso(d: date | None) -> str | None:
        return None if d is None else d.isoformat()

    return {
        "plan_id": plan.la_plan_id,
        "la_ods": plan.la_ods,
        "id": str(plan.id),
        "version": plan.version,
        "updated_at": plan.updated_at.isoformat(),
        "nhs_number": f.nhs_number,
        "plan_type": f.plan_type.value,
        "start_date": iso(f.start_date),
        "end_date": iso(f.end_date),
        "delete_date": iso(f.delete_date),
        "birth_date": iso(f.birth_date),
        "family_name": f.family_name,
        "given_name": f.given_name,
    }


def _plan_response(plan: Plan, status: int = 200) -> web.Response:
    return json_response(plan_json(plan), status=status, headers={"ETag": f'W/"{plan.version}"'})


async def _json_body(request: web.Request) -> Any:
    ctype = request.content_type.lower()
    if ctype not in ("application/json", "application/fhir+json") and not ctype.endswith("+json"):
        raise UnsupportedMediaType("the body must be application/json")
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON", status=400) from None


async def put_plan(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA)
    plan_id = _plan_id(request)
    la_ods = acting_org(request, principal)
    version = if_match(request)
    fields = parse_plan_body(await _json_body(request))
    svc = request.app[SERVICES]
    plan, created = await services.put_plan(
        svc.db,
        svc.clock,
        principal=principal,
        la_ods=la_ods,
        la_plan_id=plan_id,
        fields=fields,
        if_match=version,
        if_none_match_any=request.headers.get("If-None-Match", "").strip() == "*",
    )
    return _plan_response(plan, 201 if created else 200)


async def get_plan(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA)
    plan_id = _plan_id(request)
    svc = request.app[SERVICES]
    plan = await services.get_plan(
        svc.db, principal=principal, la_ods=acting_org(request, principal), la_plan_id=plan_id
    )
    return _plan_response(plan)


async def delete_plan(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA)
    plan_id = _plan_id(request)
    svc = request.app[SERVICES]
    await services.delete_plan(
        svc.db,
        principal=principal,
        la_ods=acting_org(request, principal),
        la_plan_id=plan_id,
        if_match=if_match(request),
    )
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_put("/la/v1/plans/{plan_id}", put_plan, name="la_plan_put")
    r.add_get("/la/v1/plans/{plan_id}", get_plan, name="la_plan_get")
    r.add_delete("/la/v1/plans/{plan_id}", delete_plan, name="la_plan_delete")
