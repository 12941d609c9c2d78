"""The LA plan API (SPEC §5): real-time feeds from case management systems; and what
an LA's systems read of their children and change of their settings (issue 12).

``PUT/GET/DELETE /la/v1/plans/{plan_id}`` for an LA client, scoped to its own
ODS code. Bodies are validated field by field; an error names the field and
never echoes its value (it may be an NHS number or a name).

``GET /la/v1/plans?nhs_number=`` lists the LA's own plans for a child (none for a
child it does not hold). ``GET /la/v1/children/{nhs_number}`` is the child's
record: the LA's plans, the visits it may see (issue 9 item 1) and the
notifications it was sent; 404 for a child the LA holds no plan for, however
well another LA knows it. ``GET/PATCH /la/v1/settings`` read and change the
LA's phone numbers, repeat window and MESH mailbox (with its Subscriptions,
which are changed through the FHIR Subscription API).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from aiohttp import web

from cpis.errors import InvalidRequest, UnsupportedMediaType
from cpis.formats.plan_fields import PLAN_ID_RE, PLAN_ID_RULE, check_plan_fields
from cpis.model import AccessEvent, JsonValue, Plan, PlanFields, Role
from cpis.model.la import ChildPlan, LaDetailsChange, LaSettings
from cpis.model.uploads import FieldRejection
from cpis.services import children, la_settings, plans
from cpis.web.auth import acting_org, authenticate
from cpis.web.context import info
from cpis.web.la_access import audit_entry, la_actor, nhs_number_param, one_param
from cpis.web.notifications import INBOX, attendance_json
from cpis.web.render import if_match, json_response
from cpis.web.state import SERVICES
from cpis.web.subscriptions import SUBSCRIPTION_STORE


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


def _child_plan(cp: ChildPlan) -> dict[str, Any]:
    return plan_json(cp.plan) | {
        "visible": cp.visible,
        "active": cp.active,
        "ends": cp.ends.isoformat() if cp.ends else None,
    }


async def search_plans(request: web.Request) -> web.Response:
    actor = la_actor(request)
    nhs = nhs_number_param(one_param(request, "nhs_number"))
    svc = request.app[SERVICES]
    found = await children.plans(svc.db, svc.clock, actor=actor, nhs_number=nhs)
    return json_response({"la_ods": actor.la_ods, "plans": [_child_plan(cp) for cp in found]})


def _visit(event: AccessEvent) -> dict[str, JsonValue]:
    a = event.accessor
    return {
        "access_event_id": str(event.id),
        "when": event.occurred_at.isoformat(),
        "setting": {"ods_code": a.org_ods, "name": a.org_name, "type": a.setting_type.value},
        "user": {
            "name": a.user_name,
            "role": a.user_role,
            "role_code": a.role_code,
            "role_profile_id": a.role_profile_id,
            "verified": a.user_verified,
        },
    }


async def get_child(request: web.Request) -> web.Response:
    actor = la_actor(request)
    # A bad number is a 404 like an unknown child: the path names a resource.
    nhs = nhs_number_param(request.match_info["nhs_number"])
    svc = request.app[SERVICES]
    record = await children.child(
        svc.db,
        request.app[INBOX],
        svc.clock,
        actor=actor,
        nhs_number=nhs,
        audit=audit_entry(request, actor),
    )
    info(request).audited = True
    return json_response(
        {
            "nhs_number": record.nhs_number,
            "la_ods": record.la.ods_code,
            "plans": [_child_plan(cp) for cp in record.plans],
            "visits": [_visit(v) for v in record.visits],
            "notifications": [attendance_json(n) for n in record.notifications],
        }
    )


def _settings_response(found: LaSettings) -> web.Response:
    la = found.la
    body = {
        "la_ods": la.ods_code,
        "name": la.name,
        "office_phone": la.office_phone,
        "edt_phone": la.edt_phone,
        "repeat_window_hours": la.repeat_window_hours,
        "version": la.version,
        "mesh_mailbox": None if found.mesh is None else found.mesh.mailbox,
        "mesh_workflow_id": None if found.mesh is None else found.mesh.workflow_id,
        "subscriptions": [
            {
                "id": str(s.id),
                "status": s.status,
                "endpoint": s.endpoint,
                "payload": s.payload,
                "error": s.error,
            }
            for s in found.subscriptions
        ],
    }
    return json_response(body, headers={"ETag": f'W/"{la.version}"'})


async def get_settings(request: web.Request) -> web.Response:
    actor = la_actor(request)
    svc = request.app[SERVICES]
    found = await la_settings.read(svc.db, request.app[SUBSCRIPTION_STORE], actor=actor)
    return _settings_response(found)


# The LA's name is the operator's to change (`cpis la update`): clinicians read it.
_DETAIL_FIELDS = ("office_phone", "edt_phone", "repeat_window_hours")
_SETTINGS_FIELDS = frozenset((*_DETAIL_FIELDS, "mesh_mailbox", "mesh_workflow_id"))


def _settings_change(body: Any) -> tuple[LaDetailsChange, dict[str, Any]]:
    """The details to change, and the MESH part (its keys only when given)."""
    if not isinstance(body, dict) or not body:
        raise InvalidRequest("the body must be a JSON object of the settings to change")
    unknown = sorted(set(body) - _SETTINGS_FIELDS)
    if unknown:
        # Not named: a key is the caller's text, and may be anything (a name, a number).
        raise InvalidRequest(
            "the body has a field that is not a setting: office_phone, edt_phone,"
            " repeat_window_hours, mesh_mailbox or mesh_workflow_id"
        )
    for name in ("office_phone", "edt_phone"):
        if name in body and not isinstance(body[name], str):
            raise InvalidRequest(f"{name} must be a string", expression=name)
    window = body.get("repeat_window_hours")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)):
        raise InvalidRequest(
            "repeat_window_hours must be a whole number", expression="repeat_window_hours"
        )
    for name in ("mesh_mailbox", "mesh_workflow_id"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise InvalidRequest(f"{name} must be a string or null", expression=name)
    change = LaDetailsChange(
        office_phone=body.get("office_phone"),
        edt_phone=body.get("edt_phone"),
        repeat_window_hours=window,
    )
    mesh = {k: body[k] for k in ("mesh_mailbox", "mesh_workflow_id") if k in body}
    if "mesh_workflow_id" in mesh and "mesh_mailbox" not in mesh:
        raise InvalidRequest("mesh_workflow_id goes with mesh_mailbox", expression="mesh_mailbox")
    return change, mesh


async def patch_settings(request: web.Request) -> web.Response:
    actor = la_actor(request)
    version = if_match(request)
    change, mesh = _settings_change(await _json_body(request))
    svc = request.app[SERVICES]
    la_settings.require_manager(actor)
    # Every part checked before any is changed: a bad mailbox changes no phone number.
    mailbox = None
    if mesh and mesh["mesh_mailbox"] is not None:
        mailbox = la_settings.checked_mesh(mesh["mesh_mailbox"], mesh.get("mesh_workflow_id"))
    if any(getattr(change, f) is not None for f in _DETAIL_FIELDS) or version is not None:
        await la_settings.change_details(svc.db, actor=actor, change=change, if_match=version)
    if mesh:
        await la_settings.set_mesh(svc.db, actor=actor, mesh=mailbox)
    found = await la_settings.read(svc.db, request.app[SUBSCRIPTION_STORE], actor=actor)
    return _settings_response(found)


def add_routes(app: web.Application, *, prefix: str) -> None:
    r = app.router
    r.add_get(prefix + "/la/v1/plans", search_plans, name="la_plan_search")
    r.add_get(prefix + "/la/v1/children/{nhs_number}", get_child, name="la_child")
    r.add_get(prefix + "/la/v1/settings", get_settings, name="la_settings_get")
    r.add_patch(prefix + "/la/v1/settings", patch_settings, name="la_settings_patch")
    r.add_put(prefix + "/la/v1/plans/{plan_id}", put_plan, name="la_plan_put")
    r.add_get(prefix + "/la/v1/plans/{plan_id}", get_plan, name="la_plan_get")
    r.add_delete(prefix + "/la/v1/plans/{plan_id}", delete_plan, name="la_plan_delete")
