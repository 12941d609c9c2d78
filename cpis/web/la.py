"""The LA plan API (SPEC §5): real-time feeds from case management systems.

``PUT/GET/DELETE /la/v1/plans/{plan_id}`` for an LA client, scoped to its own
ODS code. Bodies are validated field by field; an error names the field and
never echoes its value (it may be an NHS number or a name).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from aiohttp import web

from cpis.errors import InvalidRequest, UnsupportedMediaType
from cpis.formats.plan_fields import PLAN_ID_RE, PLAN_ID_RULE, check_plan_fields
from cpis.model import Plan, PlanFields, Role
from cpis.model.uploads import FieldRejection
from cpis.services import plans
from cpis.web.auth import acting_org, authenticate
from cpis.web.render import if_match, json_response
from cpis.web.state import SERVICES


def _plan_id(request: web.Request) -> str:
    raw = request.match_info["plan_id"]
    if not PLAN_ID_RE.fullmatch(raw):
        raise InvalidRequest(PLAN_ID_RULE, expression="plan_id", status=400)
    return raw


def parse_plan_body(body: Any) -> PlanFields:
    """Validate a plan body into domain values, or raise naming the first bad field.

    The rules are the uploads' (``check_plan_fields``), so a plan accepted by one
    way in is accepted by the other.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", status=400)
    result = check_plan_fields(body)
    if isinstance(result, FieldRejection):
        raise InvalidRequest(result.reason, expression=result.field)
    return result


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
    plan, created = await plans.put_plan(
        svc.db,
        svc.clock,
        principal=principal,
        la_ods=la_ods,
        la_plan_id=plan_id,
        fields=fields,
        if_match=version,
        if_none_match_any=request.headers.get("If-None-Match", "").strip() == "*",
        index=svc.person_index,
    )
    return _plan_response(plan, 201 if created else 200)


async def get_plan(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA)
    plan_id = _plan_id(request)
    svc = request.app[SERVICES]
    plan = await plans.get_plan(
        svc.db, principal=principal, la_ods=acting_org(request, principal), la_plan_id=plan_id
    )
    return _plan_response(plan)


async def delete_plan(request: web.Request) -> web.Response:
    principal = authenticate(request, Role.LA)
    plan_id = _plan_id(request)
    svc = request.app[SERVICES]
    await plans.delete_plan(
        svc.db,
        principal=principal,
        la_ods=acting_org(request, principal),
        la_plan_id=plan_id,
        if_match=if_match(request),
    )
    return web.Response(status=204)


def add_routes(app: web.Application, *, prefix: str) -> None:
    r = app.router
    r.add_put(prefix + "/la/v1/plans/{plan_id}", put_plan, name="la_plan_put")
    r.add_get(prefix + "/la/v1/plans/{plan_id}", get_plan, name="la_plan_get")
    r.add_delete(prefix + "/la/v1/plans/{plan_id}", delete_plan, name="la_plan_delete")
