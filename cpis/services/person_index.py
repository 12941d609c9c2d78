"""Keeping the NHS numbers plans are held under current with the person index
(issue 4 item 6): loading the local index, and the check that finds numbers the
index has retired.

PDS merges duplicate records (the number that loses is *superseded* by the
one that stays) and retires numbers issued in error (*inactive*, no
replacement). A plan filed under such a number will not be found by an ED
that searches with the child's current number, so the owning LA must fix its
record: each LA that holds plans for the number gets one notification of kind
``nhs-number-inactive`` carrying the new number where the index knows it,
through its notification channels and web inbox like an attendance.

Two ways in:

- :func:`check_plan_subjects` walks every plan subject, ``batch`` numbers per
  index request, and queues what the index says is retired. It runs daily
  inside ``cpis serve`` (``cpis.workers.index_check``), because a remote index
  such as PDS tells nobody when it merges records.
- :func:`load` loads an extract into the local index (``cpis person-index
  load``), then queues for the people it has just retired
  (:func:`notify_inactive`), so LAs hear at once.

Both are idempotent: a notification's id is derived from the LA and the change
(the store's job), so running either again, or on every replica, queues
nothing new.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from cpis.model.persons import CheckResult, IndexPerson, LoadResult
from cpis.ports.clock import Clock
from cpis.ports.person_index import IndexCheckStore, LoadIndex, PersonIndex

DEFAULT_BATCH = 500


def retired(person: IndexPerson) -> bool:
    """Superseded by another number, or inactive: either way no longer the child's number."""
    superseded = person.superseded_by is not None and person.superseded_by != person.nhs_number
    return superseded or not person.active


async def check_plan_subjects(
    store: IndexCheckStore, index: PersonIndex, *, now: datetime, batch: int = DEFAULT_BATCH
) -> CheckResult:
    """Ask the index about every NHS number that has a plan; queue a notification per
    owning LA for each one it says is retired. Raises ``PersonIndexUnavailable`` if the
    index cannot answer (what was queued before that stays queued)."""
    after: bytes | None = None
    subjects = inactive = queued = 0
    while True:
        rows = await store.plan_subjects(after=after, limit=batch)
        if not rows:
            break
        after = rows[-1][0]
        numbers = [nhs for _key, nhs in rows]
        found = await index.get_many(numbers)
        # Keyed by the number asked about: an index that answers a superseded number
        # with the record that replaced it still tells us about the number we hold.
        people = [
            dataclasses.replace(p, nhs_number=n) if p.nhs_number != n else p
            for n in numbers
            if (p := found.get(n)) is not None
        ]
        gone = [p for p in people if retired(p)]
        subjects += len(rows)
        inactive += len(gone)
        if gone:
            queued += await store.queue_inactive(gone, now=now)
        if len(rows) < batch:
            break
    return CheckResult(subjects=subjects, inactive=inactive, queued=queued)


async def notify_inactive(
    store: IndexCheckStore, people: Sequence[IndexPerson], *, now: datetime
) -> int:
    """Queue notifications for ``people`` an index load retired (others are ignored);
    how many were queued. Numbers nobody holds a plan for queue nothing."""
    gone = [p for p in people if retired(p)]
    return await store.queue_inactive(gone, now=now) if gone else 0


async def load(
    load_index: LoadIndex, store: IndexCheckStore, clock: Clock, data: bytes
) -> tuple[LoadResult, int]:
    """Load an extract (``schemas/person-index.md``) into the local index, in one
    transaction, then tell the LAs holding plans on numbers it retired; what the load
    did and how many notifications were queued. Raises
    :class:`cpis.errors.IndexFileRejected` for a bad file (nothing changed)."""
    result = await load_index(data)
    queued = await notify_inactive(store, result.newly_inactive, now=clock.now())
    return result, queued
