"""Domain rules (SPEC §3): visibility windows, retention, the 18th birthday.

These are the functions the service calls. The rules applied by SQL or at
registration are tested through those paths, changing the value in
:mod:`cpis.rules` to show the live path follows it: the repeat-view window and the
history size in tests/integration/test_lookup_storage.py, retention and visibility
in tests/integration/test_retention.py, an LA's default notification window in
tests/integration/test_cli_la.py.
"""

from __future__ import annotations

from datetime import date

import pytest

from cpis import rules
from cpis.model import PlanFields, PlanType

NHS = "9990000018"


def plan(
    kind: PlanType = PlanType.CPP,
    start: date = date(2025, 1, 1),
    end: date | None = None,
    delete: date | None = None,
    born: date | None = None,
) -> PlanFields:
    return PlanFields(NHS, kind, start, end, delete, born)


@pytest.mark.parametrize(
    ("fields", "today", "visible", "active"),
    [
        # open-ended plans are visible and active from their start
        (plan(), date(2025, 1, 1), True, True),
        (plan(), date(2024, 12, 31), False, False),  # not yet in force
        # CPP/LAC: 365 days after the end date
        (plan(end=date(2025, 6, 30)), date(2025, 6, 30), True, True),
        (plan(end=date(2025, 6, 30)), date(2025, 7, 1), True, False),
        (plan(end=date(2025, 6, 30)), date(2026, 6, 30), True, False),
        (plan(end=date(2025, 6, 30)), date(2026, 7, 1), False, False),
        (plan(PlanType.LAC, end=date(2025, 6, 30)), date(2026, 6, 30), True, False),
        # UCPP: 28 days after the end / expected delivery date
        (plan(PlanType.UCPP, end=date(2025, 6, 30)), date(2025, 7, 28), True, False),
        (plan(PlanType.UCPP, end=date(2025, 6, 30)), date(2025, 7, 29), False, False),
        # an explicit delete date wins over the window, and is exclusive
        (plan(delete=date(2025, 3, 1)), date(2025, 2, 28), True, True),
        (plan(delete=date(2025, 3, 1)), date(2025, 3, 1), False, True),
        # the 18th birthday ends a CPP/LAC…
        (plan(born=date(2007, 5, 10)), date(2025, 5, 9), True, True),
        (plan(born=date(2007, 5, 10)), date(2025, 5, 10), True, True),
        (plan(born=date(2007, 5, 10)), date(2025, 5, 11), True, False),
        (plan(born=date(2007, 5, 10)), date(2026, 5, 11), False, False),
        # …but not a UCPP, whose birth date is the mother's
        (plan(PlanType.UCPP, born=date(2000, 1, 1)), date(2030, 1, 1), True, True),
    ],
)
def test_visibility_and_activity(
    fields: PlanFields, today: date, visible: bool, active: bool
) -> None:
    """A plan is shown while active and for its type's window after the end."""
    assert rules.is_visible(fields, today) is visible
    assert rules.is_active(fields, today) is active


def test_eighteenth_birthday_ends_before_a_later_end_date() -> None:
    """The earlier of the LA's end date and the 18th birthday is the effective end."""
    fields = plan(end=date(2030, 1, 1), born=date(2008, 3, 3))
    assert rules.effective_end(fields) == date(2026, 3, 3)
    assert rules.effective_end(plan(end=date(2025, 1, 2), born=date(2008, 3, 3))) == date(
        2025, 1, 2
    )


def test_leap_day_birthday_turns_18_on_first_of_march() -> None:
    """A child born on 29 February turns 18 on 1 March in a common year."""
    assert rules.eighteenth_birthday(date(2008, 2, 29)) == date(2026, 3, 1)
    assert rules.eighteenth_birthday(date(2006, 2, 28)) == date(2024, 2, 28)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (plan(), None),
        (plan(end=date(2025, 6, 30)), date(2026, 7, 1)),
        (plan(PlanType.UCPP, end=date(2025, 6, 30)), date(2025, 7, 29)),
        (plan(end=date(2025, 6, 30), delete=date(2025, 2, 1)), date(2025, 2, 1)),
        (plan(born=date(2007, 5, 10)), date(2026, 5, 11)),
    ],
)
def test_delete_on(fields: PlanFields, expected: date | None) -> None:
    """Deleted for good at the explicit delete date, else when the window closes."""
    assert rules.delete_on(fields) == expected


def test_a_plan_is_due_for_purge_from_its_delete_date() -> None:
    """Retention deletes a plan on its delete date and after, never before."""
    fields = plan(end=date(2025, 6, 30))  # deleted on 1 July 2026
    assert not rules.is_due_for_purge(fields, date(2026, 6, 30))
    assert rules.is_due_for_purge(fields, date(2026, 7, 1))
    assert not rules.is_due_for_purge(plan(), date(2099, 1, 1))  # open-ended
