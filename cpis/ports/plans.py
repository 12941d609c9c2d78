"""Plans, the LAs that own them and the organisations that look them up (SPEC §3, §5).

Visibility and retention are rules (:mod:`cpis.rules`): a store hands back
every stored plan and the caller decides what health may see.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Protocol

from cpis.model import LocalAuthority, Organisation, Plan, PlanFields, PurgeResult


class PlanStore(Protocol):
    """Plans and reference data, inside one :class:`~cpis.ports.database.Transaction`."""

    async def visible_plan_rows(self, nhs_number: str) -> Sequence[tuple[Plan, LocalAuthority]]:
        """Every stored plan for the subject with its LA (visibility is the caller's rule)."""

    async def get_plan(self, la_ods: str, la_plan_id: str) -> Plan | None: ...

    async def get_plan_by_id(
        self, plan_id: uuid.UUID, version: int | None = None
    ) -> tuple[Plan, LocalAuthority] | None: ...

    async def put_plan(
        self, la_ods: str, la_plan_id: str, fields: PlanFields, at: datetime
    ) -> tuple[Plan, bool]:
        """Create or replace; returns the new version and whether it was created."""

    async def delete_plan(self, la_ods: str, la_plan_id: str) -> bool:
        """Remove a plan and its history for good (entered in error)."""

    async def delete_plans(self, la_ods: str, la_plan_ids: Sequence[str]) -> frozenset[str]:
        """``delete_plan`` for each at once; returns the plan ids that existed."""

    async def put_plans(
        self,
        la_ods: str,
        plans: Sequence[tuple[str, PlanFields]],
        at: datetime,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Store ``(la_plan_id, fields)`` pairs as ``put_plan`` would one by one, in order.

        A plan id given k times gets k new versions, the last one current.
        ``progress`` is told how many pairs have been dealt with, every few thousand.
        """

    async def get_la(self, ods_code: str) -> LocalAuthority | None: ...

    async def get_organisation(self, ods_code: str) -> Organisation | None: ...


class Retention(Protocol):
    """Deletes for good what retention says must go (SPEC §3): plans at their delete
    date, access events and their notifications once their subject has no plan left."""

    async def purge(self, *, today: date, batch: int = 1000) -> PurgeResult: ...
