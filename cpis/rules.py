"""Domain rules (SPEC §3), each named here and nowhere else.

- Visibility: a plan is shown from its start date while active and for
  :data:`VISIBLE_DAYS_AFTER_END` after its end, never on or after its delete
  date (:func:`is_visible`), the end being the 18th birthday for a CPP or LAC
  when that comes first (:func:`effective_end`).
- Retention: a plan is deleted for good on :func:`delete_on`
  (:func:`is_due_for_purge`); access events, with their notifications, go once
  their subject has no plan left (the retention adapter's SQL, which needs no
  date: it deletes what no remaining plan holds).
- The 25 visits: the :data:`HISTORY_SIZE` most recent unscheduled access
  events, a repeat view within :data:`REPEAT_VIEW_WINDOW` shown once.
- Notifications: an LA is not told twice of one user's views of one child at
  one setting within its own window of the last notified view
  (``local_authority.repeat_window_hours``, which ``record_lookup()`` reads
  from the LA's row): :data:`DEFAULT_NOTIFY_REPEAT_HOURS` unless it chose
  another when registered.
- The number to ring now: the LA's office line in :func:`in_office_hours`
  (weekdays 09:00 to 17:00 in England), its emergency duty team otherwise.

The functions are pure functions of a plan and a date. "Today" is the date in
England (Europe/London), supplied by the caller's clock, so a plan does not
vanish at midnight UTC during British Summer Time. Where SQL must apply a rule
for speed, the adapter passes it the value from here (``record_lookup()``
takes :data:`REPEAT_VIEW_WINDOW`; the history query takes :data:`HISTORY_SIZE`
as its limit), so changing a value here changes what the service does.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cpis.model import PlanFields, PlanType

VISIBLE_DAYS_AFTER_END = {PlanType.CPP: 365, PlanType.LAC: 365, PlanType.UCPP: 28}

# The 25 visits: how many are shown.
HISTORY_SIZE = 25

# A view of a subject by a user whose last *shown* view of that subject was
# less than this long before is a repeat view: recorded (it is an access) but
# not shown in the 25 visits. Each shown view starts a new window. Decided by
# record_lookup() under the subject's lock, which receives this value.
REPEAT_VIEW_WINDOW = timedelta(hours=24)

# The repeat-notification window of an LA registered without one, in hours:
# views of one child by one user at one setting within an LA's window of the
# last view it was notified of make no second notification (alert fatigue).
DEFAULT_NOTIFY_REPEAT_HOURS = 24


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


def is_due_for_purge(fields: PlanFields, today: date) -> bool:
    """Whether retention deletes the plan for good as of ``today``: on or after
    :func:`delete_on`."""
    gone = delete_on(fields)
    return gone is not None and today >= gone


def is_active(fields: PlanFields, today: date) -> bool:
    end = effective_end(fields)
    return fields.start_date <= today and (end is None or today <= end)


def is_visible(fields: PlanFields, today: date) -> bool:
    """Shown while active and for the window after its end, never on or after deletion.

    A plan whose start date is still in the future is not yet in force and is
    not shown: the LA sends it early only to have it ready.
    """
    if fields.start_date > today or is_due_for_purge(fields, today):
        return False
    last = visible_until(fields)
    return last is None or today <= last


# Children's social care office hours, in England's local time. The service does
# not know each LA's bank holidays (or its own hours), so the page always shows
# both numbers and says which to ring now by this rule.
OFFICE_OPENS = time(9, 0)
OFFICE_CLOSES = time(17, 0)
_ENGLAND = ZoneInfo("Europe/London")


def in_office_hours(at: datetime) -> bool:
    """Whether ``at`` (an aware time) is a weekday between 09:00 and 17:00 in England."""
    local = at.astimezone(_ENGLAND)
    return local.weekday() < 5 and OFFICE_OPENS <= local.time() < OFFICE_CLOSES
