"""What the local authority's pages share (issue 12, item 3): who is acting, the
roles that see them, how an NHS number and a setting are shown, and their routes.

Every LA page calls the same service as its JSON twin under ``/la/v1/``, with
the signed-in person as the :class:`~cpis.model.la.LaActor`, so a page answers
for the person's own LA only, exactly as the API answers for a client's.
"""

from __future__ import annotations

from aiohttp import web

from cpis.model import SettingType
from cpis.model.la import LaActor, LaRole
from cpis.model.web import WebRole
from cpis.web.pages._site import SESSION

LA_ROLES = (WebRole.CASEWORKER, WebRole.MANAGER)
MANAGERS = (WebRole.MANAGER,)

SETTING_NAMES = {
    SettingType.ED.value: "emergency department",
    SettingType.UTC.value: "urgent treatment centre",
    SettingType.MIU.value: "minor injuries unit",
    SettingType.WIC.value: "walk-in centre",
    SettingType.OOH.value: "out-of-hours service",
    SettingType.AMBULANCE.value: "ambulance service",
    SettingType.MATERNITY.value: "maternity unit",
    SettingType.OTHER.value: "unscheduled care",
}


def actor(request: web.Request) -> LaActor:
    """The signed-in person as the services' actor, for their own LA."""
    user = request[SESSION].user
    return LaActor.person(user.org_ods, user.user_id, name=user.name, role=LaRole(user.role.value))


def spaced(nhs_number: str) -> str:
    """An NHS number as people read and say it: 3-3-4 digits."""
    return f"{nhs_number[:3]} {nhs_number[3:6]} {nhs_number[6:]}"


def setting_name(value: str) -> str:
    return SETTING_NAMES.get(value, value)
