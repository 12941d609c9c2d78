"""A local authority's details as they may be stored (issue 9, item 14).

One check for every way an LA's details enter (the CLI, the demo's seed, any
caller of ``PgDatabase.upsert_la``/``update_la``): an LA-shaped ODS code, a
name, and both phone numbers as UK numbers in the national format
(:mod:`cpis.phone`), since they are what a clinician rings.
"""

from __future__ import annotations

import dataclasses

from cpis.errors import LaDetailsError, PhoneNumberError
from cpis.model import LocalAuthority
from cpis.ods import la_code
from cpis.phone import uk_phone


def checked_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise LaDetailsError("name: none given")
    if len(name) > 200:
        raise LaDetailsError("name: longer than 200 characters")
    return name


def checked_phone(field: str, raw: str) -> str:
    try:
        return uk_phone(raw)
    except PhoneNumberError as exc:
        raise LaDetailsError(f"{field}: {exc}") from None


def checked_window(hours: int) -> int:
    if not 0 <= hours <= 24 * 28:
        raise LaDetailsError("repeat window: from 0 to 672 hours (four weeks)")
    return hours


def checked_la(la: LocalAuthority) -> LocalAuthority:
    """``la`` normalised (ODS code upper-cased, phones in national format), or
    :class:`LaDetailsError` naming the first detail that cannot be stored."""
    try:
        ods = la_code(la.ods_code)
    except ValueError as exc:
        raise LaDetailsError(f"ODS code: {exc}") from None
    return dataclasses.replace(
        la,
        ods_code=ods,
        name=checked_name(la.name),
        office_phone=checked_phone("office-hours phone", la.office_phone),
        edt_phone=checked_phone("emergency duty team phone", la.edt_phone),
        repeat_window_hours=checked_window(la.repeat_window_hours),
    )
