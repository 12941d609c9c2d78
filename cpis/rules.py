"""Domain rules (SPEC §3): visibility, retention, the 18th birthday, repeat views.

Pure functions of a plan and a date. "Today" is the date in England
(Europe/London), supplied by the caller's clock, so a plan does not vanish at
midnight UTC during British Summer Time.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from cpis.model import Plan, PlanFields, PlanType

VISIBLE_DAYS_AFTER_END = {PlanType.CPP: 365, PlanType.LAC: 365, PlanType.UCPP: 28}
AUDIT_REPEAT_WINDOW = timedelta(hours=24)
DEFAULT_NOTIFY_REPEAT_HOURS = 24
HISTORY_SIZE = 25


def eighteenth_birthday(birth_date: date) -> date:
    """The day a child turns 18; a 29 February birthday falls on 1 March."""
    try:
        return birth_date.replace(year=birth_date.year + 18)
    except ValueError:
        return date(birth_date.year + 18, 3, 1)


def effective_end(fields: PlanFields) -> date | None:
    """The end date the service acts on.

    A CPP or LAC ends on the child's 18th birthday when the date of birth is
    known, even if the LA has not sent an end date. A UCPP is held against the
    mother, so her birth date never ends it.
    """
    end = fields.end_date
    if fields.plan_type is not PlanType.UCPP and fields.birth_date is not None:
        adult = eighteenth_birthday(fields.birth_date)
        end = adult if end is None else min(end, adult)
    return end


def visible_until(fields: PlanFields) -> date | None:
    """The last day the plan is shown to health, or None while open-ended."""
    end = effective_end(fields)
    if end is None:
        return None
    return end + timedelta(days=VISIBLE_DAYS_AFTER_END[fields.plan_type])


def delete_on(fields: PlanFields) -> date | None:
    """The day the plan is deleted for good (SPEC §3 retention).

    The LA's explicit delete date when given (records sent in error), else the
    day after the visibility window closes.
    """
    if fields.delete_date is not None:
        return fields.delete_date
    last = visible_until(fields)
    return None if last is None else last + timedelta(days=1)


def is_active(fields: PlanFields, today: date) -> bool:
    end = effective_end(fields)
    return fields.start_date <= today and (end is None or today <= end)


def is_visible(fields: PlanFields, today: date) -> bool:
    """Shown while active and for the window after its end, never on or after deletion.

    A plan whose start date is still in the future is not yet in force and is
    not shown: the LA sends it early only to have it ready.
    """
    if fields.start_date > today:
        return False
    gone = delete_on(fields)
    if gone is not None and today >= gone:
        return False
    last = visible_until(fields)
    return last is None or today <= last


def is_due_for_purge(plan: Plan, today: date) -> bool:
    gone = delete_on(plan.fields)
    return gone is not None and today >= gone


def is_repeat_view(previous_shown_at: datetime | None, now: datetime) -> bool:
    """A view within 24 h of the same user's last shown view of the subject is a repeat."""
    return previous_shown_at is not None and now - previous_shown_at < AUDIT_REPEAT_WINDOW
