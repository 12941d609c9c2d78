"""A plan's fields (SPEC §5), checked by one set of rules for both ways a plan comes in:
the plan API's ``PUT /la/v1/plans/{plan_id}`` body (``cpis.web.la``) and an upload
file's upsert record (:mod:`cpis.formats.upload_file`). Pure: no I/O.

A rejection names the field and never echoes its value (it may be an NHS number
or a name); a field name is itself named back only when it looks like one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date

from cpis.matching import nhs_number
from cpis.model import PlanFields, PlanType
from cpis.model.uploads import FieldRejection

PLAN_FIELDS: tuple[str, ...] = (
    "nhs_number",
    "plan_type",
    "start_date",
    "end_date",
    "delete_date",
    "birth_date",
    "family_name",
    "given_name",
)
MAX_NAME = 100
# The LA's own plan id. fullmatch, not ``^...$``: ``$`` also matches before a trailing newline.
PLAN_ID_RE = re.compile(r"[A-Za-z0-9._\-]{1,64}")
PLAN_ID_RULE = "plan_id must be 1-64 letters, digits, '.', '_' or '-'"

_FIELD_SET = frozenset(PLAN_FIELDS)
_PLAN_TYPES: dict[str, PlanType] = {t.value: t for t in PlanType}
# ASCII only: ``\d`` would let Arabic-Indic digits through to fromisoformat.
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_THREE_DIGITS = re.compile(r"\d{3}")


def safe_field_name(name: object) -> str | None:
    """``name`` if it looks like a field name and may be echoed back, else None.

    A badly built body may key its JSON by an NHS number or a name: only a
    name shaped like an identifier, without a run of digits, is named back.
    """
    if isinstance(name, str) and _FIELD_NAME.fullmatch(name) and not _THREE_DIGITS.search(name):
        return name
    return None


def unknown_field(body: Mapping[str, object]) -> FieldRejection | None:
    """The first key of ``body`` that is not a plan field, if any, as a rejection."""
    allowed = _FIELD_SET
    if body.keys() <= allowed:  # the usual case, decided without building a list
        return None
    unknown = sorted(str(k) for k in body if k not in allowed)
    if not unknown:
        return None
    name = safe_field_name(unknown[0])
    if name is not None:
        return FieldRejection("CPR07", name, f"unknown field: {name}")
    return FieldRejection("CPR07", None, "the body has a field that is not a plan field")


def _date(body: Mapping[str, object], name: str) -> date | FieldRejection | None:
    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str) or not DATE_RE.fullmatch(raw):
        return FieldRejection("CPR07", name, f"{name} must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return FieldRejection("CPR07", name, f"{name} is not a real date")


def _name(body: Mapping[str, object], name: str) -> str | FieldRejection | None:
    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_NAME:
        return FieldRejection(
            "CPR07", name, f"{name} must be a non-empty string of at most {MAX_NAME} characters"
        )
    if not raw.isprintable():
        return FieldRejection("CPR07", name, f"{name} has characters that are not allowed")
    return raw.strip()


def check_plan_fields(body: Mapping[str, object]) -> PlanFields | FieldRejection:
    """Validate a plan's fields (SPEC §5) into domain values, or name the first bad one.

    The single set of rules for both the plan API's PUT body and an upload's
    upsert record, so a plan accepted one way is accepted the other. A value of
    None means absent (JSON null, or an empty CSV cell). Checks run in a fixed
    order and stop at the first fault, so the reason is stable. ``CPR04`` is
    for anything wrong with the NHS number, missing included: CP-IS reports
    those apart because the LA fixes them in a different place.
    """
    unknown = unknown_field(body)
    if unknown is not None:
        return unknown
    raw_nhs = body.get("nhs_number")
    if raw_nhs is None:
        return FieldRejection("CPR04", "nhs_number", "nhs_number is required")
    if not isinstance(raw_nhs, str):
        return FieldRejection("CPR04", "nhs_number", "nhs_number must be a string of 10 digits")
    checked = nhs_number.check(raw_nhs)
    if checked.value is None:
        return FieldRejection("CPR04", "nhs_number", f"nhs_number {checked.reason}")
    raw_type = body.get("plan_type")
    plan_type = _PLAN_TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if plan_type is None:
        return FieldRejection("CPR07", "plan_type", "plan_type must be CPP, LAC or UCPP")
    if body.get("start_date") is None:
        return FieldRejection("CPR07", "start_date", "start_date is required")
    start = _date(body, "start_date")
    if not isinstance(start, date):
        assert start is not None
        return start
    end = _date(body, "end_date")
    if isinstance(end, FieldRejection):
        return end
    if end is not None and end < start:
        return FieldRejection("CPR07", "end_date", "end_date is before start_date")
    birth = _date(body, "birth_date")
    if isinstance(birth, FieldRejection):
        return birth
    if birth is not None and birth > start and plan_type is not PlanType.UCPP:
        return FieldRejection("CPR07", "birth_date", "birth_date is after start_date")
    delete = _date(body, "delete_date")
    if isinstance(delete, FieldRejection):
        return delete
    family = _name(body, "family_name")
    if isinstance(family, FieldRejection):
        return family
    given = _name(body, "given_name")
    if isinstance(given, FieldRejection):
        return given
    return PlanFields(
        nhs_number=checked.value,
        plan_type=plan_type,
        start_date=start,
        end_date=end,
        delete_date=delete,
        birth_date=birth,
        family_name=family,
        given_name=given,
    )
